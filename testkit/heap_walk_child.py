"""A child process for the walk-budget tests: builds a heap, runs the three whole-heap walks on it and
prints one JSON line with the results and its resident sizes (current before, peak before and after).

``python -m testkit.heap_walk_child obs7 BUDGET_MIB``: Future iterators on the ``_asyncio`` free list,
then a heap snapshot, two reference searches (by class, by object) and a census, in that order, as
the test suite ran them when a search grew a 3.12 process past 24 GB.

``python -m testkit.heap_walk_child sparse BUDGET_MIB DIR``: the same walks on a heap that also holds an
8 GiB sparse anonymous mapping, a 4 GiB sparse file mapping with a memoryview over it, and a 2 GiB
bytes object (calloc'd: its pages are not resident until read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import resource
import sys
from pathlib import Path
from typing import Any

from opsconsole.diagnostics.budget import resident_bytes
from opsconsole.diagnostics.heapsnapshot.document import HeapSnapshot
from opsconsole.diagnostics.objects import referents
from opsconsole.diagnostics.objects.census import census
from opsconsole.diagnostics.objects.refchain import SearchRoots as Roots
from opsconsole.diagnostics.objects.refchain import refchain

GIB = 1 << 30
HOLD: dict[str, Any] = {}


class Needle:
    """What the reference searches look for: reachable only through ``HOLD``."""


def _fill_future_iter_free_list() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, None)
            await fut  # a FutureIter made and freed: onto the module's free list

    asyncio.run(main())


def _sparse(directory: Path) -> None:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    anon = mmap.mmap(-1, 8 * GIB, flags=flags)
    for offset in range(0, 8 * GIB, GIB):  # a page touched per GiB: sparse, not empty
        anon[offset] = 1
    path = directory / "sparse.bin"
    with path.open("wb") as fh:
        fh.truncate(4 * GIB)
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    HOLD.update(anon=anon, mapped=mapped, view=memoryview(mapped), huge=bytes(2 * GIB))


def _peak() -> int:
    """The peak resident size of this process image. Not ``ru_maxrss``: a forked child starts with
    its parent's, and keeps it across exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _reset_peak() -> None:
    """Make the peak the current size (Linux ≥ 4.0), so the walks' peak is measured from here."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def main() -> None:
    mode, budget = sys.argv[1], int(sys.argv[2]) << 20
    _fill_future_iter_free_list()
    if mode == "sparse":
        _sparse(Path(sys.argv[3]))
    HOLD["path"] = [{"needle": Needle()}]
    _reset_peak()
    rss_before, peak_before = resident_bytes(), _peak()
    snapshot = HeapSnapshot(memory_budget=budget)
    written = sum(map(len, snapshot))
    by_class = refchain(Needle, roots=Roots(threads=False), memory_budget=budget, time_limit=120)
    by_object = refchain(
        HOLD["path"][0]["needle"], roots=Roots(threads=False), memory_budget=budget, time_limit=120
    )
    counted = census(top=1000, memory_budget=budget)
    print(
        json.dumps(
            {
                "freelist_guarded": referents.FREELIST_TRAVERSED,
                "asyncio_referents": len(referents.referents(sys.modules["_asyncio"])),
                "snapshot_nodes": snapshot.nodes,
                "snapshot_bytes": written,
                "by_class": [by_class.found, by_class.root, [s.label for s in by_class.steps]],
                "by_object": [by_object.found, by_object.root],
                "census_types": {t.name: t.size for t in counted.types},
                "rss_before": rss_before,
                "peak_before": peak_before,
                "peak_after": _peak(),
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
