"""The audit chain's head, written to the host's log so a cut or rewritten tail shows.

A valid chain proves nothing about lines removed from its *end*, or about a log rewritten
from scratch. So the console writes the head (sequence number and hash of the last
record) to the logger ``opsconsole.audit.head`` at start, at stop and at most every
``interval`` seconds while it changes; shipped off the host (journald, syslog), those
lines are anchors that ``opsconsole audit verify FILE --head SEQ:HASH`` checks against.

One line per anchor, ``key=value`` words after a fixed tag, the path last::

    opsconsole-audit-head seq=42 hash=<64 hex> why=periodic file=/srv/app/.opsconsole/audit.jsonl

Threads: ``HeadAnchor`` owns one daemon thread (``opsconsole-audit-head``) that wakes every
``interval`` seconds; ``emit`` may be called from any thread.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Protocol

from opsconsole import log

_log = log.get("audit.head")

TAG = "opsconsole-audit-head"
INTERVAL = 60.0
_HEAD_RE = re.compile(r"(?:seq=)?([0-9]+)(?::| hash=)([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Head:
    """Sequence number and hash of a chain's last record (seq 0: the empty log)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


def parse(text: str) -> Head:
    """``SEQ:HASH`` (or the ``seq=… hash=…`` words of a log line) → Head; ValueError if not."""
    match = _HEAD_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:100]!r} is not SEQ:HASH (a number, a colon, 64 lowercase hex digits)")
    return Head(int(match.group(1)), match.group(2))


class HeadSource(Protocol):
    """What the anchor reads: the open log (``AuditLog``)."""

    def head(self) -> Head: ...

    @property
    def path(self) -> object: ...


class HeadAnchor:
    """Logs the head of one audit log: on demand, and every ``interval`` s while it changes."""

    def __init__(self, audit: HeadSource, *, interval: float = INTERVAL) -> None:
        self._audit = audit
        self._interval = interval
        self._lock = threading.Lock()
        self._last: Head | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, why: str) -> Head:
        """Write the current head to the log now (any thread); returns it."""
        head = self._audit.head()
        with self._lock:
            self._last = head
        _log.info("%s seq=%d hash=%s why=%s file=%s", TAG, head.seq, head.hash, why, self._audit.path)
        return head

    def start(self) -> None:
        """Emit the head (``why=start``) and begin the periodic anchor."""
        self.emit("start")
        self._thread = threading.Thread(target=self._run, name="opsconsole-audit-head", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the periodic anchor and emit the final head (``why=stop``). Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread is not threading.current_thread():
            thread.join()
        self.emit("stop")

    def _run(self) -> None:
        # runs on the opsconsole-audit-head thread
        while not self._stop.wait(self._interval):
            with self._lock:
                last = self._last
            if self._audit.head() != last:
                self.emit("periodic")
