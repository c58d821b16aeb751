"""Text rendering of the process results: one key/value table. Pure string work, any thread."""

from __future__ import annotations

import time

from opsconsole.diagnostics.process import ProcessInfo
from opsconsole.diagnostics.render.registry import text_renderer
from opsconsole.diagnostics.render.table import human_bytes, table


def _duration(seconds: float) -> str:
    """93784.5 → '1d 2h 3m 4s'; under a minute with a decimal: '4.2s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{s}s")
    return " ".join(parts)


def _maybe_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{human_bytes(n)} ({n} B)"


@text_renderer(ProcessInfo)
def _(r: ProcessInfo) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(r.started_at))
    uptime = _duration(r.uptime_seconds)
    if r.uptime_source != "proc":
        uptime += " (since opsconsole was imported)"
    rows: list[tuple[str, object]] = [
        ("pid", r.pid),
        ("python", f"{r.python_implementation} {r.python_version}"),
        ("executable", r.executable),
        ("platform", r.platform),
        ("started", started),
        ("uptime", uptime),
        ("rss", _maybe_bytes(r.rss_bytes)),
        ("peak rss", _maybe_bytes(r.peak_rss_bytes)),
        ("cpu user", f"{r.cpu_user_seconds:.2f} s"),
        ("cpu system", f"{r.cpu_system_seconds:.2f} s"),
        ("open fds", "n/a" if r.open_fds is None else r.open_fds),
        ("threads", r.threads if r.native_threads is None else f"{r.threads} ({r.native_threads} native)"),
        ("modules loaded", r.modules_loaded),
    ]
    return table(("key", "value"), rows)
