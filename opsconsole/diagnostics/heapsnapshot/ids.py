"""Node ids and ordinals for the ``.heapsnapshot`` walk, kept in flat tables instead of Python objects.

A heap snapshot needs two numbers per object: the node **ordinal** (its position in ``nodes``, which
every edge's ``to_node`` refers to) and a node **id** that stays the same for the same object in the
next snapshot. A dict from ``id(obj)`` to an ordinal would cost a dict entry and two int objects per
object; here both come from the object's address instead:

* Every Python object is at least 16 bytes, so ``address >> 4`` is unique among live objects. The
  address space is cut into 1 MiB pages; a page gets a small number the first time any export sees it
  (``_pages``, kept for the life of the process), and ``id = page_number << 16 | slot``. The id is
  therefore stable while the object lives, unique, below 2**32 and at least 65536 (smaller ids are the
  synthetic nodes'; memlab treats ids 0 and 1 as roots).
* The node index of each object seen so far (ordinal × 7: what an edge's ``to_node`` holds, so
  edges need no multiplication) is in an ``AddressTable`` (see ``address_table``): one uint32
  per 32 bytes of address space, 0 for an object not seen yet. Two objects less than 32 bytes apart
  need a 16-byte one among them: pymalloc keeps those in pools of their own, so they only neighbour
  each other, and the few static ones (``None``...) are marked in advance. Such a slot holds
  ``SHARED`` and its objects' node indexes are in a dict by address.

Lookups are vectorised: a batch of objects is three ``map`` calls in C (``id``, shift, table), and
only objects never seen before reach the (also vectorised) numbering step, which groups them by class
through small-int ranks (ids compare slowly: they are multi-digit ints). Every numbered object is
kept alive in ``objects`` until the export ends, so an address in the table always denotes the same
object.
Runs on the thread doing the export (the dump worker or a REPL session thread).
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Iterable
from itertools import compress, repeat
from operator import add, is_, not_, rshift
from typing import Any

from opsconsole.diagnostics.heapsnapshot.address_table import SHARED, AddressTable
from opsconsole.errors import DiagnosticsError

PAGE_SHIFT = 20  # 1 MiB of address space per page (node ids)
MAX_PAGES = 0xFFFF  # page numbers 1..65535: ids stay below 2**32
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
    """``objs`` and their ``addrs`` in runs of one class, in the order the classes first appear; also
    their classes by id (hashing a class could run host code)."""
    kinds = list(map(type, objs))
    kind_ids = list(map(id, kinds))
    by_id = dict(zip(kind_ids, kinds, strict=True))
    if 1 < len(by_id) <= 4:  # the usual batch: a pass per class beats a sort (~60 ns an object)
        grouped: list[object] = []
        grouped_addrs: list[int] = []
        for kind in by_id.values():
            mine = list(map(is_, kinds, repeat(kind)))
            grouped += compress(objs, mine)
            grouped_addrs += compress(addrs, mine)
        return grouped, grouped_addrs, by_id
    if len(by_id) > 1:  # sorted by rank: small ints compare much faster than ids do
        ranks = list(map(dict(zip(by_id, range(len(by_id)), strict=True)).__getitem__, kind_ids))
        order = sorted(range(len(objs)), key=ranks.__getitem__)
        objs, addrs = list(map(objs.__getitem__, order)), list(map(addrs.__getitem__, order))
    return objs, addrs, by_id


class Ordinals:
    """Ordinals (from ``first`` on) and ids of the objects of one export, in the order they were found."""

    __slots__ = ("_id_delta", "_shared", "count", "first", "ids", "objects", "table")

    def __init__(self, first: int, ids: array[int], table: AddressTable | None = None) -> None:
        self.first = first
        self.count = first  # the next ordinal to hand out
        self.ids = ids  # node ids by ordinal; the caller put the synthetic nodes' ids first
        self.objects: list[object] = []  # ordinal - first → the object, kept alive until the end
        self.table = AddressTable() if table is None else table
        self._id_delta: dict[int, int] = {}  # page → (its page number - page) << 16: see ``_ids``
        self._shared: dict[int, int] = {}  # address → node index of the objects in SHARED slots
        if self.table.flat:
            for obj in _STATIC_SMALL:
                self.table.put(self.table.key(id(obj)), SHARED)

    def _held(self, keys: list[int]) -> list[int]:
        """What the table holds for each key (0, SHARED or a node index)."""
        try:
            return list(map(self.table.get, keys))
        except IndexError:  # only on an address space wider than the table (see ``address_table``)
            raise DiagnosticsError("an object lies outside the address range the id table covers") from None

    def lookup(self, objs: list[object]) -> list[int]:
        """The node index (ordinal × 7) of each object; objects not seen before are numbered now."""
        addrs = list(map(id, objs))
        keys = self.table.keys(addrs)
        found = self._held(keys)
        if 0 in found:
            new = list(map(not_, found))
            self._number(list(compress(objs, new)), list(compress(addrs, new)), False)
            found = self._held(keys)  # three steps fewer than asking the numbering for each index
        if SHARED in found:  # None is one of these: a few C calls, not a loop
            where = list(compress(range(len(found)), map(SHARED.__eq__, found)))
            shared = list(map(addrs.__getitem__, where))
            missing = set(shared).difference(self._shared)
            if missing:
                pairs = [(obj, addr) for obj, addr in zip(objs, addrs, strict=True) if addr in missing]
                self._number([obj for obj, _ in pairs], [addr for _, addr in pairs], True)
            deque(map(found.__setitem__, where, map(self._shared.__getitem__, shared)), 0)
        return found

    def unseen(self, objs: list[object]) -> list[object]:
        """Those of ``objs`` that have no node yet (nothing is numbered)."""
        addrs = list(map(id, objs))
        found = self._held(self.table.keys(addrs))
        fresh = list(compress(objs, map(not_, found)))
        if SHARED in found:
            shared = compress(range(len(found)), map(SHARED.__eq__, found))
            fresh.extend(objs[i] for i in shared if addrs[i] not in self._shared)
        return fresh

    def _number(self, objs: list[object], addrs: list[int], shared: bool) -> None:
        """Give the next ordinals to ``objs`` (each once; ``addrs``: their ids), grouped by class: the
        walk visits objects in ordinal order, and runs of one class are what it handles a group at a
        time. ``shared``: their slots hold SHARED already (else 0)."""
        numbered: dict[int, Any] = dict(zip(addrs, objs, strict=True))  # each object once
        fresh, addrs, kinds = _by_class(list(numbered.values()), list(numbered))
        start = self.count
        indexes = range(start * NODE_FIELDS, (start + len(fresh)) * NODE_FIELDS, NODE_FIELDS)
        self.objects.extend(fresh)
        table = self.table
        small = {i for i, k in kinds.items() if _BASICSIZE.__get__(k) <= 16} if table.flat else set()
        if shared or small:  # 16-byte objects, or slots taken: rare
            own = map(not_, map(small.__contains__, map(id, map(type, fresh))))
            self._place(addrs, repeat(False, len(addrs)) if shared else own, indexes)
        else:  # a slot of its own each (the table held 0 for all of them)
            deque(map(table.put, table.keys(addrs), indexes), 0)
        self.ids.fromlist(self._ids(addrs))
        self.count += len(fresh)

    def _ids(self, addrs: list[int]) -> list[int]:
        """Node ids: the address's page number << 16, plus its 16-byte slot in the page. As
        ``(address >> 4) + (page number - page) << 16``: one step fewer than masking the slot out."""
        his = list(map(rshift, addrs, repeat(PAGE_SHIFT)))
        try:
            deltas = list(map(self._id_delta.__getitem__, his))
        except KeyError:  # a page no object of this export was on yet
            for hi in set(his).difference(self._id_delta):
                self._id_delta[hi] = (_page_number(hi) - hi) << 16
            deltas = list(map(self._id_delta.__getitem__, his))
        return list(map(add, map(rshift, addrs, repeat(4)), deltas))

    def _place(self, addrs: list[int], own: Iterable[bool], indexes: range) -> None:
        """Table entries for new objects, some of which (``own`` False) go to the shared dict."""
        own = list(own)
        keys = self.table.keys(addrs)
        deque(map(self.table.put, compress(keys, own), compress(indexes, own)), 0)
        for i in compress(range(len(addrs)), map(not_, own)):
            held = self.table.get(keys[i])
            if held not in (0, SHARED):  # the object there moves to the dict
                self._shared[id(self.objects[held // NODE_FIELDS - self.first])] = held
            self.table.put(keys[i], SHARED)
            self._shared[addrs[i]] = indexes[i]

    def alias(self, obj: object, index: int) -> bool:
        """Make ``obj`` map to an existing node, given by its node index (a module's namespace folds
        into the module's node). False if ``obj`` already has a node of its own."""
        key = self.table.key(id(obj))
        held: int = self.table.get(key)
        if held == SHARED:
            held = self._shared.setdefault(id(obj), index)
        elif held == 0:
            self.table.put(key, index)
            held = index
        return held == index

    def close(self) -> None:
        """Drop the table and let go of every object (a slice at a time: one long C call otherwise)."""
        self.table.close()
        while self.objects:
            del self.objects[-10_000:]
