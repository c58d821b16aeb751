"""tracemalloc control and the fast grouping/diff, against the stdlib's own answers.

Real tracemalloc throughout; the ``tracing_off`` fixture leaves it stopped after every test.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Iterator

import pytest

from opsconsole.diagnostics.allocations import diff as heapdiff
from opsconsole.diagnostics.allocations import tracing as heap
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError, StateError


@pytest.fixture(autouse=True)
def tracing_off() -> Iterator[None]:
    tracemalloc.stop()
    yield
    tracemalloc.stop()


def stdlib_filters() -> list[tracemalloc.Filter | tracemalloc.DomainFilter]:
    """The same exclusions as heapdiff's defaults, as tracemalloc.Filter objects."""
    filters: list[tracemalloc.Filter | tracemalloc.DomainFilter] = [
        tracemalloc.Filter(False, f) for f in heapdiff.DEFAULT_EXCLUDE_FILES
    ]
    filters += [tracemalloc.Filter(False, p + "/*") for p in heapdiff.DEFAULT_EXCLUDE_PREFIXES]
    return filters


def allocate(keep: list[object], n: int) -> None:
    keep.append([bytearray(200 + i % 3) for i in range(n)])  # line: ALLOC_BIG
    keep.append([(i, str(i)) for i in range(n // 4)])
    keep.append({i: [i] for i in range(n // 8)})


ALLOC_BIG = allocate.__code__.co_firstlineno + 1


def churn(keep: list[object]) -> None:
    del keep[1]
    keep.append(["x" * (i % 50) for i in range(1000)])
    keep.append([frozenset((i,)) for i in range(500)])


# -- heap.start / stop / status -----------------------------------------------------------


def test_start_status_stop() -> None:
    s = heap.start(3)
    assert (s.tracing, s.frames, s.top, s.traces) == (True, 3, (), 0)
    assert s.tracemalloc_memory > 0
    # Same frame count again: nothing changes. Another count: refused, and says why.
    assert heap.start(3).frames == 3
    with pytest.raises(StateError, match="already tracing with 3 frame"):
        heap.start(5)
    assert tracemalloc.get_traceback_limit() == 3
    stopped = heap.stop()
    assert (stopped.tracing, stopped.frames, stopped.traced_current, stopped.top) == (False, 0, 0, ())
    assert not tracemalloc.is_tracing()
    assert heap.stop().tracing is False  # idempotent


@pytest.mark.parametrize("frames", [0, -1, 65, True, 2.0, "3"])
def test_start_rejects_bad_frame_counts(frames: object) -> None:
    with pytest.raises(InvalidRequestError):
        heap.start(frames)  # type: ignore[arg-type]
    assert not tracemalloc.is_tracing()


def test_status_top_sites_name_the_allocating_line() -> None:
    heap.start(1)
    keep: list[object] = []
    allocate(keep, 20_000)
    s = heap.status(5)
    assert s.traces > 20_000 and s.snapshot_seconds > 0
    assert s.traced_current > 20_000 * 200 and s.traced_peak >= s.traced_current
    first = s.top[0]
    assert (first.file, first.line) == (__file__, ALLOC_BIG)
    assert first.count >= 20_000 and "bytearray(200" in first.source
    assert first.traceback == ()
    # The console's own allocations and tracemalloc's are left out.
    for site in s.top:
        assert not site.file.startswith(heapdiff.DEFAULT_EXCLUDE_PREFIXES)
        assert site.file != tracemalloc.__file__
    assert s.excluded_traces > 0  # at least tracemalloc.py's Snapshot object
    text = to_text(s)
    assert "tracing, 1 frame(s)" in text and f"{__file__}:{ALLOC_BIG}" in text
    json.dumps(to_data(s))


def test_status_by_traceback_and_without_snapshot() -> None:
    heap.start(4)
    keep: list[object] = []
    allocate(keep, 10_000)
    s = heap.status(3, group_by="traceback")
    frames = s.top[0].traceback
    assert (frames[0].file, frames[0].line) == (__file__, ALLOC_BIG)  # most recent first
    assert any(
        f.line == test_status_by_traceback_and_without_snapshot.__code__.co_firstlineno + 3 for f in frames
    )
    assert f"    {__file__}:{ALLOC_BIG}" in to_text(s)  # frames indented under the row
    cheap = heap.status(0)
    assert (cheap.top, cheap.traces, cheap.snapshot_seconds) == ((), 0, 0.0)
    with pytest.raises(InvalidRequestError):
        heap.status(3, group_by="filename")
    with pytest.raises(InvalidRequestError):
        heap.status(-1)


def test_status_when_off_takes_no_snapshot() -> None:
    s = heap.status(10)
    assert (s.tracing, s.top, s.traces) == (False, (), 0)
    assert "off" in to_text(s)


# -- heapdiff against Snapshot.statistics / compare_to --------------------------------------


def workload_snapshots(frames: int) -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot, list[object]]:
    tracemalloc.start(frames)
    keep: list[object] = []
    allocate(keep, 2_000)
    base = tracemalloc.take_snapshot()
    churn(keep)
    allocate(keep, 500)
    other = tracemalloc.take_snapshot()
    return base, other, keep


@pytest.mark.parametrize("key", ["lineno", "traceback"])
def test_group_matches_statistics(key: str) -> None:
    base, _, _keep = workload_snapshots(5)
    ours = heapdiff.top_sites(heapdiff.group(base, key), 10)
    theirs = base.filter_traces(stdlib_filters()).statistics(key)[:10]
    assert [(s.file, s.line, s.size, s.count) for s in ours] == [
        (st.traceback[-1].filename, st.traceback[-1].lineno, st.size, st.count) for st in theirs
    ]
    if key == "traceback":
        assert [tuple((f.file, f.line) for f in reversed(s.traceback)) for s in ours] == [
            tuple((f.filename, f.lineno) for f in st.traceback) for st in theirs
        ]


@pytest.mark.parametrize("key", ["lineno", "traceback"])
def test_diff_matches_compare_to(key: str) -> None:
    base, other, _keep = workload_snapshots(5)
    d = heapdiff.diff(
        heapdiff.group(base, key), heapdiff.group(other, key), top=10, base_name="b", other_name="o"
    )
    filters = stdlib_filters()
    theirs = other.filter_traces(filters).compare_to(base.filter_traces(filters), key)[:10]
    assert [(r.file, r.line, r.size, r.size_diff, r.count, r.count_diff) for r in d.rows] == [
        (st.traceback[-1].filename, st.traceback[-1].lineno, st.size, st.size_diff, st.count, st.count_diff)
        for st in theirs
    ]
    if key == "traceback":
        assert [tuple((f.file, f.line) for f in reversed(r.traceback)) for r in d.rows] == [
            tuple((f.filename, f.lineno) for f in st.traceback) for st in theirs
        ]
    assert (d.base, d.other, d.key) == ("b", "o", key)
    # The churn freed one list of tuples and added lines: both directions show.
    assert any(r.size_diff < 0 for r in d.rows) and any(r.size_diff > 0 for r in d.rows)
    text = to_text(d)
    assert "size diff" in text and "b -> o" in text
    json.dumps(to_data(d))


def test_public_api_fallback_groups_the_same() -> None:
    base, _, _keep = workload_snapshots(3)
    raw = base.traces._traces  # type: ignore[attr-defined]
    # A Snapshot whose traces are a tuple, not the list of 3.11: the layout check refuses it.
    odd = tracemalloc.Snapshot(tuple(raw), base.traceback_limit)
    assert heapdiff._raw_traces(odd) is None
    assert heapdiff._raw_traces(base) is raw
    for key in ("lineno", "traceback"):
        assert heapdiff.group(odd, key).stats == heapdiff.group(base, key).stats


def test_exclusions_and_bad_arguments() -> None:
    base, other, _keep = workload_snapshots(1)
    everything = heapdiff.group(base, exclude_files=(), exclude_prefixes=())
    mine = heapdiff.group(base, exclude_files=(), exclude_prefixes=(__file__.rsplit("/", 1)[0],))
    assert mine.size + mine.excluded_size == everything.size
    assert (__file__, ALLOC_BIG) in {k[0] for k in everything.stats}
    assert (__file__, ALLOC_BIG) not in {k[0] for k in mine.stats}
    with pytest.raises(InvalidRequestError):
        heapdiff.group(base, "filename")
    with pytest.raises(InvalidRequestError):
        heapdiff.diff(heapdiff.group(base, "lineno"), heapdiff.group(other, "traceback"))
    with pytest.raises(InvalidRequestError):
        heapdiff.diff(everything, everything, top=0)


def test_the_console_is_excluded_but_not_the_host_side_demo() -> None:
    pkg = os.path.dirname(os.path.dirname(os.path.dirname(heapdiff.__file__)))

    def excluded(path: str) -> bool:
        return path in heapdiff.DEFAULT_EXCLUDE_FILES or path.startswith(
            tuple(p + os.sep for p in heapdiff.DEFAULT_EXCLUDE_PREFIXES)
        )

    assert excluded(heapdiff.__file__) and excluded(os.path.join(pkg, "console.py"))
    assert excluded(os.path.join(pkg, "transport", "http.py")) and excluded(tracemalloc.__file__)
    assert not excluded(os.path.join(pkg, "host", "demo.py"))
    assert not excluded(__file__)
