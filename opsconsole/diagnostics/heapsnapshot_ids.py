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

Lookups are vectorised: a batch of objects goes through a few chained ``map`` calls in C, and only
objects never seen before reach the (also vectorised) numbering step, which hands their node indexes
back (they are not looked up a second time) and groups them by class through small-int ranks (ids
compare slowly: they are multi-digit ints). Every numbered object is kept alive in
``objects`` until the export ends, so an address in the tables always denotes the same object.
Runs on the thread doing the export (the dump worker or a REPL session thread).
"""

from __future__ import annotations

import mmap
import threading
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
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


def _by_class(objs: list[object], addrs: list[int]) -> tuple[list[object], list[int], dict[int, type]]:
    """``objs`` and their ``addrs`` in runs of one class; also their classes by id (hashing a class
    could run host code)."""
    kinds = list(map(type, objs))
    kind_ids = list(map(id, kinds))
    by_id = dict(zip(kind_ids, kinds, strict=True))
    if len(by_id) > 1:  # sorted by rank: small ints compare much faster than ids do
        ranks = list(map(dict(zip(by_id, range(len(by_id)), strict=True)).__getitem__, kind_ids))
        order = sorted(range(len(objs)), key=ranks.__getitem__)
        objs, addrs = list(map(objs.__getitem__, order)), list(map(addrs.__getitem__, order))
    return objs, addrs, by_id


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

    def _places(
        self, addrs: list[int], his: Iterable[int] | None = None
    ) -> tuple[Iterator[Any], Iterator[int]]:
        """The table and slot of each address, lazily (chained ``map``s: no list per step); ``his``:
        the addresses' pages, when already known."""
        if his is None:
            his = map(rshift, addrs, repeat(PAGE_SHIFT))
        tables = map(self._tables.__getitem__, his)
        return tables, map(and_, map(rshift, addrs, repeat(SLOT_SHIFT)), repeat(SLOT_MASK))

    def _held(self, addrs: list[int]) -> list[int]:
        """What the tables hold for each address (0, SHARED or a node index); new pages get a table."""
        try:
            return list(map(getitem, *self._places(addrs)))
        except KeyError:  # a page no object of this export was on yet
            for hi in set(map(rshift, addrs, repeat(PAGE_SHIFT))).difference(self._tables):
                self._table(hi)
            return list(map(getitem, *self._places(addrs)))

    def lookup(self, objs: list[object]) -> list[int]:
        """The node index (ordinal × 7) of each object; objects not seen before are numbered now."""
        addrs = list(map(id, objs))
        found = self._held(addrs)
        if 0 in found:  # the new objects' indexes come back from the numbering: no second lookup
            new = list(map(not_, found))
            numbered = self._number(list(compress(objs, new)), list(compress(addrs, new)), False)
            found = list(map(numbered.get, addrs, found))
        if SHARED in found:  # None is one of these: a few C calls, not a loop
            where = list(compress(range(len(found)), map(SHARED.__eq__, found)))
            shared = list(map(addrs.__getitem__, where))
            missing = set(shared).difference(self._shared)
            if missing:
                pairs = [(obj, addr) for obj, addr in zip(objs, addrs, strict=True) if addr in missing]
                self._number([obj for obj, _ in pairs], [addr for _, addr in pairs], True)
            deque(map(found.__setitem__, where, map(self._shared.__getitem__, shared)), 0)
        return found

    def _number(self, objs: list[object], addrs: list[int], shared: bool) -> dict[int, int]:
        """Give the next ordinals to ``objs`` (each once; ``addrs``: their ids), grouped by class: the
        walk visits objects in ordinal order, and runs of one class are what it handles a group at a
        time. ``shared``: their slots hold SHARED already (else 0). Returns address → node index."""
        numbered: dict[int, Any] = dict(zip(addrs, objs, strict=True))  # each object once
        fresh, addrs, kinds = _by_class(list(numbered.values()), list(numbered))
        start = self.count
        indexes = range(start * NODE_FIELDS, (start + len(fresh)) * NODE_FIELDS, NODE_FIELDS)
        numbered.update(zip(addrs, indexes, strict=True))
        self.objects.extend(fresh)
        his = list(map(rshift, addrs, repeat(PAGE_SHIFT)))
        small = {i for i, k in kinds.items() if _BASICSIZE.__get__(k) <= 16}
        if shared or small:  # 16-byte objects, or slots taken: rare
            own = map(not_, map(small.__contains__, map(id, map(type, fresh))))
            self._place(addrs, his, repeat(False, len(addrs)) if shared else own, indexes)
        else:  # a slot of its own each (the tables held 0 for all of them)
            deque(map(setitem, *self._places(addrs, his), indexes), 0)
        id_slots = map(and_, map(rshift, addrs, repeat(4)), repeat(ID_MASK))
        self.ids.fromlist(list(map(or_, map(self._id_base.__getitem__, his), id_slots)))
        self.count += len(fresh)
        return numbered

    def _place(self, addrs: list[int], his: list[int], own: Iterable[bool], indexes: range) -> None:
        """Table entries for new objects, some of which (``own`` False) go to the shared dict."""
        own = list(own)
        places = self._places(addrs, his)
        tables, slots = list(places[0]), list(places[1])
        deque(map(setitem, compress(tables, own), compress(slots, own), compress(indexes, own)), 0)
        for i in compress(range(len(addrs)), map(not_, own)):
            table, slot = tables[i], slots[i]
            held = table[slot]
            if held not in (0, SHARED):  # the object there moves to the dict
                self._shared[id(self.objects[held // NODE_FIELDS - self.first])] = held
            table[slot] = SHARED
            self._shared[addrs[i]] = indexes[i]

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
