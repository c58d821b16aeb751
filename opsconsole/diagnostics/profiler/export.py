"""Exports of a ``CpuProfile`` for flame graph tools. Pure functions; any thread.

* ``collapsed``: Brendan Gregg's folded stacks, one ``thread;root;...;leaf COUNT`` line per
  distinct stack, as flamegraph.pl, inferno and speedscope read them.
* ``speedscope``: speedscope's own JSON file format (``sampled`` profiles, one per thread).

Both are re-exported by ``profiler`` (``profiler.collapsed``, ``profiler.speedscope``).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for annotations: ``profiler`` re-exports these functions, so a runtime import
    # back would be a cycle.
    from opsconsole.diagnostics.profiler.sampler import CpuProfile, ProfileFrame

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def function_name(frame: ProfileFrame) -> str:
    """'package.module.Class.method' (just the qualname when the module is unknown)."""
    return f"{frame.module}.{frame.function}" if frame.module else frame.function


def frame_label(frame: ProfileFrame) -> str:
    """'package.module.func (file:line)', the name used by the text and collapsed outputs."""
    return f"{function_name(frame)} ({frame.file}:{frame.line})"


def _folded(text: str) -> str:
    # ';' separates frames and a newline ends a stack in the folded format: neither may
    # appear inside a name (exotic file paths, thread names set by the host).
    return text.replace(";", ",").replace("\r", " ").replace("\n", " ")


def collapsed(profile: CpuProfile) -> str:
    """Folded stacks, root first, sorted; counts of stacks that fold to the same line are added."""
    labels = [_folded(frame_label(f)) for f in profile.frames]
    lines: dict[str, int] = {}
    for s in profile.stacks:
        # The line must not start with a space (readers split the count off the last space).
        thread = _folded(s.thread).strip() or "?"
        key = ";".join([thread, *(labels[i] for i in s.frames)])
        lines[key] = lines.get(key, 0) + s.count
    return "".join(f"{stack} {count}\n" for stack, count in sorted(lines.items()))


def _exporter() -> str:
    try:
        return f"opsconsole {metadata.version('opsconsole')}"
    except metadata.PackageNotFoundError:
        return "opsconsole"


def speedscope(profile: CpuProfile) -> dict[str, Any]:
    """A speedscope file (https://www.speedscope.app/file-format-schema.json) as a JSON-able dict.

    One ``sampled`` profile per thread, in seconds: each distinct stack is one sample whose
    weight is its tick count times the measured time per tick, so the left-heavy and sandwich
    views are exact while the time-order view groups equal stacks instead of replaying them.
    """
    per_tick = profile.elapsed / profile.ticks if profile.ticks else profile.interval
    labels = [frame_label(f) for f in profile.frames]
    threads: dict[str, list[tuple[tuple[int, ...], int]]] = {}
    for s in profile.stacks:
        threads.setdefault(s.thread, []).append((s.frames, s.count))
    profiles: list[dict[str, Any]] = []
    for thread in sorted(threads):
        # Group equal prefixes next to each other, as a flame graph would draw them.
        stacks = sorted(threads[thread], key=lambda fc: [labels[i] for i in fc[0]])
        weights = [count * per_tick for _, count in stacks]
        profiles.append(
            {
                "type": "sampled",
                "name": thread,
                "unit": "seconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": [list(frames) for frames, _ in stacks],
                "weights": weights,
            }
        )
    busiest = max(range(len(profiles)), key=lambda i: profiles[i]["endValue"], default=0)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {
            "frames": [{"name": function_name(f), "file": f.file, "line": f.line} for f in profile.frames]
        },
        "profiles": profiles,
        "name": f"opsconsole profile: {profile.elapsed:.1f} s every {profile.interval * 1000:g} ms",
        "activeProfileIndex": busiest,
        "exporter": _exporter(),
    }
