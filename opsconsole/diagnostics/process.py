"""Process facts: pid, interpreter, uptime, memory, CPU, descriptors, threads, modules.

Read from ``/proc`` on Linux, with portable fallbacks elsewhere. Cheap (a few small file
reads), so it may run on the console's IO loop thread as well as on the dump worker.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Off Linux the process start time is unknown; the moment opsconsole's diagnostics were
# imported (normally at host start-up) is the best lower bound we have.
_IMPORTED_AT = time.time()
_IMPORTED_MONOTONIC = time.monotonic()

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """``uptime_source`` is 'proc' (exact, from the kernel) or 'import' (since opsconsole was
    imported: a lower bound). Memory figures are None where the platform does not tell."""

    pid: int
    python_version: str
    python_implementation: str
    executable: str
    platform: str
    started_at: float
    uptime_seconds: float
    uptime_source: str
    rss_bytes: int | None
    peak_rss_bytes: int | None
    cpu_user_seconds: float
    cpu_system_seconds: float
    open_fds: int | None
    threads: int
    native_threads: int | None
    modules_loaded: int


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _start_ticks(proc: Path) -> int | None:
    """Field 22 of /proc/self/stat (start time in clock ticks after boot)."""
    stat = _read(proc / "self" / "stat")
    if stat is None:
        return None
    # Field 2 is the command name in parentheses and may itself contain spaces or ')':
    # the fields that follow start after the *last* ')', at field 3.
    rest = stat.rpartition(")")[2].split()
    try:
        return int(rest[22 - 3])
    except (IndexError, ValueError):
        return None


def _boot_time(proc: Path) -> int | None:
    stat = _read(proc / "stat")
    for line in (stat or "").splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _since_boot(proc: Path) -> float | None:
    text = _read(proc / "uptime")
    try:
        return float(text.split()[0]) if text else None
    except (IndexError, ValueError):
        return None


def _uptime(proc: Path) -> tuple[float, float, str]:
    """(started_at epoch, uptime seconds, source)."""
    ticks = _start_ticks(proc)
    btime = _boot_time(proc)
    if ticks is not None and btime is not None:
        started_after_boot = ticks / os.sysconf("SC_CLK_TCK")
        started_at = btime + started_after_boot
        # /proc/uptime counts from the same boot as the start ticks and, unlike btime (whole
        # seconds, wall clock), is precise and immune to clock steps: prefer it for the age.
        since_boot = _since_boot(proc)
        uptime = since_boot - started_after_boot if since_boot is not None else time.time() - started_at
        return started_at, max(0.0, uptime), "proc"
    return _IMPORTED_AT, time.monotonic() - _IMPORTED_MONOTONIC, "import"


def _status(proc: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (_read(proc / "self" / "status") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def _kib(value: str | None) -> int | None:
    """'123456 kB' → bytes."""
    if not value:
        return None
    number, _, unit = value.partition(" ")
    try:
        return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    except ValueError:
        return None


def _peak_rss_fallback() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and the BSDs but in bytes on macOS.
    return peak if sys.platform == "darwin" else peak * 1024


def _open_fds(proc: Path) -> int | None:
    try:
        return len(os.listdir(proc / "self" / "fd"))
    except OSError:
        return None


def process_info(*, proc_root: Path = PROC) -> ProcessInfo:
    """Facts about this process. ``proc_root`` is only for tests and unusual /proc mounts."""
    started_at, uptime, source = _uptime(proc_root)
    status = _status(proc_root)
    peak = _kib(status.get("VmHWM"))
    native = status.get("Threads")
    times = os.times()
    return ProcessInfo(
        pid=os.getpid(),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        executable=sys.executable,
        platform=sys.platform,
        started_at=started_at,
        uptime_seconds=uptime,
        uptime_source=source,
        rss_bytes=_kib(status.get("VmRSS")),
        peak_rss_bytes=peak if peak is not None else _peak_rss_fallback(),
        cpu_user_seconds=times.user,
        cpu_system_seconds=times.system,
        open_fds=_open_fds(proc_root),
        threads=threading.active_count(),
        native_threads=int(native) if native and native.isdigit() else None,
        modules_loaded=len(sys.modules),
    )
