"""One operator's REPL: a thread of its own, a loop of its own, a namespace of its own.

The doors (websocket and SSH) drive a :class:`ReplSession` with four calls
— ``start``, ``feed``, ``resize``, ``close`` — from their own threads, and get text back through
``sink`` on the session thread. A blocking eval freezes only its own session: every session
runs on its own ``opsconsole-repl-<id>`` thread with its own asyncio loop.

Where typed text goes: while the prompt is shown, into the terminal's keyboard queue
(prompt_toolkit edits it); while a line evaluates, to the session's ``sys.stdin`` (``input()``, pdb) — and a
Ctrl-C then interrupts the eval instead (see ``interrupt``). Text typed before an eval ends and
never read becomes type-ahead for the next prompt, as in a terminal.

Nothing of a session outlives it: once its thread has ended, its REPL, prompt_toolkit
application, namespace, loop, executor, streams and recording are reachable from nowhere
(``tests/acceptance/test_session_churn.py`` counts them on the heap). What would keep them is cut where
it is made: prompt_toolkit's filter combinations cached on process-wide filters
(``filter_cache``), its process-wide type-ahead dict (``keyboard``), and ``sys.last_*`` after an
error (``shell``). Being cyclic, a session's objects are freed by the next full collection.

Known limits: an eval blocked in a C call (``time.sleep(1e6)``, a lock, a socket read) cannot
be interrupted, and then ``close`` cannot end the thread either — it ends (and ``on_close`` is
called) when that call returns. Output written by file descriptor or from threads the operator
starts goes to the process's stdout/stderr (see ``streams``).
"""

from __future__ import annotations

import builtins
import pathlib
import threading
from collections.abc import Callable
from typing import Any

from prompt_toolkit.application.current import create_app_session

from opsconsole import log
from opsconsole.errors import ConsoleError
from opsconsole.repl import editor_profile, filter_cache, streams
from opsconsole.repl.asciicast import CastRecorder
from opsconsole.repl.bridge import TerminalBridge
from opsconsole.repl.editor_profile import ProfileName
from opsconsole.repl.interrupt import Interrupter, ReplInterrupt
from opsconsole.repl.limits import DEFAULT_COLS, DEFAULT_ROWS, clamp_size
from opsconsole.repl.loop import SessionLoop
from opsconsole.repl.output import SessionOutput, Unbuffered
from opsconsole.repl.shell import OpsRepl
from opsconsole.repl.stdin import LineReader

_log = log.get("repl.session")


class ReplSession:
    """A ptpython REPL on its own thread, fed keystrokes and resizes, producing terminal text."""

    def __init__(
        self,
        *,
        session_id: str,
        user: str,
        namespace: dict[str, object],
        sink: Callable[[str], None],
        on_close: Callable[[int], None],
        record_input: Callable[[str], None],
        cast_path: pathlib.Path | None = None,
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLS,
        profile: ProfileName = editor_profile.DEFAULT_PROFILE,
        title: str = "opsconsole",
    ) -> None:
        if not session_id:
            raise ValueError("session_id must not be empty")
        self.session_id = session_id
        self.user = user
        self._profile = editor_profile.get(profile)
        self._title = title
        self._on_close = on_close
        self._record_input = record_input
        self._cast_path = cast_path
        self._size = size = clamp_size(rows, cols)
        # A copy per session: `_`, `exit`, `get_ptpython` and the operator's names stay apart.
        self._namespace: dict[str, Any] = dict(namespace)
        self._namespace.setdefault("__name__", "__console__")
        self._namespace.setdefault("__builtins__", builtins)
        self._name = f"opsconsole-repl-{session_id}"
        self._lock = threading.Lock()  # lifecycle
        self._feed_lock = threading.Lock()  # where typed text goes (pipe or stdin)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._finished = False
        self._recorder: CastRecorder | None = None
        self._output = SessionOutput(sink)
        self._terminal = TerminalBridge(self._output, rows=size.rows, cols=size.cols)
        self._stdin = LineReader(echo=self._echo)
        self._interrupter = Interrupter(self._name)

    # -- the adapter's side (any thread) ---------------------------------------------------------

    def start(self) -> None:
        """Start the session thread; returns at once. ConsoleError if the cast cannot be created."""
        with self._lock:
            if self._thread is not None or self._closing:
                raise ConsoleError(f"REPL session {self.session_id} was already started or closed")
            if self._cast_path is not None:
                try:
                    self._recorder = CastRecorder.create(
                        self._cast_path, cols=self._size.cols, rows=self._size.rows, title=self._title
                    )
                except OSError as exc:  # fail closed: no unrecorded sessions when recording is asked for
                    raise ConsoleError(f"cannot record the REPL session to {self._cast_path}: {exc}") from exc
                self._output.record_to(self._recorder)
            streams.install()
            filter_cache.install()  # before ptpython builds this session's filters
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def feed(self, text: str) -> None:
        """Keystrokes from the operator. Never blocks; Ctrl-C during an eval interrupts it."""
        if not text:
            return
        with self._feed_lock:
            if self._closing:
                return
            if self._interrupter.running:
                if "\x03" in text:
                    text = text.rpartition("\x03")[2]
                    self._terminal.discard()  # like a tty, Ctrl-C drops the type-ahead
                    if not self._stdin.interrupt():  # a waiting input() gets KeyboardInterrupt
                        self._interrupter.interrupt()
                if text:
                    self._stdin.put(text)
            else:
                self._terminal.feed(text)

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size in character cells, as the client asked (``limits`` holds it in bounds)."""
        self._size = size = clamp_size(rows, cols)
        self._terminal.resize(size.rows, size.cols)
        if self._recorder is not None:
            self._recorder.resize(size.cols, size.rows)

    def close(self) -> None:
        """End the session; idempotent. ``on_close`` follows once, from the session thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            started = self._thread is not None
        self._stdin.close()
        if not started:
            self._finish(0)
            return
        self._interrupter.interrupt()
        self._terminal.close()  # EOF on the terminal ends the prompt, and every later one

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the session thread to end (any thread but its own); True if it has."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def closed(self) -> bool:
        return self._closing

    # -- the session thread ----------------------------------------------------------------------

    def _run(self) -> None:
        status = 1
        try:
            status = self._serve()
        except BaseException:
            _log.exception("REPL session %s of %s failed", self.session_id, self.user)
        finally:
            self._output.close()
            if self._recorder is not None:
                self._recorder.close()
            self._finish(status)

    def _serve(self) -> int:
        loop = SessionLoop(self._name)
        self._output.attach(loop)
        self._interrupter.use_sigint_handler(lambda: loop.sigint_handler)
        route = streams.Route(stdout=self._output, stderr=Unbuffered(self._output), stdin=self._stdin)
        try:
            keyboard = self._terminal.keyboard
            with (
                streams.routed(route),
                create_app_session(input=keyboard, output=self._terminal.output),
            ):
                repl = OpsRepl(
                    namespace=self._namespace,
                    input=keyboard,
                    output=self._terminal.output,
                    profile=self._profile,
                    title=self._title,
                    record_input=self._record_input,
                    interrupter=self._interrupter,
                    eval_finished=self._eval_finished,
                    closing=lambda: self._closing,
                )
                self._terminal.attach(loop, repl.app)
                main = loop.create_task(repl.interact(), name=f"{self._name}-main")
                while not main.done():
                    try:
                        loop.run_until_complete(main)
                    except ReplInterrupt:
                        continue  # a late Ctrl-C surfaced in the loop's own code: keep serving
                main.result()
                return 0
        finally:
            self._terminal.detach()
            loop.close_session()

    def _eval_finished(self) -> None:
        # session thread, right after each eval; absorbs a Ctrl-C that arrives too late
        while True:
            try:
                with self._feed_lock:
                    self._interrupter.end()
                    leftover = self._stdin.take_leftover()
                    if leftover and not self._closing:
                        self._terminal.feed(leftover)
                self._output.flush()
                return
            except ReplInterrupt:
                continue

    def _echo(self, text: str) -> None:
        # the thread reading stdin
        self._output.write(text)
        self._output.flush()

    def _finish(self, status: int) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = self._closing = True
        try:
            self._on_close(status)
        except Exception:
            _log.exception("on_close of REPL session %s failed", self.session_id)
