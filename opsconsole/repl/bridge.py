"""A terminal for prompt_toolkit: a :class:`Keyboard` (keys in) and a SessionOutput (screen out).

The shape of ``prompt_toolkit.contrib.ssh.server`` — an input, a ``Vt100_Output`` whose
"stdout" forwards to the session's sink, a size the transport sets — with one difference in
*when* a frame is drawn.

Stock prompt_toolkit draws lazily: a key changes the buffer, ``Application.invalidate`` schedules
the redraw with ``call_soon_threadsafe`` (twice: an event and the redraw) and postpones it while
other callbacks are ready, so one keystroke takes two or three more loop iterations, each a
selector call that hands the GIL away — on a host whose threads spin in pure Python each such
hand-off costs up to a switch interval before the session thread runs again. Here the session's
app gets :meth:`TerminalBridge._invalidate` instead: on the session loop it only marks the app
invalid and queues one plain ``call_soon`` (no self-pipe write); and right after the app has
processed a slice of keys (``Keyboard.after_keys``) the frame is drawn at once, in the same
loop iteration, so the queued redraw finds nothing to do. A frame is drawn once per burst of
keys; while a big paste is still queued, at most every :data:`PASTE_FRAME` seconds.
``max_render_postpone_time``, ``min_redraw_interval`` and ``on_invalidate`` of the app are not
used (ptpython sets none of them).

CPR (cursor position requests) is off: a terminal that does not answer would make every prompt
wait for a reply, and prompt_toolkit lays out fine without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.data_structures import Size
from prompt_toolkit.output.vt100 import Vt100_Output

from opsconsole.repl.asciicast import TERM
from opsconsole.repl.keyboard import Keyboard
from opsconsole.repl.output import SessionOutput

PASTE_FRAME = 0.05  # seconds between frames while a paste is being processed


class TerminalBridge:
    """Keyboard + Vt100 output + drawing of one session. Methods say which thread they run on."""

    def __init__(self, output: SessionOutput, *, rows: int, cols: int) -> None:
        self._size = Size(rows=rows, columns=cols)
        self.output = Vt100_Output(output, self.get_size, term=TERM, enable_cpr=False)  # type: ignore[arg-type]
        self.keyboard = Keyboard()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._app: Application[Any] | None = None
        self._drawn = 0.0

    # -- any thread ------------------------------------------------------------------------------

    def get_size(self) -> Size:
        return self._size

    def feed(self, text: str) -> None:
        """Queue keys for the app; never blocks. Any thread (the console IO loop)."""
        self.keyboard.feed(text)

    def discard(self) -> None:
        """Drop queued keys not yet read (Ctrl-C flushes type-ahead, as a tty does)."""
        self.keyboard.discard()

    def close(self) -> None:
        """End of input: the prompt (and every later one) sees EOF. Any thread; idempotent."""
        self.keyboard.close()

    def resize(self, rows: int, cols: int) -> None:
        """New size; the running app redraws for it. Any thread."""
        self._size = Size(rows=rows, columns=cols)
        with self._lock:
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the session loop is closed: the session is over
                loop.call_soon_threadsafe(self._resized)

    # -- the session thread ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, app: Application[Any]) -> None:
        """Serve ``app`` on ``loop`` (the session thread, before the app first runs)."""
        with self._lock:
            self._loop, self._loop_thread, self._app = loop, threading.get_ident(), app
        app.invalidate = self._invalidate  # type: ignore[method-assign]
        self.keyboard.after_keys = self._keys_processed

    def detach(self) -> None:
        """The session loop is ending: no more redraws; keys left are dropped."""
        with self._lock:
            self._loop = None
        self.keyboard.close()
        self.keyboard.forget()

    def _invalidate(self) -> None:
        # any thread (prompt_toolkit, ptpython, executor jobs): the app's invalidate()
        app = self._app
        if app is None or not app.is_running or app.invalidated:
            return
        loop = app.loop
        if loop is None or loop.is_closed():
            return
        app._invalidated = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._redraw_due)
        else:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the app is over anyway
                loop.call_soon_threadsafe(self._redraw_due)

    def _redraw_due(self) -> None:
        # session loop: a redraw that was not done right after keys (output, resize, completion)
        self._draw_if_invalid()

    def _keys_processed(self) -> None:
        # session loop, in the iteration that processed the keys: draw now, not an iteration later
        self._draw_if_invalid()

    def _draw_if_invalid(self) -> None:
        app = self._app
        if app is None or not app.invalidated:
            return
        now = time.monotonic()
        if self.keyboard.pending and now - self._drawn < PASTE_FRAME:
            return  # more of a paste is queued: its last slice draws (or the next one due)
        app._invalidated = False
        self._drawn = now
        app._redraw()

    def _resized(self) -> None:
        # session loop
        app = self._app
        if app is not None and app.is_running:
            app._on_resize()
