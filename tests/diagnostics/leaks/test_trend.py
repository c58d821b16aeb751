"""The trend statistics on made-up series: steady growth leaks, churn and steps do not."""

from __future__ import annotations

import math
import random

import pytest

from opsconsole.diagnostics.leaks import detector as leaks
from opsconsole.diagnostics.leaks import trend

SECONDS = [float(i) for i in range(60)]


def test_theil_sen_ignores_outliers() -> None:
    ys = [2.0 * x + 1 for x in range(20)]
    ys[5] = 1000.0
    ys[12] = -500.0
    assert trend.theil_sen(list(range(20)), ys) == pytest.approx(2.0)


def test_mann_kendall_matches_the_textbook_values() -> None:
    s, z, p = trend.mann_kendall([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    assert s == 28
    assert z == pytest.approx(27 / math.sqrt(8 * 7 * 21 / 18))
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    # Ties shrink the variance; a flat series has none and no trend.
    assert trend.mann_kendall([3.0] * 8) == (0, 0.0, 1.0)
    assert trend.mann_kendall([8.0, 7.0, 6.0, 5.0])[0] == -6


def test_floors_keep_the_newest_samples_in_blocks() -> None:
    xs, lows = trend.floors(SECONDS, [float(i % 7) for i in range(60)])
    assert len(lows) == trend.BLOCKS
    assert xs[-1] <= 59 and xs[0] >= 0
    # NaN (not sampled) is skipped, not treated as a low.
    xs, lows = trend.floors(SECONDS[:20], [math.nan] * 4 + [float(i) for i in range(16)])
    assert lows == [float(i) for i in range(0, 16, 2)]


def test_steady_growth_with_noise_leaks() -> None:
    rng = random.Random(1)
    ys = [1000 + 5.0 * t + rng.uniform(-20, 20) for t in SECONDS]
    tr = trend.assess(SECONDS, ys, min_rise=32)
    assert tr.leaking
    assert tr.confidence >= trend.LEAK_CONFIDENCE
    assert tr.slope == pytest.approx(5.0, rel=0.2)


@pytest.mark.parametrize("period", [4, 6, 9, 13, 20])
def test_sawtooth_churn_does_not_leak(period: int) -> None:
    # Grows for a period then frees everything: three or more teeth in the window.
    ys = [1000 + 400.0 * (i % period) for i in range(60)]
    assert not trend.assess(SECONDS, ys, min_rise=32).leaking
    # Three long teeth fool a plain Mann–Kendall test on the raw samples: hence the floors.
    if period == 20:
        assert trend.mann_kendall(ys)[2] < 0.001


def test_leak_under_churn_is_found_with_the_leak_rate() -> None:
    ys = [1000 + 3.0 * t + 500.0 * (int(t) % 6) for t in SECONDS]
    tr = trend.assess(SECONDS, ys, min_rise=32)
    assert tr.leaking
    assert tr.slope == pytest.approx(3.0, rel=0.35)


def test_a_single_step_is_not_a_leak() -> None:
    ys = [1000.0 if t < 30 else 1500.0 for t in SECONDS]
    assert not trend.assess(SECONDS, ys, min_rise=32).leaking


def test_small_growth_is_not_material() -> None:
    ys = [1000.0 + t * 0.2 for t in SECONDS]  # 12 objects over the window
    tr = trend.assess(SECONDS, ys, min_rise=32)
    assert tr.confidence >= trend.LEAK_CONFIDENCE
    assert not tr.material and not tr.leaking


def test_too_few_samples_say_nothing() -> None:
    ys = [float(i * 100) for i in range(trend.MIN_SAMPLES - 1)]
    assert trend.assess(SECONDS[: len(ys)], ys, min_rise=1) == trend.NO_TREND
    ys.append(ys[-1] + 100)
    assert trend.assess(SECONDS[: len(ys)], ys, min_rise=1).leaking


def test_random_noise_rarely_leaks() -> None:
    rng = random.Random(7)
    flagged = sum(
        trend.assess(SECONDS, [rng.gauss(1000, 50) for _ in SECONDS], min_rise=32).leaking for _ in range(300)
    )
    assert flagged <= 3  # the threshold is 0.999 per series


def test_from_min_samples_on_a_perfect_rise_always_reaches_leak_confidence() -> None:
    # The verdict waits for MIN_SAMPLES; from there on every window size must be able to say
    # "leak", or the detector answers "no leak" only because its blocks came out too few.
    for n in range(trend.MIN_SAMPLES, leaks.HISTORY + 1):
        ts = [float(i) for i in range(n)]
        _xs, lows = trend.floors(ts, [float(i) for i in range(n)])
        assert len(lows) >= trend.MIN_FLOORS, n
        t = trend.assess(ts, [10.0 * i for i in range(n)], min_rise=1.0)
        assert t.leaking and t.confidence >= trend.LEAK_CONFIDENCE, (n, t)
    short = trend.MIN_SAMPLES - 1
    assert trend.assess([float(i) for i in range(short)], [10.0 * i for i in range(short)], min_rise=1.0) == (
        trend.NO_TREND
    )
