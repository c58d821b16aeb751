"""The per-session limits both doors share: one size rule, one idle/age clock."""

from __future__ import annotations

import pytest

from opsconsole.repl.limits import (
    DEFAULT_COLS,
    DEFAULT_ROWS,
    MAX_COLS,
    MAX_ROWS,
    SessionClock,
    TerminalSize,
    clamp_size,
    parse_size,
)
from testkit.support import FakeClock


@pytest.mark.parametrize(
    ("rows", "cols", "expected"),
    [
        (40, 132, TerminalSize(40, 132)),
        (0, 0, TerminalSize(DEFAULT_ROWS, DEFAULT_COLS)),  # an SSH pty request that knows no size
        (-3, 10**9, TerminalSize(1, MAX_COLS)),
        (10**9, -1, TerminalSize(MAX_ROWS, 1)),
    ],
)
def test_a_size_is_held_within_the_limits(rows: int, cols: int, expected: TerminalSize) -> None:
    assert clamp_size(rows, cols) == expected


def test_a_size_given_as_text_reads_a_non_number_as_unknown() -> None:
    assert parse_size("50", "120") == TerminalSize(50, 120)
    assert parse_size("", "abc") == TerminalSize(DEFAULT_ROWS, DEFAULT_COLS)
    assert parse_size("99999", "7") == TerminalSize(MAX_ROWS, 7)


def test_the_session_clock_ends_an_idle_session_and_an_old_one() -> None:
    clock = FakeClock()
    idle = SessionClock(idle_timeout=60, max_age=3600, clock=clock)
    clock.advance(59)
    assert idle.expired() is None
    idle.touch()
    clock.advance(59)
    assert idle.expired() is None  # typing restarted the idle timer
    clock.advance(2)
    assert idle.expired() == "no input for 60 s"

    clock = FakeClock()
    old = SessionClock(idle_timeout=60, max_age=100, clock=clock)
    for _ in range(3):
        clock.advance(40)
        old.touch()
    assert old.expired() == "open for 100 s"
