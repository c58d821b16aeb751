"""Census and growth on real objects: counts, sizes, baselines, rendering, and the host-stall bound."""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from opsconsole.diagnostics.objects.census import (
    Census,
    TypeStat,
    census,
    every_object,
    type_name,
)
from opsconsole.diagnostics.objects.growth import MAX_BASELINES, Growth, GrowthTracker, TypeGrowth
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError, NotFoundError
from testkit.ticker import Ticker


class Marker:
    """A class only these tests instantiate, so its census row is exact."""

    def __init__(self, n: int) -> None:
        self.n = n


def row(c: Census, name: str) -> TypeStat:
    found = [t for t in c.types if t.name == name]
    assert found, f"{name} not in the census"
    return found[0]


def test_type_name_qualified_builtin_and_local() -> None:
    class Local:
        pass

    assert type_name(dict) == "dict"
    assert type_name(list) == "list"
    assert type_name(Marker) == f"{__name__}.Marker"
    assert type_name(Local) == f"{__name__}.test_type_name_qualified_builtin_and_local.<locals>.Local"
    assert type_name(Local) == type_name(Local)  # the cached answer is the same
    assert type_name(weakref.ref) == "weakref.ReferenceType"  # a C type's module comes from its tp_name


def test_type_name_cache_does_not_keep_classes_alive() -> None:
    cls = type("Ephemeral", (), {})
    assert type_name(cls) == f"{__name__}.Ephemeral"
    ref = weakref.ref(cls)
    del cls
    gc.collect()  # explicit in the test only: the class sits in a cycle with its __mro__
    assert ref() is None


def test_census_counts_and_sizes_instances() -> None:
    items = [Marker(i) for i in range(5000)]
    c = census(top=1000)
    stat = row(c, type_name(Marker))
    assert stat.count == 5000
    assert stat.size == 5000 * sys.getsizeof(items[0])
    assert c.sized
    assert c.total_objects >= 5000
    assert c.total_size >= stat.size
    assert c.distinct_types >= len(c.types)
    counts = [t.count for t in c.types]
    assert counts == sorted(counts, reverse=True)


def test_census_without_sizes_and_top() -> None:
    items = [Marker(i) for i in range(3000)]
    c = census(top=5, sizes=False)
    assert len(c.types) == 5
    assert not c.sized
    assert c.total_size == 0
    assert all(t.size == 0 for t in c.types)
    assert len(items) == 3000


@pytest.mark.parametrize("top", [0, -1, 1001])
def test_census_rejects_bad_top(top: int) -> None:
    with pytest.raises(InvalidRequestError):
        census(top=top)


def test_growth_shows_new_instances_first() -> None:
    tracker = GrowthTracker()
    first = tracker.growth()
    assert first.since == "empty"  # like objgraph's first show_growth: everything counts as growth
    assert first.rows
    items = [Marker(i) for i in range(10_000)]
    g = tracker.growth()
    assert g.since == "previous"
    top = g.rows[0]
    assert top.name == type_name(Marker)
    assert top.delta == 10_000
    assert top.count == 10_000
    assert top.size_delta == 10_000 * sys.getsizeof(items[0])
    deltas = [r.delta for r in g.rows]
    assert deltas == sorted(deltas, reverse=True)
    assert all(r.delta > 0 for r in g.rows)


def test_growth_does_not_count_its_own_state() -> None:
    tracker = GrowthTracker()
    tracker.growth()
    tracker.growth()
    g = tracker.growth()
    # Stored states are flat str → int dicts: nothing of the tracker's own shows up as growth.
    assert all(r.delta < 50 for r in g.rows), g.rows[:5]


def test_named_baselines() -> None:
    tracker = GrowthTracker()
    summary = tracker.baseline("before", top=10)
    assert isinstance(summary, Census)
    assert len(summary.types) == 10
    items = [Marker(i) for i in range(2000)]
    g = tracker.growth("before")
    assert g.since == "before"
    assert g.rows[0].name == type_name(Marker)
    assert g.rows[0].delta == 2000
    # a named comparison leaves the baseline in place: asking again gives the same growth
    assert tracker.growth("before").rows[0].delta == 2000
    tracker.baseline("before")  # re-using a name replaces it
    assert all(r.name != type_name(Marker) for r in tracker.growth("before").rows)
    assert tracker.baselines() == ("before",)
    assert len(items) == 2000


def test_oldest_baseline_is_dropped() -> None:
    tracker = GrowthTracker()
    for n in range(MAX_BASELINES + 1):
        tracker.baseline(f"b{n}", top=1, sizes=False)
    names = tracker.baselines()
    assert len(names) == MAX_BASELINES
    assert names[0] == "b1"
    with pytest.raises(NotFoundError):
        tracker.growth("b0")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "név", "a/b"])
def test_bad_baseline_name(name: str) -> None:
    tracker = GrowthTracker()
    with pytest.raises(InvalidRequestError):
        tracker.baseline(name)
    with pytest.raises(InvalidRequestError):
        tracker.growth(name)


def test_unknown_baseline() -> None:
    with pytest.raises(NotFoundError):
        GrowthTracker().growth("never-taken")


def test_tracker_is_thread_safe() -> None:
    tracker = GrowthTracker()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            tracker.baseline(f"t{n}", top=1, sizes=False)
            tracker.growth(f"t{n}", top=3, sizes=False)
            tracker.growth(top=3, sizes=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert sorted(tracker.baselines()) == ["t0", "t1", "t2", "t3"]


def test_render_text_and_json() -> None:
    items = [Marker(i) for i in range(100)]
    tracker = GrowthTracker()
    tracker.growth()
    more = [Marker(i) for i in range(500)]
    c = census(top=5)
    g = tracker.growth(top=5)
    text = to_text(c)
    assert "GC-tracked objects" in text
    assert "type" in text and "count" in text and "size" in text
    assert "count" in to_text(census(top=3, sizes=False))
    gtext = to_text(g)
    assert "growth since previous" in gtext
    assert type_name(Marker) in gtext and "+500" in gtext
    assert "no type grew" in to_text(Growth(since="x", taken_at=time.time(), rows=()))
    for result in (c, g):
        data = json.loads(json.dumps(to_data(result)))
        assert isinstance(data, dict)
    # Other threads of the test process may allocate too: Marker's row is found by name.
    rows = json.loads(json.dumps(to_data(g)))["rows"]
    assert any(r["name"] == type_name(Marker) and r["delta"] == 500 for r in rows), rows
    assert isinstance(g.rows[0], TypeGrowth)
    assert len(items) + len(more) == 600


@pytest.fixture
def many_objects() -> Iterator[list[object]]:
    objs: list[object] = []
    for i in range(75_000):
        m = Marker(i)
        objs.extend((m, {"m": m}, [m], (m, i)))
    yield objs
    objs.clear()


def test_host_thread_keeps_ticking(many_objects: list[object]) -> None:
    """The host thread keeps running during a census of ~300k objects; how long it may stall is
    measured by bench/census.py."""

    def work() -> Census:
        tracker = GrowthTracker()
        c = census(top=5)
        tracker.growth(sizes=False)
        tracker.growth()
        return c

    with Ticker() as ticker:
        c, took, longest = ticker.measure(work)
    assert c.total_objects >= 300_000
    # the host thread ran all through the work, not once it was over: a ratio, not a time, so
    # a loaded machine slows both sides alike
    assert longest < took / 2, (longest, took)


def test_every_object_pauses_the_collector_only_while_the_list_is_held() -> None:
    # The list of every object is one huge young container: an automatic collection while it
    # lives would visit all of it, a stall of the host. Paused inside, back on after.
    assert gc.isenabled()
    with every_object() as objs:
        assert not gc.isenabled()
        assert len(objs) > 1000  # the GC-tracked objects of this process
        objs.clear()
    assert gc.isenabled()
    try:
        with pytest.raises(RuntimeError), every_object():
            raise RuntimeError("a failing walk")
        assert gc.isenabled()
        gc.disable()  # a host that turned the collector off keeps it off
        with every_object():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
