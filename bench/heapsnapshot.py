"""The ``.heapsnapshot`` export on 1 000 000 live objects, side by side in one run.

(a) peak extra RSS per node written (first export of the run, RSS sampled every 2 ms)   goal ≤ 100 B
(b) export time (walk + the whole document, bytes thrown away) vs the floor: gc.get_objects() plus
    gc.get_referents() over every object reached, untracked ones included            goal ≤ 3× floor
    and vs guppy3's hpy().heap()
(c) the longest gap between a host thread's 1 ms ticks while the export runs          goal ≤ 50 ms

The heap is bench/census.py's (instances with a __dict__, dicts, lists and tuples, in equal parts).

    .venv/bin/python bench/heapsnapshot.py [N_OBJECTS] [REPEATS]
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from guppy import hpy  # type: ignore[import-untyped]

from opsconsole.diagnostics.heapsnapshot.document import HeapSnapshot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench.census import build
from testkit.ticker import Ticker

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE


def floor() -> int:
    """Every object the export sees, reached the cheapest way: the GC's list, then referents a
    thousand objects per call, new ones found with set operations. Returns how many."""
    objs = gc.get_objects()
    seen = set(map(id, objs))
    todo, total = objs, len(objs)
    while todo:
        found: list[object] = []
        for start in range(0, len(todo), 1000):
            refs = gc.get_referents(*todo[start : start + 1000])
            ids = list(map(id, refs))
            new = set(ids).difference(seen)
            if new:
                by_id = dict(zip(ids, refs, strict=True))
                found.extend(map(by_id.__getitem__, new))
                seen.update(new)
        todo = found
        total += len(found)
    return total


def export() -> HeapSnapshot:
    snapshot = HeapSnapshot()
    for _ in snapshot:  # the document's bytes, as a transport would write them
        pass
    return snapshot


def guppy() -> None:
    hpy().heap()


def timed(fn: Callable[[], object]) -> float:
    gc.collect()  # bench only: flush pending collections so none lands inside the measurement
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_rss(fn: Callable[[], HeapSnapshot]) -> tuple[int, HeapSnapshot]:
    """Peak RSS above the starting point while ``fn`` runs, sampled on another thread."""
    gc.collect()
    base = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, rss()) - base, result


def main(n: int, repeats: int) -> None:
    t0 = time.perf_counter()
    live = build(n)
    sys.modules[__name__].__dict__["LIVE"] = live  # reached from a module global, as in an app
    del live
    took = time.perf_counter() - t0
    print(f"built {n:,} objects in {took:.1f} s; gc.get_objects() sees {len(gc.get_objects()):,}")
    print(f"Python {sys.version.split()[0]}; measured side by side in one run, median of {repeats}\n")

    extra, first = peak_rss(export)
    print("(a) memory: first export of the run")
    print(f"  nodes {first.nodes:,}, edges {first.edges:,}, strings {first.strings:,}")
    print(f"  document {first.size / 1e6:.0f} MB in {first.seconds:.1f} s (walk {first.walk_seconds:.1f} s)")
    per_node = extra / first.nodes
    print(
        f"  peak extra RSS {extra / 1e6:.0f} MB = {per_node:.0f} B per node (goal ≤ 100 B; prototype ~180 B)"
    )

    print("\n(b) time, in rounds of floor then export (a noisy moment slows both alike)")
    rounds = [(timed(floor), timed(export)) for _ in range(repeats)]
    # guppy3 last: it keeps objects of its own (258k after one run here), which would change the heap
    theirs = statistics.median(timed(guppy) for _ in range(max(1, repeats - 2)))
    base, ours = (statistics.median(column) for column in zip(*rounds, strict=True))
    ratios = sorted(export_s / floor_s for floor_s, export_s in rounds)
    print(f"  floor: get_objects + get_referents over {floor():,} objects   {base:6.2f} s")
    print(
        f"  ours: export (walk + document)                      {ours:6.2f} s"
        f"  = {statistics.median(ratios):.1f}× the floor, median of the rounds' ratios"
        f" ({ratios[0]:.1f}–{ratios[-1]:.1f}×; goal ≤ 3×; prototype ≈ 7×)"
    )
    print(f"  guppy3 hpy().heap()                                 {theirs:6.2f} s", end="")
    print(f"  → ours {theirs / ours:.1f}× its speed")

    print("\n(c) longest gap between a host thread's 1 ms ticks during the export")
    print("    (goal ≤ 50 ms; prototype 200 ms)")
    stalls = []
    for _ in range(repeats):
        gc.collect()
        with Ticker() as ticker:
            _, took, longest = ticker.measure(export)
        stalls.append(longest)
        print(f"  export {took:5.2f} s   longest gap {longest * 1000:5.1f} ms")
    with Ticker() as ticker:
        _, _, reference = ticker.measure(gc.get_objects)
    worst = max(stalls) * 1000
    print(f"  worst {worst:.1f} ms; one gc.get_objects() call for reference: {reference * 1000:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
