"""Longest stall of a host thread ticking every 1 ms while each dump runs (goal ≤ 50 ms).

A heap of 1 000 000 live objects is built with tracemalloc tracing (1 frame), so the
snapshot and diff have real work. Each dump runs through the same Diagnostics façade the
HTTP routes use; a host thread sleeps 1 ms in a loop and records the largest gap between
its ticks during the dump. An explicitly requested full ``gc.collect()`` is reported
separately: no dump runs one implicitly.

    .venv/bin/python bench/stall.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from opsconsole.diagnostics.service import Diagnostics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench.record import figure
from testkit.ticker import Ticker

GOAL = 0.050  # seconds: the longest a dump may stall a host thread


class Record:
    def __init__(self, i: int) -> None:
        self.i = i
        self.tags = [i]


def build_heap(n: int) -> list[object]:
    objs: list[object] = []
    for i in range(n // 3):
        objs.append(Record(i))  # instance + its list = 2 tracked objects
        objs.append({"k": i})  # 1 more
    return objs


def measure(label: str, fn: Callable[[], object]) -> float:
    """Run one dump; print its time and the longest host stall meanwhile, and return that stall."""
    with Ticker() as ticker:
        _, elapsed, longest = ticker.measure(fn)
    verdict = "ok" if longest <= GOAL else f"OVER {GOAL * 1e3:.0f} ms"
    print(f"{label:<34} {elapsed * 1e3:9.1f} ms   longest host stall {longest * 1e3:7.1f} ms  {verdict}")
    return longest


def main() -> None:
    tracemalloc.start(1)
    heap = build_heap(1_000_000)
    traced_mib = tracemalloc.get_traced_memory()[0] >> 20
    print(f"live GC-tracked objects: {len(gc.get_objects()):,}; traced: {traced_mib} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        diag = Diagnostics(dump_dir=Path(tmp) / "dumps")
        try:
            measure("gc.get_objects() (reference)", gc.get_objects)
            stalls = [
                measure("census (sizes)", lambda: diag.census(30, sizes=True)),
                measure("census (counts only)", lambda: diag.census(30, sizes=False)),
                measure("baseline", lambda: diag.baseline("b")),
            ]
            heap.extend(Record(i) for i in range(50_000))
            stalls.append(measure("growth", lambda: diag.growth("b")))
            stalls.append(measure("snapshot 1", lambda: diag.snapshot("one")))
            heap.extend({"more": i} for i in range(50_000))
            stalls.append(measure("snapshot 2", lambda: diag.snapshot("two")))
            stalls.append(measure("diff (lineno)", lambda: diag.diff("one", "two")))
            stalls.append(measure("refchain", lambda: diag.refchain(Record)))
            measure("explicit gc.collect() (excepted)", gc.collect)
            figure("stall.worst_dump_ms", max(stalls) * 1e3, "ms", f"≤ {GOAL * 1e3:.0f} ms")
        finally:
            diag.close()
            tracemalloc.stop()
    del heap


if __name__ == "__main__":
    main()
