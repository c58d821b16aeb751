"""Fast grouping and diffing of tracemalloc snapshots.

``Snapshot.statistics`` and ``Snapshot.compare_to`` build a ``Traceback`` and a
``Statistic`` object per group and bump Python-level attributes once per trace. With
tracemalloc tracing — it must be, for there to be snapshots — every one of those
allocations is itself traced, so on millions of traces they take seconds. Here one pass over
the raw trace tuples appends each size to a list per traceback object (no new object per
trace: the sizes are the ints the snapshot already holds), and everything else — the
exclusion test, the group key, the sums — runs once per *distinct* traceback, of which
there are a few thousand. The result is the same as ``compare_to(..., 'lineno')`` on
snapshots filtered the same way, ties included.

Pure computation, run on whichever console thread asks (the dump worker, or the after-GC
thread of the snapshot store); nothing here touches tracemalloc's state.
"""

from __future__ import annotations

import heapq
import linecache
import os
import tracemalloc
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from opsconsole.errors import InvalidRequestError

RawFrame = tuple[str, int]
# As _tracemalloc hands them out: most recent frame FIRST (the public Traceback reverses).
RawTraceback = tuple[RawFrame, ...]
KeyType = Literal["lineno", "traceback"]
KEY_TYPES: tuple[KeyType, ...] = ("lineno", "traceback")
MAX_TOP = 1000

_UNKNOWN: RawFrame = ("<unknown>", 0)
# opsconsole/ itself: this file is opsconsole/diagnostics/allocations/diff.py
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Host-side programs shipped in the package (the demo app) are the host, not the console.
_HOST_SIDE = frozenset({"host"})


def _console_code() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The console's own directories and top-level modules: opsconsole minus ``host/``.

    Both the path as imported and its resolved form, since code objects keep the former and
    callers often pass the latter. Listed once at import; a package that cannot be listed
    (zip import) is excluded whole.
    """
    dirs: list[str] = []
    files: list[str] = []
    for root in dict.fromkeys((_PACKAGE_DIR, os.path.realpath(_PACKAGE_DIR))):
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            dirs.append(root)
            continue
        for entry in entries:
            if entry.name in _HOST_SIDE or entry.name == "__pycache__":
                continue
            if entry.is_dir():
                dirs.append(entry.path)
            elif entry.name.endswith(".py"):
                files.append(entry.path)
    return tuple(dirs), tuple(files)


# The console's own allocations (its grouping lists, pickling buffers, HTTP objects) and
# tracemalloc's own Python code are noise in every heap report.
DEFAULT_EXCLUDE_PREFIXES, _CONSOLE_FILES = _console_code()
DEFAULT_EXCLUDE_FILES: tuple[str, ...] = (*_CONSOLE_FILES, tracemalloc.__file__ or "tracemalloc.py")


@dataclass(frozen=True, slots=True)
class Frame:
    file: str
    line: int
    source: str


@dataclass(frozen=True, slots=True)
class Site:
    """One group of a snapshot: ``file:line`` is the most recent frame of the key."""

    file: str
    line: int
    size: int
    count: int
    traceback: tuple[Frame, ...]  # key "traceback" only; most recent frame first
    source: str


@dataclass(frozen=True, slots=True)
class DiffRow:
    file: str
    line: int
    size: int
    size_diff: int
    count: int
    count_diff: int
    traceback: tuple[Frame, ...]  # key "traceback" only; most recent frame first
    source: str


@dataclass(frozen=True, slots=True)
class HeapDiff:
    base: str
    other: str
    key: KeyType
    total_size_diff: int
    total_count_diff: int
    rows: tuple[DiffRow, ...]


@dataclass(frozen=True, slots=True)
class Grouped:
    """A snapshot grouped by ``key``: raw key (most recent frame first) → ``[size, count]``.

    The lists are built here and must not be changed afterwards. ``traces``/``size`` count
    what was kept, ``excluded_*`` what the exclusions dropped.
    """

    key: KeyType
    frames: int  # the snapshot's traceback limit
    stats: dict[RawTraceback, list[int]]
    traces: int
    size: int
    excluded_traces: int
    excluded_size: int


def check_key(key: str) -> KeyType:
    if key == "lineno":
        return "lineno"
    if key == "traceback":
        return "traceback"
    raise InvalidRequestError(f"key must be one of {', '.join(KEY_TYPES)}, not {key!r}")


def check_top(top: int, *, minimum: int = 1) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or not minimum <= top <= MAX_TOP:
        raise InvalidRequestError(f"top must be an integer from {minimum} to {MAX_TOP}, not {top!r}")
    return top


def group(
    snapshot: tracemalloc.Snapshot,
    key: str = "lineno",
    *,
    exclude_files: Collection[str] = DEFAULT_EXCLUDE_FILES,
    exclude_prefixes: Collection[str] = DEFAULT_EXCLUDE_PREFIXES,
) -> Grouped:
    """Group ``snapshot`` by its most recent frame (``lineno``) or whole ``traceback``.

    A trace is left out when its most recent frame's file is one of ``exclude_files`` or
    lies under one of the directories ``exclude_prefixes`` — the equivalent of
    ``Filter(False, file)`` / ``Filter(False, dir + "/*")``.
    """
    kind = check_key(key)
    files = frozenset(_normalize(f) for f in exclude_files)
    prefixes = tuple(p.rstrip(os.sep) + os.sep for p in exclude_prefixes)
    excluded: dict[str, bool] = {}  # per file name: tracebacks share a handful of files
    stats: dict[RawTraceback, list[int]] = {}
    traces = size = ex_traces = ex_size = 0
    for tb, sizes in _sizes_by_traceback(snapshot).items():
        n, total = len(sizes), sum(sizes)
        top = tb[0] if tb else _UNKNOWN
        drop = excluded.get(top[0])
        if drop is None:
            name = _normalize(top[0])
            drop = excluded[top[0]] = name in files or name.startswith(prefixes)
        if drop:
            ex_traces += n
            ex_size += total
            continue
        traces += n
        size += total
        k = tb if kind == "traceback" else tb[:1]  # compare_to's keys exactly, even for ()
        entry = stats.get(k)
        if entry is None:
            stats[k] = [total, n]
        else:
            entry[0] += total
            entry[1] += n
    return Grouped(kind, snapshot.traceback_limit, stats, traces, size, ex_traces, ex_size)


def diff(
    base: Grouped, other: Grouped, *, top: int = 20, base_name: str = "base", other_name: str = "other"
) -> HeapDiff:
    """What changed from ``base`` to ``other``, largest absolute size change first.

    The order is ``StatisticDiff``'s: |size diff|, size, |count diff|, count, then the
    traceback (oldest frame first) — so the rows are compare_to's rows.
    """
    if base.key != other.key:
        raise InvalidRequestError(f"cannot diff a {base.key!r} grouping against a {other.key!r} one")
    check_top(top)
    old = base.stats
    entries: list[tuple[int, int, int, int, RawTraceback]] = []
    for k, (size, count) in other.stats.items():
        prev = old.get(k)
        if prev is None:
            entries.append((size, size, count, count, k))
        else:
            entries.append((size, size - prev[0], count, count - prev[1], k))
    new = other.stats
    entries.extend((0, -size, 0, -count, k) for k, (size, count) in old.items() if k not in new)
    best = heapq.nlargest(top, entries, key=lambda e: (abs(e[1]), e[0], abs(e[3]), e[2], e[4][::-1]))
    full = base.key == "traceback"
    rows = tuple(
        DiffRow(
            *_where(k), size, size_diff, count, count_diff, _frames(k) if full else (), _source(*_where(k))
        )
        for size, size_diff, count, count_diff, k in best
    )
    return HeapDiff(base_name, other_name, base.key, other.size - base.size, other.traces - base.traces, rows)


def top_sites(grouped: Grouped, top: int = 10) -> tuple[Site, ...]:
    """The ``top`` largest groups, in ``Snapshot.statistics`` order (size, count, traceback)."""
    check_top(top)
    best = heapq.nlargest(top, grouped.stats.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0][::-1]))
    full = grouped.key == "traceback"
    return tuple(
        Site(*_where(k), size, count, _frames(k) if full else (), _source(*_where(k)))
        for k, (size, count) in best
    )


def _where(k: RawTraceback) -> RawFrame:
    return k[0] if k else _UNKNOWN


def _frames(k: RawTraceback) -> tuple[Frame, ...]:
    return tuple(Frame(f, n, _source(f, n)) for f, n in k)


def _source(file: str, line: int) -> str:
    # linecache may read the file from disk; fine on a console thread, and only per row.
    return linecache.getline(file, line).strip()


def _normalize(filename: str) -> str:
    # What tracemalloc.Filter compares: normcase, and a .pyc counts as its .py.
    filename = os.path.normcase(filename)
    return filename[:-1] if filename.endswith(".pyc") else filename


def _sizes_by_traceback(snapshot: tracemalloc.Snapshot) -> dict[RawTraceback, list[Any]]:
    """Traceback → the sizes of its traces, in one pass that creates no object per trace."""
    acc: dict[RawTraceback, list[Any]] = {}
    get = acc.get
    raw = _raw_traces(snapshot)
    if raw is not None:
        # _tracemalloc shares one tuple per distinct traceback among its traces, so the
        # dict lookups mostly hit by identity.
        for _domain, size, tb, _total_nframe in raw:
            sizes = get(tb)
            if sizes is None:
                acc[tb] = [size]
            else:
                sizes.append(size)
        return acc
    # Public API: slower (a Trace, Traceback and Frames per trace) but always right.
    for trace in snapshot.traces:
        tb = tuple((f.filename, f.lineno) for f in reversed(trace.traceback))
        sizes = get(tb)
        if sizes is None:
            acc[tb] = [trace.size]
        else:
            sizes.append(trace.size)
    return acc


def _raw_traces(snapshot: tracemalloc.Snapshot) -> list[Any] | None:
    """``snapshot.traces._traces`` if it has the layout of CPython 3.11, else None.

    Each item is ``(domain, size, traceback, total_nframe)`` with the traceback's frames
    most recent first. The first trace is checked against the public API, so a change of
    layout or frame order in a later Python falls back instead of grouping wrongly.
    """
    raw = getattr(snapshot.traces, "_traces", None)
    if not isinstance(raw, list):
        return None
    if not raw:
        return raw
    first = raw[0]
    if not (isinstance(first, tuple) and len(first) == 4 and isinstance(first[2], tuple)):
        return None
    public = snapshot.traces[0]
    frames = tuple((f.filename, f.lineno) for f in reversed(public.traceback))
    if public.size != first[1] or frames != first[2]:
        return None
    return raw
