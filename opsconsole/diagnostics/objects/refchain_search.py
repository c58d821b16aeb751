"""The breadth-first walk of ``refchain``: levels of objects, the visited ids, referents in chunks.

Forward from the roots with ``gc.get_referents``, one level at a time, on the dump worker or REPL
thread while the host keeps running. The GIL changes hands only between bytecodes, so no single C call
may run long: a level is walked in chunks of ``STEP`` objects and their referents in batches of
``REFS_STEP``, each a handful of C calls (referents, id map, set difference) instead of a Python loop
per object. Big builtin containers are read a slice at a time, the visited ids live in bounded,
untracked shards and everything is released a batch at a time. No parent map is kept: each level's
objects are, and ``parent_in`` traces the found chain back through them.

The walk charges its ``Budget`` for every object it keeps (``VISITED_BYTES`` each: its id in a
shard, its place in a level) and stops with ``BudgetError`` past it. An object with more than
``REFS_STEP`` references is never asked for them in one call when it is a builtin container (it is
read in slices); a subclass of one, or a deque, is weighed first (``Budget.ahead``), so no single
call builds a list the budget cannot hold. Modules are read through ``referents`` (CPython gh-122695).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from itertools import chain, compress, islice, repeat
from operator import is_

from opsconsole.diagnostics.budget import Budget
from opsconsole.diagnostics.objects.referents import referents as guarded_referents

STEP = 1_000  # objects per gc.get_referents call: well under a millisecond of C work
REFS_STEP = 10_000  # referents handled per batch of C calls (each a few ms at most)
BATCH = 32  # objects per list a level is kept in (see Level)
SEEN_CAP = 200_000  # ids per visited-set: growing one rehashes it in one C call (~10 ms at this size)
VISITED_BYTES = 100  # what the walk keeps per object visited: its id in a shard, its place in a level
REF_BYTES = 8  # a reference in a list of referents


Match = Callable[[list[object], set[int]], object | None]


class Seen:
    """Visited ids. Two choices keep host pauses short:

    * shards of at most ``SEEN_CAP`` ids: one table of millions would be rehashed in one long C call
      each time it grows;
    * dicts of int → None, not sets: CPython never GC-tracks such a dict, while a set is always
      tracked and every young collection would scan its whole table.
    """

    __slots__ = ("shards",)

    def __init__(self, ids: Collection[int]) -> None:
        self.shards: list[dict[int, None]] = [dict.fromkeys(ids)]

    def add(self, obj: object) -> None:
        self.shards[-1][id(obj)] = None

    def fresh(self, ids: Collection[int]) -> set[int]:
        """The ids not seen before, now marked seen. Each step iterates the small side only."""
        new = set(ids)
        for known in self.shards:
            if new:
                new = new.difference(known)  # checks each of ``new`` in ``known``: O(len(new))
        last = self.shards[-1]
        if len(last) + len(new) > SEEN_CAP:
            last = {}
            self.shards.append(last)
        last.update(dict.fromkeys(new))
        return new

    def release(self) -> None:
        while self.shards:  # a shard at a time: freeing millions of ints at once is one long C call
            self.shards.pop().clear()


# A level is a list of small batches (lists of at most BATCH objects). The walk keeps a few million
# references and creates few other containers, so CPython's young collections come rarely and each
# one traverses every container kept since the last: big batches would put over a million
# references in one pause. With BATCH-sized lists a young collection sees a few hundred batches'
# references and the next generation about ten times that: short pauses each.
Level = list[list[object]]


def add_batches(level: Level, objs: list[object]) -> None:
    level.extend(objs[i : i + BATCH] for i in range(0, len(objs), BATCH))


def batches(level: Level) -> Iterator[list[object]]:
    """The level's objects in lists of up to STEP, for one gc.get_referents call each."""
    objs = chain.from_iterable(level)
    while chunk := list(islice(objs, STEP)):
        yield chunk


_BIG_KINDS = frozenset((list, tuple, dict, set, frozenset))  # exact types: len() runs no host code
_SIZED = (list, tuple, dict, set, frozenset, deque)  # bases whose own C __len__ is read for a subclass


def _length(obj: object) -> int:
    """How many references ``obj`` holds as a container, through its builtin base's own C ``__len__``
    (never a host override); 0 for anything else."""
    for base in _SIZED:
        if issubclass(type(obj), base):  # on the real class: isinstance could read a host __class__
            return int(base.__len__(obj))  # type: ignore[arg-type]
    return 0


def _weigh(chunk: list[object], kinds: list[type], budget: Budget) -> None:
    """``budget.ahead`` for each big container of the chunk that is not read in slices: a subclass of
    a builtin container, or a deque. The classes are checked once each, not once per object."""
    ids = list(map(id, kinds))
    by_id = dict(zip(ids, kinds, strict=True))  # by id: hashing a class could run its metaclass's code
    heavy = {i for i, k in by_id.items() if k not in _BIG_KINDS and issubclass(k, _SIZED)}
    if heavy:
        for obj in compress(chunk, map(heavy.__contains__, ids)):
            n = _length(obj)
            if n > REFS_STEP:
                budget.ahead(2 * n * REF_BYTES)  # the list, and the walk's map of it by id


def referents(chunk: list[object], budget: Budget | None = None) -> Iterator[list[object]]:
    """What ``gc.get_referents(*chunk)`` returns, in lists of at most about REFS_STEP objects. A big
    builtin container is read a slice at a time: one list of its million referents would be a long
    C call to build, and a long pause for each young-generation collection while it lives. A big
    subclass of one, or a deque, is taken whole once ``budget`` says it can hold the list."""
    kinds = list(map(type, chunk))
    mask = list(map(_BIG_KINDS.__contains__, kinds))
    big: list[object] = []
    if any(mask):
        candidates = list(compress(chunk, mask))
        big = [c for c, n in zip(candidates, map(len, candidates), strict=True) if n > REFS_STEP]  # type: ignore[arg-type]
    if budget is not None and not all(mask):
        _weigh(chunk, kinds, budget)
    if not big:
        yield guarded_referents(*chunk)
        return
    big_ids = set(map(id, big))
    yield guarded_referents(*(o for o in chunk if id(o) not in big_ids))
    for container in big:
        yield from _items(container)


def _items(container: object) -> Iterator[list[object]]:
    if isinstance(container, list | tuple):
        for start in range(0, len(container), REFS_STEP):
            yield list(container[start : start + REFS_STEP])
        return
    if isinstance(container, dict):
        it: Iterator[object] = chain(dict.keys(container), dict.values(container))
    else:
        it = iter(container)  # type: ignore[call-overload]
    try:
        while part := list(islice(it, REFS_STEP)):
            yield part
    except RuntimeError:  # the host resized it meanwhile: take it whole after all
        yield guarded_referents(container)


def release(levels: list[Level]) -> None:
    for level in levels:
        while level:  # a slice at a time: dropping millions of references at once is one long C call
            del level[-STEP:]


def walk(
    level: Level, seen: Seen, match: Match, max_depth: int, deadline: float, *, budget: Budget
) -> tuple[list[Level], object | None, str]:
    """Level by level from the roots until ``match`` hits. Returns every level (the hit's last).
    Raises BudgetError when what it keeps would pass ``budget``."""
    levels = [level]
    seen.add(levels)
    for chunk in batches(level):
        hit = match(chunk, set(map(id, chunk)))
        if hit is not None:
            return levels, hit, "found"
    while level:
        if len(levels) > max_depth:
            return levels, None, "depth_limit"
        nxt: Level = []
        levels.append(nxt)
        seen.add(nxt)
        for chunk in batches(level):
            for part in referents(chunk, budget):
                if time.monotonic() > deadline:
                    return levels, None, "time_limit"
                fresh = dict(zip(map(id, part), part, strict=True))
                new_ids = seen.fresh(fresh.keys())
                budget.charge(len(new_ids) * VISITED_BYTES)
                if new_ids:
                    new = list(map(fresh.__getitem__, new_ids))
                    add_batches(nxt, new)
                    hit = match(new, new_ids)
                    if hit is not None:
                        return levels, hit, "found"
        level = nxt
    return levels, None, "not_reachable"


def parent_in(level: Level, child: object) -> object | None:
    for chunk in batches(level):
        if _refers(chunk, child):
            for obj in chunk:
                if _refers([obj], child):
                    return obj
    return None


def _refers(chunk: list[object], child: object) -> bool:
    return any(any(map(is_, part, repeat(child))) for part in referents(chunk))
