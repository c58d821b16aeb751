"""heapdiff's group + diff vs tracemalloc's ``compare_to``, side by side in one run.

A generated workload (many files, a few hundred distinct allocating lines, called a few
frames deep) keeps ~1.2 M traced blocks alive, the base snapshot is taken, more blocks are
allocated and some freed, and the other snapshot is taken. Then, with tracemalloc still
tracing (as it is in a host that takes snapshots), median of N runs each:

* ours:   ``group(base) + group(other) + diff(...)`` from the two Snapshot objects — both
          groupings included, and our exclusion of the console's/tracemalloc's own traces
          is part of ``group``;
* theirs: ``other_f.compare_to(base_f, 'lineno')`` on snapshots filtered once beforehand with
          the same exclusions as ``tracemalloc.Filter``s. The filtering time is NOT counted on
          their side (it is printed separately); that favours compare_to. filter_traces
          itself would take minutes here, so the filtered snapshots are made by an equivalent
          per-file-name filter, checked against filter_traces on a 100k-trace slice.

The top 10 rows must agree (file, line, size diff, count diff). A host thread ticking every
1 ms measures the longest stall during take_snapshot, grouping, diff and store.take.

    .venv/bin/python bench/heapdiff.py [--traces 1200000] [--frames 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import linecache
import os
import pickle
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from opsconsole.diagnostics.allocations import diff as heapdiff
from opsconsole.diagnostics.allocations.snapshots import SnapshotStore
from opsconsole.diagnostics.render import to_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from testkit.ticker import Ticker

T = TypeVar("T")
FILES, FUNCS_PER_FILE, DEPTH = 8, 40, 6
SLICE = 100_000
TEMPLATES = (
    "keep.append([(k, {j}) for k in range(n)])",
    "keep.append(['f{i}l{j}-%d' % k for k in range(n)])",
    "keep.append([bytearray({size}) for k in range(n)])",
    "keep.append([[k] for k in range(n)])",
    "keep.append({{k: None for k in range(n)}})",
)


def generate() -> list[Callable[[int, list[Any]], None]]:
    """FILES×FUNCS_PER_FILE functions, each allocating on its own line, in distinct files."""
    funcs: list[Callable[[int, list[Any]], None]] = []
    for i in range(FILES):
        lines = []
        for j in range(FUNCS_PER_FILE):
            body = TEMPLATES[j % len(TEMPLATES)].format(i=i, j=j, size=16 + j % 7 * 8)
            lines += [f"def alloc_{j}(n, keep):", f"    {body}", ""]
        # DEPTH nested callers, so that tracebacks have somewhere to go with --frames > 1.
        lines += [
            "def call(fn, n, keep, depth):",
            "    if depth:",
            "        return call(fn, n, keep, depth - 1)",
        ]
        lines += ["    return fn(n, keep)", ""]
        src = "\n".join(lines)
        name = f"<heapdiff-bench-{i}>"
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)  # source lines in the output
        ns: dict[str, Any] = {}
        exec(compile(src, name, "exec"), ns)  # noqa: S102 — our own generated workload
        funcs += [functools.partial(ns["call"], ns[f"alloc_{j}"], depth=DEPTH) for j in range(FUNCS_PER_FILE)]
    return funcs


def build(
    args: argparse.Namespace, ticker: Ticker
) -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot, list[Any]]:
    funcs = generate()
    per_call = max(1, args.traces * 2 // (len(funcs) * 3))  # ~1.5 live traced blocks per element
    tracemalloc.start(args.frames)
    keep: list[Any] = []
    t0 = time.perf_counter()
    for fn in funcs:
        fn(per_call, keep)
    print(
        f"workload: {len(funcs)} allocating lines in {FILES} files, {args.frames} frame(s), "
        f"{time.perf_counter() - t0:.1f} s to allocate"
    )
    base, base_s, base_stall = ticker.measure(tracemalloc.take_snapshot)
    for k, fn in enumerate(funcs):  # more blocks on a third of the lines, a few lists freed
        if k % 3 == 0:
            fn(per_call, keep)
    for k in range(0, len(keep), 11):
        keep[k] = None
    other, other_s, other_stall = ticker.measure(tracemalloc.take_snapshot)
    print(f"traces: base {len(base.traces):,}, other {len(other.traces):,}")
    print(
        f"take_snapshot: {base_s:.2f} s / {other_s:.2f} s, longest host-thread stall "
        f"{max(base_stall, other_stall) * 1000:.0f} ms (one C call holding the GIL)"
    )
    return base, other, keep


def compare(
    args: argparse.Namespace, ticker: Ticker, base: tracemalloc.Snapshot, other: tracemalloc.Snapshot
) -> bool:
    filters: list[tracemalloc.Filter | tracemalloc.DomainFilter] = [
        tracemalloc.Filter(False, f) for f in heapdiff.DEFAULT_EXCLUDE_FILES
    ]
    filters += [tracemalloc.Filter(False, p + "/*") for p in heapdiff.DEFAULT_EXCLUDE_PREFIXES]
    base_f, other_f = same_as_filter_traces(base, filters), same_as_filter_traces(other, filters)
    # filter_traces itself (an fnmatch per filter per trace) takes minutes on these
    # snapshots: time it on a slice, check it agrees, and extrapolate.
    part = tracemalloc.Snapshot(base.traces._traces[:SLICE], base.traceback_limit)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    slow = part.filter_traces(filters)
    filter_s = (time.perf_counter() - t0) * (len(base.traces) + len(other.traces)) / SLICE
    assert slow.traces._traces == same_as_filter_traces(part, filters).traces._traces  # type: ignore[attr-defined]
    print(f"filter_traces (both, their side, not counted below): ~{filter_s:.0f} s (from {SLICE:,} traces)")

    def ours() -> heapdiff.HeapDiff:
        return heapdiff.diff(
            heapdiff.group(base), heapdiff.group(other), top=10, base_name="base", other_name="other"
        )

    def theirs() -> list[tracemalloc.StatisticDiff]:
        return other_f.compare_to(base_f, "lineno")

    ours_t, theirs_t, stalls, loop_stalls = [], [], [], []
    for _ in range(args.runs):
        diff, o_s, o_stall = ticker.measure(ours)
        stats, t_s, _ = ticker.measure(theirs)
        ours_t.append(o_s)
        theirs_t.append(t_s)
        stalls.append(o_stall)
        # Reference: any pure-Python loop of that length (GIL switch interval, other load).
        loop_stalls.append(ticker.measure(functools.partial(busy, o_s))[2])
    ours_top = [(r.file, r.line, r.size_diff, r.count_diff) for r in diff.rows]
    their_top = [
        (s.traceback[0].filename, s.traceback[0].lineno, s.size_diff, s.count_diff) for s in stats[:10]
    ]
    ours_med, theirs_med = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"ours   group×2 + diff: median {ours_med:.3f} s  ({', '.join(f'{t:.3f}' for t in ours_t)})")
    print(f"theirs compare_to:     median {theirs_med:.3f} s  ({', '.join(f'{t:.3f}' for t in theirs_t)})")
    print(
        f"ratio: {theirs_med / ours_med:.1f}× faster (goal ≥ 5×); "
        f"with their filtering counted: {(theirs_med + filter_s) / ours_med:.1f}×"
    )
    print(f"top 10 agree with compare_to: {ours_top == their_top}")
    print(
        f"longest host-thread stall during group×2 + diff: {_ms(stalls)} (goal ≤ 50 ms); "
        f"during a pure-Python loop as long: {_ms(loop_stalls)}"
    )
    print()
    print(to_text(diff), end="")
    return ours_top == their_top


def same_as_filter_traces(
    snapshot: tracemalloc.Snapshot, filters: list[tracemalloc.Filter | tracemalloc.DomainFilter]
) -> tracemalloc.Snapshot:
    """``snapshot.filter_traces(filters)`` for exclusive, most-recent-frame Filters, decided
    once per file name instead of once per trace."""
    patterns = [f.filename_pattern for f in filters if isinstance(f, tracemalloc.Filter)]
    assert all(isinstance(f, tracemalloc.Filter) and not f.inclusive and not f.all_frames for f in filters)
    names: dict[str, bool] = {}
    kept = []
    for trace in snapshot.traces._traces:  # type: ignore[attr-defined]
        name = trace[2][0][0]
        keep = names.get(name)
        if keep is None:
            norm = os.path.normcase(name)
            norm = norm[:-1] if norm.endswith(".pyc") else norm
            keep = names[name] = not any(fnmatch.fnmatch(norm, p) for p in patterns)
        if keep:
            kept.append(trace)
    return tracemalloc.Snapshot(kept, snapshot.traceback_limit)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _ms(stalls: list[float]) -> str:
    return f"median {statistics.median(stalls) * 1000:.0f} ms, max {max(stalls) * 1000:.0f} ms"


def write_pickle(ticker: Ticker, snapshot: tracemalloc.Snapshot) -> None:
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "plain.pickle", "wb") as fh:
        _, dump_s, dump_stall = ticker.measure(lambda: pickle.dump(snapshot, fh, pickle.HIGHEST_PROTOCOL))
    print(f"pickle.dump of 'other' to a file: {dump_s:.2f} s, longest stall {dump_stall * 1000:.0f} ms")


def store_take(ticker: Ticker) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SnapshotStore(Path(tmp) / "snaps", max_bytes=4 << 30)
        info, take_s, take_stall = ticker.measure(lambda: store.take("other"))
        print(
            f"store.take (take_snapshot + pickle + fsync + group): {take_s:.2f} s, "
            f"{info.file_bytes / 2**20:.0f} MiB file, longest stall {take_stall * 1000:.0f} ms"
        )
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=1_200_000, help="live traced blocks in the base snapshot")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    started = time.perf_counter()
    ticker = Ticker()
    idle = ticker.measure(lambda: time.sleep(0.3))[2]
    load = os.getloadavg()[0]
    print(f"host-thread stall with the main thread idle: {idle * 1000:.1f} ms; load average {load:.1f}")
    base, other, keep = build(args, ticker)
    agree = compare(args, ticker, base, other)
    del base
    write_pickle(ticker, other)
    del other  # room for the store's own snapshot
    store_take(ticker)
    ticker.stop()
    tracemalloc.stop()
    print(f"total bench time {time.perf_counter() - started:.0f} s ({len(keep)} lists kept)")
    if not agree:
        raise SystemExit("top 10 rows differ from compare_to")


if __name__ == "__main__":
    main()
