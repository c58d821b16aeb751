"""ptpython's screen layout without the cost of its hidden sidebar.

Every keystroke redraws the whole prompt_toolkit layout, in the host process, holding the GIL.
ptpython puts its input area and its options sidebar (F2) side by side in a ``VSplit``, and a
``VSplit`` divides its width one column per step (``_divide_widths`` with
``take_using_weights``) two or three times per frame — even while the sidebar is hidden, which
is almost always. That was about half of a frame: ~0.5 ms of 1.8 ms at 80 columns, more on a
wide browser window (2.8 ms at 200 columns), measured by ``bench/repl_pipe.py``-style renders.

:func:`slim` swaps that ``VSplit`` for a ``DynamicContainer`` that is the input column alone
while the sidebar is hidden and ptpython's own ``VSplit`` while it is shown, so F2 works as
before. The status line keeps its own (narrow, cheaper) ``VSplit``. If a future ptpython lays
its screen out differently, the layout is left exactly as ptpython built it: slower, not broken.
"""

from __future__ import annotations

from prompt_toolkit.layout import ConditionalContainer, Container, DynamicContainer, HSplit, VSplit
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

    def current() -> Container:
        return body if repl.show_sidebar else column

    root.children[0] = DynamicContainer(current)
    return True
