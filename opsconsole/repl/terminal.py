"""A terminal for prompt_toolkit made of a pipe (keys in) and a SessionOutput (screen out).

The shape of ``prompt_toolkit.contrib.ssh.server``: a ``PipeInput`` the app reads keys from and
a ``Vt100_Output`` whose "stdout" forwards to the session's sink, plus a size the transport sets.

Keys never block the caller: :meth:`TerminalBridge.feed` runs on the console's IO loop thread,
and a pipe write blocks once 64 KiB are unread — which is the normal state while a long eval
runs, or during a big paste. So fed text is queued (encoded, in chunks) and the session loop
drains the queue into a non-blocking pipe, resuming through ``add_writer`` when it is full.

CPR (cursor position requests) is off: a terminal that does not answer would make every prompt
wait for a reply, and prompt_toolkit lays out fine without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput
from prompt_toolkit.output.vt100 import Vt100_Output

from opsconsole import log
from opsconsole.repl.asciicast import TERM
from opsconsole.repl.output import SessionOutput

_log = log.get("repl.terminal")
CHUNK = 16 * 1024  # bytes per pipe write
MAX_QUEUED = 32 * 1024 * 1024  # input bytes held for a session that does not read; more is dropped


class TerminalBridge:
    """Input queue + pipe + Vt100 output of one session. Methods say which thread they run on."""

    def __init__(self, output: SessionOutput, *, rows: int, cols: int) -> None:
        self._size = Size(rows=rows, columns=cols)
        self.output = Vt100_Output(output, self.get_size, term=TERM, enable_cpr=False)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._drain_scheduled = False
        self._writer_added = False
        self._app: Application[Any] | None = None

    # -- any thread ------------------------------------------------------------------------------

    def get_size(self) -> Size:
        return self._size

    def feed(self, text: str) -> None:
        """Queue keys for the app; never blocks. Any thread (the console IO loop)."""
        data = text.encode("utf-8", "replace")
        with self._lock:
            if self._queued + len(data) > MAX_QUEUED:
                self._dropped += len(data)
                return
            for i in range(0, len(data), CHUNK):
                self._queue.append(data[i : i + CHUNK])
            self._queued += len(data)
            loop, schedule = self._loop, not self._drain_scheduled
            if loop is not None and schedule:
                self._drain_scheduled = True
        if loop is not None and schedule:
            self._call_soon(loop, self._drain)

    def discard(self) -> None:
        """Drop queued keys not yet in the pipe (Ctrl-C flushes type-ahead, as a tty does)."""
        with self._lock:
            self._queue.clear()
            self._queued = 0

    def resize(self, rows: int, cols: int) -> None:
        """New size; the running app redraws for it. Any thread."""
        self._size = Size(rows=rows, columns=cols)
        with self._lock:
            loop = self._loop
        if loop is not None:
            self._call_soon(loop, self._redraw)

    # -- the session thread ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, pipe: PipeInput, app: Application[Any]) -> None:
        """Start draining into ``pipe`` (whose write end becomes non-blocking) on ``loop``."""
        fd = pipe.pipe.write_fd  # type: ignore[attr-defined]
        os.set_blocking(fd, False)
        with self._lock:
            self._loop, self._fd, self._app = loop, fd, app
            self._drain_scheduled = True
        loop.call_soon(self._drain)

    def detach(self) -> None:
        """Stop draining (the session loop, before the pipe closes)."""
        with self._lock:
            loop, self._loop = self._loop, None
            writer_added, self._writer_added = self._writer_added, False
        if loop is not None and writer_added:
            loop.remove_writer(self._fd)
        if self._dropped:
            _log.warning("REPL input dropped: %d bytes beyond the %d byte queue", self._dropped, MAX_QUEUED)

    def _drain(self) -> None:
        # session loop: write queued chunks until the pipe is full, then wait for it to drain
        with self._lock:
            self._drain_scheduled = False
            loop = self._loop
        if loop is None:
            return
        while True:
            with self._lock:
                if not self._queue:
                    break
                chunk = self._queue[0]
            try:
                written = os.write(self._fd, chunk)
            except BlockingIOError:
                written = 0
            except OSError:  # the pipe is gone: the session is ending
                self.discard()
                return
            with self._lock:
                if self._queue and self._queue[0] is chunk:  # discard() may have emptied it
                    if written == len(chunk):
                        self._queue.popleft()
                    else:
                        self._queue[0] = chunk[written:]
                    self._queued -= written
            if written < len(chunk):
                if not self._writer_added:
                    loop.add_writer(self._fd, self._drain)
                    self._writer_added = True
                return
        if self._writer_added:
            loop.remove_writer(self._fd)
            self._writer_added = False

    def _redraw(self) -> None:
        # session loop
        app = self._app
        if app is not None and app.is_running:
            app._on_resize()

    @staticmethod
    def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the session loop is closed: the session is over
            loop.call_soon_threadsafe(callback)
