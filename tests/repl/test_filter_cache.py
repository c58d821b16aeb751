"""prompt_toolkit's filter combinations, as opsconsole.repl.filter_cache leaves them: they still
combine, and keep no operand (a closed session's filters) alive."""

from __future__ import annotations

import weakref

from prompt_toolkit.filters import Condition, is_done

from opsconsole.repl import filter_cache


def test_filter_combinations_keep_no_operand_alive() -> None:
    # If this fails, the installed prompt_toolkit changed how Filter caches its combinations:
    # "not_needed" means it no longer keeps them (opsconsole.repl.filter_cache can go),
    # "unsupported" means it keeps them some other way (every closed session leaks again).
    assert filter_cache.install() == "installed"
    assert not filter_cache.combination_keeps_operand()
    # the exact chain of the report: is_done → _invert_result → _and_cache → a session's filter
    session_filter = Condition(lambda: True)
    ref = weakref.ref(session_filter)
    combined = ~is_done & session_filter
    also = is_done | session_filter
    del combined, also, session_filter
    assert ref() is None


def test_filter_combinations_still_combine() -> None:
    filter_cache.install()
    yes, no = Condition(lambda: True), Condition(lambda: False)
    assert (yes & ~no)() and (no | yes)() and not (yes & no)() and not (no | ~yes)()
    assert (yes & no).filters == [yes, no]  # type: ignore[attr-defined]
