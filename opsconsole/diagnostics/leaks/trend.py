"""Is a series growing, or only churning? The statistics behind the leak detector.

A leak raises the *floor* of a series — what stays after the garbage is freed — while churn
(caches that fill and clear, request bursts, batch jobs) swings it up and down around a level
that does not move. Testing the raw samples for a trend is fooled by churn: a sawtooth is
rising most of the time, its samples are strongly autocorrelated, and a Mann–Kendall test on
them calls three rising teeth (60 samples) a trend with z ≈ 3.6. So:

1. the samples are cut into ``BLOCKS`` consecutive blocks (at least ``MIN_BLOCK`` samples
   each, the newest samples kept; never fewer than ``MIN_FLOORS`` blocks once there are
   ``MIN_SAMPLES``) and each block is reduced to its minimum: the floor;
2. a one-sided Mann–Kendall test (with the tie correction) on the floors gives the
   confidence that the floor rises — with 10 floors a perfect rise is z = 3.9;
3. the Theil–Sen slope of the floors (the median of the pairwise slopes, robust to a few
   outliers), placed at the time of each minimum, is the growth rate;
4. a series *leaks* when that confidence reaches ``LEAK_CONFIDENCE`` (0.999: the detector
   tests a few dozen series at once, so each one gets a Bonferroni-like strict threshold)
   and the floor rose by a material amount over the window (``min_rise``).

A single step (a cache warming up once) is not a leak: its floors form two tied groups,
which stays below the threshold. A churn cycle longer than the whole window cannot be told
from growth — the longer the detector runs, the fewer such cycles remain.

Pure functions of float sequences (NaN = no sample); no state, any thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

BLOCKS = 10
MIN_BLOCK = 2
MIN_FLOORS = 8  # the fewest floors whose perfect rise reaches LEAK_CONFIDENCE
MIN_SAMPLES = MIN_FLOORS * MIN_BLOCK
LEAK_CONFIDENCE = 0.999


@dataclass(frozen=True, slots=True)
class Trend:
    slope: float  # units per second, Theil–Sen on the floors (0.0 without enough data)
    confidence: float  # 1 - one-sided Mann–Kendall p that the floor rises (0.0 if it does not)
    rise: float  # the fitted floor rise over the window, in units
    floors: int  # how many floors were tested
    material: bool  # the floor rose by at least ``min_rise``
    leaking: bool  # material and confident


NO_TREND = Trend(0.0, 0.0, 0.0, 0, material=False, leaking=False)


def floors(ts: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """(times, minima) of the blocks; NaN samples are skipped, the oldest leftovers dropped."""
    pts = [(t, y) for t, y in zip(ts, ys, strict=True) if not math.isnan(y)]
    if len(pts) < MIN_BLOCK * 2:
        return [], []
    # Rounded down, so that from MIN_SAMPLES on there are always at least MIN_FLOORS blocks
    # (rounding up gave 7 blocks of 3 at 21 samples: a perfect rise could not reach
    # LEAK_CONFIDENCE there, and the detector said "no leak").
    size = max(MIN_BLOCK, len(pts) // BLOCKS)
    count = min(BLOCKS, len(pts) // size)
    pts = pts[len(pts) - size * count :]
    xs: list[float] = []
    lows: list[float] = []
    for b in range(count):
        t, y = min(pts[b * size : (b + 1) * size], key=lambda p: p[1])
        xs.append(t)
        lows.append(y)
    return xs, lows


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median of the slopes between every pair of points with distinct x (0.0 if none)."""
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    )
    if not slopes:
        return 0.0
    mid = len(slopes) // 2
    return slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2


def mann_kendall(ys: Sequence[float]) -> tuple[int, float, float]:
    """(S, z, one-sided p that the series rises), with the tie-corrected variance."""
    n = len(ys)
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        for j in range(i + 1, n):
            s += (ys[j] > yi) - (ys[j] < yi)
    ties: dict[float, int] = {}
    for y in ys:
        ties[y] = ties.get(y, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if var <= 0:
        return s, 0.0, 1.0
    # Continuity correction: S moves in steps of 2.
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    return s, z, 0.5 * math.erfc(z / math.sqrt(2))


def assess(ts: Sequence[float], ys: Sequence[float], *, min_rise: float) -> Trend:
    """Does ``ys`` (sampled at ``ts`` seconds) grow? ``min_rise`` is the smallest floor rise
    over the window that counts as material."""
    if sum(1 for y in ys if not math.isnan(y)) < MIN_SAMPLES:
        return NO_TREND
    xs, lows = floors(ts, ys)
    if len(lows) < 2:
        return NO_TREND
    slope = theil_sen(xs, lows)
    _s, _z, p = mann_kendall(lows)
    confidence = 1.0 - p if slope > 0 else 0.0
    rise = slope * (xs[-1] - xs[0])
    material = rise >= min_rise
    return Trend(slope, confidence, rise, len(lows), material, material and confidence >= LEAK_CONFIDENCE)
