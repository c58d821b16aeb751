"""The one patch of a prompt_toolkit control: the input's content built once per frame.

prompt_toolkit asks the input's ``BufferControl`` for its content three times to learn the
preferred height (each a full pass of the lexer and the input processors) and once more to
draw. :func:`install` replaces that control's ``create_content`` with a :class:`FrameMemo`
keyed by the app's render counter, the size asked for and the very ``Document`` shown, so a
call between frames, after a key changed the text or the cursor, is never served a stale line.
``bench/repl_patches.py`` measures keystroke latency with and without it.

Shape check and fallback: the memo relies on ``BufferControl.create_content(width, height,
preview_search=False)`` and ``Application.render_counter``. :data:`SUPPORTED` says whether the
installed prompt_toolkit still has them (:func:`shape_problems`); if not, nothing is replaced
and content is built the stock way. ``tests/test_repl_patches.py`` fails when the shape drifts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from prompt_toolkit.application import Application
from prompt_toolkit.document import Document
from prompt_toolkit.layout import BufferControl
from prompt_toolkit.layout.controls import UIContent
from ptpython.python_input import PythonInput

EXPECTED_PARAMETERS = ("self", "width", "height", "preview_search")


def shape_problems() -> list[str]:
    """What the installed prompt_toolkit lacks of what the memo uses; empty when it fits."""
    problems = []
    parameters = tuple(inspect.signature(BufferControl.create_content).parameters)
    if parameters != EXPECTED_PARAMETERS:
        problems.append(f"BufferControl.create_content takes {parameters}, not {EXPECTED_PARAMETERS}")
    if "render_counter" not in Application.__init__.__code__.co_names:
        problems.append("Application.render_counter is gone")
    return problems


SUPPORTED = not shape_problems()


def install(repl: PythonInput) -> bool:
    """Memoize the input control of ``repl`` (the session thread, before its app first runs)."""
    if not SUPPORTED:
        return False
    for window in repl.ptpython_layout.layout.find_all_windows():
        control = window.content
        if isinstance(control, BufferControl) and control.buffer is repl.default_buffer:
            control.create_content = FrameMemo(repl, control.create_content)  # type: ignore[method-assign]
            return True
    return False


class FrameMemo:
    """The input control's ``create_content``, built once per frame and size.

    Keyed by the render counter, the size asked for and the very Document shown, so a call
    between frames, after a key changed the text or the cursor, is never served a stale line.
    """

    def __init__(self, repl: PythonInput, build: Callable[..., UIContent]) -> None:
        self._repl = repl
        self._build = build
        self._key: tuple[int, int, int, bool] | None = None
        self._document: Document | None = None
        self._content: UIContent | None = None

    def __call__(self, width: int, height: int, preview_search: bool = False) -> UIContent:
        # the session loop, while a frame is drawn
        document = self._repl.default_buffer.document
        key = (self._repl.app.render_counter, width, height, preview_search)
        if self._content is None or key != self._key or document is not self._document:
            self._content = self._build(width, height, preview_search)
            self._key, self._document = key, document
        return self._content
