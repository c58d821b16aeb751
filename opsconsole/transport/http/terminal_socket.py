"""``WS /ops/terminal``: the websocket adapter between a browser (or ``opsconsole connect``)
and a REPL session. Thin: it authenticates, polices the connection and moves text.

Frames are JSON arrays: ``["stdin", text]`` and ``["set_size", rows, cols]`` in,
``["stdout", text]`` out. Runs on the console IO loop, except ``_sink`` and
``_repl_closed`` which the REPL session thread calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import threading
import time
from typing import Any, ClassVar

import tornado
import tornado.ioloop
import tornado.websocket

from opsconsole import log
from opsconsole.auth.principal import Role
from opsconsole.errors import AuditError, AuthError, OpsConsoleError, ProtocolError
from opsconsole.repl import limits
from opsconsole.repl.session import ReplSession
from opsconsole.transport.http import ws_gate, ws_messages, ws_protocol
from opsconsole.transport.http.base import ApiError, SessionHandler
from opsconsole.transport.http.request_gate import COOKIE

_log = log.get("transport.terminal")
SESSION_CHECK_MS = 250  # logout or expiry closes the terminal within a second
# Our limit: the frame reader refuses a longer message at its header (1009, audited).
# HARD_MAX_MESSAGE caps what Tornado's own reader buffers when it has to stand in.
MAX_MESSAGE = 64 * 1024
HARD_MAX_MESSAGE = 1024 * 1024


class TerminalHandler(SessionHandler, tornado.websocket.WebSocketHandler):
    required_role: ClassVar[Role | None] = "operator"

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    # -- the handshake ---------------------------------------------------------------------

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The gate, then authentication, then Tornado's upgrade; every refusal is audited.

        Nothing of Tornado's websocket code has seen the request before ``ws_gate.decide``.
        """
        refusal = ws_gate.decide(
            self.request.headers, self._policy(), cookie=self.get_cookie(COOKIE) is not None
        )
        if refusal is not None:
            if refusal.status == 426:
                self.set_header("Sec-WebSocket-Version", "13")
            self._refuse(refusal.status, refusal.reason, refusal.message)
            return
        try:
            self.authenticate()
        except ApiError as exc:
            self._refuse(exc.status_code, f"ws_{exc.code}", exc.message)
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        # Tornado asks this for some requests only (which ones depends on its version); the
        # gate has decided them all already, with the same comparison.
        if ws_gate.origin_allowed(origin, self._policy()):
            return True
        self.auth.refuse("ws_origin", source=self.source, origin=origin[:200])
        return False

    def _policy(self) -> ws_gate.Policy:
        return _policy(self.svc.origin, self.svc.allowed_origins)

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        stock = super().get_websocket_protocol()
        if stock is None:
            return None
        if not isinstance(stock, tornado.websocket.WebSocketProtocol13) or not ws_protocol.SUPPORTED:
            _warn_stock_reader()
            return stock
        return ws_protocol.StrictProtocol.replacing(stock)

    @property
    def max_message_size(self) -> int:
        # The strict reader refuses a longer message at its header, before buffering it.
        return MAX_MESSAGE if ws_protocol.SUPPORTED else HARD_MAX_MESSAGE

    def _refuse(self, status: int, reason: str, message: str) -> None:
        token, via = self.credentials()
        self.auth.refuse(
            reason,
            source=self.source,
            user=self._user_of(token),
            credential=via,
            origin=self.request.headers.get("Origin", "")[:200],
            host=self.request.headers.get("Host", "")[:200],
        )
        self.refusal_reason = reason  # for the access line
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": _ERRORS.get(status, "forbidden"), "message": message}))

    def _user_of(self, token: str | None) -> str:
        # Whose live session a refused request carried, for the audit; the idle timer is left alone.
        if self.session is not None:
            return self.session.principal.user
        if token is None:
            return ""
        try:
            return self.auth.session(token, touch=False).principal.user
        except AuthError:
            return ""

    # -- the open connection -----------------------------------------------------------------

    def open(self, *args: str, **kwargs: str) -> None:
        assert self.session is not None
        assert self.token is not None
        self.set_nodelay(True)
        self._loop = asyncio.get_running_loop()
        self._drained = threading.Condition()
        self._pending = 0  # output bytes handed to Tornado but not yet on the socket
        self._limit = self.svc.settings.ws_output_buffer
        self._closing = False
        self._bucket = _Bucket(self.svc.settings.ws_rate_limit)
        self.session_id = secrets.token_hex(6)
        self._watch = tornado.ioloop.PeriodicCallback(self._check_session, SESSION_CHECK_MS)
        self._watch.start()
        # ?rows=&cols= as the client sent them; the one size rule decides what they mean
        size = limits.parse_size(self.get_query_argument("rows", ""), self.get_query_argument("cols", ""))
        try:
            self.repl: ReplSession = self.svc.repl.open(
                user=self.session.principal.user,
                session_id=self.session_id,
                door="websocket",
                sink=self._sink,
                on_close=self._repl_closed,
                rows=size.rows,
                cols=size.cols,
            )
        except OpsConsoleError as exc:  # e.g. the session recording could not be created
            _log.error("terminal session not opened: %s", exc)
            self._drop(1011, "ws_session_failed", "the REPL session could not start")

    def on_message(self, message: str | bytes) -> None:
        if self._closing:  # a close frame went out: what the client still sends is not acted on
            return
        try:
            parsed = ws_messages.parse(message, max_bytes=MAX_MESSAGE)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        if not self._bucket.take():
            self._drop(1008, "ws_rate_limit", "too many messages")
            return
        if isinstance(parsed, ws_messages.Stdin):
            try:
                self.auth.session(self.token or "")  # typing is activity: restart the idle timer
            except AuthError:
                self._drop(1008, "ws_session_expired", "session expired or revoked")
                return
            self.repl.feed(parsed.text)
        else:
            self.repl.resize(parsed.rows, parsed.cols)  # the session holds it within limits

    def protocol_error(self, exc: ProtocolError) -> None:
        """A broken frame or message: audited once per connection, closed with its code."""
        self._drop(exc.code, exc.reason, exc.message)

    def on_close(self) -> None:
        self._mark_closing()
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.stop()
        repl = getattr(self, "repl", None)
        if repl is not None:
            repl.close()
            self.record(
                "repl.close",
                user=self.session.principal.user if self.session else "",
                session=self.session_id,
                status=self.close_code,
            )

    def on_ping(self, data: bytes) -> None:
        pass  # Tornado answers pings; its own pings (websocket_ping_interval) catch dead peers

    # -- output: the session thread produces, the IO loop sends ------------------------------

    def _sink(self, text: str) -> None:
        # runs on the REPL session thread. Backpressure: past the buffer limit the session
        # waits for the client to catch up; a client that takes no output for limits.STALL_SECONDS
        # has stopped reading and is dropped, so memory stays bounded either way.
        size = len(text)
        with self._drained:
            over = self._pending > self._limit and not self._drained.wait_for(
                lambda: self._closing or self._pending <= self._limit // 2, limits.STALL_SECONDS
            )
            if self._is_closing():
                return
            self._pending += size
        callback = self._overflow if over else lambda: self._send(text, size)
        with contextlib.suppress(RuntimeError):  # the console loop is gone: nothing to send to
            self._loop.call_soon_threadsafe(callback)

    def _send(self, text: str, size: int) -> None:
        if self._closing:
            return
        try:
            future = self.write_message(json.dumps(["stdout", text]))
        except tornado.websocket.WebSocketClosedError:
            return
        future.add_done_callback(lambda f: self._sent(size, f))

    def _sent(self, size: int, future: asyncio.Future[None]) -> None:
        # IO loop. A write to a client that went away fails with WebSocketClosedError:
        # retrieve it here, or asyncio logs a traceback per write when the task is collected.
        if not future.cancelled():
            future.exception()
        with self._drained:
            self._pending -= size
            self._drained.notify_all()

    def _overflow(self) -> None:
        # A client that stops reading would make us buffer without bound: drop it.
        self._drop(1008, "ws_slow_client", f"output not read for {limits.STALL_SECONDS:.0f} s")

    def _repl_closed(self, status: int) -> None:
        # runs on the REPL session thread (or the closing thread)
        def close() -> None:
            if not self._closing:
                self.close(1000, f"session ended ({status})")

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(close)

    def _check_session(self) -> None:
        try:
            self.auth.session(self.token or "", touch=False)
        except AuthError:
            self._drop(1008, "ws_session_expired", "session expired or revoked")

    def _drop(self, code: int, reason: str, message: str) -> None:
        if self._closing:
            return
        user = self.session.principal.user if self.session else ""
        # A drop that cannot be recorded still happens; the audit writer has logged why.
        with contextlib.suppress(AuditError):
            self.auth.refuse(reason, source=self.source, user=user, session=self.session_id)
        self._mark_closing()
        self.close(code, message)

    def _mark_closing(self) -> None:
        # IO loop; a session thread waiting in _sink for the client gives up
        self._closing = True
        drained = getattr(self, "_drained", None)
        if drained is not None:
            with drained:
                drained.notify_all()

    def _is_closing(self) -> bool:
        return self._closing


class _Bucket:
    """A token bucket: ``rate`` messages per second, bursts up to 2 × rate."""

    def __init__(self, rate: int) -> None:
        self._rate = float(rate)
        self._tokens = 2.0 * rate
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(2.0 * self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 426: "upgrade_required"}
_warned: list[bool] = []


@functools.cache
def _policy(origin: str, allowed_origins: frozenset[str]) -> ws_gate.Policy:
    return ws_gate.Policy.of(origin, allowed_origins)


def _warn_stock_reader() -> None:
    # runs on the console IO loop; once per process
    if not _warned:
        _warned.append(True)
        _log.warning(
            "tornado %s: websocket frame reader not replaced (%s); protocol errors drop the "
            "connection without a close code",
            tornado.version,
            "; ".join(ws_protocol.shape_problems()) or "another protocol class",
        )
