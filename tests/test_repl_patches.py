"""The two patches of prompt_toolkit's internals fit the installed library, and each has a
working fallback: a session with neither still echoes keys, evaluates, resizes and ends.

These fail loudly when an upgrade changes what a patch relies on (``shape_problems``), so the
console never silently runs the slower stock path, and never a patch that no longer fits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsconsole.repl import frame_memo, redraw
from tests.test_repl_session import Opener, session_opener


@pytest.fixture
def repl() -> Iterator[Opener]:
    yield from session_opener()


def test_the_installed_prompt_toolkit_fits_both_patches() -> None:
    assert redraw.shape_problems() == []
    assert frame_memo.shape_problems() == []
    assert redraw.SUPPORTED and frame_memo.SUPPORTED


def test_a_session_serves_keys_with_both_patches(repl: Opener) -> None:
    r = repl()
    r.session.feed("abc")
    r.screen.wait_for("abc")
    r.session.feed("\x03")
    r.run("6*7", r"^42$")


def test_a_session_without_the_patches_works_the_stock_way(
    repl: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redraw, "SUPPORTED", False)
    monkeypatch.setattr(frame_memo, "SUPPORTED", False)
    r = repl()
    r.session.feed("xyz")
    r.screen.wait_for("xyz")
    r.session.feed("\x03")
    r.run("6*7", r"^42$")
    r.session.resize(40, 132)
    r.run("'after resize'", r"^'after resize'$")
    r.session.close()
    assert r.wait_closed() == 0
