"""The object-graph walk behind ``.heapsnapshot``: every object reached, numbered, sized and linked.

Breadth-first from synthetic roots (node 0 → "(modules)" → each module by name, "(threads)" → one
node per frame of every other thread with its locals, "(other roots)" → the app loops and loose
``sys.modules`` entries), then "(gc objects)" → every GC-tracked object not reached that way, so
everything in the file is reachable from node 0. Untracked objects (str, int, ...) are reached through
their referrers. The result is flat arrays (a few bytes per node and per edge), no per-node objects;
see ``heapsnapshot_ids`` for the ordinals. Objects are processed in ordinal order, so their edges come
out grouped by node, as the format wants.

How Python holds things, and how it shows: a list or tuple has ``element`` edges by index; a dict has
one ``property`` edge per str key (the key names the edge; non-str keys get a ``[key]`` edge to the
value plus an internal ``(key)`` edge to the key object); an instance whose attributes live inline
(CPython 3.11+ without a materialised ``__dict__``) has one edge per attribute, named by attribute
(read by name through ``object.__getattribute__``: its ``__dict__`` is never materialised); a
materialised ``__dict__`` is a real dict node, as in the interpreter. A module and its globals dict
are one ``synthetic`` node (modules are where globals are rooted, like a page's global object), so a
function's ``__globals__`` edge leads to its module. Builtin kinds (functions, frames, code, cells...)
name their edges through CPython's own getsets; anything else has ``internal`` "referent" edges.

Runs on the dump worker (or a REPL session thread) while the host keeps running: each step is at most
``CHUNK`` objects or ``REFS_STEP`` references of C work, the GIL is released between steps, and
``gc.collect()`` is never called. The heap changes meanwhile; the result is best effort.
"""

from __future__ import annotations

import gc
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from types import FrameType
from typing import Any

from opsconsole.diagnostics import census
from opsconsole.diagnostics import heapsnapshot_names as hn
from opsconsole.diagnostics.heapsnapshot_ids import Ordinals, reset_if_nearly_full
from opsconsole.diagnostics.heapsnapshot_roots import Roots
from opsconsole.diagnostics.refchain_labels import TYPE_DICT, namespace
from opsconsole.diagnostics.refchain_roots import gather_roots

CHUNK = 1_000  # objects processed per step
SMALL = 64  # containers up to this size are handled a group at a time
YIELD_EVERY = 0.002  # seconds of work between explicit GIL releases
REFS_STEP = 10_000  # references looked up per batch
MAX_FRAMES = 10_000  # frame nodes under "(threads)" (synthetic ids stay below 65536)
_TYPE_MRO = vars(type)["__mro__"]
_TYPE_BASES = vars(type)["__bases__"]
_TYPE_BASE = vars(type)["__base__"]
_TYPE_DICTOFFSET = vars(type)["__dictoffset__"]


@dataclass(frozen=True, slots=True)
class Graph:
    """A walked heap: node fields by ordinal, edges grouped by node (in ``edge_parts`` order)."""

    node_type: array[int]
    node_name: array[int]
    node_id: array[int]
    node_size: array[int]
    node_edges: array[int]
    position: array[int]  # file position of each node by the number edges refer to it with
    edge_parts: tuple[tuple[array[int], array[int], array[int]], ...]  # (type, name or index, to ordinal)
    strings: list[str]
    ids_restarted: bool  # the id table was full and started over: ids differ from earlier exports

    @property
    def node_count(self) -> int:
        return len(self.node_type)

    @property
    def edge_count(self) -> int:
        return sum(len(part[0]) for part in self.edge_parts)


def _edges() -> tuple[array[int], array[int], array[int]]:
    return array("B"), array("I"), array("I")


class _Walk:
    __slots__ = (
        "buf_targets",
        "edge_name",
        "edge_to",
        "edge_type",
        "full",
        "keynames",
        "kinds",
        "node_edges",
        "node_id",
        "node_name",
        "node_size",
        "node_type",
        "ords",
        "pending",
        "position",
        "referent",
        "strings",
        "text_names",
    )

    def __init__(self, full: bool) -> None:
        self.full = full
        self.strings = hn.Strings()
        self.referent = self.strings.add("referent")
        self.kinds: dict[int, hn.Kind] = {}  # by id(class): hashing a class could run host code
        self.keynames: dict[str, int] = {}  # str dict key → its edge name's index (after redaction)
        self.text_names: dict[tuple[type, int], int] = {}  # redacted str/bytes name by (kind, length)
        self.node_type, self.node_name, self.node_size = array("B"), array("I"), array("I")
        self.node_edges = array("I")
        self.node_id = array("I")  # by file position (the ids table is by number)
        self.position = array("I")  # file position by number
        self.edge_type, self.edge_name, self.edge_to = _edges()
        self.buf_targets: list[object] = []  # edge targets not numbered yet (the last edges')
        self.pending = 0  # edges emitted by the node being processed
        self.ords = Ordinals(0, array("I"))

    # -- edges -------------------------------------------------------------------------------------

    def emit(self, targets: Sequence[object], etype: int, names: Iterable[int]) -> None:
        """Edges to ``targets``; their types and names go straight to the arrays, the targets wait
        in a buffer to be numbered a batch at a time."""
        self.buf_targets.extend(targets)
        self.edge_type.extend(repeat(etype, len(targets)))
        self.edge_name.extend(names)
        self.pending += len(targets)
        if len(self.buf_targets) >= REFS_STEP:
            self.flush()

    def emit_mixed(self, targets: Sequence[object], types: Iterable[int], names: Iterable[int]) -> None:
        self.buf_targets.extend(targets)
        self.edge_type.extend(types)
        self.edge_name.extend(names)
        self.pending += len(targets)
        if len(self.buf_targets) >= REFS_STEP:
            self.flush()

    def flush(self) -> None:
        targets = self.buf_targets
        for start in range(0, len(targets), REFS_STEP):
            self.edge_to.extend(self.ords.lookup(targets[start : start + REFS_STEP]))
        targets.clear()

    def elements(self, items: Sequence[object]) -> None:
        for start in range(0, len(items), REFS_STEP):
            part = items[start : start + REFS_STEP]
            self.emit(part, hn.E_ELEMENT, range(start, start + len(part)))

    def key_name(self, key: str) -> int:
        found = self.keynames.get(key)
        if found is None:
            shown = self.full or hn.looks_like_name(key)
            found = self.keynames[key] = self.strings.add(key if shown else hn.redacted(key))
        return found

    def items(self, d: dict[Any, object], *, names_shown: bool = False) -> None:
        """One edge per entry of ``d``; ``names_shown``: a module's globals, named in full."""
        keys, values = list(dict.keys(d)), list(dict.values(d))
        if len(keys) != len(values):  # changed between the two calls: take one consistent copy
            pairs = list(dict.items(d))
            keys, values = [k for k, _ in pairs], [v for _, v in pairs]
        if set(map(type, keys)) <= {str}:
            add: Callable[[str], int] = self.strings.add if names_shown else self.key_name
            for start in range(0, len(keys), REFS_STEP):
                self.emit(
                    values[start : start + REFS_STEP],
                    hn.E_PROPERTY,
                    map(add, keys[start : start + REFS_STEP]),
                )
            return
        key_edge = self.strings.add("(key)")
        for key, value in zip(keys, values, strict=True):
            if type(key) is str:
                self.emit((value,), hn.E_PROPERTY, (self.key_name(key),))
            else:
                self.emit_mixed(
                    (value, key),
                    (hn.E_PROPERTY, hn.E_INTERNAL),
                    (self.strings.add(hn.key_label(key)), key_edge),
                )

    def named(self, refs: list[object], byid: dict[int, str], unnamed_dict: str | None = None) -> None:
        """``refs`` as edges named through ``byid`` (id of a value → attribute name); others "referent"."""
        types, names = [], []
        for ref, found in zip(refs, map(byid.get, map(id, refs)), strict=True):
            name = unnamed_dict if found is None and type(ref) is dict else found
            if name is None:
                types.append(hn.E_INTERNAL)
                names.append(self.referent)
            else:
                types.append(hn.E_INTERNAL if name.startswith("__") else hn.E_PROPERTY)
                names.append(self.strings.add(name))
        self.emit_mixed(refs, types, names)

    # -- nodes ---------------------------------------------------------------------------------------

    def instance(self, obj: object, kind: type, info: hn.Kind) -> None:
        refs = gc.get_referents(obj)
        byid = {id(kind): "__class__"}
        attrs = info.attrs
        if attrs:
            byid.update(zip(map(id, map(hn.instance_value, repeat(obj), attrs)), attrs, strict=True))
        if info.misses < 3 and not all(map(byid.__contains__, map(id, refs))):
            info.misses += 1  # look for the missing names among everything the class's code uses
            unnamed = set(map(id, refs)).difference(byid)
            for name in hn.candidates(kind, info):
                value_id = id(hn.instance_value(obj, name))
                if value_id in unnamed and name not in attrs:
                    attrs.append(name)
                    byid[value_id] = name
        self.named(refs, byid, "__dict__" if _TYPE_DICTOFFSET.__get__(kind, type) else None)

    def klass(self, cls: type) -> None:
        byid = {id(_TYPE_MRO.__get__(cls, type)): "__mro__", id(_TYPE_BASES.__get__(cls, type)): "__bases__"}
        byid[id(_TYPE_BASE.__get__(cls, type))] = "__base__"
        byid[id(type(cls))] = "__class__"
        for real in gc.get_referents(TYPE_DICT.__get__(cls, type)):  # the mappingproxy's dict
            byid[id(real)] = "__dict__"
        self.named(gc.get_referents(cls), byid)

    def module(self, mod: object, ordinal: int) -> int:
        """Edges of a module; returns the extra size when its namespace is folded into its node."""
        ns = namespace(mod)
        if ns is None:
            self.named(gc.get_referents(mod), {})
            return 0
        if self.ords.alias(ns, ordinal):
            self.items(ns, names_shown=True)
            return sys.getsizeof(ns)
        self.emit((ns,), hn.E_INTERNAL, (self.strings.add("__dict__"),))
        return 0

    def process(self, chunk: list[object], first: int) -> None:
        """One step: the nodes numbered ``first .. first + len(chunk) - 1``, grouped by class so that most
        of the work is a few C calls per group; they take the next positions in the file in that order."""
        n = len(chunk)
        kinds = list(map(type, chunk))
        kind_ids = list(map(id, kinds))
        order = sorted(range(n), key=kind_ids.__getitem__)
        objs = list(map(chunk.__getitem__, order))
        base = len(self.node_type)
        pos = [0] * n
        deque(map(pos.__setitem__, order, range(base, base + n)), 0)
        self.position.extend(pos)  # file position by number: edges' to_node
        ordinals = [first + i for i in order]
        self.node_id.extend(map(self.ords.ids.__getitem__, ordinals))
        sizes = hn.safe_sizes(objs)
        start = 0
        for _, size in sorted(Counter(kind_ids).items()):  # the groups, in the order of ``order``
            kind = kinds[order[start]]
            info = self.kinds.get(id(kind))
            if info is None:
                info = self.kinds[id(kind)] = hn.Kind(kind, self.strings)
            group = objs[start : start + size]
            if not self.group(kind, info, group):
                for i, obj in enumerate(group):
                    sizes[start + i] += self.one(obj, kind, info, ordinals[start + i])
            start += size
        if max(sizes) > 0xFFFFFFFF:
            sizes = [min(s, 0xFFFFFFFF) for s in sizes]
        self.node_size.extend(sizes)

    def group(self, kind: type, info: hn.Kind, objs: list[Any]) -> bool:
        """Nodes and edges of a group of objects of one class, all at once when their shape allows;
        False when the edges are left to ``one`` (the nodes' type and name are in either way)."""
        m = len(objs)
        self.node_type.extend(repeat(info.node_type, m))
        if info.name >= 0:
            self.node_name.extend(repeat(info.name, m))
        elif info.node_type == hn.N_STRING and not self.full:
            self.node_name.extend(map(self.text_name, objs))
        else:
            self.node_name.extend(
                map(self.strings.add, map(hn.object_name, objs, repeat(kind), repeat(self.full)))
            )
        how = info.how
        if how == hn.ATOM:
            self.node_edges.extend(repeat(0, m))
            return True
        if how in (hn.LIST, hn.TUPLE, hn.MEMBERS):
            items: list[Any] = objs if how == hn.TUPLE else list(map(list, objs))  # lists: a copy
            lens = list(map(len, items))
            if max(lens) <= SMALL:
                self.emit(
                    list(chain.from_iterable(items)), hn.E_ELEMENT, chain.from_iterable(map(range, lens))
                )
            else:
                for part in items:
                    self.elements(part)
            self.node_edges.extend(lens)
            return True
        if how == hn.DICT:
            return self.dicts(objs)
        return how == hn.INSTANCE and self.instances(kind, info, objs)

    def one(self, obj: Any, kind: type, info: hn.Kind, ordinal: int) -> int:
        """The edges of one object; returns the size its node gets on top of its own (a module's globals)."""
        self.pending = 0
        how, extra = info.how, 0
        if how == hn.DICT:
            self.items(obj)
        elif how == hn.INSTANCE:
            self.instance(obj, kind, info)
        elif how == hn.PROBED:
            self.named(gc.get_referents(obj), hn.probe_names(obj, info.probes))
        elif how == hn.MODULE:
            extra = self.module(obj, ordinal)
        elif how == hn.CLASS:
            self.klass(obj)
        else:
            refs = gc.get_referents(obj)
            self.emit(refs, hn.E_INTERNAL, repeat(self.referent, len(refs)))
        self.node_edges.append(self.pending)
        return extra

    def text_name(self, obj: object) -> int:
        """A redacted str/bytes node's name: its type and length."""
        key = (type(obj), len(obj))  # type: ignore[arg-type]
        found = self.text_names.get(key)
        if found is None:
            found = self.text_names[key] = self.strings.add(hn.redacted(obj))
        return found

    def dicts(self, objs: list[Any]) -> bool:
        """Small dicts with only str keys, all at once; False (nothing done) for any other group."""
        keys = list(map(list, map(dict.keys, objs)))
        values = list(map(list, map(dict.values, objs)))
        lens = list(map(len, keys))
        if max(lens) > SMALL or lens != list(map(len, values)):
            return False
        flat = list(chain.from_iterable(keys))
        if not set(map(type, flat)) <= {str}:
            return False
        names: list[Any] = list(map(self.keynames.get, flat))
        if None in names:
            names = list(map(self.key_name, flat))
        self.emit(list(chain.from_iterable(values)), hn.E_PROPERTY, names)
        self.node_edges.extend(lens)
        return True

    def instances(self, kind: type, info: hn.Kind, objs: list[object]) -> bool:
        """Instances whose referents match the class's learned layout (attribute values in the class's
        key order, then the class), all at once; False (nothing done) if any does not match."""
        refs = list(map(gc.get_referents, objs))
        if info.layout is None and info.misses < 3:
            info.misses += 1
            for obj, found in zip(objs[:8], refs, strict=False):
                layout = hn.learn_layout(kind, info, obj, found)
                if layout is not None:
                    info.layout = (
                        tuple(map(self.strings.add, layout)),
                        tuple(hn.edge_type(n) for n in layout),
                    )
                    break
        if info.layout is None:
            return False
        names, types = info.layout
        if set(map(len, refs)) != {len(names)}:
            return False
        self.emit_mixed(
            list(chain.from_iterable(refs)),
            chain.from_iterable(repeat(types, len(objs))),
            chain.from_iterable(repeat(names, len(objs))),
        )
        self.node_edges.extend(repeat(len(names), len(objs)))
        return True

    def drain(self) -> None:
        """Process every numbered node not processed yet, a chunk at a time, until none is left."""
        done = len(self.node_type)
        ords = self.ords
        rested = time.perf_counter()
        while done < ords.count or self.buf_targets:
            if done == ords.count:
                self.flush()  # the buffered edges may number new objects
                continue
            start = done - ords.first
            chunk = ords.objects[start : start + CHUNK]
            self.process(chunk, done)
            done += len(chunk)
            del chunk
            now = time.perf_counter()
            if now - rested > YIELD_EVERY:
                time.sleep(0)  # let the host's threads in (the switch interval alone lets them wait 5 ms)
                rested = now
        self.flush()


def walk(
    *, full: bool = False, extra: tuple[tuple[str, object], ...] = (), exclude_threads: Collection[int] = ()
) -> Graph:
    """Walk the live heap. ``full``: str/bytes contents and every dict key in clear (default: redacted).
    ``extra``: labelled roots such as the app's event loops. Dump worker or REPL thread."""
    with census.working():  # this frame holds every object until the walk ends: refchain skips it
        w = _Walk(full)
        try:
            return _run(w, extra, exclude_threads)
        finally:
            w.ords.close()


def _run(w: _Walk, extra: tuple[tuple[str, object], ...], exclude_threads: Collection[int]) -> Graph:
    restarted = reset_if_nearly_full()
    roots = Roots(w, gather_roots(None, True, extra, exclude_threads), MAX_FRAMES)
    w.ords = Ordinals(roots.count, roots.ids)
    syn_type, syn_name, syn_to = roots.seed()
    w.drain()
    roots.gc_pass((syn_type, syn_name, syn_to), _own_ids(w, roots))
    w.drain()
    return Graph(
        w.node_type,
        w.node_name,
        w.node_id,
        w.node_size,
        w.node_edges,
        w.position,
        ((syn_type, syn_name, syn_to), (w.edge_type, w.edge_name, w.edge_to)),
        w.strings.items,
        restarted,
    )


def _own_ids(w: _Walk, roots: Roots) -> set[int]:
    """The walk's own objects (its arrays, tables, caches) and this thread's frames: left out of
    "(gc objects)", so an export never shows its own machinery."""
    own: set[int] = {id(w), id(roots), id(roots.__dict__)}
    own.update(roots.own_ids)
    for holder in (w, w.ords, w.strings):
        for slot in type(holder).__slots__:
            value = getattr(holder, slot)
            own.add(id(value))
            if value is w.kinds or value is w.ords._tables:
                own.update(map(id, value.values()))  # Kind objects, per-page tables
            elif isinstance(value, list) and value is w.ords._maps:
                own.update(id(x) for pair in value for x in (pair, *pair))
    own.update(id(kind.attrs) for kind in w.kinds.values())
    own.add(id(own))
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        own.add(id(frame))
        frame = frame.f_back
    return own
