"""Named loggers, and the aggregation that keeps a flood out of the host's log.

Every module logs through one of these so operators can tune them. Secrets, TOTP codes and
tokens are never passed to a logger; the audit log is the record of security events, these
loggers are for humans reading a service log.

A refusal (a 401, a full connection cap, an SSH socket that never sent a banner) costs an
attacker nothing, so a line per refusal would make the host's log the attacker's megaphone.
Every such line goes through the console's one ``RefusalLog`` instead:

- per (cause, source), the first refusal is logged at once; the ones after it are counted,
  and when the 10 s window ends one line gives the count (that line opens the next window,
  so a steady flood yields one line per cause and source every 10 s; a quiet window ends it);
- on top, all causes together get a budget of a few lines per second; a line the budget
  refuses is not lost, only counted into its key's next line;
- a library's own per-connection lines (Tornado's, paramiko's) are routed through it by a
  filter that acts only on threads the console bound to it, so the host's own use of the
  same library logs exactly as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

ROOT = "opsconsole"
WINDOW = 10.0  # seconds: at most one line per (cause, source) per window
RATE = 2.0  # lines per second for every cause together ...
BURST = 10  # ... in bursts of up to this many lines
MAX_KEYS = 1024  # (cause, source) pairs tracked; more sources share one "other sources" key
OTHER_SOURCES = "other sources"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def get(name: str) -> logging.Logger:
    """Return the logger ``opsconsole.<name>``."""
    return logging.getLogger(f"{ROOT}.{name}")


@dataclass(slots=True)
class _Key:
    logger: logging.Logger
    level: int
    start: float  # when this window opened
    text: str  # the latest refusal's line, quoted in the count line
    count: int = 0  # refusals since the last line written for this key


@dataclass(frozen=True, slots=True)
class _Line:
    logger: logging.Logger
    level: int
    text: str
    exc_info: ExcInfo | None = None


@dataclass(slots=True)
class _Budget:
    rate: float
    burst: float
    tokens: float = field(init=False)
    last: float | None = None

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        if self.last is not None and now > self.last:  # a clock stepped back refills nothing
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RefusalLog:
    """Aggregated log lines about refusals: one per cause and source per window, a few per second.

    Thread-safe: called on the console IO loop, the SSH accept and transport threads and the
    grace timers; ``flush`` runs every second on the console loop and once at stop. Lines are
    written outside the lock, so a slow log handler never holds up another thread's refusal.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        window: float = WINDOW,
        rate: float = RATE,
        burst: int = BURST,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._clock = clock
        self._window = window
        self._budget = _Budget(rate, float(burst))
        self._max_keys = max_keys
        self._keys: dict[tuple[str, str], _Key] = {}
        self._lock = threading.Lock()
        self.lines = 0  # lines written so far

    def refused(
        self,
        logger: logging.Logger,
        level: int,
        cause: str,
        source: str,
        msg: str,
        *args: object,
        exc_info: ExcInfo | None = None,
    ) -> None:
        """One refusal: ``msg % args`` is logged now, or counted into a later line."""
        text = msg % args if args else msg
        now = self._clock()
        with self._lock:
            key = (cause, source)
            entry = self._keys.get(key)
            if entry is None and len(self._keys) >= self._max_keys:
                key = (cause, OTHER_SOURCES)
                entry = self._keys.get(key)
            if entry is None:
                entry = self._keys[key] = _Key(logger, level, now, text)
                line = _Line(logger, level, text, exc_info) if self._budget.take(now) else None
                entry.count = 0 if line is not None else 1
            else:
                entry.logger, entry.level, entry.text = logger, max(level, entry.level), text
                entry.count += 1
                line = self._due(key, entry, now)
        if line is not None:
            self._write([line])

    def flush(self, *, final: bool = False) -> None:
        """Write the count lines whose window ended (every key's with ``final``)."""
        now = self._clock()
        lines: list[_Line] = []
        with self._lock:
            if final:
                lines = self._final_lines(now)
            for key, entry in list(self._keys.items()):
                line = self._due(key, entry, now)
                if line is not None:
                    lines.append(line)
        self._write(lines)

    def _final_lines(self, now: float) -> list[_Line]:
        # under the lock: the counts still open, the biggest first; past the burst, one line
        # for the rest, so stopping after a flood from many sources writes a handful of lines.
        counted = sorted(
            ((key, entry) for key, entry in self._keys.items() if entry.count), key=lambda ke: -ke[1].count
        )
        self._keys.clear()
        burst = int(self._budget.burst)
        lines = [self._count_line(key, entry, now) for key, entry in counted[:burst]]
        rest = counted[burst:]
        if rest:
            total = sum(entry.count for _, entry in rest)
            text = f"{total} more refusals from {len(rest)} other causes and sources, not itemised"
            lines.append(_Line(rest[0][1].logger, rest[0][1].level, text))
        return lines

    def _due(self, key: tuple[str, str], entry: _Key, now: float) -> _Line | None:
        # under the lock. A window with nothing counted closes the key; one with a count
        # writes the count line (budget allowing) and that line opens the next window.
        if not (now >= entry.start + self._window or now < entry.start):
            return None
        if entry.count == 0:
            del self._keys[key]
            return None
        if not self._budget.take(now):
            return None
        line = self._count_line(key, entry, now)
        entry.start, entry.count = now, 0
        return line

    def _count_line(self, key: tuple[str, str], entry: _Key, now: float) -> _Line:
        cause, source = key
        seconds = max(0.0, now - entry.start)
        text = f"{cause} from {source}: {entry.count} more in the last {seconds:.0f} s (latest: {entry.text})"
        return _Line(entry.logger, entry.level, text)

    def _write(self, lines: list[_Line]) -> None:
        if not lines:
            return
        with self._lock:
            self.lines += len(lines)
        for line in lines:
            line.logger.log(line.level, "%s", line.text, exc_info=line.exc_info)


# -- library loggers --------------------------------------------------------------------------

_bound = threading.local()


def bind_thread(refusals: RefusalLog | None, source: str = "-") -> None:
    """Route library lines logged on the calling thread through ``refusals`` (None: stop)."""
    _bound.refusals = refusals
    _bound.source = source


class LibraryLines(logging.Filter):
    """Installed on a library's logger: on a bound thread, its lines are refusals.

    ``cause(record)`` names the line's cause, or returns None for a line to drop (e.g. one
    line of a traceback the library logs line by line). DEBUG lines pass untouched: a host
    that turned on DEBUG for a library asked for every line. On any other thread the filter
    passes everything, so the host's own use of the library is not affected.
    """

    def __init__(self, target: logging.Logger, cause: Callable[[logging.LogRecord], str | None]) -> None:
        super().__init__()
        self._target = target
        self._cause = cause

    def filter(self, record: logging.LogRecord) -> bool:
        refusals: RefusalLog | None = getattr(_bound, "refusals", None)
        if refusals is None or record.levelno < logging.INFO:
            return True
        cause = self._cause(record)
        if cause is not None:
            # A traceback only with an error (a bug of ours, once per window); never for a
            # client's doing, which libraries log below ERROR.
            exc = record.exc_info if record.levelno >= logging.ERROR and record.exc_info else None
            refusals.refused(
                self._target,
                record.levelno,
                cause,
                str(getattr(_bound, "source", "-")),
                "%s: %s",
                record.name,
                record.getMessage(),
                exc_info=exc,  # type: ignore[arg-type]
            )
        return False


_install_lock = threading.Lock()


def route_library(
    name: str, target: logging.Logger, cause: Callable[[logging.LogRecord], str | None]
) -> None:
    """Install ``LibraryLines`` on the logger ``name`` once per process (idempotent)."""
    logger = logging.getLogger(name)
    with _install_lock:
        if not any(isinstance(f, LibraryLines) for f in logger.filters):
            logger.addFilter(LibraryLines(target, cause))


def template(record: logging.LogRecord, limit: int = 60) -> str:
    """A record's format string up to its first ``:``: the same for every connection."""
    msg: Any = record.msg
    return str(msg).split(":", 1)[0][:limit]
