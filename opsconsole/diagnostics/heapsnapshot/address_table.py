"""The address table behind ``.heapsnapshot`` ordinals: what the export holds for each object address.

A lookup is the hot step of an export (one per reference: several per object on a typical heap),
so it is as few C-level steps as possible: ``id(obj) >> 5`` indexes one flat uint32 table, a
``memoryview`` over an anonymous mapping that covers the **whole** user address space, one slot per
32 bytes (16 TiB of address space reserved on x86-64, 32 TiB on arm64). Only the pages of the table
that objects map to are ever touched, and only those cost memory: 4 bytes per 32 bytes of heap, for
as long as the export runs. The reservation is made with ``MAP_NORESERVE`` (no commit charge),
``MADV_NOHUGEPAGE`` (a touch backs 4 KiB of table, not 2 MiB) and ``MADV_DONTDUMP`` (a core dump
taken meanwhile does not try to write it). Per-page tables looked up through a dict took six steps
a reference instead of three: twice the time.

Where the kernel refuses such a reservation (``vm.overcommit_memory=2``, a ``ulimit -v``, a platform
whose address space is not known here), the table is a dict by address instead: the same answers,
about 100 bytes more per object while an export runs.

A slot holds 0 (no object seen), a node index, or ``SHARED`` (see ``ids``). Runs on the
thread doing the export.
"""

from __future__ import annotations

import mmap
import platform
import sys
from collections.abc import Callable
from itertools import repeat
from operator import rshift

SLOT_SHIFT = 5  # 32 bytes of address per slot
SHARED = 0xFFFFFFFF  # a slot holding two objects: their node indexes are kept by address elsewhere
_MAP_NORESERVE = 0x4000  # Linux's value on every architecture this table is used on
# User address space by machine (Linux): mappings the allocator gets stay below this.
_ADDRESS_BITS = {"x86_64": 47, "amd64": 47, "aarch64": 48, "arm64": 48}


class _ZeroByDefault(dict[int, int]):
    """The fallback table: a dict that answers 0 for an address it does not hold (and stays unchanged)."""

    __slots__ = ()

    def __missing__(self, key: int) -> int:
        return 0


class AddressTable:
    """``get(key)`` / ``put(key, value)`` for the ``keys`` of object addresses (see ``keys``)."""

    __slots__ = ("_mapped", "_view", "flat", "get", "put", "shift")

    get: Callable[[int], int]
    put: Callable[[int, int], None]

    def __init__(self, *, flat: bool = True) -> None:
        self._mapped: mmap.mmap | None = None
        self._view: memoryview | None = None
        bits = _ADDRESS_BITS.get(platform.machine().lower()) if sys.platform == "linux" else None
        if flat and bits is not None and sys.maxsize > 2**32:
            try:
                self._mapped = mmap.mmap(
                    -1,
                    4 << (bits - SLOT_SHIFT),
                    flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE,
                )
                self._mapped.madvise(mmap.MADV_NOHUGEPAGE)
                self._mapped.madvise(mmap.MADV_DONTDUMP)
            except (OSError, OverflowError, ValueError):
                if self._mapped is not None:
                    self._mapped.close()
                self._mapped = None
        if self._mapped is not None:
            view = self._view = memoryview(self._mapped).cast("I")
            self.flat, self.shift = True, SLOT_SHIFT
            self.get, self.put = view.__getitem__, view.__setitem__
        else:
            table = _ZeroByDefault()
            self.flat, self.shift = False, 0  # one key per address: no slot is ever shared
            self.get, self.put = table.__getitem__, table.__setitem__

    def keys(self, addrs: list[int]) -> list[int]:
        """The key of each address (its slot, or the address itself in the fallback)."""
        return list(map(rshift, addrs, repeat(self.shift))) if self.shift else addrs

    def key(self, addr: int) -> int:
        return addr >> self.shift

    def close(self) -> None:
        """Give the table's memory back (unmap it). The table must not be used afterwards."""
        if self._view is not None:
            self._view.release()
        if self._mapped is not None:
            self._mapped.close()
        self._view = self._mapped = None
        self.get = self.put = _closed  # type: ignore[assignment]


def _closed(*_: int) -> int:
    raise ValueError("the address table is closed")
