"""Text rendering of the leak report: the verdict line, then the growth table and the sites.

Pure formatting of a frozen result; runs on whichever thread prints (console IO loop, CLI, REPL).
The history (the dashboard's chart data) is left out of the text.
"""

from __future__ import annotations

import time

from opsconsole.diagnostics.leaks.report import LeakReport
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import human_bytes, table

SHOWN = 15
_VERDICT = {
    "leak": "LEAK",
    "no_leak": "no leak",
}


def _rate(bytes_per_min: float) -> str:
    return ("+" if bytes_per_min > 0 else "") + human_bytes(bytes_per_min) + "/min"


@text_renderer(LeakReport)
def leaks_text(r: LeakReport) -> str:
    if r.started_at is None:
        return "leak detector: never started (POST /ops/leaks/start, or ops.leaks_start())\n"
    state = f"running every {r.interval:g} s" if r.running else "stopped"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
    lines = [
        f"leak detector: {state}, since {since}; {r.samples} samples ({r.sample_seconds * 1000:.0f} ms each)",
        (
            f"verdict: not enough samples yet ({r.samples} of {r.needed})"
            if r.verdict == "insufficient_data"
            else f"verdict: {_VERDICT[r.verdict]} (confidence {r.confidence:.3f})"
        ),
        f"rss: {_rate(r.rss_bytes_per_min)}"
        + ("" if r.traced_bytes_per_min is None else f"; traced: {_rate(r.traced_bytes_per_min)}"),
    ]
    out = "\n".join(lines) + "\n"
    growing = [g for g in r.growth if g.objects_per_min > 0 or g.leaking][:SHOWN]
    if growing:
        rows = [
            (
                g.type,
                f"{g.objects_per_min:+,.1f}",
                _rate(g.bytes_per_min),
                f"{g.confidence:.3f}",
                "LEAK" if g.leaking else "",
            )
            for g in growing
        ]
        out += "\n" + table(("type", "objects/min", "bytes/min", "confidence", ""), rows, right=(1, 2, 3))
    elif r.samples:
        out += "\nno tracked type grows\n"
    if r.sites:
        sites = [(f"{s.file}:{s.line}", _rate(s.bytes_per_min)) for s in r.sites]
        out += "\nallocation sites (tracemalloc):\n" + table(("site", "bytes/min"), sites, right=(1,))
    return out
