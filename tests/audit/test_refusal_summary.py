"""The aggregation rules themselves, with an injected clock: log lines (``log.RefusalLog``)
and audit records (``audit.summary.RefusalSummary``) about refusals a flood can send."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from opsconsole import log
from opsconsole.audit.summary import RefusalSummary
from testkit.support import FakeClock

LOGGER = log.get("test.refusals")
LIBRARY = logging.getLogger("test.refusals.library")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """Every line the test's loggers write, as the host's handlers would get them."""
    handler = Lines()
    loggers = [LOGGER, LIBRARY]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler.messages
    for logger in loggers:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def refuse(refusals: log.RefusalLog, source: str, n: int, cause: str = "HTTP 401") -> None:
    for i in range(n):
        refusals.refused(LOGGER, logging.WARNING, cause, source, "401 GET /ops/threads #%d", i)


def test_one_line_per_cause_and_source_then_the_count(clock: FakeClock, lines: list[str]) -> None:
    refusals = log.RefusalLog(clock=clock)
    refuse(refusals, "127.0.0.2", 1000)
    refuse(refusals, "127.0.0.3", 1000)
    refuse(refusals, "127.0.0.2", 1000, cause="connection cap")
    assert len(lines) == 3 and lines[0] == "401 GET /ops/threads #0"
    clock.advance(9.9)
    refusals.flush()
    assert len(lines) == 3  # the window is still open
    clock.advance(0.2)
    refusals.flush()
    assert len(lines) == 6
    assert "HTTP 401 from 127.0.0.2: 999 more in the last 10 s (latest: 401 GET" in lines[3]
    assert "#999" in lines[3]
    # A steady flood: one count line per cause and source per window.
    refuse(refusals, "127.0.0.2", 500)
    clock.advance(10)
    refusals.flush()
    assert len(lines) == 7 and ": 500 more" in lines[6]
    # A quiet window ends it: the next refusal is logged at once again.
    clock.advance(10)
    refusals.flush()
    refuse(refusals, "127.0.0.2", 1)
    assert len(lines) == 8 and lines[7].endswith("#0")
    assert refusals.lines == len(lines)


def test_every_cause_together_gets_a_few_lines_a_second(clock: FakeClock, lines: list[str]) -> None:
    refusals = log.RefusalLog(clock=clock)
    for n in range(1000):  # a thousand sources at once (an IPv6 flood)
        refuse(refusals, f"2001:db8::{n:x}", 3)
    assert len(lines) == log.BURST
    for _ in range(30):
        clock.advance(1)
        refusals.flush()
    assert len(lines) <= log.BURST + 30 * log.RATE + 1
    # Nothing is lost: what the budget held back is counted into later lines.
    refusals.flush(final=True)
    assert "not itemised" in lines[-1]


def test_sources_past_the_table_share_one_key(clock: FakeClock, lines: list[str]) -> None:
    refusals = log.RefusalLog(clock=clock, max_keys=4, burst=100)
    for n in range(50):
        refuse(refusals, f"10.0.0.{n}", 2)
    assert len(lines) == 5  # four sources, then everyone else together
    refusals.flush(final=True)
    assert any(line.startswith(f"HTTP 401 from {log.OTHER_SOURCES}: 91 more") for line in lines)


def test_a_clock_stepping_back_closes_the_window(clock: FakeClock, lines: list[str]) -> None:
    refusals = log.RefusalLog(clock=clock)
    refuse(refusals, "127.0.0.2", 5)
    clock.advance(-300)
    refusals.flush()
    assert len(lines) == 2 and ": 4 more" in lines[1]


def test_library_lines_are_routed_only_on_a_bound_thread(clock: FakeClock, lines: list[str]) -> None:
    refusals = log.RefusalLog(clock=clock)
    library = logging.getLogger("test.refusals.library")
    log.route_library(library.name, LOGGER, log.template)
    log.route_library(library.name, LOGGER, log.template)  # idempotent
    assert len(library.filters) == 1
    try:
        library.warning("error on read: %s", "reset")
        assert lines == ["error on read: reset"]  # not bound: the host's own lines pass untouched
        log.bind_thread(refusals, "127.0.0.9")
        for _ in range(100):
            library.warning("error on read: %s", "reset")
        library.debug("a debug line passes")
        assert lines[1:] == ["test.refusals.library: error on read: reset"]
    finally:
        log.bind_thread(None)
        library.filters.clear()


# -- the audit side -------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, /, **fields: Any) -> None:
        self.events.append((event, fields))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [f for e, f in self.events if e == event]


def test_a_flood_of_pre_auth_refusals_is_recorded_as_summaries(clock: FakeClock) -> None:
    rec = Recorder()
    fold = RefusalSummary(rec, clock=clock)
    for n in range(1000):
        fold("auth.failure", user=f"u{n % 7}", source="127.0.0.2", reason="unknown_nonce", detail="")
    fold("auth.failure", user="alice", source="127.0.0.3", reason="unknown_nonce", detail="")
    assert len(rec.named("auth.failure")) == 21  # the burst of the first source, one of the other
    clock.advance(10)
    fold.flush()
    (summary,) = rec.named("auth.summary")
    assert summary["of"] == "auth.failure" and summary["reason"] == "unknown_nonce"
    assert summary["source"] == "127.0.0.2" and summary["count"] == 980
    assert summary["users"] == ["u6", "u0", "u1", "u2", "u3"]
    # The flood goes on: from now on every refusal is counted, one summary per window.
    for _ in range(300):
        fold("auth.failure", user="x", source="127.0.0.2", reason="unknown_nonce", detail="")
    clock.advance(10)
    fold.flush()
    assert len(rec.named("auth.failure")) == 21
    assert [s["count"] for s in rec.named("auth.summary")] == [980, 300]
    # A quiet window ends the flood; the next refusal is recorded again.
    clock.advance(10)
    fold.flush()
    fold("auth.failure", user="x", source="127.0.0.2", reason="unknown_nonce", detail="")
    assert len(rec.named("auth.failure")) == 22


def test_session_refusals_and_other_events_are_always_recorded(clock: FakeClock) -> None:
    rec = Recorder()
    fold = RefusalSummary(rec, clock=clock, burst=1)
    for _ in range(5):
        fold("auth.refused", reason="ws_slow_client", source="127.0.0.1", user="alice", session="s1")
        fold("auth.login", user="alice", source="127.0.0.1")
    fold("auth.refused", reason="ws_origin", source="127.0.0.1", user="")
    fold("auth.refused", reason="ws_origin", source="127.0.0.1", user="")
    assert [e for e, _ in rec.events].count("auth.refused") == 6
    assert [e for e, _ in rec.events].count("auth.login") == 5
    fold.flush(final=True)  # at stop, every open count is recorded
    assert rec.named("auth.summary")[0]["count"] == 1
