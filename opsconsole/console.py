"""The composition root: builds the services and owns the console thread and its loop.

``start()`` runs on the caller's thread (a plain script, inside a running asyncio loop, or
in a Tornado app): it loads and checks everything there, so a bad file raises in the
caller, then starts a daemon thread with its own asyncio loop and returns once the socket
is bound. The host's threads and loops are never used by the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping

import tornado.ioloop

from opsconsole import log
from opsconsole.audit import AuditLog, HeadAnchor
from opsconsole.audit.summary import RefusalSummary
from opsconsole.auth.authenticator import Authenticator
from opsconsole.auth.challenges import ChallengeStore
from opsconsole.auth.lockout import Lockout
from opsconsole.auth.operators import OperatorStore
from opsconsole.auth.sessions import SessionStore
from opsconsole.auth.sources import RequestRate
from opsconsole.auth.tickets import TicketStore
from opsconsole.auth.totp import TotpGuard
from opsconsole.config import Settings, load
from opsconsole.diagnostics.service import Diagnostics
from opsconsole.errors import AuditError, ConsoleError
from opsconsole.private_files import ensure_private_dir
from opsconsole.repl.factory import ReplFactory
from opsconsole.transport.admission import Admission, Penalties
from opsconsole.transport.http.base import Services
from opsconsole.transport.http.http_server import bind, make_admission, serve
from opsconsole.transport.http.request_gate import RequestGate
from opsconsole.transport.http.routes import make_app
from opsconsole.transport.ssh.ssh_server import SshServer

_log = log.get("console")
START_TIMEOUT = 10.0
STOP_GRACE = 2.0  # seconds for what is still running on the console loop to finish as it stops
FLUSH_MS = 1000  # aggregated refusal lines and audit summaries are written within a second


class Console:
    """One running console. Use :func:`opsconsole.start` to make one.

    Built and started on the caller's thread; it serves on its own daemon thread
    (``opsconsole``) and loop. ``stop`` may be called from any thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        app_loop: asyncio.AbstractEventLoop | None = None,
        namespace: Mapping[str, object] | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = secrets.token_hex(8)
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False
        self._stop_lock = threading.Lock()
        self.port = 0
        self.url = ""
        self.ssh_port: int | None = None  # set by start() when the SSH port is on
        # Per-source penalties count what a source did on either door.
        # Refusals cost an attacker nothing: their log lines and audit records are aggregated.
        self.refusals = log.RefusalLog(clock=clock)
        self.penalties = Penalties(
            min_seconds=settings.penalty_min, max_seconds=settings.penalty_max, refusals=self.refusals
        )
        self.http_admission: Admission = make_admission(settings, self.penalties)
        if app_loop is None:
            # Started inside a running loop: that is the app's loop; dumps show its tasks.
            with contextlib.suppress(RuntimeError):
                app_loop = asyncio.get_running_loop()
        self.app_loop = app_loop
        ensure_private_dir(settings.state_dir)
        self.audit = AuditLog.open(settings.audit_path, clock=clock)
        self.refusal_record = RefusalSummary(self.audit.record, clock=clock)
        # The head goes to the host's log at start, stop and each minute it changes (README).
        self.audit_head = HeadAnchor(self.audit)
        try:
            self.auth = self._build_auth()
            self.diagnostics = Diagnostics(
                dump_dir=settings.state_dir / "dumps",
                app_loops=() if app_loop is None else (app_loop,),
                memory_budget=settings.walk_memory_budget << 20,
            )
            ensure_private_dir(settings.state_dir / "casts")
            self.repl = ReplFactory(
                namespace=namespace or {},
                diag=self.diagnostics,
                app_loop=app_loop,
                record=self.audit.record,
                cast_dir=settings.state_dir / "casts",
                profile="full" if settings.repl_profile == "full" else "lean",
                switch_interval=settings.repl_switch_interval,
            )
            self.ssh: SshServer | None = None
            if settings.ssh_port is not None:
                self.ssh = SshServer(
                    settings,
                    auth=self.auth,
                    repl=self.repl,
                    record=self.audit.record,
                    refusals=self.refusals,
                    penalties=self.penalties,
                    audit_failing=lambda: self.audit.failing,
                )
        except BaseException:
            self.audit.close()
            raise

    def _build_auth(self) -> Authenticator:
        s, clock, record = self.settings, self._clock, self.audit.record
        # A bad file raises here, in the caller; the store audits the rejection itself.
        operators = OperatorStore(
            authorized_keys=s.authorized_keys, totp_secrets=s.totp_secrets, record=record
        )
        return Authenticator(
            operators=operators,
            challenges=ChallengeStore(ttl=s.nonce_ttl, instance_id=self.instance_id, clock=clock),
            totp=TotpGuard(state_file=s.state_dir / "totp_state.json", clock=clock),
            lockout=Lockout(
                threshold=s.lockout_threshold,
                base_delay=s.lockout_base_delay,
                max_delay=s.lockout_max_delay,
                clock=clock,
            ),
            tickets=TicketStore(clock=clock),
            sessions=SessionStore(
                idle_timeout=s.session_idle_timeout, max_age=s.session_max_age, clock=clock
            ),
            record=self.refusal_record,
            clock=clock,
        )

    # -- lifecycle (caller's thread) ---------------------------------------------------

    def start(self) -> Console:
        if self._thread is not None:
            raise ConsoleError("this console was already started")
        ssl_context = self.settings.ssl_context()
        if self.ssh is not None:
            try:
                self.ssh_port = self.ssh.start()
            except ConsoleError:
                self.diagnostics.close()
                self.audit.close()
                raise
        self._thread = threading.Thread(target=self._run, args=(ssl_context,), name="opsconsole", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise ConsoleError(f"console did not bind within {START_TIMEOUT:.0f}s")
        if self._error is not None:
            if self.ssh is not None:
                self.ssh.stop()
            self.diagnostics.close()
            self.audit.close()
            raise ConsoleError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {self._error}"
            ) from self._error
        ssh = {} if self.ssh is None else {"ssh_port": self.ssh_port, "ssh_host_key": self.ssh.fingerprint}
        try:
            self.audit.record(
                "console.start", url=self.url, instance=self.instance_id, pid=os.getpid(), **ssh
            )
        except AuditError:
            self.stop()  # nothing runs unrecorded, the console included
            raise
        self.audit_head.start()
        _log.info("opsconsole listening on %s (instance %s)", self.url, self.instance_id)
        if self.settings.leak_interval > 0:
            self.audit.record("dump.leaks_start", interval=self.settings.leak_interval, source="config")
            self.diagnostics.leaks_start(self.settings.leak_interval)
        if self.ssh is not None:
            _log.info("opsconsole SSH on port %s, host key %s", self.ssh_port, self.ssh.fingerprint)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port. Idempotent; callable from any thread."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._loop is not None and self._stop_event is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.ssh is not None:
            self.ssh.stop()
        self.repl.close_all()
        self.diagnostics.close()
        self._flush_refusals(final=True)
        # A log that cannot be written has said so in the host log already; stopping goes on.
        with contextlib.suppress(AuditError):
            if self.url:
                self.audit.record("console.stop", url=self.url, instance=self.instance_id)
        self.audit_head.stop()
        self.audit.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the console thread ------------------------------------------------------------

    def _run(self, ssl_context: ssl.SSLContext | None) -> None:
        # runs on the console thread: its own loop, never the host's
        # a selector loop of the console's own, whatever loop policy the host installed (uvloop)
        loop = asyncio.SelectorEventLoop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_exception)
        log.bind_thread(self.refusals)  # Tornado's per-connection lines are refusals too
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ssl_context))
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
            else:
                _log.exception("console thread crashed")
        finally:
            self._ready.set()
            # Tasks still pending (an open terminal's handler) would stay in Tornado's
            # process-wide IOLoop._pending_tasks, with their sessions, once the loop is closed.
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=STOP_GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ssl_context: ssl.SSLContext | None) -> None:
        # runs on the console loop
        self._stop_event = asyncio.Event()
        sockets, self.port = bind(self.settings)
        self.url = self.settings.origin(self.port)
        request_rate = RequestRate(
            rate=self.settings.unauthenticated_rate, burst=self.settings.unauthenticated_burst
        )
        svc = Services(
            auth=self.auth,
            diag=self.diagnostics,
            record=self.audit.record,
            settings=self.settings,
            origin=self.url,
            allowed_origins=frozenset({self.url, *self.settings.extra_origins()}),
            repl=self.repl,
            refusals=self.refusals,
            admission=self.http_admission,
            request_rate=request_rate,
        )
        app = make_app(svc)
        server = serve(
            app,
            sockets,
            self.settings,
            ssl_context,
            refusals=self.refusals,
            admission=self.http_admission,
            gate=RequestGate(request_rate, self.auth, self.refusals),
        )
        flush = tornado.ioloop.PeriodicCallback(self._flush_refusals, FLUSH_MS)
        flush.start()
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            flush.stop()
            server.stop()
            await server.close_all_connections()

    def _flush_refusals(self, *, final: bool = False) -> None:
        # the console loop, every FLUSH_MS; and the stopping thread, once, with ``final``
        self.refusals.flush(final=final)
        self.refusal_record.flush(final=final)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # the console loop. A task that failed unobserved (e.g. a write to a client that went
        # away) is logged like a refusal: aggregated, so no client can fill the log with them.
        exc = context.get("exception")
        exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None
        message = str(context.get("message", "unhandled exception in the console loop"))
        detail = f"{message}: {type(exc).__name__}: {exc}" if exc_info else message
        self.refusals.refused(
            _log, logging.ERROR, f"console loop: {message}", "-", "%s", detail, exc_info=exc_info
        )


def start(
    config: str | os.PathLike[str] | None = None,
    *,
    app_loop: asyncio.AbstractEventLoop | None = None,
    namespace: Mapping[str, object] | None = None,
    **settings: object,
) -> Console:
    """Start the console on its own thread. Returns once listening. Runs on the caller's thread.

    ``opsconsole.start(config="opsconsole.toml", port=0)``: ``config`` is the TOML file
    (default: ``$OPSCONSOLE_CONFIG``, else none); keyword settings override the environment,
    which overrides the file. ``app_loop`` registers the app's event loop for task dumps and
    ``ops.run`` (default: the loop running in the caller, if any); ``namespace`` seeds every
    REPL session (each gets its own copy). Raises ``ConfigError`` or ``ConsoleError``.
    """
    return Console(load(config, environ=None, **settings), app_loop=app_loop, namespace=namespace).start()
