"""A raw RFC 6455 client on a blocking socket: exactly the bytes we choose go on the wire.

Two uses. Tests send hand-built handshakes (duplicate headers, odd Hosts and Origins) and
hand-built frames (bad UTF-8, reserved bits, unmasked, oversized control frames) and read
the close code the console answers with. And the benchmarks time keystrokes with it: an
operator's browser reads the terminal's websocket in C++; the asyncio client of the tests
(``testkit/terminal_client.py``: Tornado's client, a loop iteration and a few futures per
message) adds its own ~0.3 ms to every keystroke and most of the p99 — up to 10 ms when its
loop is late, while the server's own tail is 4–5 ms. Latency goals are about the server, so
``bench/terminal.py`` times keystrokes with ``BlockingTerm`` (one ``sendall`` out, ``recv``
until the echo is in) and prints the asyncio client's figures beside it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Sequence
from urllib.parse import urlsplit

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame; ``rsv`` (0..7), ``masked=False`` and a false ``length`` make broken ones."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = struct.pack(">BB", b0, m | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", b0, m | 126, n)
    else:
        head = struct.pack(">BBQ", b0, m | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    masked_payload = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        len(payload), "little"
    )
    return head + mask + masked_payload


def upgrade_headers(host: str, *, key: str | None = None) -> list[tuple[str, str]]:
    """The headers every RFC 6455 upgrade carries (Host first), without Origin or credentials."""
    return [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key or base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]


class RawWebSocket:
    """One TCP connection to ``url``'s host and port; the caller writes every header line."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
        self.buf = b""
        self.status = 0
        self.body = b""

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def upgrade(self, headers: Sequence[tuple[str, str]], path: str = "/ops/terminal") -> int:
        """Send ``GET path`` with exactly ``headers`` (UTF-8, as given); returns the status."""
        lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])
        if self.status != 101:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self._need(length)
            self.body, self.buf = self.buf[:length], self.buf[length:]
        return self.status

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(frame(TEXT, text.encode()))

    def read_frame(self) -> tuple[int, bytes]:
        self._need(2)
        opcode, size = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        offset = 2
        if size == 126:
            self._need(4)
            size, offset = struct.unpack(">H", self.buf[2:4])[0], 4
        elif size == 127:
            self._need(10)
            size, offset = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(offset + size)
        payload, self.buf = self.buf[offset : offset + size], self.buf[offset + size :]
        return opcode, payload

    def read_control(self) -> tuple[int, bytes]:
        """The next frame that is not terminal output; pings are answered on the way."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == PING:
                self.send(frame(PONG, payload))
            elif opcode != TEXT:
                return opcode, payload

    def close_code(self) -> int | None:
        """Read (and drop output) until the server's close frame: its code; None if TCP ended
        without one. Answers the close as RFC 6455 asks, then waits for the server's EOF."""
        try:
            opcode, payload = self.read_control()
            while opcode != CLOSE:
                opcode, payload = self.read_control()
        except ConnectionError:
            return None
        code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        self.send(frame(CLOSE, payload[:2]))
        self.wait_eof()
        return int(code)

    def wait_eof(self) -> None:
        """Read until the server ends TCP (bounded by the socket timeout)."""
        try:
            while self.sock.recv(1 << 16):
                pass
        except (ConnectionError, TimeoutError):
            pass

    def close(self) -> None:
        self.sock.close()

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            self._fill()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk


class BlockingTerm:
    """One ``/ops/terminal`` connection; ``read_text`` returns the next stdout frame's text."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self._ws = RawWebSocket(url, timeout=timeout)
        headers = [*upgrade_headers(self._ws.netloc), ("Authorization", f"Bearer {token}")]
        if self._ws.upgrade(headers) != 101:
            raise ConnectionError(
                f"upgrade refused: {self._ws.status} {self._ws.body.decode(errors='replace')}"
            )

    def send(self, text: str) -> None:
        self._ws.send_text(json.dumps(["stdin", text]))

    def read_text(self) -> str:
        """The text of the next ``["stdout", text]`` frame (pings are answered on the way)."""
        while True:
            opcode, payload = self._ws.read_frame()
            if opcode == TEXT:
                return str(json.loads(payload)[1])
            if opcode == PING:
                self._ws.send(frame(PONG, payload))
            elif opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload[2:].decode(errors='replace')}")

    def drain(self, seconds: float) -> None:
        """Read and drop whatever arrives within ``seconds`` of quiet (e.g. a redrawn line)."""
        self._ws.sock.settimeout(seconds)
        try:
            while True:
                self.read_text()
        except TimeoutError:
            self._ws.buf = b""
        finally:
            self._ws.sock.settimeout(10.0)

    def close(self) -> None:
        try:
            self._ws.send(frame(CLOSE, struct.pack(">H", 1000)))
        finally:
            self._ws.close()
