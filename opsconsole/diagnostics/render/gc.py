"""Text rendering of the gc results: a table of generations, then the pause histogram with one
column per generation. Pure string work, any thread."""

from __future__ import annotations

import time

from opsconsole.diagnostics.gcstats import GcInfo, PauseBucket
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import table


def _label(b: PauseBucket) -> str:
    return f"< {b.below_ms:g} ms" if b.below_ms is not None else f">= {b.from_ms:g} ms"


def _ms(value: float) -> str:
    return f"{value:.3f}"


@text_renderer(GcInfo)
def _(r: GcInfo) -> str:
    head = (
        f"gc {'enabled' if r.enabled else 'DISABLED'}; frozen objects: {r.frozen}; "
        f"gc.garbage: {r.garbage} object{'s' if r.garbage != 1 else ''}"
    )
    lines = [head]
    if r.garbage_types:
        more = f" (first {len(r.garbage_types)})" if r.garbage > len(r.garbage_types) else ""
        lines.append(f"garbage types{more}: {', '.join(r.garbage_types)}")
    rows = []
    for g in r.generations:
        i = g.generation
        count = r.counts[i] if i < len(r.counts) else ""
        threshold = r.thresholds[i] if i < len(r.thresholds) else ""
        rows.append((i, count, threshold, g.collections, g.collected, g.uncollectable))
    out = "\n".join(lines) + "\n\n"
    out += table(
        ("gen", "count", "threshold", "collections", "collected", "uncollectable"),
        rows,
        right=(0, 1, 2, 3, 4, 5),
    )
    if not r.pause_monitor:
        return out + "\npause monitor: off\n"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.pauses_since)) if r.pauses_since else "?"
    out += f"\npauses since {since}:\n"
    gens = r.pauses
    hist: list[list[object]] = []
    if gens:
        for n, bucket in enumerate(gens[0].buckets):
            hist.append([_label(bucket), *(g.buckets[n].count for g in gens)])
    hist.append(["collections", *(g.collections for g in gens)])
    hist.append(["total ms", *(_ms(g.total_ms) for g in gens)])
    hist.append(["max ms", *(_ms(g.max_ms) for g in gens)])
    hist.append(["mean ms", *(_ms(g.total_ms / g.collections) if g.collections else "-" for g in gens)])
    headers = ("pause", *(f"gen {g.generation}" for g in gens))
    return out + table(headers, hist, right=tuple(range(1, len(headers))))
