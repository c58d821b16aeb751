"""The host's log under attack: floods, clients that vanish or stop reading, SSH sockets that
never send a banner. Real consoles, real loopback sockets; what reaches the log is captured
as a host with default logging would print it (WARNING and up, on stderr)."""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.console import Console
from testkit.support import (
    FakeClock,
    Operator,
    audit_events,
    console_settings,
    login_token,
    repl_sessions_ended,
    wait_until,
)
from testkit.tls import certificate


class HostLog(logging.Handler):
    """What a host's stderr would show: every record at WARNING and up, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())

    def tracebacks(self) -> list[str]:
        return [line for line in self.lines if "Traceback" in line or "never retrieved" in line]


@pytest.fixture
def host_log() -> Iterator[HostLog]:
    handler = HostLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


# -- the websocket: a client that stops reading, a client that vanishes -----------------------


def _mask(payload: bytes, opcode: int = 0x1) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    header = (
        struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        if n < 126
        else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    )
    return header + key + masked


def _raw_terminal(console: Console, token: str) -> socket.socket:
    """A websocket client on a bare socket with a tiny receive buffer: it reads the 101 and
    then only what the test asks for."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", console.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ops/terminal HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {console.url}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _print_forever(sock: socket.socket) -> None:
    line = "for _ in range(3_000): print('y' * 10_000)\r"
    sock.sendall(_mask(json.dumps(["stdin", line]).encode()))


def _send_queue(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Bytes the kernel holds for the TCP socket ``local`` → ``remote`` (/proc/net/tcp)."""
    want = {f"{socket.inet_aton(a)[::-1].hex().upper()}:{p:04X}" for a, p in (local, remote)}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if {fields[1], fields[2]} == want and fields[1].endswith(f":{local[1]:04X}"):
            return int(fields[4].split(":")[0], 16)
    return None


def _backed_up(console: Console, sock: socket.socket) -> None:
    # Output is flowing and nobody reads it: the console's send queue for this connection
    # grows until the kernel takes no more (the same size three polls in a row); from then
    # on Tornado holds the writes, and their futures are in flight.
    server, client = ("127.0.0.1", console.port), sock.getsockname()
    sizes: list[int | None] = []

    def full() -> bool:
        sizes.append(_send_queue(server, client))
        return len(sizes) >= 3 and bool(sizes[-1]) and len(set(sizes[-3:])) == 1

    wait_until(full, 60, "the console's send queue filled", interval=0.05)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    sock.close()


def _refusals(console: Console, reason: str) -> int:
    return sum(
        1
        for e in audit_events(console.settings.audit_path)
        if e["event"] == "auth.refused" and e["fields"]["reason"] == reason
    )


@pytest.fixture
def op_token(console: Console, operators: dict[str, Operator], clock: FakeClock) -> str:
    return login_token(console.url, operators["alice"], clock())


def _settled(host_log: HostLog) -> None:
    # Unobserved task failures are reported when the task is collected.
    assert repl_sessions_ended(20), "the REPL session never ended"
    gc.collect()


def test_a_terminal_client_that_stops_reading_leaves_no_traceback(
    console: Console, op_token: str, host_log: HostLog
) -> None:
    sock = _raw_terminal(console, op_token)
    try:
        _print_forever(sock)
        wait_until(lambda: _refusals(console, "ws_slow_client"), 60, "the reading-stopped client dropped")
    finally:
        _reset(sock)
    _settled(host_log)
    assert host_log.tracebacks() == [], "\n".join(host_log.lines)
    assert len(host_log.lines) <= 2, "\n".join(host_log.lines)


def test_a_terminal_client_that_vanishes_mid_output_leaves_no_traceback(
    console: Console, op_token: str, host_log: HostLog
) -> None:
    for _ in range(5):
        sock = _raw_terminal(console, op_token)
        try:
            _print_forever(sock)
            _backed_up(console, sock)
        finally:
            _reset(sock)
    _settled(host_log)
    assert host_log.tracebacks() == [], "\n".join(host_log.lines)
    assert len(host_log.lines) <= 2, "\n".join(host_log.lines)


# -- the SSH port: sockets that never send a banner -------------------------------------------


def _transport_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("opsconsole-ssh-") and not t.name.startswith("opsconsole-ssh-grace-")
    ]


def test_ssh_sockets_without_a_banner_leave_no_traceback(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, host_log: HostLog
) -> None:
    c = Console(console_settings(tmp_path, keys_dir, ssh_port=0), clock=clock).start()
    try:
        assert c.ssh_port is not None
        for n in range(30):
            sock = socket.create_connection(("127.0.0.1", c.ssh_port), timeout=10)
            if n % 3 == 1:
                sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not an SSH banner
            elif n % 3 == 2:
                sock.recv(256)  # read the server's banner, then go
            if n % 2:
                _reset(sock)
            else:
                sock.close()
        wait_until(lambda: not _transport_threads(), 30, "every SSH transport thread ended")
    finally:
        c.stop()
    assert host_log.tracebacks() == [], "\n".join(host_log.lines)
    # one line per cause from this source, and one count line each when the console stops
    assert len(host_log.lines) <= 6, "\n".join(host_log.lines)


def test_the_connection_cap_logs_once_per_source(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, host_log: HostLog
) -> None:
    c = Console(console_settings(tmp_path, keys_dir, max_connections=4), clock=clock).start()
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", c.port), timeout=10))
        refused = 0
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", c.port), timeout=10) as sock:
                sock.sendall(b"GET /ops/threads HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    refused += sock.recv(64) == b""  # closed at accept, no answer
                except ConnectionResetError:
                    refused += 1
        assert refused >= 190
    finally:
        for sock in held:
            sock.close()
        c.stop()
    # the first refusal, then one count line (here: when the console stops)
    assert len(host_log.lines) <= 2, "\n".join(host_log.lines)
    assert "more in the last" in host_log.lines[-1], "\n".join(host_log.lines)


def test_failed_tls_handshakes_log_once(tmp_path: Path, keys_dir: Path, host_log: HostLog) -> None:
    # Tornado logs each failed handshake at WARNING ("SSL Error on ..."); on the console's
    # thread that line is a refusal like any other.
    ca, ca_key, _, _ = certificate(tmp_path, "ca", None, server=False)
    _, _, crt, key = certificate(tmp_path, "server", (ca, ca_key), server=True)
    # Penalties off: each failed handshake would otherwise cost its source, and after a few
    # the source is refused at accept() before any handshake (test_preauth_limits covers that).
    c = Console(
        console_settings(tmp_path, keys_dir, tls_cert=crt, tls_key=key, penalty_min=0, penalty_max=0)
    ).start()
    try:
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", c.port), timeout=10) as sock:
                sock.sendall(b"GET /ops/threads HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP
                with contextlib.suppress(ConnectionResetError):  # the console hangs up
                    assert sock.recv(64) == b""
    finally:
        c.stop()
    assert host_log.tracebacks() == [], "\n".join(host_log.lines)
    # the first, then one count line (here: when the console stops)
    assert len(host_log.lines) == 2, "\n".join(host_log.lines)
    assert "SSL Error" in host_log.lines[0] and "49 more" in host_log.lines[1], "\n".join(host_log.lines)
