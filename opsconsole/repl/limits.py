"""The limits of one terminal session, whatever door it came through (websocket or SSH).

One place for each rule the doors share: the terminal size a client may ask for, how long a
client may take no output before it counts as gone, and how long a session may stay idle or
open. The doors pass what their client said; :class:`~opsconsole.repl.session.ReplSession`
applies the size rule, and each door's sink applies the stall rule while it waits for its
client. The websocket's idle and age limits are its login session's (the token expires and
the door closes the terminal); the SSH door has no token and keeps a :class:`SessionClock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_ROWS, MAX_COLS = 500, 1000
DEFAULT_ROWS, DEFAULT_COLS = 24, 80
STALL_SECONDS = 5.0  # a client that takes no output for this long has stopped reading


@dataclass(frozen=True, slots=True)
class TerminalSize:
    """A terminal's size in character cells, within the limits."""

    rows: int
    cols: int


def clamp_size(rows: int, cols: int) -> TerminalSize:
    """What a client asked for, made sane: 0 means "not known" (an SSH pty request may say
    0×0) and gets the default; anything else is held between 1 and the maximum."""
    return TerminalSize(
        rows=max(1, min(rows or DEFAULT_ROWS, MAX_ROWS)),
        cols=max(1, min(cols or DEFAULT_COLS, MAX_COLS)),
    )


def parse_size(rows: str, cols: str) -> TerminalSize:
    """A size given as text (the websocket's query arguments); what is not a number is unknown."""
    return clamp_size(_number(rows), _number(cols))


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


class SessionClock:
    """A session's idle limit (no keystroke for ``idle_timeout``) and age limit (``max_age``).

    ``touch`` runs on the thread that reads the client's keys, ``expired`` on the one that
    polls the limits; both only read or replace floats, so no lock is needed.
    """

    def __init__(
        self, *, idle_timeout: float, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle_timeout, self._max_age = idle_timeout, max_age
        self._clock = clock
        self._started = self._last_input = clock()

    def touch(self) -> None:
        """Input arrived: typing is activity."""
        self._last_input = self._clock()

    def expired(self) -> str | None:
        """Why the session must end now (for the client and the audit), or None."""
        now = self._clock()
        if now - self._last_input > self._idle_timeout:
            return f"no input for {self._idle_timeout:g} s"
        if now - self._started > self._max_age:
            return f"open for {self._max_age:g} s"
        return None
