"""The leak detector itself: start/stop, bounds, its own objects, tracemalloc sites, and verdicts
driven sample by sample (the minute-long runs at a 1 s interval are in
tests/acceptance/test_leak_verdicts.py)."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator

import pytest

from opsconsole.diagnostics.leaks import detector as leaks
from opsconsole.diagnostics.leaks import report as leak_report
from opsconsole.diagnostics.leaks import trend
from opsconsole.diagnostics.leaks.detector import LeakDetector
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError, StateError


class Grown:
    """Instances kept forever by the tests that need a leak."""


def test_start_stop_and_the_thread() -> None:
    d = LeakDetector()
    assert d.report().verdict == "insufficient_data"
    assert not d.report().running
    with pytest.raises(InvalidRequestError, match="between 1 and 3600 seconds"):
        d.start(0.5)
    d.start(1.0)
    try:
        assert d.running
        names = [t.name for t in threading.enumerate()]
        assert leaks.THREAD_NAME in names
        assert leaks.THREAD_NAME.startswith("opsconsole")  # left out of the console's dumps
        with pytest.raises(StateError, match="already running every 1 s"):
            d.start(2.0)
    finally:
        d.stop(wait=5.0)
    assert not d.running
    assert leaks.THREAD_NAME not in [t.name for t in threading.enumerate()]
    report = d.report()
    assert report.samples >= 1 and not report.running and report.interval == 1.0
    with pytest.raises(StateError, match="not running"):
        d.stop()


def test_the_detector_does_not_count_itself() -> None:
    # A quiet heap sampled back to back, reports built in between: nothing may grow.
    d = LeakDetector()
    for _ in range(40):
        d.sample()
        to_data(d.report())
    report = d.report()
    assert report.verdict == "no_leak", to_text(report)
    assert not [g for g in report.growth if g.leaking]
    own = {"array.array", "opsconsole.diagnostics.leaks.report.TypeGrowthRate", "collections.deque"}
    assert not [g for g in report.growth if g.type in own and g.objects_per_min > 0], to_text(report)


def test_history_and_tracked_types_are_bounded() -> None:
    d = LeakDetector(history=20)
    kinds = [type(f"Kind{i}", (), {}) for i in range(leaks.MAX_TYPES + 8)]
    kept: list[object] = []
    for n in range(30):
        kept.extend(k() for k in kinds for _ in range(n + 1))
        d.sample()
    report = d.report()
    assert report.samples == len(report.history.t) == len(report.history.rss) == 20
    assert len(report.history.types) <= leaks.MAX_TYPES
    assert all(len(series) == 20 for series in report.history.types.values())
    assert report.verdict == "leak"
    assert len([g for g in report.growth if g.leaking]) >= leaks.MAX_TYPES // 2


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start(1)
    yield
    tracemalloc.stop()


def test_sites_and_traced_memory_with_tracemalloc(tracing: None) -> None:
    d = LeakDetector()
    kept: list[bytes] = []
    for _ in range(trend.MIN_SAMPLES + leaks.SITES_EVERY):
        kept.extend(bytes(1000) + bytes([i % 256]) for i in range(300))  # the leaking line
        d.sample()
    report = d.report()
    assert report.traced_bytes_per_min is not None and report.traced_bytes_per_min > 0
    assert all(v is not None for v in report.history.traced)
    assert report.sites, to_text(report)
    top = report.sites[0]
    assert top.file == __file__ and top.bytes_per_min > 0
    assert "allocation sites" in to_text(report)
    # The console's own files never appear: they are the detector's allocations.
    assert not [s for s in report.sites if "/opsconsole/diagnostics/" in s.file]


def _copy(n: int, types: dict[str, list[float]]) -> leak_report.RunCopy:
    """A run of ``n`` samples one second apart with a flat RSS and the given class series."""
    nan = float("nan")
    return leak_report.RunCopy(
        running=True,
        interval=1.0,
        started_at=0.0,
        t=[float(i) for i in range(n)],
        rss=[50e6] * n,
        traced=[nan] * n,
        types=types,
        mean_size={},
        sites=[],
        sample_seconds=0.0,
    )


def test_a_class_tracked_one_sample_late_gets_no_verdict_until_it_can_be_tested() -> None:
    # The case: the leaking class is tracked from the second sample (the first census
    # is its baseline), so at 16 samples its series has 15: too few for the trend test.
    nan = float("nan")
    for n in range(2, 41):  # the class is tracked from the second sample on
        r = leak_report.build(_copy(n, {"app.Leaky": [nan] + [100.0 + 20 * i for i in range(1, n)]}))
        if n <= trend.MIN_SAMPLES:
            assert (r.verdict, r.confidence) == ("insufficient_data", 0.0), n
            assert (r.samples, r.needed) == (n, trend.MIN_SAMPLES + 1)
            assert f"verdict: not enough samples yet ({n} of {trend.MIN_SAMPLES + 1})" in to_text(r)
            assert to_data(r)["needed"] == trend.MIN_SAMPLES + 1
        else:
            assert r.verdict == "leak" and r.confidence >= trend.LEAK_CONFIDENCE, n
            assert "LEAK" in to_text(r)


def test_flat_series_give_no_leak_only_once_testable() -> None:
    for n in range(1, 30):
        r = leak_report.build(_copy(n, {"app.Flat": [500.0] * n}))
        if n < trend.MIN_SAMPLES:
            assert (r.verdict, r.confidence, r.needed) == ("insufficient_data", 0.0, trend.MIN_SAMPLES)
        else:
            assert (r.verdict, r.confidence) == ("no_leak", 1.0), n


class Obs5Leak:
    """Kept forever by the sample-by-sample test."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_detector_driven_sample_by_sample_never_answers_before_it_can() -> None:
    detector = LeakDetector()
    kept: list[Obs5Leak] = []
    verdicts: list[str] = []
    for i in range(3 * trend.MIN_SAMPLES):
        kept.extend(Obs5Leak(i) for _ in range(50))
        detector.sample()
        r = detector.report()
        verdicts.append(r.verdict)
        if r.verdict != "insufficient_data":
            break
        assert r.confidence == 0.0 and r.samples < r.needed
        assert f"not enough samples yet ({r.samples} of {r.needed})" in to_text(r)
    # The first verdict comes with the class's series long enough for the test, and it is right.
    assert r.verdict == "leak", (verdicts, r.growth[:3])
    assert verdicts[:-1] == ["insufficient_data"] * (len(verdicts) - 1)
    assert len(verdicts) > trend.MIN_SAMPLES
    row = next(g for g in r.growth if g.type.endswith("Obs5Leak"))
    assert row.leaking and row.confidence >= trend.LEAK_CONFIDENCE
    series = r.history.types[row.type]
    assert sum(y is not None for y in series) >= trend.MIN_SAMPLES
    del kept
