"""The memory budget of one whole-heap walk: a census, a reference search or a heap snapshot.

A walk may add at most ``limit`` bytes to the process, whatever it meets on the heap. It checks as
it goes, two ways:

* **counts**: the walk charges what it keeps (objects visited, references and nodes recorded) at
  what each costs it, so the estimate grows with the work even where the process's size cannot
  be read;
* **measured**: every ``CHECK_EVERY`` charges, the resident size of the process (``/proc/self/statm``:
  one ``pread`` of a few bytes, microseconds) is compared with the size when the walk started.
  That catches what no count foresees: pages of a walk's tables, a host object whose C code
  allocates when asked for its referents, or the host's own threads growing meanwhile (the host
  comes first: the walk gives way).

Past the limit the walk stops with ``BudgetError``, frees what it holds, and the client gets HTTP
507 with a message naming the limit and the setting (``walk_memory_budget``). A walk is bounded
in time as well (each has its own time or work limit); the budget bounds its memory.

One ``Budget`` per walk, used only by the thread doing the walk (the dump worker or a REPL thread).
"""

from __future__ import annotations

import os

from opsconsole.errors import BudgetError

DEFAULT_LIMIT = 1 << 30  # bytes a walk may add to the process (the ``walk_memory_budget`` setting)
MIN_LIMIT = 16 << 20
CHECK_EVERY = 16  # charges between two reads of the resident size
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def resident_bytes(fd: int | None = None) -> int | None:
    """The process's resident size in bytes, or None where it cannot be read (no procfs)."""
    own = fd is None
    if own:
        fd = _open_statm()
        if fd is None:
            return None
    assert fd is not None
    try:
        fields = os.pread(fd, 128, 0).split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
    finally:
        if own:
            os.close(fd)


class Budget:
    """What one walk may still add. ``charge`` as it keeps things; ``close`` when it ends."""

    __slots__ = ("_charges", "_fd", "estimate", "limit", "peak", "start", "what")

    def __init__(self, what: str, limit: int = DEFAULT_LIMIT) -> None:
        self.what = what
        self.limit = max(int(limit), MIN_LIMIT)
        self.estimate = 0  # bytes, from the counts charged so far
        self.peak = 0  # the largest growth measured so far, in bytes
        self._charges = 0
        self._fd = _open_statm()
        self.start = resident_bytes(self._fd) if self._fd is not None else None

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` the walk now keeps; raises BudgetError past the limit."""
        self.estimate += nbytes
        if self.estimate > self.limit:
            self._stop(self.estimate, "by its own count")
        self._charges += 1
        if self._charges % CHECK_EVERY == 0:
            self.check()

    def ahead(self, nbytes: int) -> None:
        """Before one C call that will build ``nbytes`` at once (freed right after): refuse it if the
        budget cannot hold it."""
        if self.estimate + nbytes > self.limit:
            self._stop(self.estimate + nbytes, "for one step")

    def check(self) -> None:
        """Compare the measured resident size with the start; raises BudgetError past the limit."""
        if self._fd is None or self.start is None:
            return
        now = resident_bytes(self._fd)
        if now is None:
            return
        grown = now - self.start
        self.peak = max(self.peak, grown)
        if grown > self.limit:
            self._stop(grown, "measured")

    def _stop(self, used: int, how: str) -> None:
        raise BudgetError(self.what, limit=self.limit, used=used, how=how)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
