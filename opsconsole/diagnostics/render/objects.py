"""Text rendering of the objects results: census, growth (as objgraph's show_growth) and refchain.

Pure formatting of frozen results; runs on whichever thread prints (console IO loop, CLI, REPL).
"""

from __future__ import annotations

import time

from opsconsole.diagnostics.objects.census import Census
from opsconsole.diagnostics.objects.growth import Growth
from opsconsole.diagnostics.objects.refchain import RefChain
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import human_bytes, table


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


@text_renderer(Census)
def census_text(c: Census) -> str:
    size = f", {human_bytes(c.total_size)} shallow" if c.sized else ""
    head = (
        f"{c.total_objects:,} GC-tracked objects{size}, {c.distinct_types:,} types"
        f" — taken {_when(c.taken_at)} in {c.elapsed:.2f} s\n"
    )
    if c.sized:
        rows = [(t.name, f"{t.count:,}", human_bytes(t.size)) for t in c.types]
        return head + table(("type", "count", "size"), rows, right=(1, 2))
    return head + table(("type", "count"), [(t.name, f"{t.count:,}") for t in c.types], right=(1,))


@text_renderer(Growth)
def growth_text(g: Growth) -> str:
    head = f"growth since {g.since} — taken {_when(g.taken_at)}\n"
    if not g.rows:
        return head + "no type grew\n"
    rows = [
        (
            r.name,
            f"{r.count:,}",
            f"+{r.delta:,}",
            ("+" if r.size_delta > 0 else "") + human_bytes(r.size_delta),
        )
        for r in g.rows
    ]
    return head + table(("type", "count", "delta", "size delta"), rows, right=(1, 2, 3))


@text_renderer(RefChain)
def refchain_text(r: RefChain) -> str:
    stats = f"{r.visited:,} objects visited in {r.elapsed:.2f} s"
    if not r.found:
        why = {
            "not_reachable": "no instance is reachable from the roots",
            "depth_limit": "stopped at the depth limit",
            "time_limit": "stopped at the time limit",
            "heap_changed": "the chain changed while it was traced; try again",
        }.get(r.reason, r.reason)
        return f"no reference chain to {r.target_type}: {why} ({stats})\n"
    lines = [
        f"shortest reference chain to {r.target_type} ({len(r.steps) - 1} links; {stats})",
        f"root: {r.root}",
    ]
    for n, step in enumerate(r.steps):
        detail = ", ".join(p for p in (step.summary, human_bytes(step.size)) if p)
        label = "  " if n == 0 else f"  → {step.label}  "
        lines.append(f"{label}{step.type_name} ({detail})")
    return "\n".join(lines) + "\n"
