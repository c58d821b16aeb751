"""Census / growth / refchain against objgraph and pympler on 1 000 000 live objects, side by side in one run.

(a) speed, median of a few runs:
    our growth by count (sizes=False)         vs objgraph.show_growth()            goal ≥ 4× faster
    our growth with shallow sizes             vs pympler SummaryTracker().diff()   goal ≥ 10× faster
(b) the longest stall of a host thread that ticks every 1 ms, while census, growth and refchain
    run on another thread (goal ≤ 50 ms), next to the stall of one plain gc.get_objects() call.

Automatic GC is left on, as in a real host; a pending collection is flushed (explicitly, by the
bench) before each measurement so that one does not land inside it by chance.

    .venv/bin/python bench/census.py [N_OBJECTS] [REPEATS]
"""

from __future__ import annotations

import contextlib
import gc
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import objgraph  # type: ignore[import-untyped]
from pympler import tracker as pympler_tracker

from opsconsole.diagnostics.objects.census import census
from opsconsole.diagnostics.objects.growth import GrowthTracker
from opsconsole.diagnostics.objects.refchain import SearchRoots, refchain

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from testkit.ticker import Ticker


class Order:
    def __init__(self, n: int) -> None:
        self.n = n
        self.lines: list[object] = []


class Customer:
    def __init__(self, n: int) -> None:
        self.n = n
        self.name = "c"


class Session:
    def __init__(self, n: int) -> None:
        self.n = n
        self.user = None


KINDS = (Order, Customer, Session)


def build(n: int) -> list[object]:
    """~n GC-tracked objects: instances with a __dict__, dicts, lists and tuples, in equal parts.
    Each container holds an instance, so CPython keeps it GC-tracked (as in a real app)."""
    objs: list[object] = []
    for i in range(n // 4):
        obj = KINDS[i % 3](i)
        objs.append(obj)
        objs.append({"obj": obj, "i": i})
        objs.append([obj, i])
        objs.append((obj, i))
    return objs


def timed(fn: Callable[[], object]) -> float:
    gc.collect()  # bench only: flush pending collections so none lands inside the measurement
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_of(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def objgraph_growth() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        objgraph.show_growth()


def busy_loop() -> None:
    """No long C call at all: what the ticker sees from GIL switching (5 ms interval) and the OS."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.5:
        n += 1


def max_stall(fn: Callable[[], object]) -> tuple[float, float]:
    """(longest gap between a host thread's 1 ms ticks, seconds fn took) while fn runs here."""
    gc.collect()
    with Ticker() as ticker:
        _, took, longest = ticker.measure(fn)
    return longest, took


def speed(label: str, seconds: float, versus: float | None = None, goal: float = 0) -> None:
    ratio = f"   → ours {versus / seconds:.1f}× faster (goal ≥ {goal:.0f}×)" if versus is not None else ""
    print(f"  {label:34s} {seconds * 1000:8.0f} ms{ratio}")


def main(n: int, repeats: int) -> None:
    t0 = time.perf_counter()
    live = build(n)
    took = time.perf_counter() - t0
    print(f"built {len(live):,} objects in {took:.1f} s; gc.get_objects() sees {len(gc.get_objects()):,}")
    interval = sys.getswitchinterval() * 1000
    print(
        f"Python {sys.version.split()[0]}, GIL switch interval {interval:.0f} ms, median of {repeats} runs\n"
    )

    print("(a) speed")
    ours = GrowthTracker()
    ours.growth(sizes=False)  # prime: both tools' first call compares against nothing
    objgraph_growth()
    ours_count = median_of(lambda: ours.growth(sizes=False), repeats)
    theirs_count = median_of(objgraph_growth, repeats)
    speed("census(sizes=False) alone", median_of(lambda: census(sizes=False), repeats))
    speed("objgraph.show_growth()", theirs_count)
    speed("ours: growth(sizes=False)", ours_count, theirs_count, 4)

    ours.growth(sizes=True)
    ours_sized = median_of(lambda: ours.growth(sizes=True), repeats)
    speed("census(sizes=True) alone", median_of(lambda: census(sizes=True), repeats))
    t0 = time.perf_counter()
    summary = pympler_tracker.SummaryTracker()  # type: ignore[no-untyped-call]
    print(f"  (pympler SummaryTracker() itself took {time.perf_counter() - t0:.1f} s to set up)")
    theirs_sized = median_of(summary.diff, max(1, repeats - 2))
    speed("pympler SummaryTracker().diff()", theirs_sized)
    speed("ours: growth(sizes=True)", ours_sized, theirs_sized, 10)

    print("\n(b) longest gap between a host thread's 1 ms ticks while the call runs (goal ≤ 50 ms)")
    # The million objects hang off a module global, so the searches below walk all of them.
    sys.modules[__name__].__dict__["LIVE"] = live
    lonely = Customer(-1)  # reachable from no root: the search walks the whole heap
    cases: list[tuple[str, Callable[[], object]]] = [
        ("pure-Python loop 0.5 s (noise floor)", busy_loop),
        ("gc.get_objects() (reference)", gc.get_objects),
        ("census(sizes=False)", lambda: census(sizes=False)),
        ("census(sizes=True)", lambda: census(sizes=True)),
        ("growth(sizes=True)", lambda: ours.growth(sizes=True)),
        ("refchain, whole heap (unreachable)", lambda: refchain(lonely, roots=SearchRoots(), time_limit=60)),
        ("refchain by type name (found)", lambda: refchain(f"{__name__}.Session", roots=SearchRoots())),
        ("objgraph.show_growth() (reference)", objgraph_growth),
    ]
    print(f"  {'':38s} {'worst':>8s} {'median':>8s}   call")
    for label, fn in cases:
        stalls = [max_stall(fn) for _ in range(repeats)]
        worst = max(s for s, _ in stalls) * 1000
        med = statistics.median(s for s, _ in stalls) * 1000
        took = statistics.median(t for _, t in stalls)
        print(f"  {label:38s} {worst:5.1f} ms {med:5.1f} ms   {took:.2f} s")
    result = refchain(lonely, roots=SearchRoots(), time_limit=60)
    print(
        f"\nrefchain whole-heap walk: {result.visited:,} objects in {result.elapsed:.2f} s ({result.reason})"
    )
    del live


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
