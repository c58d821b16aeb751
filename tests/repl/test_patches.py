"""The patch of prompt_toolkit's internals (``repl/redraw.py``) fits the installed library, and
its fallback works: a session without it still echoes keys, evaluates, resizes and ends.

The first test fails loudly when an upgrade changes what the patch relies on
(``shape_problems``), so the console never silently runs the slower stock path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsconsole.repl import redraw
from tests.repl.test_session import Opener, session_opener


@pytest.fixture
def repl() -> Iterator[Opener]:
    yield from session_opener()


def test_the_installed_prompt_toolkit_fits_the_patch() -> None:
    assert redraw.shape_problems() == []
    assert redraw.SUPPORTED


def test_a_session_serves_keys_with_the_patch(repl: Opener) -> None:
    r = repl()
    r.session.feed("abc")
    r.screen.wait_for("abc")
    r.session.feed("\x03")
    r.run("6*7", r"^42$")


def test_a_session_without_the_patch_works_the_stock_way(
    repl: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redraw, "SUPPORTED", False)
    r = repl()
    r.session.feed("xyz")
    r.screen.wait_for("xyz")
    r.session.feed("\x03")
    r.run("6*7", r"^42$")
    r.session.resize(40, 132)
    r.run("'after resize'", r"^'after resize'$")
    r.session.close()
    assert r.wait_closed() == 0
