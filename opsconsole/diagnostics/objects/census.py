"""Live-object census and growth tracking (what objgraph's ``show_growth`` answers), without long stalls.

Runs on the console's dump worker thread or the operator's REPL thread, never on a host thread. The
host keeps running meanwhile, so every step is shaped around the GIL: the interpreter hands the GIL
to another thread only between bytecodes, so one C call over a million objects (``Counter(map(...))``)
would freeze every host thread for its whole duration. The object list is therefore consumed in
chunks of ``CHUNK`` objects; each chunk is a few short C calls and the loop between chunks lets the
host threads in. The one unavoidable long call is ``gc.get_objects()`` itself. ``gc.collect()`` is
never called: on a big heap it stalls every thread far longer.

Only GC-tracked objects are seen (as with objgraph): str, int, float and containers holding only
such atoms are untracked by CPython and do not appear. Sizes are shallow (``sys.getsizeof``; a class's
own ``__sizeof__`` is honoured, and one that raises counts as 0).

The census's own objects are not counted: they are all created after ``gc.get_objects()`` returns,
and the growth baselines are flat str → int dicts, which CPython does not track. While a census runs,
its thread holds a list of every object; ``working()`` marks that so refchain never walks through it.
That list (8 bytes an object) and the per-class tables are charged to the census's memory ``Budget``:
past it the census stops with ``BudgetError``. A class's own ``__sizeof__`` written in Python is not
run (it could do anything, allocate included): such objects are sized as ``object.__sizeof__`` does.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import types
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opsconsole.diagnostics.budget import DEFAULT_LIMIT, Budget
from opsconsole.diagnostics.objects.introspection import TYPE_DICT, TYPE_MRO
from opsconsole.errors import InvalidRequestError

CHUNK = 20_000  # objects per GIL-holding step: a few short C calls each
MAX_TOP = 1000

# The getsets of ``type`` itself: reading a class's name through them never runs a metaclass's code.
_TYPE_MODULE: Any = type.__dict__["__module__"]
_TYPE_QUALNAME: Any = type.__dict__["__qualname__"]
_BUILTIN_METHODS = (types.MethodDescriptorType, types.WrapperDescriptorType, types.BuiltinFunctionType)
_NAMES_MAX = 8192
# id(type) → (weak ref, name). Keyed by id with a weak check so the cache never keeps a class alive;
# a dead class's entry is harmless (the ref no longer matches) and the whole cache is bounded.
_names: dict[int, tuple[weakref.ref[type], str]] = {}

# Per thread: how many censuses / reference searches it started and finished. A thread inside one
# holds a list of every object in its frame; refchain leaves such threads' frames out of its roots
# (it compares these counters before and after reading a frame's locals, which closes the race).
# Each thread only writes its own entry, and single dict operations are atomic under the GIL.
_started: dict[int, int] = {}
_finished: dict[int, int] = {}


@contextmanager
def working() -> Iterator[None]:
    """Mark the current thread as holding object lists until the block ends. Drop them inside it."""
    ident = threading.get_ident()
    _started[ident] = _started.get(ident, 0) + 1
    try:
        yield
    finally:
        _finished[ident] = _finished.get(ident, 0) + 1


@contextmanager
def every_object() -> Iterator[list[object]]:
    """``gc.get_objects()``, with the collector's automatic runs paused while the block holds it.

    A list of a million references is itself a young GC container: the next automatic
    collection (of generation 0, then again of generation 1) visits every one of its items,
    and one that fires right after ``get_objects()`` adds that to its own stall without the GIL
    changing hands. Consume the list in chunks inside the block and drop it before it ends. The
    pause is process-wide, for the block only; ``gc.collect()`` still works,
    and a collector the host had turned off stays off.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        time.sleep(0)  # let waiting threads run first: the stall is then the one C call, nothing before it
        yield gc.get_objects()
    finally:
        if enabled:
            gc.enable()


def activity(ident: int) -> tuple[int, int]:
    """(started, finished) counts of ``working()`` blocks on thread ``ident``. Any thread."""
    return _started.get(ident, 0), _finished.get(ident, 0)


@dataclass(frozen=True, slots=True)
class TypeStat:
    name: str
    count: int
    size: int  # total shallow bytes; 0 when the census was taken without sizes


@dataclass(frozen=True, slots=True)
class Census:
    taken_at: float  # time.time()
    total_objects: int
    total_size: int  # 0 when ``sized`` is False
    types: tuple[TypeStat, ...]  # the top N by count
    distinct_types: int = 0
    sized: bool = True
    elapsed: float = 0.0  # seconds the census took (on the dump thread, not host stall)


def type_name(t: type) -> str:
    """``module.QualName`` (``dict`` for builtins), cached per class without keeping it alive. Any thread."""
    hit = _names.get(id(t))
    if hit is not None and hit[0]() is t:
        return hit[1]
    try:
        module = _TYPE_MODULE.__get__(t, type)
    except AttributeError:  # a heap type whose __module__ was deleted
        module = "?"
    qual = str(_TYPE_QUALNAME.__get__(t, type))
    name = qual if module == "builtins" else f"{module}.{qual}"
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    _names[id(t)] = (weakref.ref(t), name)
    return name


_OBJECT_SIZEOF: Any = object.__sizeof__
_GC_HEAD = sys.getsizeof([]) - [].__sizeof__()  # what getsizeof adds for a GC-tracked object
# id(type) → (weak ref, whether its __sizeof__ is written in Python); bounded like _names
_py_sizeof: dict[int, tuple[weakref.ref[type], bool]] = {}


def _sized_in_python(t: type) -> bool:
    """Does ``t`` (or a base) define ``__sizeof__`` in Python? Looked up in the classes' own dicts
    along the real MRO: no attribute access that could run host code."""
    hit = _py_sizeof.get(id(t))
    if hit is not None and hit[0]() is t:
        return hit[1]
    found = False
    for klass in TYPE_MRO.__get__(t, type):
        attr = TYPE_DICT.__get__(klass, type).get("__sizeof__")
        if attr is not None:
            found = not isinstance(attr, _BUILTIN_METHODS)
            break
    if len(_py_sizeof) >= _NAMES_MAX:
        _py_sizeof.clear()
    _py_sizeof[id(t)] = (weakref.ref(t), found)
    return found


def shallow_size(obj: object) -> int:
    """``sys.getsizeof(obj)``, without running a ``__sizeof__`` written in Python (such objects are
    sized as ``object.__sizeof__`` does); 0 when C code raises. Any thread."""
    try:
        if _sized_in_python(type(obj)):
            return int(_OBJECT_SIZEOF(obj)) + (_GC_HEAD if gc.is_tracked(obj) else 0)
        return sys.getsizeof(obj)
    except Exception:  # a C __sizeof__ that raises must not break the census
        return 0


def shallow_sizes(chunk: list[object]) -> list[int]:
    """``shallow_size`` of each; one C pass when no class in the chunk sizes itself in Python."""
    kinds = {id(t): t for t in map(type, chunk)}  # by id: hashing a class could run its metaclass
    if any(map(_sized_in_python, kinds.values())):
        return list(map(shallow_size, chunk))
    try:
        return list(map(sys.getsizeof, chunk))
    except Exception:  # a C __sizeof__ that raises: each on its own
        return list(map(shallow_size, chunk))


def _add_sizes(chunk: list[object], sizes: dict[type, int]) -> None:
    get = sizes.get
    for t, n in zip(map(type, chunk), shallow_sizes(chunk), strict=True):
        sizes[t] = get(t, 0) + n


def _count(with_sizes: bool, budget: Budget) -> tuple[Counter[type], dict[type, int]]:
    """Counts (and sizes) per class. Consumes the object list from the end, chunk by chunk, so each
    step holds the GIL briefly and references are released as we go, not all at the end."""
    counts: Counter[type] = Counter()
    sizes: dict[type, int] = {}
    with every_object() as objs:
        budget.charge(len(objs) * 8)
        while objs:
            budget.charge(0)  # measured now and then: the host may grow meanwhile
            chunk = objs[-CHUNK:]
            del objs[-CHUNK:]
            counts.update(map(type, chunk))
            if with_sizes:
                _add_sizes(chunk, sizes)
    return counts, sizes


def _take(with_sizes: bool, memory_budget: int) -> tuple[Counter[type], dict[type, int]]:
    # _count's frame, and with it every object list, is gone when this block ends
    with working(), Budget("census", memory_budget) as budget:
        return _count(with_sizes, budget)


@dataclass(frozen=True, slots=True)
class Counts:
    """Per-name counts and sizes. Two flat dicts of str → int: almost nothing GC-tracked, so a stored
    baseline does not show up in the next census."""

    taken_at: float
    counts: dict[str, int]
    sizes: dict[str, int] | None


def take_counts(with_sizes: bool, memory_budget: int = DEFAULT_LIMIT) -> tuple[Counts, float]:
    """Per-name counts (and sizes) of the live GC-tracked objects, and the seconds it took."""
    started = time.monotonic()
    by_type, size_by_type = _take(with_sizes, memory_budget)
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for t, n in by_type.items():
        name = type_name(t)  # distinct classes with one name (e.g. re-imported) are merged, as objgraph
        counts[name] = counts.get(name, 0) + n
        if with_sizes:
            sizes[name] = sizes.get(name, 0) + size_by_type.get(t, 0)
    return Counts(time.time(), counts, sizes if with_sizes else None), time.monotonic() - started


def check_top(top: int) -> None:
    """InvalidRequestError unless ``top`` (rows asked for) is 1 .. MAX_TOP."""
    if not 1 <= top <= MAX_TOP:
        raise InvalidRequestError(f"top must be between 1 and {MAX_TOP}, not {top}")


def summary(state: Counts, top: int, elapsed: float) -> Census:
    """The ``top`` classes of ``state`` by count, as a ``Census``."""
    sizes = state.sizes or {}
    names = sorted(state.counts, key=lambda n: (-state.counts[n], -sizes.get(n, 0), n))[:top]
    return Census(
        taken_at=state.taken_at,
        total_objects=sum(state.counts.values()),
        total_size=sum(sizes.values()),
        types=tuple(TypeStat(n, state.counts[n], sizes.get(n, 0)) for n in names),
        distinct_types=len(state.counts),
        sized=state.sizes is not None,
        elapsed=elapsed,
    )


def census(*, top: int = 30, sizes: bool = True, memory_budget: int = DEFAULT_LIMIT) -> Census:
    """Live GC-tracked objects per class, the top ``top`` by count. ``memory_budget``: bytes the census
    may add to the process (BudgetError past it). Dump worker or REPL thread."""
    check_top(top)
    state, elapsed = take_counts(sizes, memory_budget)
    return summary(state, top, elapsed)
