"""ptpython's screen layout, drawn without the parts that are hidden.

Every keystroke redraws the whole prompt_toolkit layout, in the host process, holding the GIL.
ptpython's layout is built for every feature at once, and a hidden part still costs its share
of each frame: prompt_toolkit asks every child of an ``HSplit`` for its preferred height, and
a ``FloatContainer`` visits each float, even when a ``ConditionalContainer`` then says "not
now". A frame is what a key costs the host, on the session thread, and two parts cost most:

- the options sidebar (F2) sits beside the input in a ``VSplit`` that divides its width one
  column per step two or three times a frame, more on a wide window;
- the toolbars under the input (arg, search, system, validation, completions, docstring) and
  the floats over it (completion menus, signature, exit confirmation, Meta+Enter hint, sidebar
  help).

:func:`slim` puts a ``DynamicContainer`` where ptpython's ``VSplit`` was. Per frame it picks:

- ptpython's own ``VSplit`` while the sidebar is shown;
- the input column with its toolbars and floats while any of them may show — a Tab
  completion menu, a search, a validation error, a multi-line input's hint — decided from
  the filters of their own ``ConditionalContainer``s, so it stays right whatever sets them;
- otherwise the input area alone: what is on screen is the same (``tests/repl/test_layout.py``
  compares the screens with ptpython's own layout, step by step), the frame cheaper
  (``bench/repl_pipe.py``; figures in ``bench/README.md``).

The same ``Window`` objects are in all three, and prompt_toolkit's walks of the layout (focus,
parents, key bindings) still see all of ptpython's, so focus, cursor and menu positions do not
notice the switch. If a future ptpython lays its screen out differently, or a part is not a
``ConditionalContainer`` (nothing tells when it is hidden), that part counts as showing: the
layout is then drawn as ptpython built it, slower, not broken.
"""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit.key_binding import KeyBindingsBase
from prompt_toolkit.layout import (
    ConditionalContainer,
    Container,
    DynamicContainer,
    FloatContainer,
    HSplit,
    VSplit,
)
from ptpython.python_input import PythonInput


def slim(repl: PythonInput) -> bool:
    """Rewire ``repl``'s layout (the session thread, before its app first runs). True if done."""
    root = repl.ptpython_layout.layout.container
    if not isinstance(root, HSplit) or not root.children:
        return False
    body = root.children[0]
    if not isinstance(body, VSplit) or len(body.children) != 2:
        return False
    column, sidebar = body.children
    if not isinstance(column, HSplit) or not isinstance(sidebar, ConditionalContainer):
        return False
    quiet = _quiet_part(column)
    extras = _extras(column)

    def choose() -> Container:
        if quiet is None or any(may_show(extra) for extra in extras):
            return column
        return quiet

    chosen: tuple[int, Container] = (-1, column)

    def drawn() -> Container:
        # the session loop, a few times a frame (each size query and the drawing itself).
        # The filters are read once per frame, by the app's render counter: a dozen of them
        # evaluated at each query would cost more than the rest of the query. The sidebar flag is read each
        # time: F2 sets it and draws the sidebar at once.
        nonlocal chosen
        if repl.show_sidebar:
            return body
        frame = repl.app.render_counter
        if chosen[0] != frame:
            chosen = (frame, choose())
        return chosen[1]

    root.children[0] = _DrawnPart(drawn, body)
    return True


class _DrawnPart(DynamicContainer):
    """Draws what ``drawn`` picks; to everything else it is ptpython's whole ``VSplit``.

    prompt_toolkit finds focus targets, parents and key bindings by walking the children, and
    ptpython's keys focus parts that are hidden until they have the focus (F2 the sidebar,
    Ctrl-R the search toolbar). The walk must see them all, as it does in ptpython's layout.
    """

    def __init__(self, drawn: Callable[[], Container], whole: Container) -> None:
        super().__init__(drawn)
        self._whole = whole

    def get_children(self) -> list[Container]:
        return [self._whole]

    def get_key_bindings(self) -> KeyBindingsBase | None:
        return self._whole.get_key_bindings()

    def is_modal(self) -> bool:
        return self._whole.is_modal()


def may_show(container: Container) -> bool:
    """False only when ``container`` is known to draw nothing in this frame (the session loop)."""
    if isinstance(container, ConditionalContainer):
        return bool(container.filter()) and may_show(container.content)
    if isinstance(container, HSplit | VSplit):
        return any(may_show(child) for child in container.children)
    return True


def _quiet_part(column: HSplit) -> Container | None:
    # the input area without its floats: the content of the column's first child
    first = column.children[0] if column.children else None
    return first.content if isinstance(first, FloatContainer) else None


def _extras(column: HSplit) -> list[Container]:
    # what the quiet layout leaves out: the toolbars under the input and the floats over it
    extras = list(column.children[1:])
    first = column.children[0] if column.children else None
    if isinstance(first, FloatContainer):
        extras += [float_.content for float_ in first.floats]
    return extras
