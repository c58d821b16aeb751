"""A terminal for prompt_toolkit: a :class:`Keyboard` (keys in) and a SessionOutput (screen out).

The shape of ``prompt_toolkit.contrib.ssh.server`` — an input, a ``Vt100_Output`` whose
"stdout" forwards to the session's sink, a size the door sets — with frames drawn right after
the keys that changed them (``redraw``). Both doors reach it through ``ReplSession``; the size
it is given is already within ``limits``.

CPR (cursor position requests) is off: a terminal that does not answer would make every prompt
wait for a reply, and prompt_toolkit lays out fine without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from prompt_toolkit.application import Application
from prompt_toolkit.data_structures import Size
from prompt_toolkit.output.vt100 import Vt100_Output

from opsconsole.repl.asciicast import TERM
from opsconsole.repl.keyboard import Keyboard
from opsconsole.repl.output import SessionOutput
from opsconsole.repl.redraw import EagerRedraw


class TerminalBridge:
    """Keyboard + Vt100 output + drawing of one session. Methods say which thread they run on."""

    def __init__(self, output: SessionOutput, *, rows: int, cols: int) -> None:
        self._size = Size(rows=rows, columns=cols)
        self.output = Vt100_Output(output, self.get_size, term=TERM, enable_cpr=False)  # type: ignore[arg-type]
        self.keyboard = Keyboard()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: Application[str] | None = None
        self._redraw = EagerRedraw(self.keyboard)

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

    def attach(self, loop: asyncio.AbstractEventLoop, app: Application[str]) -> None:
        """Serve ``app`` on ``loop`` (the session thread, before the app first runs)."""
        with self._lock:
            self._loop, self._app = loop, app
        self._redraw.install(app)

    def detach(self) -> None:
        """The session loop is ending: no more redraws; keys left are dropped."""
        with self._lock:
            self._loop = None
        self.keyboard.close()
        self.keyboard.forget()

    def _resized(self) -> None:
        # session loop. prompt_toolkit's own SSH server calls _on_resize too (erase, then draw at
        # the new size); a prompt_toolkit without it gets a plain redraw at the new size.
        app = self._app
        if app is not None and app.is_running:
            on_resize = getattr(app, "_on_resize", None)
            (on_resize if callable(on_resize) else app.invalidate)()
