"""Floods of identical pre-authentication refusals, recorded as counted summaries.

Every security decision is recorded, one event each, with one exception: a refusal made
before anyone authenticated (``auth.failure``, and ``auth.refused`` without a ``session``
field) costs the attacker nothing, so a flood of them would otherwise cost the host an
fsync each and bury the log. The rule, per (event, reason, source):

- the first ``BURST`` (20) in a window of ``WINDOW`` (10) seconds are recorded as they happen;
- the rest are counted; when the window ends, one ``auth.summary`` event records
  ``of`` (the event), ``reason``, ``source``, ``count``, ``since`` and ``until`` (the
  first and last folded refusal) and ``users`` (up to 5 distinct user names they named);
- a window that folded something is followed directly by another whose refusals are all
  counted, so a steady flood costs one summary per 10 s; a window that folded nothing
  ends the flood, and the next refusal starts afresh with its burst.

Refusals tied to an open session (a websocket or SSH shell dropped for cause) carry
``session`` and are always recorded one by one. Thread-safe: called on the console IO
loop and SSH threads; ``flush`` runs every second on the console loop and at stop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opsconsole.audit import chain
from opsconsole.errors import AuditError

WINDOW = 10.0
BURST = 20
MAX_KEYS = 1024  # (event, reason, source) triples tracked; more sources share one key
MAX_USERS = 5
FOLDED = frozenset({"auth.failure", "auth.refused"})
OTHER_SOURCES = "other sources"
SUMMARY = "auth.summary"


@dataclass(slots=True)
class _Window:
    start: float
    recorded: int = 0  # recorded one by one in this window
    count: int = 0  # folded into the next summary
    first: float = 0.0
    last: float = 0.0
    users: list[str] = field(default_factory=list)
    folding: bool = False  # the window before folded something: fold from the first one


class RefusalSummary:
    """The audit ``record`` callable for the Authenticator, with pre-auth floods folded."""

    def __init__(
        self,
        record: Callable[..., None],
        *,
        clock: Callable[[], float] = time.time,
        window: float = WINDOW,
        burst: int = BURST,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._record = record
        self._clock = clock
        self._window = window
        self._burst = burst
        self._max_keys = max_keys
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._lock = threading.Lock()

    def __call__(self, event: str, /, **fields: object) -> None:
        if event not in FOLDED or "session" in fields:
            self._record(event, **fields)
            return
        now = self._clock()
        key = (event, str(fields.get("reason", "")), str(fields.get("source", "")))
        with self._lock:
            due = self._close_if_over(key, now)
            win = self._windows.get(key)
            if win is None and len(self._windows) >= self._max_keys:
                key = (event, key[1], OTHER_SOURCES)
                win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = _Window(start=now)
            fold = win.folding or win.recorded >= self._burst
            if fold:
                self._fold(win, now, str(fields.get("user", "")))
            else:
                win.recorded += 1
        self._write(due)
        if not fold:
            self._record(event, **fields)

    def flush(self, *, final: bool = False) -> None:
        """Record the summaries of windows that ended (of every window with ``final``)."""
        now = self._clock()
        with self._lock:
            due = [s for key in list(self._windows) if (s := self._close_if_over(key, now, final=final))]
        for summary in due:
            self._write(summary)

    def _fold(self, win: _Window, now: float, user: str) -> None:
        if not win.count:
            win.first = now
        win.count += 1
        win.last = now
        if user and user[:64] not in win.users and len(win.users) < MAX_USERS:
            win.users.append(user[:64])

    def _close_if_over(
        self, key: tuple[str, str, str], now: float, *, final: bool = False
    ) -> dict[str, object] | None:
        # under the lock: the summary of ``key``'s window if it ended (or a clock stepped back)
        win = self._windows.get(key)
        if win is None or not (final or now >= win.start + self._window or now < win.start):
            return None
        if not win.count:
            del self._windows[key]
            return None
        event, reason, source = key
        summary: dict[str, object] = {
            "of": event,
            "reason": reason,
            "source": source,
            "count": win.count,
            "since": chain.format_ts(win.first),
            "until": chain.format_ts(win.last),
            "users": list(win.users),
        }
        if final:
            del self._windows[key]
        else:
            self._windows[key] = _Window(start=now, folding=True)
        return summary

    def _write(self, summary: dict[str, object] | None) -> None:
        if summary is None:
            return
        with contextlib.suppress(AuditError):  # a broken log refuses every record; the writer said why
            self._record(SUMMARY, **summary)
