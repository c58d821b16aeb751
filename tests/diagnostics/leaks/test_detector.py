"""The leak detector itself: start/stop, bounds, its own objects, tracemalloc sites, and the
two acceptance runs at a 1 s interval — steady /leak traffic in the demo process must be named
a leak within 30 samples, waves of churn in this process must not be over 60 samples. The two
run side by side (the churn run in the background), so the pair takes about a minute.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opsconsole.diagnostics import leak_report, leaks, trend
from opsconsole.diagnostics.leaks import LeakDetector
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError, StateError
from testkit.demo_process import Demo, run_demo


class Grown:
    """Instances kept forever by the tests that need a leak."""


class WaveItem:
    """Allocated in waves and freed again: churn, not a leak."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tags = {"n": n}


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
    own = {"array.array", "opsconsole.diagnostics.leak_report.TypeGrowthRate", "collections.deque"}
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


@dataclass
class WaveRun:
    """The churn acceptance run: verdicts seen at each sample, the final report."""

    verdicts: list[tuple[int, str]] = field(default_factory=list)
    final: dict[str, object] = field(default_factory=dict)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _waves(stop: threading.Event) -> None:
    # A host thread: 2.5 s of allocation (16 000 objects), then everything freed for 2 s.
    items: list[WaveItem] = []
    while not stop.is_set():
        for step in range(10):
            items.extend(WaveItem(step * 1600 + i) for i in range(1600))
            if stop.wait(0.25):
                return
        items.clear()
        stop.wait(2.0)


def _wave_run(run: WaveRun, samples: int) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=_waves, args=(stop,), name="host-waves", daemon=True)
    worker.start()
    d = LeakDetector()
    d.start(1.0)
    try:
        deadline = time.monotonic() + samples * 1.0 + 30
        while time.monotonic() < deadline:
            report = d.report()
            run.verdicts.append((report.samples, report.verdict))
            if report.samples >= samples:
                run.final = to_data(report)
                break
            time.sleep(0.5)
    except BaseException as exc:
        run.error = exc
    finally:
        d.stop(wait=5.0)
        stop.set()
        worker.join(5)
        run.done.set()


@pytest.fixture(scope="module")
def wave_run() -> Iterator[WaveRun]:
    """Starts the churn run in the background at first use; the test that checks it waits."""
    run = WaveRun()
    threading.Thread(target=_wave_run, args=(run, 60), name="wave-run", daemon=True).start()
    yield run
    run.done.wait(120)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    yield from run_demo(tmp_path / "demo")


def _traffic(demo: Demo, stop: threading.Event) -> None:
    # Steady: 20 /leak requests a second, each keeping one more LeakyRecord.
    while not stop.wait(0.05):
        demo.hit_app("/leak", 1)


def test_steady_leak_in_the_demo_is_named_within_30_samples(wave_run: WaveRun, demo: Demo) -> None:
    status, body = demo.post("/ops/leaks/start?interval=1")
    assert status == 200, body
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(demo, stop), name="leak-traffic", daemon=True)
    traffic.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            status, report = demo.get("/ops/leaks")
            assert status == 200, report
            leaking = [g["type"] for g in report["growth"] if g["leaking"]]
            if report["verdict"] == "leak" and "opsconsole.host.demo.LeakyRecord" in leaking:
                break
            assert report["samples"] <= 30, report["growth"][:5]
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        stop.set()
        traffic.join(5)
    assert report["samples"] <= 30
    row = next(g for g in report["growth"] if g["type"] == "opsconsole.host.demo.LeakyRecord")
    assert row == report["growth"][0] or report["growth"][0]["leaking"]
    assert 300 <= row["objects_per_min"] <= 1300, row  # at most 20 a second; fewer on a busy machine
    assert row["confidence"] >= trend.LEAK_CONFIDENCE
    assert report["confidence"] >= trend.LEAK_CONFIDENCE
    assert report["history"]["types"]["opsconsole.host.demo.LeakyRecord"][-1] > 0
    status, text = demo.get("/ops/leaks?format=text")
    assert "LEAK" in text and "LeakyRecord" in text
    assert demo.post("/ops/leaks/stop")[0] == 200


def test_waves_of_churn_give_no_leak_over_60_samples(wave_run: WaveRun) -> None:
    assert wave_run.done.wait(120), "the churn run did not finish"
    assert wave_run.error is None
    final = wave_run.final
    assert final["samples"] == 60, final
    leaked = [(n, v) for n, v in wave_run.verdicts if v == "leak"]
    assert not leaked, (leaked, final["growth"])
    assert final["verdict"] == "no_leak"
    rows = {g["type"]: g for g in final["growth"]}  # type: ignore[attr-defined]
    # The churning class was tracked (it grew most at times) and judged not leaking.
    assert f"{__name__}.WaveItem" in rows
    assert not rows[f"{__name__}.WaveItem"]["leaking"]


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
