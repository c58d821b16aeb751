"""The leak report: frozen results, and how a run's history becomes one.

Pure computation over copied arrays (see ``trend`` for the statistics); runs on whichever
thread asks for the report — the console IO loop for ``GET /ops/leaks``, a REPL session
thread for ``ops.leaks()``. Tens of series of at most a few hundred samples: milliseconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from opsconsole.diagnostics.leaks import trend

Verdict = Literal["leak", "no_leak", "insufficient_data"]
MIN_RISE_OBJECTS = 32  # fewer extra objects over the whole window is not a leak worth a page
REL_RISE_OBJECTS = 0.01  # ... nor is growth under 1 % of what was there
MIN_RISE_BYTES = 1 << 20
REL_RISE_BYTES = 0.05  # RSS and traced memory wander with fragmentation and caches
SITES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class TypeGrowthRate:
    type: str
    objects_per_min: float
    bytes_per_min: float  # objects_per_min × the type's mean shallow size (0 until sized)
    confidence: float
    leaking: bool


@dataclass(frozen=True, slots=True)
class SiteGrowthRate:
    file: str
    line: int
    bytes_per_min: float


@dataclass(frozen=True, slots=True)
class LeakHistory:
    """Oldest first; None where a signal was not sampled (tracing off, type not yet tracked)."""

    t: tuple[float, ...]  # unix seconds
    rss: tuple[int | None, ...]
    traced: tuple[int | None, ...]
    types: Mapping[str, tuple[int | None, ...]]


@dataclass(frozen=True, slots=True)
class LeakReport:
    running: bool
    interval: float  # seconds between samples (0.0: never started)
    samples: int  # in the history window
    # Samples the window must hold before every tracked series can be tested (the trend test's
    # ``trend.MIN_SAMPLES`` since the youngest series was first sampled); until then the
    # verdict is "insufficient_data" with confidence 0.
    needed: int
    verdict: Verdict
    confidence: float
    rss_bytes_per_min: float
    traced_bytes_per_min: float | None  # None while tracemalloc has not been sampled
    growth: tuple[TypeGrowthRate, ...]  # leaking first, then fastest growing
    sites: tuple[SiteGrowthRate, ...]  # empty unless tracemalloc was on for a few samples
    history: LeakHistory
    started_at: float | None  # unix seconds of the run's start
    sample_seconds: float  # mean wall time of one sample (census included)


@dataclass(frozen=True, slots=True)
class RunCopy:
    """What a report needs from a run, copied under the run's lock."""

    running: bool
    interval: float
    started_at: float | None
    t: list[float]
    rss: list[float]
    traced: list[float]
    types: dict[str, list[float]]
    mean_size: dict[str, float]
    sites: list[tuple[float, dict[str, int]]]  # (time, "file:line" → traced bytes)
    sample_seconds: float


def _floor_level(ys: Sequence[float]) -> float:
    present = [y for y in ys if not math.isnan(y)]
    return min(present) if present else 0.0


def _bytes_trend(ts: Sequence[float], ys: Sequence[float]) -> trend.Trend:
    present = [y for y in ys if not math.isnan(y)]
    if not present:
        return trend.NO_TREND
    level = statistics.median(present)
    return trend.assess(ts, ys, min_rise=max(MIN_RISE_BYTES, REL_RISE_BYTES * level))


def _site_rates(snaps: Sequence[tuple[float, dict[str, int]]]) -> tuple[SiteGrowthRate, ...]:
    if len(snaps) < 2:
        return ()
    rates = []
    for key in snaps[-1][1]:
        pts = [(t, sizes[key]) for t, sizes in snaps if key in sizes]
        if len(pts) >= 2:
            slope = trend.theil_sen([p[0] for p in pts], [float(p[1]) for p in pts])
            if slope > 0:
                file, _, line = key.rpartition(":")
                rates.append(SiteGrowthRate(file, int(line), slope * 60.0))
    rates.sort(key=lambda r: -r.bytes_per_min)
    return tuple(rates[:SITES_SHOWN])


def _span(ys: Sequence[float]) -> int:
    """Samples since the series was first sampled (0 if it never was in the window)."""
    for i, y in enumerate(ys):
        if not math.isnan(y):
            return len(ys) - i
    return len(ys)  # never sampled in the window: nothing to wait for


def needed_samples(run: RunCopy) -> int:
    """How many samples the window needs before the trend test can judge every series.

    A class is tracked from the sample it first grew, so its series starts later than the run:
    judging the run "no leak" before that class has ``trend.MIN_SAMPLES`` samples would be a
    confident answer from a test that has not run.
    """
    n = len(run.t)
    youngest = min((_span(ys) for ys in (run.rss, *run.types.values())), default=n)
    return n + max(0, trend.MIN_SAMPLES - min(youngest, n))


def _ints(ys: Sequence[float]) -> tuple[int | None, ...]:
    return tuple(None if math.isnan(y) else int(y) for y in ys)


def build(run: RunCopy) -> LeakReport:
    """The report for one run's history."""
    ts = run.t
    rss = _bytes_trend(ts, run.rss)
    traced_on = any(not math.isnan(y) for y in run.traced)
    traced = _bytes_trend(ts, run.traced) if traced_on else trend.NO_TREND
    rows = []
    judged = [rss, traced]
    for name, ys in run.types.items():
        level = _floor_level(ys)
        tr = trend.assess(ts, ys, min_rise=max(MIN_RISE_OBJECTS, REL_RISE_OBJECTS * level))
        judged.append(tr)
        per_min = tr.slope * 60.0
        rows.append(
            TypeGrowthRate(name, per_min, per_min * run.mean_size.get(name, 0.0), tr.confidence, tr.leaking)
        )
    rows.sort(key=lambda r: (not r.leaking, -r.objects_per_min, r.type))
    verdict: Verdict
    needed = needed_samples(run)
    if any(j.leaking for j in judged):  # a series the test could judge grows: that is decided
        verdict, confidence = "leak", max(j.confidence for j in judged if j.leaking)
    elif len(ts) < needed:
        verdict, confidence = "insufficient_data", 0.0
    else:
        # How sure that nothing grows: doubt comes only from series that did rise materially.
        verdict, confidence = "no_leak", 1.0 - max((j.confidence for j in judged if j.material), default=0.0)
    return LeakReport(
        running=run.running,
        interval=run.interval,
        samples=len(ts),
        needed=needed,
        verdict=verdict,
        confidence=confidence,
        rss_bytes_per_min=rss.slope * 60.0,
        traced_bytes_per_min=traced.slope * 60.0 if traced_on else None,
        growth=tuple(rows),
        sites=_site_rates(run.sites),
        history=LeakHistory(
            t=tuple(ts),
            rss=_ints(run.rss),
            traced=_ints(run.traced),
            types={name: _ints(ys) for name, ys in run.types.items()},
        ),
        started_at=run.started_at,
        sample_seconds=run.sample_seconds,
    )
