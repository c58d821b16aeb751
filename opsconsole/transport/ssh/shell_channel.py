"""The SSH shell channel ↔ one REPL session: the same ReplSession the websocket drives.

Threads: a reader thread per channel (``opsconsole-ssh-read-<id>``) turns channel bytes into
``feed`` calls; the REPL session thread writes output with ``send``, which blocks while the
client's window is full — that is the backpressure, and it only ever blocks the session's own
thread. A client that takes no output for ``limits.STALL_SECONDS`` has stopped reading: its
channel is closed, as the websocket drops a stalled client.

The browser session's limits hold for a shell too (``limits.SessionClock``): no keystroke for
``session_idle_timeout`` or a connection older than ``session_max_age`` closes it (the reader
checks every ``TICK_SECONDS``), so an unattended terminal does not stay logged in forever.
The size a pty request or window change asks for goes to the session as it came: the session
holds it within ``limits``.

The REPL already emits ``\\r\\n`` line ends (xterm.js needs them too), so bytes go out as they are.
"""

from __future__ import annotations

import codecs
import contextlib
import threading
import time
from collections.abc import Callable

import paramiko

from opsconsole import log
from opsconsole.auth.principal import Principal
from opsconsole.errors import OpsConsoleError
from opsconsole.repl.factory import ReplFactory
from opsconsole.repl.limits import STALL_SECONDS, SessionClock
from opsconsole.repl.session import ReplSession

_log = log.get("transport.ssh")
TICK_SECONDS = 0.5  # how often a quiet channel checks the session's idle and age limits
READ_SIZE = 32 * 1024
VIEWER_REFUSAL = "opsconsole: {user} has the viewer role; the REPL needs the operator role.\r\n"


class ShellChannel:
    """One operator's shell over SSH. ``start`` runs on the transport thread and returns at once."""

    def __init__(
        self,
        channel: paramiko.Channel,
        *,
        principal: Principal,
        session_id: str,
        repl: ReplFactory,
        record: Callable[..., None],
        refuse: Callable[..., None],
        idle_timeout: float,
        max_age: float,
    ) -> None:
        self._channel = channel
        self._principal = principal
        self._session_id = session_id
        self._repl_factory = repl
        self._record = record
        self._refuse = refuse
        self._session: ReplSession | None = None
        self._closed = threading.Event()
        self._clock = SessionClock(idle_timeout=idle_timeout, max_age=max_age)

    def start(self, rows: int, cols: int) -> None:
        # The shell request's reply goes out after this returns, so nothing is sent from here:
        # the reader thread does the rest.
        thread = threading.Thread(
            target=self._run,
            args=(rows, cols),
            name=f"opsconsole-ssh-read-{self._session_id}",
            daemon=True,
        )
        thread.start()

    def resize(self, rows: int, cols: int) -> None:
        # the transport thread
        session = self._session
        if session is not None:
            session.resize(rows, cols)

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self, rows: int, cols: int) -> None:
        user = self._principal.user
        self._channel.settimeout(TICK_SECONDS)
        if not self._principal.has("operator"):
            self._refuse("ssh_viewer_shell", user=user, session=self._session_id)
            self._send(VIEWER_REFUSAL.format(user=user).encode())
            self._finish(1)
            return
        try:
            self._session = self._repl_factory.open(
                user=user,
                session_id=self._session_id,
                door="ssh",
                sink=self._sink,
                on_close=self._finish,
                rows=rows,
                cols=cols,
            )
        except OpsConsoleError as exc:  # e.g. the session recording could not be created
            _log.error("SSH shell for %s not opened: %s", user, exc)
            self._refuse("ssh_session_failed", user=user, session=self._session_id)
            self._send(b"opsconsole: the REPL session could not start.\r\n")
            self._finish(1)
            return
        self._pump(self._session)

    def _pump(self, session: ReplSession) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while not self._closed.is_set():
            try:
                data = self._channel.recv(READ_SIZE)
            except TimeoutError:
                if self._expired():
                    break
                continue
            except OSError:
                data = b""
            if not data:  # the client went away: end the session
                break
            self._clock.touch()  # typing is activity, as on the websocket
            session.feed(decoder.decode(data))
        session.close()

    def _expired(self) -> bool:
        # the reader thread. The browser's session limits hold here too: idle and absolute age.
        why = self._clock.expired()
        if why is None:
            return False
        self._refuse("ssh_session_expired", user=self._principal.user, session=self._session_id, why=why)
        self._send(f"\r\nopsconsole: session closed: {why}.\r\n".encode())
        return True

    # -- the REPL session thread ------------------------------------------------------------------

    def _sink(self, text: str) -> None:
        self._send(text.encode("utf-8", "replace"))

    def _send(self, data: bytes) -> None:
        # Blocks while the client's window is full; a client that takes nothing for
        # STALL_SECONDS has stopped reading. The channel timeout is short (the reader polls the
        # session limits with it), so a timeout here only means "no progress yet".
        offset = 0
        deadline = time.monotonic() + STALL_SECONDS
        while offset < len(data) and not self._closed.is_set():
            try:
                offset += self._channel.send(data[offset : offset + READ_SIZE])
                deadline = time.monotonic() + STALL_SECONDS
            except TimeoutError:
                if time.monotonic() > deadline:
                    self._refuse("ssh_slow_client", user=self._principal.user, session=self._session_id)
                    self._close_channel()
            except OSError:
                self._close_channel()  # the connection is gone; the reader thread ends the session

    def _finish(self, status: int) -> None:
        # the REPL session thread (or the reader thread when no session started): the REPL ended
        if self._session is not None:
            self._record("repl.close", user=self._principal.user, session=self._session_id, status=status)
            self._session = None  # the ended REPL is not kept by a channel object that lingers
        if not self._closed.is_set():
            with contextlib.suppress(OSError, EOFError):
                self._channel.send_exit_status(status)
        self._close_channel()

    def _close_channel(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError, EOFError):
            self._channel.close()
