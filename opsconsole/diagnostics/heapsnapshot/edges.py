"""How the ``.heapsnapshot`` walk buffers edges and turns references into them.

The state of a walk (its node and edge arrays, string table, caches) lives in ``Edges``; the edges of
each kind of object are made in ``heapsnapshot_kinds``, and the walk itself (``heapsnapshot_walk``)
adds the order in which objects are visited. An edge is two ints: its **label** (name or index << 3 |
type, see ``edge_label``: few distinct values, so the writer caches each one's text) and the target's
node index (ordinal × 7, as ``to_node`` wants it). Edge types and names: ``element`` edges by index
for lists, tuples and sets; ``property`` edges named by dict key or attribute; ``internal`` edges for
``__class__``, ``__dict__``, ``(key)`` and unnamed "referent"s. Nothing here runs host code (see
``heapsnapshot_names``). Runs on the thread doing the export.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import lshift, or_
from typing import Any

from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.ids import Ordinals

REFS_STEP = 10_000  # references looked up per batch
EDGE_SHIFT = 3  # EDGE_TYPES fit in 3 bits


def label(name: int, node_type: int) -> int:
    """A node's name (index into the strings) and type in one int: few distinct values, whose text
    the writer caches (``NODE_TYPES`` fit in 4 bits)."""
    return name << 4 | node_type


def edge_label(name: int, edge_type: int) -> int:
    """An edge's name (string index, or element index) and type in one int (see ``label``)."""
    return name << EDGE_SHIFT | edge_type


def edge_labels(names: Iterable[int], edge_type: int) -> Iterable[int]:
    """``edge_label`` of each name, in C."""
    return map(or_, map(lshift, names, repeat(EDGE_SHIFT)), repeat(edge_type))


def cached(cache: dict[Any, int], keys: list[Any], make: Callable[[Any], int]) -> list[int]:
    """``cache[key]`` for each of ``keys``, ``make`` filling in the missing ones first: one pass in C
    when every key is known (the usual case), and ``make`` runs once per new key, not once per key.
    Keys are str or int: hashing them runs no host code."""
    try:
        return list(map(cache.__getitem__, keys))
    except KeyError:
        for key in set(keys).difference(cache):
            cache[key] = make(key)
        return list(map(cache.__getitem__, keys))


def element_labels(start: int, stop: int) -> range:
    """The labels of ``element`` edges ``start .. stop - 1``: no per-edge work."""
    return range(edge_label(start, hn.E_ELEMENT), edge_label(stop, hn.E_ELEMENT), 1 << EDGE_SHIFT)


class Edges:
    """A walk's arrays and caches, and the edges of one object at a time."""

    __slots__ = (
        "buf_labels",
        "buf_targets",
        "edge_label",
        "edge_to",
        "full",
        "keynames",
        "kinds",
        "node_edges",
        "node_label",
        "node_size",
        "ords",
        "pending",
        "referent",
        "shownnames",
        "strings",
        "text_names",
    )

    def __init__(self, full: bool) -> None:
        self.full = full
        self.strings = hn.Strings()
        self.referent = edge_label(self.strings.add("referent"), hn.E_INTERNAL)
        self.kinds: dict[int, hn.Kind] = {}  # by id(class): hashing a class could run host code
        self.keynames: dict[str, int] = {}  # str dict key → its property edge's label (after redaction)
        self.shownnames: dict[str, int] = {}  # a module global's name → its property edge's label
        self.text_names: dict[int, dict[int, int]] = {}  # redacted str/bytes name by id(kind), length
        # by ordinal, which is also the node's place in the file (ids: ``ords.ids``)
        self.node_label = array("I")  # name << 4 | type (see ``label``): the row's start, cached as text
        self.node_size, self.node_edges = array("I"), array("I")
        self.edge_label, self.edge_to = array("I"), array("I")
        self.buf_targets: list[object] = []  # edge targets not numbered yet (the last edges')
        self.buf_labels: list[int] = []
        self.pending = 0  # edges emitted by the node being processed
        self.ords = Ordinals(0, array("I"))

    def emit(self, targets: Sequence[object], labels: Iterable[int]) -> None:
        """Edges to ``targets``, buffered: they go to the arrays (``fromlist``: one C loop) once the
        targets have been numbered, a batch at a time."""
        self.buf_targets.extend(targets)
        self.buf_labels.extend(labels)
        self.pending += len(targets)
        if len(self.buf_targets) >= REFS_STEP:
            self.flush()

    def flush(self) -> None:
        targets = self.buf_targets
        for start in range(0, len(targets), REFS_STEP):
            self.edge_to.fromlist(self.ords.lookup(targets[start : start + REFS_STEP]))
        self.edge_label.fromlist(self.buf_labels)
        targets.clear()
        self.buf_labels.clear()

    def elements(self, items: Sequence[object]) -> int:
        """``element`` edges to each of ``items`` (a tuple, or a copy); returns how many."""
        for start in range(0, len(items), REFS_STEP):
            part = items[start : start + REFS_STEP]
            self.emit(part, element_labels(start, start + len(part)))
        return len(items)

    def list_elements(self, items: list[object]) -> int:
        """``element`` edges of a live list, a slice at a time (it may change meanwhile: the count
        returned is of the edges emitted). A copy of a big list would be a young GC container
        that the next automatic collection visits whole: 20 ms per million items, a host stall."""
        start = 0
        while part := items[start : start + REFS_STEP]:
            self.emit(part, element_labels(start, start + len(part)))
            start += len(part)
        return start

    def key_name(self, key: str) -> int:
        """The label of the property edge under a str dict key (see ``cached`` for many at once)."""
        found = self.keynames.get(key)
        if found is None:
            found = self.keynames[key] = self._key_label(key)
        return found

    def _key_label(self, key: str) -> int:
        shown = self.full or hn.looks_like_name(key)
        return edge_label(self.strings.add(hn.shown(key, str) if shown else hn.redacted(key)), hn.E_PROPERTY)

    def _shown_label(self, key: str) -> int:
        return edge_label(self.strings.add(key), hn.E_PROPERTY)

    def items(self, d: dict[Any, object], *, names_shown: bool = False) -> None:
        """One edge per entry of ``d``; ``names_shown``: a module's globals, named in full."""
        keys, values = list(dict.keys(d)), list(dict.values(d))
        if len(keys) != len(values):  # changed between the two calls: take one consistent copy
            pairs = list(dict.items(d))
            keys, values = [k for k, _ in pairs], [v for _, v in pairs]
        if set(map(type, keys)) <= {str}:
            cache, make = (
                (self.shownnames, self._shown_label) if names_shown else (self.keynames, self._key_label)
            )
            for start in range(0, len(keys), REFS_STEP):
                labels = cached(cache, keys[start : start + REFS_STEP], make)
                self.emit(values[start : start + REFS_STEP], labels)
            return
        key_edge = edge_label(self.strings.add("(key)"), hn.E_INTERNAL)
        for key, value in zip(keys, values, strict=True):
            if type(key) is str:
                self.emit((value,), (self.key_name(key),))
            else:
                name = self.strings.add(hn.key_label(key))
                self.emit((value, key), (edge_label(name, hn.E_PROPERTY), key_edge))

    def named(self, refs: list[object], byid: dict[int, str], unnamed_dict: str | None = None) -> None:
        """``refs`` as edges named through ``byid`` (id of a value → attribute name); others "referent"."""
        labels = []
        add: Callable[[str], int] = self.strings.add
        for ref, found in zip(refs, map(byid.get, map(id, refs)), strict=True):
            name = unnamed_dict if found is None and type(ref) is dict else found
            if name is None:
                labels.append(self.referent)
            else:
                labels.append(edge_label(add(name), hn.edge_type(name)))
        self.emit(refs, labels)
