"""A blocking websocket client for latency figures: it costs the measurement next to nothing.

An operator's browser reads the terminal's websocket in C++; the asyncio client of the tests
(``tests/terminal_client.py``: Tornado's client, a loop iteration and a few futures per
message) adds its own ~0.3 ms to every keystroke and most of the p99 — up to 10 ms when its
loop is late, while the server's own tail is 4–5 ms. Latency goals are about the server, so
``bench/terminal.py`` times keystrokes with this client (one ``sendall`` out, ``recv`` until
the echo is in) and prints the asyncio client's figures beside it.

RFC 6455, only what the terminal needs: the upgrade with a bearer token, masked text frames
out, unfragmented text frames in, pings answered, a close frame ends it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class BlockingTerm:
    """One ``/ops/terminal`` connection; ``read_text`` returns the next stdout frame's text."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ops/terminal HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")

    def send(self, text: str) -> None:
        self._frame(TEXT, json.dumps(["stdin", text]).encode())

    def read_text(self) -> str:
        """The text of the next ``["stdout", text]`` frame (pings are answered on the way)."""
        while True:
            opcode, payload = self._read_frame()
            if opcode == TEXT:
                return str(json.loads(payload)[1])
            if opcode == PING:
                self._frame(PONG, payload)
            elif opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload[2:].decode(errors='replace')}")

    def drain(self, seconds: float) -> None:
        """Read and drop whatever arrives within ``seconds`` of quiet (e.g. a redrawn line)."""
        self._sock.settimeout(seconds)
        try:
            while True:
                self.read_text()
        except TimeoutError:
            self._buf = b""
        finally:
            self._sock.settimeout(10.0)

    def close(self) -> None:
        try:
            self._frame(CLOSE, struct.pack(">H", 1000))
        finally:
            self._sock.close()

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))  # keystrokes: tiny
        self._sock.sendall(head + mask + masked)

    def _read_frame(self) -> tuple[int, bytes]:
        self._need(2)
        opcode, size = self._buf[0] & 0x0F, self._buf[1] & 0x7F
        offset = 2
        if size == 126:
            self._need(4)
            size, offset = struct.unpack(">H", self._buf[2:4])[0], 4
        elif size == 127:
            self._need(10)
            size, offset = struct.unpack(">Q", self._buf[2:10])[0], 10
        self._need(offset + size)
        payload, self._buf = self._buf[offset : offset + size], self._buf[offset + size :]
        return opcode, payload

    def _need(self, n: int) -> None:
        while len(self._buf) < n:
            self._fill()

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed")
        self._buf += chunk
