"""The leak detector's cost to the host, on a heap of 1 000 000 live objects, in one run.

(a) each signal, alone, median of a few calls:
    RSS (/proc/self/statm)            tracemalloc total (counter read, tracing on)
    census by count                   census with shallow sizes (every 10th sample)
    tracemalloc sites (snapshot of what is traced, every 5th sample while tracing)
    and what one default sample costs, amortised, as a share of the default interval;
(b) side by side: the throughput of a host loop on the main thread with the detector off and
    on, in alternating windows, at a 1 s interval — 30× the default rate, so the cost stands
    out of the noise — next to the CPU time the detector's thread used (its thread CPU clock):
    the two agree, which makes the thread CPU share a fair measure of the host's loss;
(c) the same at the default interval over one long window: the CPU share there is the figure
    for the goal (≤ 1 %); a throughput difference of a fraction of a percent is below what a
    machine shared with other work can resolve.

    .venv/bin/python bench/leaks.py [N_OBJECTS] [DEFAULT_INTERVAL_WINDOW_SECONDS]
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

from opsconsole.diagnostics.leaks import detector as leaks
from opsconsole.diagnostics.leaks.detector import LeakDetector, rss_bytes
from opsconsole.diagnostics.objects import census as census_mod


class Record:
    def __init__(self, n: int) -> None:
        self.n = n
        self.tags: list[int] = [n]


def build(n: int) -> list[object]:
    """~n GC-tracked objects: instances, their lists, dicts and tuples."""
    out: list[object] = []
    for i in range(n // 4):
        r = Record(i)
        out += [r, {"r": r}, (r, i)]
    return out


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def host_loop(seconds: float) -> float:
    """A host doing pure-Python work on the main thread: iterations per second."""
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i in range(2000):
            _ = {"i": i, "n": n}
        n += 2000
    return n / seconds


def sampler_cpu() -> float:
    """CPU seconds the detector's thread has used so far (0 if it is not running)."""
    for t in threading.enumerate():
        if t.name == leaks.THREAD_NAME and t.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return 0.0


def signals(n_objects: int) -> float:
    print(f"(a) each signal alone, on {n_objects:,} GC-tracked objects (median)")
    rss = median_seconds(rss_bytes, 200)
    counts = median_seconds(lambda: census_mod.census(top=census_mod.MAX_TOP, sizes=False), 5)
    sized = median_seconds(lambda: census_mod.census(top=census_mod.MAX_TOP, sizes=True), 3)
    tracemalloc.start(1)
    try:
        traced = median_seconds(tracemalloc.get_traced_memory, 200)
        churn = [Record(i) for i in range(100_000)]  # what tracing saw since it started
        sites = median_seconds(leaks._site_sizes, 3)
        del churn
    finally:
        tracemalloc.stop()
    per_sample = rss + ((leaks.SIZED_EVERY - 1) * counts + sized) / leaks.SIZED_EVERY
    interval = leaks.DEFAULT_INTERVAL
    print(f"  RSS read                        {rss * 1e6:9.1f} µs")
    print(f"  tracemalloc traced total        {traced * 1e6:9.1f} µs   (needs tracing on)")
    print(f"  census by count                 {counts * 1e3:9.1f} ms")
    print(f"  census with sizes (1 in {leaks.SIZED_EVERY})     {sized * 1e3:9.1f} ms")
    every = leaks.SITES_EVERY
    print(f"  tracemalloc sites, 100k traces  {sites * 1e3:9.1f} ms   (1 in {every}, tracing only)")
    print(
        f"  one sample, amortised           {per_sample * 1e3:9.1f} ms = "
        f"{100 * per_sample / interval:.2f} % of the default {interval:g} s interval"
    )
    return per_sample / interval


def side_by_side(interval: float, window: float, pairs: int) -> tuple[float, float]:
    """Host loop throughput in alternating windows, detector off then on (a new run per window,
    so every on-window starts with a sample). Returns (median slowdown, detector CPU share)."""
    print(f"  detector every {interval:g} s; {pairs} pairs of {window:g} s windows, off then on")
    ratios: list[float] = []
    cpu = wall = 0.0
    samples = 0
    for _ in range(pairs):
        gc.collect()
        off = host_loop(window)
        gc.collect()
        d = LeakDetector()
        d.start(interval)
        t0, c0 = time.perf_counter(), sampler_cpu()
        on = host_loop(window)
        cpu += sampler_cpu() - c0
        wall += time.perf_counter() - t0
        d.stop(wait=10)
        samples += d.report().samples
        ratios.append(on / off)
        print(f"    off {off:>12,.0f}/s   on {on:>12,.0f}/s   on/off {on / off:.3f}")
    slowdown = 1 - statistics.median(ratios)
    share = cpu / wall
    print(f"  host slowdown (median of pairs):  {100 * slowdown:+.2f} %")
    print(
        f"  detector thread CPU while on:     {100 * share:.2f} % of one core; "
        f"{samples} samples, {1000 * cpu / max(samples, 1):.0f} ms CPU each"
    )
    return slowdown, share


def main() -> None:
    n_objects = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    window = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
    heap = build(n_objects)
    gc.collect()
    print(f"heap: {len(gc.get_objects()):,} GC-tracked objects, RSS {rss_bytes() / 2**20:.0f} MiB\n")
    steady = signals(n_objects)
    print("\n(b) side by side, detector at 1 s: big enough to rise above the noise of a shared machine")
    side_by_side(1.0, 10.0, 3)
    print(f"\n(c) side by side at the default interval ({leaks.DEFAULT_INTERVAL:g} s); the throughput")
    print("    ratio is within the machine's noise here, the thread CPU share is the figure")
    _, share = side_by_side(leaks.DEFAULT_INTERVAL, window, 1)
    print(
        f"\nat the default interval: {100 * share:.2f} % of one core measured "
        f"(first samples of a run carry no sizes), {100 * steady:.2f} % steady state "
        "(sizes every 10th sample) — goal ≤ 1 %"
    )
    del heap


if __name__ == "__main__":
    main()
