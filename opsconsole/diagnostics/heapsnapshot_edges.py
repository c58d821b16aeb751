"""How the ``.heapsnapshot`` walk turns one object's references into edges, and buffers them.

The state of a walk (its node and edge arrays, string table, caches) lives in ``Edges``; the walk
itself (``heapsnapshot_walk``) adds the order in which objects are visited. Edge types and names:
``element`` edges by index for lists, tuples and sets; ``property`` edges named by dict key or
attribute; ``internal`` edges for ``__class__``, ``__dict__``, ``(key)`` and unnamed "referent"s.
Nothing here runs host code (see ``heapsnapshot_names``). Runs on the thread doing the export.
"""

from __future__ import annotations

import gc
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from operator import is_
from typing import Any

from opsconsole.diagnostics import heapsnapshot_names as hn
from opsconsole.diagnostics.heapsnapshot_ids import Ordinals
from opsconsole.diagnostics.refchain_labels import TYPE_DICT, namespace

SMALL = 64  # containers up to this size are handled a group at a time
REFS_STEP = 10_000  # references looked up per batch
_TYPE_MRO = vars(type)["__mro__"]
_TYPE_BASES = vars(type)["__bases__"]
_TYPE_BASE = vars(type)["__base__"]
_TYPE_DICTOFFSET = vars(type)["__dictoffset__"]


def label(name: int, node_type: int) -> int:
    """A node's name (index into the strings) and type in one int: few distinct values, whose text
    the writer caches (``NODE_TYPES`` fit in 4 bits)."""
    return name << 4 | node_type


def _edges() -> tuple[array[int], array[int], array[int]]:
    return array("B"), array("I"), array("I")


class Edges:
    """A walk's arrays and caches, and the edges of one object (or one group of objects) at a time."""

    __slots__ = (
        "buf_names",
        "buf_targets",
        "buf_types",
        "edge_name",
        "edge_to",
        "edge_type",
        "full",
        "keynames",
        "kinds",
        "node_edges",
        "node_label",
        "node_size",
        "ords",
        "pending",
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
        # by ordinal, which is also the node's place in the file (ids: ``ords.ids``)
        self.node_label = array("I")  # name << 4 | type (see ``label``): the row's start, cached as text
        self.node_size, self.node_edges = array("I"), array("I")
        self.edge_type, self.edge_name, self.edge_to = _edges()
        self.buf_targets: list[object] = []  # edge targets not numbered yet (the last edges')
        self.buf_types: list[int] = []
        self.buf_names: list[int] = []
        self.pending = 0  # edges emitted by the node being processed
        self.ords = Ordinals(0, array("I"))

    # -- edges -------------------------------------------------------------------------------------

    def emit(self, targets: Sequence[object], etype: int, names: Iterable[int]) -> None:
        """Edges to ``targets``, buffered: they go to the arrays (``fromlist``: one C loop) once the
        targets have been numbered, a batch at a time."""
        self.buf_targets.extend(targets)
        self.buf_types.extend(repeat(etype, len(targets)))
        self.buf_names.extend(names)
        self.pending += len(targets)
        if len(self.buf_targets) >= REFS_STEP:
            self.flush()

    def emit_mixed(self, targets: Sequence[object], types: Iterable[int], names: Iterable[int]) -> None:
        self.buf_targets.extend(targets)
        self.buf_types.extend(types)
        self.buf_names.extend(names)
        self.pending += len(targets)
        if len(self.buf_targets) >= REFS_STEP:
            self.flush()

    def flush(self) -> None:
        targets = self.buf_targets
        for start in range(0, len(targets), REFS_STEP):
            self.edge_to.fromlist(self.ords.lookup(targets[start : start + REFS_STEP]))
        self.edge_type.fromlist(self.buf_types)
        self.edge_name.fromlist(self.buf_names)
        targets.clear()
        self.buf_types.clear()
        self.buf_names.clear()

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

    def text_name(self, obj: object) -> int:
        """A redacted str/bytes node's name: its type and length."""
        key = (type(obj), len(obj))  # type: ignore[arg-type]
        found = self.text_names.get(key)
        if found is None:
            found = self.text_names[key] = self.strings.add(hn.redacted(obj))
        return found

    def sequences(self, objs: list[Any], how: int) -> bool:
        """Lists, tuples and sets: ``element`` edges by index. Small ones all at once, without a list
        per object (each would be a young GC object: enough of them trigger a full collection)."""
        lens = list(map(len, objs))
        if max(lens) <= SMALL:
            try:
                flat = list(chain.from_iterable(objs))
            except RuntimeError:  # a set changed size meanwhile
                flat = []
            if len(flat) == sum(lens):  # else a list changed meanwhile: copy each one below
                self.emit(flat, hn.E_ELEMENT, chain.from_iterable(map(range, lens)))
                self.node_edges.fromlist(lens)
                return True
        copies: list[Any] = objs if how == hn.TUPLE else list(map(list, objs))
        for part in copies:
            self.elements(part)
        self.node_edges.fromlist(list(map(len, copies)))
        return True

    def dicts(self, objs: list[Any]) -> bool:
        """Small dicts with only str keys, all at once; False (nothing done) for any other group."""
        lens = list(map(len, objs))
        if max(lens) > SMALL:
            return False
        try:
            flat = list(chain.from_iterable(objs))  # the keys
            values = list(chain.from_iterable(map(dict.values, objs)))
        except RuntimeError:  # a dict changed size meanwhile
            return False
        if not len(flat) == len(values) == sum(lens) or not set(map(type, flat)) <= {str}:
            return False
        names: list[Any] = list(map(self.keynames.get, flat))
        if None in names:
            names = list(map(self.key_name, flat))
        self.emit(values, hn.E_PROPERTY, names)
        self.node_edges.fromlist(lens)
        return True

    def instances(self, kind: type, info: hn.Kind, objs: list[object]) -> bool:
        """Instances whose referents match the class's learned layout (attribute values in the class's
        key order, then the class), all at once; False (nothing done) if any does not match."""
        if info.layout is None and info.misses < 3:
            info.misses += 1
            for obj in objs[:8]:
                found = gc.get_referents(obj)
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
        # One call for the group; each instance's referents end with its class, so a run of the right
        # length with the class at every ``len(names)``-th place has the layout's shape throughout.
        refs = gc.get_referents(*objs)
        k = len(names)
        if len(refs) != k * len(objs) or not all(map(is_, refs[k - 1 :: k], repeat(kind))):
            return False
        self.emit_mixed(
            refs,
            chain.from_iterable(repeat(types, len(objs))),
            chain.from_iterable(repeat(names, len(objs))),
        )
        self.node_edges.extend(repeat(len(names), len(objs)))
        return True
