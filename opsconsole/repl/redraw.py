"""The one patch of prompt_toolkit's ``Application``: a frame drawn right after the keys.

Stock prompt_toolkit draws lazily: a key changes the buffer, ``Application.invalidate``
schedules the redraw with ``call_soon_threadsafe`` (twice: an event and the redraw) and
postpones it while other callbacks are ready, so one keystroke takes two or three more loop
iterations, each a selector call that hands the GIL away. On a host whose threads spin in
pure Python each hand-off can cost up to a switch interval before the session thread runs
again. :meth:`EagerRedraw.install` replaces the session app's ``invalidate``: on the session
loop it only marks the app invalid and queues one plain ``call_soon`` (no self-pipe write);
and right after the app has processed a slice of keys (``Keyboard.after_keys``) the frame is
drawn at once, in the same loop iteration, so the queued redraw finds nothing to do. A frame is
drawn once per burst of keys; while a big paste is still queued, at most every
:data:`PASTE_FRAME` seconds. ``max_render_postpone_time``, ``min_redraw_interval`` and
``on_invalidate`` of the app are not used (ptpython sets none of them).
``bench/repl_patches.py`` measures keystroke latency with and without it.

Shape check and fallback: the patch reads and writes ``Application._invalidated`` and calls
``Application._redraw``. :data:`SUPPORTED` says whether the installed prompt_toolkit still has
them (:func:`shape_problems`); if not, ``install`` leaves the app's own ``invalidate`` alone,
logs one warning, and frames are drawn the stock way. ``tests/repl/test_patches.py`` fails
when the shape drifts, so an upgrade cannot hide it.
"""

from __future__ import annotations

import contextlib
import threading
import time

import prompt_toolkit
from prompt_toolkit.application import Application

from opsconsole import log
from opsconsole.repl.keyboard import Keyboard

_log = log.get("repl.redraw")
PASTE_FRAME = 0.05  # seconds between frames while a paste is being processed


def shape_problems() -> list[str]:
    """What the installed prompt_toolkit lacks of what the patch uses; empty when it fits."""
    problems = []
    if not callable(getattr(Application, "_redraw", None)):
        problems.append("Application._redraw is gone")
    invalidated = getattr(Application, "invalidated", None)
    if not isinstance(invalidated, property) or invalidated.fget is None:
        problems.append("Application.invalidated is not a property")
    elif "_invalidated" not in invalidated.fget.__code__.co_names:
        problems.append("Application.invalidated does not read Application._invalidated")
    return problems


SUPPORTED = not shape_problems()
_warned: list[bool] = []


class EagerRedraw:
    """Draws one session app's frames; methods say which thread they run on."""

    def __init__(self, keyboard: Keyboard) -> None:
        self._keyboard = keyboard
        self._app: Application[str] | None = None
        self._loop_thread = 0
        self._drawn = 0.0

    def install(self, app: Application[str]) -> bool:
        """Take over ``app``'s redraws (the session thread, before the app first runs).

        False, and the app keeps prompt_toolkit's own redraw, when the library's shape drifted.
        """
        if not SUPPORTED:
            _warn_once()
            return False
        self._app, self._loop_thread = app, threading.get_ident()
        app.invalidate = self._invalidate  # type: ignore[method-assign]
        self._keyboard.after_keys = self._keys_processed
        return True

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
        if self._keyboard.pending and now - self._drawn < PASTE_FRAME:
            return  # more of a paste is queued: its last slice draws (or the next one due)
        app._invalidated = False
        self._drawn = now
        app._redraw()


def _warn_once() -> None:
    # the session thread; once per process
    if not _warned:
        _warned.append(True)
        _log.warning(
            "prompt_toolkit %s: frames are drawn the stock way (%s)",
            prompt_toolkit.__version__,
            "; ".join(shape_problems()),
        )
