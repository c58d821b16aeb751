"""Why is this object still alive? The shortest chain of references from a root to one instance.

Runs on the console's dump worker thread (or the operator's REPL thread), never on a host thread.
Breadth-first search FORWARD from the roots with ``gc.get_referents``, one level at a time. The host
keeps running, and the GIL changes hands only between bytecodes, so no single C call may run long:
a level is walked in chunks of ``STEP`` objects and their referents in batches of ``REFS_STEP``, each
a handful of C calls (referents, id map, set difference) instead of a Python loop per object. Big
builtin containers are read a slice at a time, the visited ids live in bounded, untracked shards and
everything is released a batch at a time (see ``_Seen``, ``_referents``, ``_Level``). No parent map
is kept during the walk (a Python step per edge): each level's objects are kept instead, and once the
target is found the chain is traced back through the levels, one more pass over at most those.

Roots, in this order: module globals (``sys.modules``), the local variables of every other thread's
frames, and ``Roots.extra`` (e.g. the app's event loops). CPython 3.11 reports nothing through
``gc.get_referents`` for a frame that is executing, so a thread's locals can only be read with
``frame.f_locals``; for a function frame that (re)fills a snapshot dict kept on the frame until it
returns — the same thing a debugger or ``traceback`` with locals does. ``Roots(threads=False)``
leaves thread frames out when that matters.

The heap changes while we walk. The result is best effort: an object created during the walk may be
missed, and if a link on the found chain is cut before it is traced back the answer is
``found=False`` with reason ``heap_changed``. Everything visited is kept alive until the call returns.
"""

from __future__ import annotations

import builtins
import gc
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from operator import is_
from typing import Any

from opsconsole.diagnostics import census
from opsconsole.diagnostics.census import type_name
from opsconsole.errors import InvalidRequestError, NotFoundError

STEP = 1_000  # objects per gc.get_referents call: well under a millisecond of C work
REFS_STEP = 10_000  # referents handled per batch of C calls (each a few ms at most)
BATCH = 32  # objects per list a level is kept in (see _Level)
SEEN_CAP = 200_000  # ids per visited-set: growing one rehashes it in one C call (~10 ms at this size)
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.<>]{0,255}")
# Descriptors of CPython's own types, called directly so that reading a module's or a class's
# namespace never runs a module subclass's or a metaclass's code.
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_TYPE_DICT: Any = vars(type)["__dict__"]
_TYPE_MRO: Any = vars(type)["__mro__"]
_TYPE_DICTOFFSET: Any = vars(type)["__dictoffset__"]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Roots:
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


def _resolve_type(name: str) -> type:
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
            ns = _namespace(obj)
            if ns is not None:
                obj = ns.get(part)
            elif isinstance(obj, type):
                obj = _TYPE_DICT.__get__(obj, type).get(part)
            else:
                break
        if isinstance(obj, type) and type_name(obj) == name:
            return obj
    for t in _live_types():
        if type_name(t) == name:
            return t
    raise NotFoundError(f"no live object of type {name}")


def _live_types() -> set[type]:
    found: set[type] = set()
    objs = gc.get_objects()
    while objs:  # chunk by chunk: the GIL can change hands in between
        found.update(map(type, objs[-census.CHUNK :]))
        del objs[-census.CHUNK :]
    return found


@dataclass(slots=True)
class _RootSet:
    objects: list[object]
    modules: list[tuple[str, dict[str, object]]]
    frames: list[tuple[str, dict[str, object]]]  # (label prefix, the locals snapshot read once)
    extra: tuple[tuple[str, object], ...]

    def label(self, obj: object) -> str:
        """The first root (in root order) holding ``obj``; only called once, for the found chain."""
        for module, ns in self.modules:
            for key, value in list(ns.items()):
                if value is obj:
                    return f"{module}.{key}"
        for prefix, local_vars in self.frames:
            for key, value in list(local_vars.items()):
                if value is obj:
                    return f"{prefix} local {key}"
        for label, value in self.extra:
            if value is obj:
                return label
        return "?"


def _namespace(module: object) -> dict[str, object] | None:
    """A module's globals, or None for other objects (cffi's ``Lib`` passes isinstance but has none)."""
    if not isinstance(module, types.ModuleType):
        return None
    try:
        ns = _MODULE_DICT.__get__(module, types.ModuleType)
    except TypeError:
        return None
    return ns if isinstance(ns, dict) else None


def _thread_locals(ident: int, top: types.FrameType, thread: str) -> list[tuple[str, dict[str, object]]]:
    """(label prefix, copy of the locals) per frame of one thread, innermost first; nothing for a thread
    inside a census or reference search (its locals hold lists of every object). The thread's
    activity counters are read before and after: if it was busy at any time in between, skip it."""
    before = census.activity(ident)
    found = []
    f: types.FrameType | None = top
    while f is not None:
        where = f"{f.f_code.co_name} ({f.f_code.co_filename}:{f.f_lineno})"
        found.append((f'thread "{thread}" frame {where}', dict(f.f_locals)))  # f_locals: once per frame
        f = f.f_back
    after = census.activity(ident)
    return found if before == after and before[0] == before[1] else []


def _roots(roots: Roots, exclude_threads: Collection[int]) -> _RootSet:
    modules: list[tuple[str, dict[str, object]]] = []
    loose: list[tuple[str, object]] = []
    names = list(sys.modules) if roots.modules is None else list(roots.modules)
    for name in names:
        module: object = sys.modules.get(name)
        ns = _namespace(module)
        if ns is not None:
            modules.append((name, ns))
        elif module is not None:  # sys.modules may hold any object
            loose.append((name, module))
    frames: list[tuple[str, dict[str, object]]] = []
    if roots.threads:
        me = threading.get_ident()
        thread_names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me or ident in exclude_threads:
                continue
            frames.extend(_thread_locals(ident, frame, thread_names.get(ident, f"ident {ident}")))
    objects: list[object] = []
    for _, ns in modules:
        objects.extend(list(ns.values()))
    for _, local_vars in frames:
        objects.extend(list(local_vars.values()))
    extra = (*loose, *roots.extra)
    objects.extend(value for _, value in extra)
    return _RootSet(objects, modules, frames, extra)


_Match = Callable[[list[object], set[int]], object | None]


def _matcher(target: str | type | object) -> tuple[str, _Match]:
    if isinstance(target, str | type):
        kind = _resolve_type(target) if isinstance(target, str) else target

        def by_type(new: list[object], _ids: set[int]) -> object | None:
            if kind in set(map(type, new)):
                return next(o for o in new if type(o) is kind)
            return None

        return type_name(kind), by_type
    want = id(target)

    def by_identity(_new: list[object], ids: set[int]) -> object | None:
        return target if want in ids else None

    return type_name(type(target)), by_identity


# -- labels, computed only for the few objects on the found chain ---------------------------------

# Descriptor types whose __get__ is CPython's own (reading them runs no host code).
_PLAIN_GET = (types.FunctionType, staticmethod, classmethod, types.BuiltinFunctionType)
_SIMPLE_KEYS = (str, bytes, int, float, bool, type(None))
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_RUNNING = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
# Attributes of CPython's own types, read through their C getsets (no host code); the frame
# attribute of generators and coroutines comes second, _builtin_attr_label relies on it.
_ATTRS: dict[type, list[str]] = {
    types.FunctionType: [
        "__code__",
        "__globals__",
        "__builtins__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
    ],
    types.MethodType: ["__self__", "__func__"],
    staticmethod: ["__func__"],
    classmethod: ["__func__"],
    property: ["fget", "fset", "fdel"],
    types.TracebackType: ["tb_frame", "tb_next"],
    types.FrameType: ["f_back", "f_code", "f_globals", "f_builtins", "f_trace"],
    types.GeneratorType: ["gi_code", "gi_frame"],
    types.CoroutineType: ["cr_code", "cr_frame"],
    types.AsyncGeneratorType: ["ag_code", "ag_frame"],
}
_EXC_ATTRS = ("args", "__traceback__", "__context__", "__cause__")


def _class_attr(cls: type, name: str) -> object:
    for klass in _TYPE_MRO.__get__(cls, type):
        ns = _TYPE_DICT.__get__(klass, type)
        if name in ns:
            return ns[name]
    return _MISSING


def _codes(value: object) -> list[types.CodeType]:
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    funcs = [value.fget, value.fset, value.fdel] if isinstance(value, property) else [value]
    todo = [f.__code__ for f in funcs if isinstance(f, types.FunctionType)]
    codes = []
    while todo:  # nested functions, lambdas and comprehensions store attributes too
        code = todo.pop()
        codes.append(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


def _attribute_names(cls: type) -> list[str]:
    """Names an instance may hold: annotations and every attribute name the class's methods use.
    Reading the instance's own dict would materialise it on 3.11 (+ a dict per instance)."""
    names: dict[str, None] = {}
    for klass in _TYPE_MRO.__get__(cls, type):
        if klass is object:
            continue
        ns = _TYPE_DICT.__get__(klass, type)
        annotations = ns.get("__annotations__")
        if isinstance(annotations, dict):
            names.update(dict.fromkeys(k for k in annotations if isinstance(k, str)))
        for value in list(ns.values()):
            for code in _codes(value):
                names.update(dict.fromkeys(code.co_names))
    return list(names)


def _instance_value(obj: object, name: str) -> object:
    """The instance's own attribute ``name``, or _MISSING; never runs host code (properties, custom
    descriptors and ``__getattr__`` are left alone) and reads inline values without a dict."""
    attr = _class_attr(type(obj), name)
    if attr is not _MISSING:
        kind = type(attr)
        if _class_attr(kind, "__set__") is not _MISSING or _class_attr(kind, "__delete__") is not _MISSING:
            return _MISSING
        if _class_attr(kind, "__get__") is not _MISSING and not isinstance(attr, _PLAIN_GET):
            return _MISSING
    try:
        value = object.__getattribute__(obj, name)
    except Exception:
        return _MISSING
    return _MISSING if value is attr else value


def _slot_or_attribute(obj: object, child: object) -> str | None:
    cls = type(obj)
    for klass in _TYPE_MRO.__get__(cls, type):
        for key, attr in list(_TYPE_DICT.__get__(klass, type).items()):
            if type(attr) is types.MemberDescriptorType:
                try:
                    if attr.__get__(obj, cls) is child:
                        return f".{key}"
                except AttributeError:  # an empty slot
                    continue
    for name in _attribute_names(cls):
        if _instance_value(obj, name) is child:
            return f".{name}"
    return None


def _is_namespace(parent: object, child: object) -> bool:
    """Is ``child`` the __dict__ of module, class or instance ``parent``? Without materialising one."""
    if type(child) is not dict:
        return False
    if isinstance(parent, types.ModuleType):
        return child is _namespace(parent)
    items = list(child.items())
    if isinstance(parent, type):
        ns = _TYPE_DICT.__get__(parent, type)
        return len(ns) == len(items) and all(ns.get(k, _MISSING) is v for k, v in items)
    if _TYPE_DICTOFFSET.__get__(type(parent), type) == 0 or _slot_or_attribute(parent, child) is not None:
        return False
    # A materialised instance dict: every key reads back (inline lookup, no new dict) as its value.
    if not items or not all(isinstance(k, str) for k, _ in items):
        return False
    return all(_instance_value(parent, k) is v for k, v in items)


def _dict_key(d: dict[object, object], child: object) -> object:
    for key, value in list(dict.items(d)):
        if value is child:
            return key
    return _MISSING


def _plain(key: object) -> bool:
    """Is repr(key) CPython's own (no host __repr__ runs)? Atoms, and small tuples of them."""
    if type(key) is tuple:
        return len(key) <= 8 and all(_plain(k) for k in key)
    return type(key) in _SIMPLE_KEYS


def _key_label(key: object) -> str:
    if _plain(key):
        text = repr(key)
        return f"[{text[:77]}...]" if len(text) > 80 else f"[{text}]"
    return f"[<{type_name(type(key))} object>]"  # a host __repr__ is never called


def _frame_local(frame: object, child: object) -> str | None:
    if not isinstance(frame, types.FrameType):
        return None
    for key, value in list(frame.f_locals.items()):  # read once, for a frame on the chain only
        if value is child:
            return f"local {key}"
    return None


def _container_label(parent: object, child: object) -> str | None:
    if isinstance(parent, dict):
        key = _dict_key(parent, child)
        if key is not _MISSING:
            return _key_label(key)
        if any(k is child for k in list(dict.keys(parent))):
            return f"key {type_name(type(child))}"
    elif isinstance(parent, list | tuple):
        items = list.copy(parent) if isinstance(parent, list) else tuple.__getitem__(parent, slice(None))
        for i, value in enumerate(items):
            if value is child:
                return f"[{i}]"
    elif isinstance(parent, set | frozenset):
        return "{member}"
    elif type(parent) is types.CellType:
        return ".cell_contents"
    return None


def _builtin_attr_label(parent: object, child: object) -> str | None:
    kind = type(parent)
    for name in _ATTRS.get(kind, ()):  # CPython's own getsets: no host code runs
        if getattr(parent, name, None) is child:
            return f".{name}"
    if kind in _RUNNING:
        return _frame_local(getattr(parent, _ATTRS[kind][1], None), child)
    if isinstance(parent, BaseException):
        for name in _EXC_ATTRS:
            if vars(BaseException)[name].__get__(parent, kind) is child:
                return f".{name}"
    if isinstance(parent, type):
        for name in ("__mro__", "__bases__", "__base__"):
            if vars(type)[name].__get__(parent, type) is child:
                return f".{name}"
    return _frame_local(parent, child)


def _edge_label(parent: object, child: object) -> str:
    """How ``parent`` refers to ``child``, for humans: [key], [i], .attr, local x, ..."""
    found = _container_label(parent, child)
    if found is None and _is_namespace(parent, child):
        found = ".__dict__"
    if found is None:
        found = _builtin_attr_label(parent, child)
    if found is None and not isinstance(parent, type | types.ModuleType):
        found = _slot_or_attribute(parent, child)
    return found if found is not None else f"referent of {type_name(type(parent))}"


def _summary(obj: object) -> str:
    """Short and safe: lengths and names only. Never a str/bytes repr (secrets), never a host __repr__."""
    kind = type(obj)
    text = ""
    if kind in _SIZED:
        text = f"len {len(obj)}"  # type: ignore[arg-type]
    elif isinstance(obj, types.ModuleType):
        text = f"module {(_namespace(obj) or {}).get('__name__', '?')}"
    elif isinstance(obj, type):
        text = f"class {type_name(obj)}"
    elif isinstance(obj, types.FunctionType):
        text = f"function {obj.__qualname__}"
    elif isinstance(obj, types.FrameType):
        text = f"{obj.f_code.co_name} ({obj.f_code.co_filename}:{obj.f_lineno})"
    elif kind in _RUNNING:
        text = str(getattr(obj, "__qualname__", ""))
    elif obj is None or kind is bool:
        text = repr(obj)
    return text


def _path_steps(path: list[object], root_label: str) -> tuple[RefStep, ...]:
    """One step per object, root first. A namespace dict between an object and a value is folded
    into one ``.name`` step: ``.cache`` reads better than ``.__dict__`` then ``['cache']``."""
    steps: list[RefStep] = []
    label = root_label
    i = 0
    while i < len(path):
        obj = path[i]
        if 0 < i < len(path) - 1 and label == ".__dict__":
            key = _dict_key(obj, path[i + 1])  # type: ignore[arg-type]
            ident = isinstance(key, str) and key.isidentifier()
            label = f".{key}" if ident else f".__dict__{_key_label(key)}"
            i += 1
            obj = path[i]
        steps.append(RefStep(label, type_name(type(obj)), _size(obj), _summary(obj)))
        if i + 1 < len(path):
            label = _edge_label(obj, path[i + 1])
        i += 1
    return tuple(steps)


def _parent_in(level: _Level, child: object) -> object | None:
    for chunk in _batches(level):
        if _refers(chunk, child):
            for obj in chunk:
                if _refers([obj], child):
                    return obj
    return None


def _refers(chunk: list[object], child: object) -> bool:
    return any(any(map(is_, part, repeat(child))) for part in _referents(chunk))


def _size(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a host __sizeof__ may raise
        return 0


class _Seen:
    """Visited ids. Two choices keep host pauses short:

    * shards of at most ``SEEN_CAP`` ids: one table of millions would be rehashed in one long C call
      each time it grows (2.5M entries: ~150 ms);
    * dicts of int → None, not sets: CPython never GC-tracks such a dict, while a set is always
      tracked and every young collection would scan its whole table (~20 ms for 200k ids).
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
# one traverses every container kept since the last: with big batches that was over a million
# references (40 ms) in one pause. With BATCH-sized lists a young collection sees ~700 × BATCH
# references and the next generation ~10 times that: a few milliseconds each.
_Level = list[list[object]]


def _add_batches(level: _Level, objs: list[object]) -> None:
    level.extend(objs[i : i + BATCH] for i in range(0, len(objs), BATCH))


def _batches(level: _Level) -> Iterator[list[object]]:
    """The level's objects in lists of up to STEP, for one gc.get_referents call each."""
    objs = chain.from_iterable(level)
    while chunk := list(islice(objs, STEP)):
        yield chunk


_BIG_KINDS = frozenset((list, tuple, dict, set, frozenset))  # exact types: len() runs no host code


def _referents(chunk: list[object]) -> Iterator[list[object]]:
    """What ``gc.get_referents(*chunk)`` returns, in lists of at most about REFS_STEP objects. A big
    builtin container is read a slice at a time: one list of its million referents would be a long
    C call to build, and a long pause for each young-generation collection while it lives."""
    kinds = list(map(type, chunk))
    mask = list(map(_BIG_KINDS.__contains__, kinds))
    big: list[object] = []
    if any(mask):
        candidates = list(compress(chunk, mask))
        big = [c for c, n in zip(candidates, map(len, candidates), strict=True) if n > REFS_STEP]  # type: ignore[arg-type]
    if not big:
        yield gc.get_referents(*chunk)
        return
    big_ids = set(map(id, big))
    yield gc.get_referents(*(o for o in chunk if id(o) not in big_ids))
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
        yield gc.get_referents(container)


def _release(levels: list[_Level]) -> None:
    for level in levels:
        while level:  # a slice at a time: dropping millions of references at once is one long C call
            del level[-STEP:]


def _walk(
    level: _Level, seen: _Seen, match: _Match, max_depth: int, deadline: float
) -> tuple[list[_Level], object | None, str]:
    """Level by level from the roots until ``match`` hits. Returns every level (the hit's last)."""
    levels = [level]
    seen.add(levels)
    for chunk in _batches(level):
        hit = match(chunk, set(map(id, chunk)))
        if hit is not None:
            return levels, hit, "found"
    while level:
        if len(levels) > max_depth:
            return levels, None, "depth_limit"
        nxt: _Level = []
        levels.append(nxt)
        seen.add(nxt)
        for chunk in _batches(level):
            for part in _referents(chunk):
                if time.monotonic() > deadline:
                    return levels, None, "time_limit"
                fresh = dict(zip(map(id, part), part, strict=True))
                new_ids = seen.fresh(fresh.keys())
                if new_ids:
                    new = list(map(fresh.__getitem__, new_ids))
                    _add_batches(nxt, new)
                    hit = match(new, new_ids)
                    if hit is not None:
                        return levels, hit, "found"
        level = nxt
    return levels, None, "not_reachable"


def refchain(
    target: str | type | object,
    *,
    roots: Roots,
    max_depth: int = 40,
    time_limit: float = 5.0,
    exclude: Collection[int] = (),
) -> RefChain:
    """Shortest chain from a root to one instance of ``target`` (a ``type_name``, a class, or one object).

    ``exclude``: thread idents whose frames are not roots (added to ``roots.exclude_threads``); the
    calling thread is always left out, so the search never finds itself. Dump worker or REPL thread.
    """
    if not 1 <= max_depth <= 1000:
        raise InvalidRequestError(f"max_depth must be between 1 and 1000, not {max_depth}")
    if not 0 < time_limit <= 600:
        raise InvalidRequestError(f"time_limit must be in (0, 600] seconds, not {time_limit}")
    with census.working():  # _search's frame, holding every visited object, is gone when this ends
        return _search(target, roots, max_depth, time_limit, frozenset(exclude) | roots.exclude_threads)


def _search(
    target: str | type | object, roots: Roots, max_depth: int, time_limit: float, exclude: frozenset[int]
) -> RefChain:
    started = time.monotonic()
    name, match = _matcher(target)
    root_set = _roots(roots, exclude)
    # never walked: the search's own containers and this thread's frames
    own = [id(root_set), id(root_set.objects)]
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        own.append(id(frame))
        frame = frame.f_back
    seen = _Seen(own)
    seen.add(seen)
    first = dict(zip(map(id, root_set.objects), root_set.objects, strict=True))
    fresh = [first[i] for i in seen.fresh(first.keys())]  # duplicates dropped
    del first
    level: _Level = []
    _add_batches(level, fresh)
    del fresh
    levels: list[_Level] = []
    try:
        levels, hit, reason = _walk(level, seen, match, max_depth, started + time_limit)
        visited = sum(len(batch) for done in levels for batch in done)
        if hit is None:
            return RefChain(name, False, reason, "", (), time.monotonic() - started, visited)
        path = [hit]
        for depth in range(len(levels) - 2, -1, -1):
            parent = _parent_in(levels[depth], path[-1])
            if parent is None:
                return RefChain(name, False, "heap_changed", "", (), time.monotonic() - started, visited)
            path.append(parent)
    finally:
        seen.release()
        _release(levels)
    path.reverse()
    root_label = root_set.label(path[0])
    steps = _path_steps(path, root_label)
    return RefChain(name, True, "found", root_label, steps, time.monotonic() - started, visited)
