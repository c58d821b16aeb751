"""Text rendering of the tracemalloc results: tracing status, snapshots and diffs.

Pure formatting of finished results, on whichever thread renders (IO loop, CLI, REPL).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opsconsole.diagnostics.allocations.diff import Frame, HeapDiff, Site
from opsconsole.diagnostics.allocations.snapshots import SnapshotInfo, SnapshotList, SnapshotTop
from opsconsole.diagnostics.allocations.tracing import HeapStatus
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import human_bytes, table


@text_renderer(HeapStatus)
def heap_status_text(s: HeapStatus) -> str:
    if not s.tracing:
        head = "tracemalloc: off (start it with a frame count; 1 frame slows allocation-heavy code 5-8x)\n"
    else:
        head = f"tracemalloc: tracing, {s.frames} frame(s) per traceback\n"
    head += (
        f"traced: {human_bytes(s.traced_current)} now, {human_bytes(s.traced_peak)} peak; "
        f"tracemalloc's own memory: {human_bytes(s.tracemalloc_memory)}\n"
    )
    if not s.top:
        return head
    head += (
        f"\ntop {len(s.top)} allocation sites by {s.group_by} ({s.traces:,} traces, "
        f"{s.excluded_traces:,} of the console's own left out; snapshot {s.snapshot_seconds:.2f} s)\n"
    )
    return head + _sites_text(s.top)


@text_renderer(SnapshotInfo)
def snapshot_info_text(info: SnapshotInfo) -> str:
    return _snapshots_table([info])


@text_renderer(SnapshotList)
def snapshot_list_text(listing: SnapshotList) -> str:
    head = (
        f"{len(listing.snapshots)} snapshot(s) of at most {listing.max_count}; "
        f"{human_bytes(listing.file_bytes)} on disk of at most {human_bytes(listing.max_bytes)}\n"
    )
    return head + (_snapshots_table(listing.snapshots) if listing.snapshots else "")


@text_renderer(SnapshotTop)
def snapshot_top_text(top: SnapshotTop) -> str:
    head = f"snapshot {top.name}: {top.traces:,} traces, {human_bytes(top.traced_bytes)}\n"
    return head + f"top {len(top.sites)} allocation sites by {top.key}\n" + _sites_text(top.sites)


@text_renderer(HeapDiff)
def heap_diff_text(d: HeapDiff) -> str:
    head = (
        f"heap diff {d.base} -> {d.other} by {d.key}: {_signed_bytes(d.total_size_diff)}, "
        f"{d.total_count_diff:+,} blocks\n"
    )
    rows = [
        (
            _signed_bytes(r.size_diff),
            f"{r.count_diff:+,}",
            human_bytes(r.size),
            f"{r.count:,}",
            _site(r.file, r.line),
            r.source,
        )
        for r in d.rows
    ]
    text = table(["size diff", "count diff", "size", "count", "site", "source"], rows, right=(0, 1, 2, 3))
    return head + _with_frames(text, [r.traceback for r in d.rows])


def _sites_text(sites: Sequence[Site]) -> str:
    rows = [
        (human_bytes(t.size), f"{t.count:,}", _avg(t.size, t.count), _site(t.file, t.line), t.source)
        for t in sites
    ]
    text = table(["size", "count", "avg", "site", "source"], rows, right=(0, 1, 2))
    return _with_frames(text, [t.traceback for t in sites])


def _snapshots_table(infos: Sequence[SnapshotInfo]) -> str:
    rows = [
        (
            i.name,
            i.state + (" (after gc)" if i.after_gc else ""),
            _when(i.taken_at if i.taken_at is not None else i.requested_at),
            f"{i.traces:,}" if i.state == "ready" else "",
            human_bytes(i.traced_bytes) if i.state == "ready" else "",
            human_bytes(i.file_bytes) if i.state == "ready" else "",
            str(i.frames) if i.state == "ready" else "",
        )
        for i in infos
    ]
    return table(
        ["name", "state", "taken (requested)", "traces", "traced", "file", "frames"], rows, right=(3, 4, 5, 6)
    )


def _with_frames(text: str, tracebacks: Sequence[tuple[Frame, ...]]) -> str:
    """Put each row's frames, indented, under its table line (key 'traceback' only)."""
    if not any(tracebacks):
        return text
    lines = text.splitlines()
    out = lines[:2]  # header and rule
    for line, frames in zip(lines[2:], tracebacks, strict=False):
        out.append(line)
        out.extend(f"    {_site(f.file, f.line)}  {f.source}".rstrip() for f in frames)
    return "\n".join(out) + "\n"


def _site(file: str, line: int) -> str:
    return f"{file}:{line}"


def _avg(size: int, count: int) -> str:
    return human_bytes(size / count) if count else ""


def _signed_bytes(n: int) -> str:
    return ("+" if n > 0 else "") + human_bytes(n)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
