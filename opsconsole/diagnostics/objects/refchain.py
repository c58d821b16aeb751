"""Why is this object still alive? The shortest chain of references from a root to one instance.

Runs on the console's dump worker thread (or the operator's REPL thread), never on a host thread.
Breadth-first search FORWARD from the roots with ``gc.get_referents``, one level at a time. The host
keeps running, and the GIL changes hands only between bytecodes, so no single C call may run long:
a level is walked in chunks of ``STEP`` objects and their referents in batches of ``REFS_STEP``, each
a handful of C calls (referents, id map, set difference) instead of a Python loop per object. Big
builtin containers are read a slice at a time, the visited ids live in bounded, untracked shards and
everything is released a batch at a time (see ``refchain_search``). No parent map is kept during the
walk (a Python step per edge): each level's objects are kept instead, and once the target is found
the chain is traced back through the levels, one more pass over at most those. The steps of that
chain are labelled and summarised without running host code (see ``refchain_labels``).

SearchRoots, in this order: module globals (``sys.modules``), the local variables of every other thread's
frames, and ``SearchRoots.extra`` (e.g. the app's event loops). CPython 3.11 reports nothing through
``gc.get_referents`` for a frame that is executing, so a thread's locals can only be read with
``frame.f_locals``, copied once per frame. Up to 3.12 that (re)fills a snapshot dict kept on a
function frame until it returns — the same thing a debugger or ``traceback`` with locals does; from
3.13 on (PEP 667) it is a write-through proxy over the frame, and the copy leaves nothing on it.
``SearchRoots(threads=False)`` leaves thread frames out when that matters.

The heap changes while we walk. The result is best effort: an object created during the walk may be
missed, and if a link on the found chain is cut before it is traced back the answer is
``found=False`` with reason ``heap_changed``. Everything visited is kept alive until the call returns.

Memory: the search may add at most ``memory_budget`` bytes to the process (see ``budget``); past
that it stops with ``BudgetError`` and lets go of everything it held.
"""

from __future__ import annotations

import builtins
import re
import sys
import time
import types
from collections.abc import Collection
from dataclasses import dataclass

from opsconsole.diagnostics.budget import DEFAULT_LIMIT, Budget
from opsconsole.diagnostics.objects import census
from opsconsole.diagnostics.objects.census import type_name
from opsconsole.diagnostics.objects.introspection import TYPE_DICT, namespace
from opsconsole.diagnostics.objects.refchain_labels import (
    dict_key,
    dict_key_label,
    link_label,
    object_size,
    summary,
)
from opsconsole.diagnostics.objects.refchain_search import (
    BATCH,
    REFS_STEP,
    SEEN_CAP,
    STEP,
    Level,
    Match,
    Seen,
    add_batches,
    parent_in,
    release,
    walk,
)
from opsconsole.diagnostics.objects.roots import gather_roots
from opsconsole.errors import InvalidRequestError, NotFoundError

__all__ = ["BATCH", "REFS_STEP", "SEEN_CAP", "STEP", "RefChain", "RefStep", "SearchRoots", "refchain"]

_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.<>]{0,255}")


@dataclass(frozen=True, slots=True)
class SearchRoots:
    """Where the search starts. ``modules=None`` means every module in ``sys.modules``."""

    modules: tuple[str, ...] | None = None
    threads: bool = True
    exclude_threads: frozenset[int] = frozenset()  # thread idents left out (the console's own)
    extra: tuple[tuple[str, object], ...] = ()  # (label, object), e.g. ("app loop 0", loop)


@dataclass(frozen=True, slots=True)
class RefStep:
    label: str  # how the previous object refers to this one: "[3]", ".items", ...; the root label first
    type_name: str
    size: int  # shallow sys.getsizeof
    summary: str  # short and safe: lengths, names; never the contents of a str or bytes


@dataclass(frozen=True, slots=True)
class RefChain:
    target_type: str
    found: bool
    reason: str  # "found", "not_reachable", "depth_limit", "time_limit" or "heap_changed"
    root: str  # the root label, "" when not found
    steps: tuple[RefStep, ...]  # from the root object to the target, both included
    elapsed: float
    visited: int


def _resolve_type(name: str, budget: Budget) -> type:
    """A class from its ``type_name``: builtins, then a getattr-free walk from a loaded module, then the
    classes of live objects (finds ``<locals>`` classes). Never imports anything."""
    if _TYPE_NAME.fullmatch(name) is None:
        raise InvalidRequestError(f"not a qualified type name: {name!r:.80}")
    found = builtins.__dict__.get(name)
    if isinstance(found, type) and type_name(found) == name:
        return found
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        obj: object = sys.modules.get(".".join(parts[:cut]))
        for part in parts[cut:]:
            ns = namespace(obj)
            if ns is not None:
                obj = ns.get(part)
            elif isinstance(obj, type):
                obj = TYPE_DICT.__get__(obj, type).get(part)
            else:
                break
        if isinstance(obj, type) and type_name(obj) == name:
            return obj
    for t in _live_types(budget):
        if type_name(t) == name:
            return t
    raise NotFoundError(f"no live object of type {name}")


def _live_types(budget: Budget) -> set[type]:
    found: set[type] = set()
    with census.every_object() as objs:
        budget.charge(len(objs) * 8)
        while objs:  # chunk by chunk: the GIL can change hands in between
            found.update(map(type, objs[-census.CHUNK :]))
            del objs[-census.CHUNK :]
    return found


def _matcher(target: str | type | object, budget: Budget) -> tuple[str, Match]:
    if isinstance(target, str | type):
        kind = _resolve_type(target, budget) if isinstance(target, str) else target

        def by_type(new: list[object], _ids: set[int]) -> object | None:
            if kind in set(map(type, new)):
                return next(o for o in new if type(o) is kind)
            return None

        return type_name(kind), by_type
    want = id(target)

    def by_identity(_new: list[object], ids: set[int]) -> object | None:
        return target if want in ids else None

    return type_name(type(target)), by_identity


def _path_steps(path: list[object], root_label: str) -> tuple[RefStep, ...]:
    """One step per object, root first. A namespace dict between an object and a value is folded
    into one ``.name`` step: ``.cache`` reads better than ``.__dict__`` then ``['cache']``."""
    steps: list[RefStep] = []
    label = root_label
    i = 0
    while i < len(path):
        obj = path[i]
        if 0 < i < len(path) - 1 and label == ".__dict__":
            key = dict_key(obj, path[i + 1])  # type: ignore[arg-type]
            ident = isinstance(key, str) and key.isidentifier()
            label = f".{key}" if ident else f".__dict__{dict_key_label(key)}"
            i += 1
            obj = path[i]
        steps.append(RefStep(label, type_name(type(obj)), object_size(obj), summary(obj)))
        if i + 1 < len(path):
            label = link_label(obj, path[i + 1])
        i += 1
    return tuple(steps)


def refchain(
    target: str | type | object,
    *,
    roots: SearchRoots,
    max_depth: int = 40,
    time_limit: float = 5.0,
    exclude: Collection[int] = (),
    memory_budget: int = DEFAULT_LIMIT,
) -> RefChain:
    """Shortest chain from a root to one instance of ``target`` (a ``type_name``, a class, or one object).

    ``exclude``: thread idents whose frames are not roots (added to ``roots.exclude_threads``); the
    calling thread is always left out, so the search never finds itself. ``memory_budget``: bytes the
    search may add to the process (BudgetError past it). Dump worker or REPL thread.
    """
    if not 1 <= max_depth <= 1000:
        raise InvalidRequestError(f"max_depth must be between 1 and 1000, not {max_depth}")
    if not 0 < time_limit <= 600:
        raise InvalidRequestError(f"time_limit must be in (0, 600] seconds, not {time_limit}")
    excluded = frozenset(exclude) | roots.exclude_threads
    # _search's frame, holding every visited object, is gone when this block ends
    with census.working(), Budget("refchain", memory_budget) as budget:
        return _search(target, roots, max_depth, time_limit, excluded, budget=budget)


def _search(
    target: str | type | object,
    roots: SearchRoots,
    max_depth: int,
    time_limit: float,
    exclude: frozenset[int],
    *,
    budget: Budget,
) -> RefChain:
    started = time.monotonic()
    name, match = _matcher(target, budget)
    root_set = gather_roots(roots.modules, roots.threads, roots.extra, exclude)
    # never walked: the search's own containers and this thread's frames
    own = [id(root_set), id(root_set.objects)]
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        own.append(id(frame))
        frame = frame.f_back
    seen = Seen(own)
    seen.add(seen)
    first = dict(zip(map(id, root_set.objects), root_set.objects, strict=True))
    fresh = [first[i] for i in seen.fresh(first.keys())]  # duplicates dropped
    del first
    level: Level = []
    add_batches(level, fresh)
    del fresh
    levels: list[Level] = []
    try:
        levels, hit, reason = walk(level, seen, match, max_depth, started + time_limit, budget=budget)
        visited = sum(len(batch) for done in levels for batch in done)
        if hit is None:
            return RefChain(name, False, reason, "", (), time.monotonic() - started, visited)
        path = [hit]
        for depth in range(len(levels) - 2, -1, -1):
            parent = parent_in(levels[depth], path[-1])
            if parent is None:
                return RefChain(name, False, "heap_changed", "", (), time.monotonic() - started, visited)
            path.append(parent)
    finally:
        seen.release()
        release(levels)
    path.reverse()
    root_label = root_set.label(path[0])
    steps = _path_steps(path, root_label)
    return RefChain(name, True, "found", root_label, steps, time.monotonic() - started, visited)
