"""Text rendering of a CpuProfile: the top functions by own (self) and by inclusive (total) samples,
as tables, like ``py-spy top`` frozen at the end of the window. Pure; any thread."""

from __future__ import annotations

import time

from opsconsole.diagnostics.profiler.export import frame_label
from opsconsole.diagnostics.profiler.sampler import CpuProfile
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import table

TOP = 20


def _ranked(profile: CpuProfile) -> tuple[dict[int, int], dict[int, int]]:
    """(self samples, inclusive samples) per frame index; recursion counts once per stack."""
    own: dict[int, int] = {}
    total: dict[int, int] = {}
    for s in profile.stacks:
        if s.frames:
            own[s.frames[-1]] = own.get(s.frames[-1], 0) + s.count
        for i in set(s.frames):
            total[i] = total.get(i, 0) + s.count
    return own, total


def _top(profile: CpuProfile, counts: dict[int, int], title: str, column: str) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    n = profile.samples or 1
    rows = [(f"{100 * c / n:.1f}", c, frame_label(profile.frames[i])) for i, c in ranked]
    return f"{title}\n" + table((column, "samples", "function"), rows, right=(0, 1))


def _effective(r: CpuProfile) -> str:
    # A CPU-bound host hands the GIL to the sampler only every switch interval (5 ms by
    # default), so the real tick spacing can be longer than asked: say so when it is.
    if not r.ticks:
        return ""
    actual = r.elapsed / r.ticks
    return f" (effectively {actual * 1000:.1f} ms)" if actual > 1.2 * r.interval else ""


@text_renderer(CpuProfile)
def _(r: CpuProfile) -> str:
    threads = len({s.thread for s in r.stacks})
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
    head = (
        f"Profile from {started}: {r.elapsed:.2f} s every {r.interval * 1000:g} ms{_effective(r)}, "
        f"{r.ticks} ticks, {r.samples} samples, {threads} thread{'s' if threads != 1 else ''}, "
        f"{len(r.stacks)} distinct stacks\n"
    )
    if not r.samples:
        return head + "(no samples)\n"
    own, total = _ranked(r)
    return "\n".join(
        [
            head,
            _top(r, own, f"Top {min(TOP, len(own))} leaf functions (own samples):", "self %"),
            _top(r, total, f"Top {min(TOP, len(total))} functions including callees:", "total %"),
        ]
    )
