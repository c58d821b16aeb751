"""The slimmed layout (opsconsole.repl.layout) draws what ptpython's own layout draws.

Two sessions side by side, one with ptpython's layout as ptpython builds it, get the same keys;
after each step their screens, as a terminal emulator (pyte) shows them, must be the same —
through the parts the slim layout leaves out while they are hidden: the Tab completion menu,
the reverse search toolbar, the F2 sidebar (whose key focuses a window that is hidden until
then), the Meta+Enter hint of a multi-line input, and the numeric-argument toolbar.
The raw streams are not compared: completion runs in a thread, so how many frames it takes
to reach a screen varies; the screen reached does not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyte
import pytest

from opsconsole.repl import layout
from testkit.support import wait_until
from tests.repl.test_session import Opener, Running, past_escape_timeout, session_opener

ROWS, COLS = 24, 80
SETTLE = 0.3  # seconds without output: the step's last frame is in
STEP_TIMEOUT = 10.0


@pytest.fixture
def repl() -> Iterator[Opener]:
    yield from session_opener()


def screen_of(r: Running) -> list[str]:
    screen = pyte.Screen(COLS, ROWS)
    pyte.Stream(screen).feed(r.screen.raw)
    return [line.rstrip() for line in screen.display]


def settled(*sessions: Running) -> None:
    """Wait until no session has drawn anything for ``SETTLE`` seconds."""
    last: list[int] | None = None  # the first look only starts the count

    def quiet_since_last_look() -> bool:
        nonlocal last
        before, last = last, [s.screen.calls for s in sessions]
        return before == last

    wait_until(quiet_since_last_look, STEP_TIMEOUT, "the screens settled", interval=SETTLE)


STEPS = [
    ("alp", "alp"),
    ("ha_\t", "alpha_two"),  # Tab: the completion menu (a float)
    ("\x03", ">>>"),
    ("\x12", "I-search backward:"),  # Ctrl-R focuses the search toolbar, hidden until then
    ("1+", "I-search backward: ?1\\+"),
    ("\x07", ">>>"),  # Ctrl-G leaves the search
    ("\x1bOQ", "Editing mode"),  # F2 focuses the sidebar, hidden until then
    ("\r", ">>>"),  # Enter hides it again
    ("def f():\r\x1b[D", "Meta\\+Enter"),  # cursor back in a multi-line input: the hint (a float)
    ("\x1b3", "Repeat: 3"),  # Esc 3: the numeric-argument toolbar
    ("\x03", ">>>"),
]


def test_the_slim_layout_draws_what_ptpython_draws(repl: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = {"alpha_one": 1, "alpha_two": 2}
    slim = repl(namespace=dict(namespace), rows=ROWS, cols=COLS)
    with monkeypatch.context() as m:
        m.setattr(layout, "slim", lambda _repl: False)
        stock = repl(namespace=dict(namespace), rows=ROWS, cols=COLS)
    past_escape_timeout()  # of the first prompt, in both
    for keys, expected in STEPS:
        for r in (slim, stock):
            r.session.feed(keys)
        for r in (slim, stock):
            r.screen.wait_for(expected, start=max(0, len(r.screen.text) - 4000))
        settled(slim, stock)
        ours, theirs = screen_of(slim), screen_of(stock)
        assert ours == theirs, f"after {keys!r}:\n" + "\n".join(ours) + "\n---\n" + "\n".join(theirs)
