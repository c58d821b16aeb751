"""The HTTP server with its pre-auth limits: admission at accept(), the request gate, binding.

Built and run on the console thread's own asyncio loop (see ``console.py``).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable
from typing import Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream
import tornado.web

from opsconsole import log
from opsconsole.config import Settings
from opsconsole.transport.admission import Admission, EarlyDrop, Penalties
from opsconsole.transport.http.request_gate import RequestGate

_log = log.get("transport.http")
# Deep enough that a burst of connects from one source cannot crowd another client's SYN
# out of the kernel's queue: who may stay is decided after accept(), by the admission.
BACKLOG = 1024


class CappedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer with the pre-auth limits, applied at accept() before any byte is read.

    ``max_connections`` caps every open connection; ``admission`` (per source, random early
    drop, penalties) decides about each new one while it is unauthenticated. A connection
    stops being unauthenticated when a request on it carries a valid session
    (``SessionHandler.authenticate``); until then it is closed after ``preauth_timeout``.
    ``gate`` answers requests without a session from sources over their rate with a canned
    429 before any handler runs, and closes their connection (``transport.request_gate``).
    Runs on the console loop.
    """

    max_connections = 64
    refusals = log.RefusalLog()  # serve() gives each server its console's
    preauth_timeout = 30.0
    admission: Admission | None = None
    gate: RequestGate | None = None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._watches: dict[object, _Watch] = {}  # admitted connections, by stream

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            source = str(address[0])
            self.refusals.refused(
                _log,
                logging.WARNING,
                "connection cap",
                source,
                "connection cap %d reached; closing %s",
                self.max_connections,
                source,
            )
            stream.close()
            return
        if self.admission is not None:
            if not self.admission.admit(str(address[0]), stream).admitted:
                stream.close()  # the admission logged why
                return
            loop = tornado.ioloop.IOLoop.current()
            watch = _Watch(loop.call_later(self.preauth_timeout, self._preauth_over, stream))
            self._watches[stream] = watch
        sock = stream.socket
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        watch = self._watches.get(getattr(server_conn, "stream", None))
        if self.gate is None and (watch is None or watch.requested):
            return delegate
        # HTTPServer always passes an HTTP1Connection; the gate needs one to answer on.
        http1 = request_conn if isinstance(request_conn, tornado.http1connection.HTTP1Connection) else None
        return _Request(delegate, http1, watch, self.gate)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        stream = getattr(server_conn, "stream", None)
        watch = self._watches.pop(stream, None)
        if watch is None or self.admission is None:
            return
        tornado.ioloop.IOLoop.current().remove_timeout(watch.timer)
        # Closed while unauthenticated (release() ignores the others): one we cut for taking
        # too long costs its source most, one closed for its source's request rate and one
        # that never completed a request (slowloris, idlers) less, one that made requests
        # (a login) nothing.
        self.admission.release(stream, watch.cause())

    def _preauth_over(self, stream: tornado.iostream.IOStream) -> None:
        watch = self._watches.get(stream)
        if watch is not None and self.admission is not None and self.admission.is_pending(stream):
            watch.expired = True
            _log.info("closing unauthenticated connection after %.0fs", self.preauth_timeout)
            stream.close()


class _Watch:
    """What the server knows about one admitted connection (console loop only)."""

    __slots__ = ("expired", "over_rate", "requested", "timer")

    def __init__(self, timer: object) -> None:
        self.timer = timer
        self.requested = False  # one request's headers arrived complete
        self.expired = False  # closed by the preauth timeout
        self.over_rate = False  # closed by the gate: its source is over the request rate

    def cause(self) -> str | None:
        """What closing this connection unauthenticated costs its source (admission.COSTS)."""
        if self.expired:
            return "timeout"
        if self.over_rate:
            return "rate"
        return None if self.requested else "noauth"


class _Request(tornado.httputil.HTTPMessageDelegate):
    """One request: notes that its headers arrived, and lets the gate refuse it first.

    A refused request never reaches ``inner`` (no handler is built, nothing routed); the
    gate has answered on ``conn``, which closes once the answer is written.
    """

    __slots__ = ("_conn", "_gate", "_inner", "_refused", "_watch")

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        conn: tornado.http1connection.HTTP1Connection | None,
        watch: _Watch | None,
        gate: RequestGate | None,
    ) -> None:
        self._inner = inner
        self._conn = conn
        self._watch = watch
        self._gate = gate
        self._refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if self._watch is not None:
            self._watch.requested = True
        if (
            self._gate is not None
            and self._conn is not None
            and isinstance(start_line, tornado.httputil.RequestStartLine)
        ):
            # Tornado's own way to the peer address (HTTPServerRequest reads it so too).
            address = getattr(getattr(self._conn, "context", None), "remote_ip", None) or "unknown"
            verdict = self._gate.verdict(address, headers)
            if verdict is not None:
                self._refused = True
                if self._watch is not None:
                    self._watch.over_rate = True
                self._gate.refuse(self._conn, start_line, verdict)
                return None
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self._refused else self._inner.data_received(chunk)

    def finish(self) -> None:
        if not self._refused:
            self._inner.finish()

    def on_connection_close(self) -> None:
        if not self._refused:
            self._inner.on_connection_close()


def make_admission(settings: Settings, penalties: Penalties) -> Admission:
    """The HTTP door's admission of unauthenticated connections."""
    return Admission(
        "http",
        cap=settings.max_connections,
        per_source=settings.max_unauthenticated_per_source,
        early_drop=EarlyDrop(*settings.early_drop_fractions),
        penalties=penalties,
    )


def bind(settings: Settings) -> tuple[list[socket.socket], int]:
    """Bind the listening sockets (port 0 → any free port); returns them and the port.

    Like ``tornado.netutil.bind_sockets`` but closes every socket when a bind fails, so a
    port already in use leaves nothing open behind in the host process.
    """
    infos = socket.getaddrinfo(
        settings.host, settings.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    port = settings.port
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind((addr[0], port, *addr[2:]))
            port = sock.getsockname()[1]  # with port 0, later families reuse the first port
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets, port


def serve(
    app: tornado.web.Application,
    sockets: list[socket.socket],
    settings: Settings,
    ssl_context: ssl.SSLContext | None,
    *,
    refusals: log.RefusalLog | None = None,
    admission: Admission | None = None,
    gate: RequestGate | None = None,
) -> CappedHTTPServer:
    """Start serving ``app`` on ``sockets`` with the pre-auth limits.

    Tornado's own per-connection lines (a malformed request, a failed TLS handshake, a read
    error) go through ``refusals`` when logged on the console thread (``log.bind_thread``).
    """
    for name in ("tornado.general", "tornado.application", "tornado.access"):
        log.route_library(name, _log, log.template)
    server = CappedHTTPServer(
        app,
        ssl_options=ssl_context,
        max_body_size=settings.max_body_bytes,
        max_buffer_size=settings.max_body_bytes * 2,
        max_header_size=16 * 1024,
        # Tornado applies this while waiting for request headers, which bounds slowloris.
        idle_connection_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        xheaders=False,  # never trust X-Forwarded-For: lockout is keyed on the peer address
    )
    server.max_connections = settings.max_connections
    if refusals is not None:
        server.refusals = refusals
    server.preauth_timeout = settings.preauth_timeout
    server.admission = admission
    server.gate = gate
    server.add_sockets(sockets)
    return server
