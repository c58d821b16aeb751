"""Node ids and ordinals for the ``.heapsnapshot`` walk, kept in flat tables instead of Python objects.

A heap snapshot needs two numbers per object: the node **ordinal** (its position in ``nodes``, which
every edge's ``to_node`` refers to) and a node **id** that stays the same for the same object in the
next snapshot. A dict from ``id(obj)`` to an ordinal would cost ~110 bytes per object (entry, key int,
value int); here both come from the object's address instead:

* Every Python object is at least 16 bytes, so ``address >> 4`` is unique among live objects. The
  address space is cut into 1 MiB pages; a page gets a small number the first time any export sees it
  (``_pages``, kept for the life of the process), and ``id = page_number << 16 | slot``. The id is
  therefore stable while the object lives, unique, below 2**32 and at least 65536 (smaller ids are the
  synthetic nodes'; memlab treats ids 0 and 1 as roots).
* The node index of each object seen so far (ordinal × 7: what an edge's ``to_node`` holds, so
  edges need no multiplication) sits in a per-page uint32 table (0: not seen yet) in an
  anonymous mmap: pages of the table that no object maps to are never touched and cost no RSS. On a
  dense heap every table page is touched, so a slot covers 32 bytes (4 bytes of table per 32 of heap).
  Two objects less than 32 bytes apart need a 16-byte one among them: pymalloc keeps those in pools
  of their own, so they only neighbour each other, and the few static ones (``None``...) are marked
  in advance. Such a slot holds ``SHARED`` and its objects' node indexes are in a dict by address.

Lookups are vectorised: a batch of objects goes through a few ``map`` calls in C, and only objects
never seen before reach the (also vectorised) numbering step. Every numbered object is kept alive in
``objects`` until the export ends, so an address in the tables always denotes the same object.
Runs on the thread doing the export (the dump worker or a REPL session thread).
"""

from __future__ import annotations

import mmap
import threading
from array import array
from collections import deque
from itertools import compress, repeat
from operator import and_, getitem, not_, or_, rshift, setitem
from typing import Any

from opsconsole.errors import DiagnosticsError

PAGE_SHIFT = 20  # 1 MiB of address space per page
SLOT_SHIFT = 5  # 32 bytes of address per table slot
SLOT_MASK = (1 << (PAGE_SHIFT - SLOT_SHIFT)) - 1
ID_MASK = (1 << (PAGE_SHIFT - 4)) - 1  # ids: 16 bytes (the smallest object) per id
MAX_PAGES = 0xFFFF  # page numbers 1..65535: ids stay below 2**32
_TABLE_BYTES = 4 << (PAGE_SHIFT - SLOT_SHIFT)  # one uint32 per slot: 128 KiB of (lazily backed) mmap
SHARED = 0xFFFFFFFF  # a slot whose objects' node indexes are in ``Ordinals._shared`` (not a multiple of 7)
NODE_FIELDS = 7  # node index = ordinal × 7
_BASICSIZE: Any = vars(type)["__basicsize__"]
_STATIC_SMALL = (None, NotImplemented, Ellipsis)  # 16-byte objects outside pymalloc's pools

# address >> PAGE_SHIFT → page number, for the life of the process, so node ids are stable across
# exports. Bounded: 65535 pages of 1 MiB; an export that starts with the table nearly full resets it.
_pages: dict[int, int] = {}
_pages_lock = threading.Lock()


def reset_if_nearly_full(headroom: int = 4096) -> bool:
    """Called once per export before the walk; True if the ids of this export restart from scratch."""
    with _pages_lock:
        if len(_pages) > MAX_PAGES - headroom:
            _pages.clear()
            return True
    return False


def _page_number(hi: int) -> int:
    with _pages_lock:
        number = _pages.get(hi)
        if number is None:
            if len(_pages) >= MAX_PAGES:
                raise DiagnosticsError(
                    "the heap spans more than 64 GiB of address space; no room for node ids"
                )
            number = _pages[hi] = len(_pages) + 1
        return number


class Ordinals:
    """Ordinals (from ``first`` on) and ids of the objects of one export, in the order they were found."""

    __slots__ = ("_id_base", "_maps", "_shared", "_tables", "count", "first", "ids", "objects")

    def __init__(self, first: int, ids: array[int]) -> None:
        self.first = first
        self.count = first  # the next ordinal to hand out
        self.ids = ids  # node ids by ordinal; the caller put the synthetic nodes' ids first
        self.objects: list[object] = []  # ordinal - first → the object, kept alive until the end
        self._tables: dict[int, Any] = {}  # page (address >> PAGE_SHIFT) → uint32 node index per slot
        self._maps: list[tuple[mmap.mmap, memoryview]] = []
        self._id_base: dict[int, int] = {}  # page → its page number << 16: an id is that plus 16-byte slot
        self._shared: dict[int, int] = {}  # address → node index of the objects in SHARED slots
        for obj in _STATIC_SMALL:
            table, slot = self._slot(id(obj))
            table[slot] = SHARED

    def _slot(self, addr: int) -> tuple[Any, int]:
        hi = addr >> PAGE_SHIFT
        return self._tables.get(hi) or self._table(hi), (addr >> SLOT_SHIFT) & SLOT_MASK

    def _table(self, hi: int) -> Any:
        self._id_base[hi] = _page_number(hi) << 16
        mapped = mmap.mmap(-1, _TABLE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        raw = memoryview(mapped)
        table = self._tables[hi] = raw.cast("I")
        self._maps.append((mapped, raw))
        return table

    def lookup(self, objs: list[object]) -> list[int]:
        """The node index (ordinal × 7) of each object; objects not seen before are numbered now."""
        addrs = list(map(id, objs))
        his = list(map(rshift, addrs, repeat(PAGE_SHIFT)))
        tables: list[Any]
        try:
            tables = list(map(self._tables.__getitem__, his))
        except KeyError:  # a page no object of this export was on yet
            for hi in set(his).difference(self._tables):
                self._table(hi)
            tables = list(map(self._tables.__getitem__, his))
        slots = list(map(and_, map(rshift, addrs, repeat(SLOT_SHIFT)), repeat(SLOT_MASK)))
        found: list[int] = list(map(getitem, tables, slots))
        if 0 in found:
            self._number(list(compress(objs, map(not_, found))))
            found = list(map(getitem, tables, slots))
        if SHARED in found:  # None is one of these: a few C calls, not a loop
            where = list(compress(range(len(found)), map(SHARED.__eq__, found)))
            shared = list(map(addrs.__getitem__, where))
            missing = set(shared).difference(self._shared)
            if missing:
                self._number([obj for obj, addr in zip(objs, addrs, strict=True) if addr in missing])
            deque(map(found.__setitem__, where, map(self._shared.__getitem__, shared)), 0)
        return found

    def _number(self, objs: list[object]) -> None:
        """Give the next ordinals to ``objs`` (each once), grouped by class: the walk visits objects in
        ordinal order, and runs of one class are what it handles a group at a time."""
        fresh = list(dict(zip(map(id, objs), objs, strict=True)).values())
        kinds = list(map(type, fresh))
        kind_ids = list(map(id, kinds))
        if len(set(kind_ids)) > 1:
            order = sorted(range(len(fresh)), key=kind_ids.__getitem__)
            fresh, kinds = list(map(fresh.__getitem__, order)), list(map(kinds.__getitem__, order))
            kind_ids = list(map(kind_ids.__getitem__, order))
        addrs = list(map(id, fresh))
        his = list(map(rshift, addrs, repeat(PAGE_SHIFT)))
        tables = list(map(self._tables.__getitem__, his))
        slots = list(map(and_, map(rshift, addrs, repeat(SLOT_SHIFT)), repeat(SLOT_MASK)))
        start = self.count
        self.objects.extend(fresh)
        direct = list(map(not_, map(getitem, tables, slots)))  # a slot of its own
        small = {i for i, k in dict(zip(kind_ids, kinds, strict=True)).items() if _BASICSIZE.__get__(k) <= 16}
        if small:
            direct = list(map(and_, direct, map(not_, map(small.__contains__, kind_ids))))
        indexes = range(start * NODE_FIELDS, (start + len(fresh)) * NODE_FIELDS, NODE_FIELDS)
        deque(map(setitem, compress(tables, direct), compress(slots, direct), compress(indexes, direct)), 0)
        for i in compress(range(len(fresh)), map(not_, direct)):  # a 16-byte object, or a slot taken: rare
            table, slot = tables[i], slots[i]
            held = table[slot]
            if held not in (0, SHARED):  # the object there moves to the dict
                self._shared[id(self.objects[held // NODE_FIELDS - self.first])] = held
            table[slot] = SHARED
            self._shared[addrs[i]] = indexes[i]
        idslots = map(and_, map(rshift, addrs, repeat(4)), repeat(ID_MASK))
        self.ids.fromlist(list(map(or_, map(self._id_base.__getitem__, his), idslots)))
        self.count += len(fresh)

    def alias(self, obj: object, index: int) -> bool:
        """Make ``obj`` map to an existing node, given by its node index (a module's namespace folds
        into the module's node). False if ``obj`` already has a node of its own."""
        table, slot = self._slot(id(obj))
        held: int = table[slot]
        if held == SHARED:
            held = self._shared.setdefault(id(obj), index)
        elif held == 0:
            table[slot] = held = index
        return held == index

    def close(self) -> None:
        """Drop the tables and let go of every object (a slice at a time: one long C call otherwise)."""
        for table in self._tables.values():
            table.release()
        self._tables.clear()
        for mapped, raw in self._maps:
            raw.release()
            mapped.close()
        self._maps.clear()
        while self.objects:
            del self.objects[-10_000:]
