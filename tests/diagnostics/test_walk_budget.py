"""Whole-heap walks are bounded in memory on every Python we claim: the CPython 3.12 runaway
(gh-122695) is avoided at its cause, and a census, a reference search and a heap snapshot each stop
with a clear error before growing the process past their budget, whatever the heap holds.

The walks that could run away run in a child process (``testkit/heap_walk_child.py``), watched from
here: the child is killed the moment its resident size passes a cap, so a regression fails the test
instead of exhausting the machine."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from opsconsole.config import Settings
from opsconsole.console import Console
from opsconsole.diagnostics.budget import MIN_LIMIT, Budget, resident_bytes
from opsconsole.diagnostics.heapsnapshot.document import HeapSnapshot
from opsconsole.diagnostics.objects import referents
from opsconsole.diagnostics.objects.census import census, shallow_size
from opsconsole.diagnostics.objects.refchain import SearchRoots as Roots
from opsconsole.diagnostics.objects.refchain import refchain
from opsconsole.errors import BudgetError
from testkit import REPO
from testkit.support import FakeClock, Operator, call, console_settings, login_token

ROOT = REPO
BUDGET_MIB = 256
CAP = 2 << 30  # the watchdog's kill line for a child: far above any budget, far below the machine


def _statm_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run_watched(*args: str, timeout: float = 600.0) -> dict[str, Any]:
    """Run the child; kill it if its resident size passes CAP or it outlives ``timeout``."""
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "testkit.heap_walk_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _statm_rss(proc.pid))
        if peak > CAP or time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"child killed: resident {peak >> 20} MiB (cap {CAP >> 20} MiB) or past {timeout} s")
        with contextlib.suppress(subprocess.TimeoutExpired):  # wait for the exit; poll RSS meanwhile
            proc.wait(timeout=0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _walk_growth(result: dict[str, Any]) -> int:
    """An upper bound of how much the walks grew the child: its peak afterwards over its size before
    (the peak before counts too, so an earlier, higher peak can only make this larger)."""
    return int(result["peak_after"]) - int(result["rss_before"])


def _check_walks(result: dict[str, Any]) -> None:
    assert result["snapshot_nodes"] > 10_000 and result["snapshot_bytes"] > 0
    found, root, labels = result["by_class"]
    assert found and root == "__main__.HOLD", result["by_class"]
    assert labels[1:] == ["['path']", "[0]", "['needle']"], labels
    assert result["by_object"] == [True, "__main__.HOLD"]
    assert result["census_types"]["__main__.Needle"] > 0


@pytest.mark.slow
def test_obs7_refchain_is_bounded_on_312() -> None:
    """Future iterators on the ``_asyncio`` free list, a heap snapshot, then reference searches and a
    census: on CPython 3.12.1 the search grew the process past 24 GB; here the walks stay in budget."""
    result = _run_watched("obs7", str(BUDGET_MIB))
    _check_walks(result)
    assert _walk_growth(result) <= BUDGET_MIB << 20, result
    if sys.version_info[:2] == (3, 12):
        assert result["freelist_guarded"] and result["asyncio_referents"] == 1  # its namespace only


@pytest.mark.slow
def test_walks_on_sparse_mappings_and_a_huge_bytes_stay_within_budget(tmp_path: Path) -> None:
    """An 8 GiB sparse anonymous mapping, a 4 GiB sparse file mapping with a memoryview over it and a
    2 GiB bytes object: the three walks grow the process by no more than their budget."""
    result = _run_watched("sparse", str(BUDGET_MIB), str(tmp_path))
    _check_walks(result)
    assert _walk_growth(result) <= BUDGET_MIB << 20, result
    assert result["census_types"]["memoryview"] > 0


def test_module_referents_are_its_namespace_where_traversal_is_unsafe() -> None:
    module = sys.modules["_asyncio"]
    found = referents.referents(module, [module])
    if referents.FREELIST_TRAVERSED:
        assert found[-1] is vars(module) and found.count(vars(module)) == 1
        assert all(type(r).__name__ != "FutureIter" for r in found)
    else:
        assert found == gc.get_referents(module, [module])
    assert (sys.version_info[:2] == (3, 12)) == referents.FREELIST_TRAVERSED  # every final release


class _Nowhere:
    """A class no instance of which is alive: a search for it walks the whole heap."""


class _Ballast:
    """Many small objects: a walk over them keeps far more than the smallest budget."""

    def __init__(self) -> None:
        self.items = [(i, str(i)) for i in range(400_000)]


def test_each_walk_stops_at_its_budget() -> None:
    ballast = _Ballast()
    before = resident_bytes()
    for what, walk in (
        ("heap snapshot", lambda: sum(map(len, HeapSnapshot(memory_budget=MIN_LIMIT)))),
        ("refchain", lambda: refchain(_Nowhere, roots=Roots(), memory_budget=MIN_LIMIT)),
        ("refchain", lambda: refchain(_Nowhere, roots=Roots(threads=False), memory_budget=MIN_LIMIT)),
    ):
        with pytest.raises(BudgetError) as info:
            walk()
        assert info.value.what == what and info.value.limit == MIN_LIMIT
        assert "walk_memory_budget" in str(info.value) and "16 MiB" in str(info.value)
    assert before is not None and (resident_bytes() or 0) - before < 256 << 20
    del ballast


def test_census_stops_at_its_budget() -> None:
    ballast = [[] for _ in range(2_200_000)]  # 2.2M tracked lists: the census's list alone passes 16 MiB
    with pytest.raises(BudgetError) as info:
        census(memory_budget=MIN_LIMIT)
    assert info.value.what == "census"
    del ballast


def test_a_budget_measures_the_process_as_it_goes() -> None:
    # Garbage left by earlier tests (a stopped census keeps its ballast in a cycle) must be
    # freed before the start is measured, not inside the window where growth is expected.
    gc.collect()
    with Budget("test", MIN_LIMIT) as budget:
        grown = bytearray(64 << 20)  # written: resident
        grown[::4096] = b"x" * len(range(0, len(grown), 4096))
        with pytest.raises(BudgetError) as info:
            budget.check()
        assert info.value.how == "measured" and info.value.used >= 64 << 20
        del grown


class _SizedInPython:
    sizeof_calls = 0

    def __sizeof__(self) -> int:
        type(self).sizeof_calls += 1
        raise AssertionError("a walk ran host code")


def test_a_sizeof_written_in_python_is_never_run() -> None:
    held = [_SizedInPython() for _ in range(10)]
    assert shallow_size(held[0]) == object.__sizeof__(held[0]) + (sys.getsizeof([]) - [].__sizeof__())
    row = next(t for t in census(top=1000).types if t.name.endswith("_SizedInPython"))
    assert row.count == 10 and row.size > 0
    assert sum(map(len, HeapSnapshot())) > 0
    assert _SizedInPython.sizeof_calls == 0


def test_over_budget_answers_507_over_budget(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, operators: dict[str, Operator]
) -> None:
    settings: Settings = console_settings(tmp_path, keys_dir, walk_memory_budget=16)
    console = Console(settings, clock=clock).start()
    ballast = _Ballast()
    try:
        token = login_token(console.url, operators["alice"], clock())
        for path in ("/ops/heapsnapshot", f"/ops/objects/refchain?type={__name__}._Nowhere"):
            status, body = call(console.url, "GET", path, token=token)
            assert status == 507, (path, body)
            assert body["error"] == "over_budget" and "16 MiB" in body["message"], body
        status, body = call(console.url, "GET", "/ops/process", token=token)
        assert status == 200  # the console serves on
    finally:
        console.stop()
        del ballast
