"""The edges of each kind of object in a ``.heapsnapshot``: instances, classes, modules, containers.

``Kinds`` adds to the walk's state (``heapsnapshot_edges``) the edges of one object of a kind, or of a
group of objects of one class at once when their shape allows (small lists, tuples, sets and dicts,
instances with a learned attribute layout): then the work is a few C calls per group, not per object.
Nothing here runs host code (see ``heapsnapshot_names``). Runs on the thread doing the export.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections import deque
from collections.abc import Sequence
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not, lshift, lt, mul, or_
from typing import Any

from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.edges import EDGE_SHIFT, Edges, cached, edge_label
from opsconsole.diagnostics.heapsnapshot.ids import NODE_FIELDS
from opsconsole.diagnostics.objects.introspection import builtin_attr
from opsconsole.diagnostics.objects.refchain_labels import _MISSING, TYPE_DICT, namespace
from opsconsole.diagnostics.objects.referents import referents

SMALL = 64  # containers up to this size are handled a group at a time
_TYPE_MRO = vars(type)["__mro__"]
_TYPE_BASES = vars(type)["__bases__"]
_TYPE_BASE = vars(type)["__base__"]
_TYPE_DICTOFFSET = vars(type)["__dictoffset__"]
_OWNER_SHIFT = 64  # (place in a group << 64) | id(value): a key per object and value (ids are < 2**64)


def _element_runs(lens: Sequence[int]) -> chain[int]:
    """The element labels of containers of these lengths, back to back (0 .. len - 1 for each)."""
    step = 1 << EDGE_SHIFT
    return chain.from_iterable(map(range, repeat(hn.E_ELEMENT), map(mul, lens, repeat(step)), repeat(step)))


class Kinds(Edges):
    __slots__ = ()

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
            self.named(referents(mod), {})
            return 0
        if self.ords.alias(ns, ordinal * NODE_FIELDS):
            self.items(ns, names_shown=True)
            return sys.getsizeof(ns)
        self.emit((ns,), (edge_label(self.strings.add("__dict__"), hn.E_INTERNAL),))
        return 0

    def text_names_of(self, kind: type, objs: list[Any]) -> list[int]:
        """Redacted str/bytes nodes' names: their type and length, one name per length."""
        by_length = self.text_names.get(id(kind))
        if by_length is None:
            by_length = self.text_names[id(kind)] = {}
        make = functools.partial(self._text_name, hn.redacted_name(kind))
        return cached(by_length, list(map(len, objs)), make)

    def _text_name(self, template: str, length: int) -> int:
        return self.strings.add(template % length)

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
                self.emit(flat, _element_runs(lens))
                self.node_edges.fromlist(lens)
                return True
        if how == hn.LIST:
            counts = list(map(self.list_elements, objs))
        else:  # a tuple as it is; a set copied (it cannot be sliced)
            counts = [self.elements(obj if how == hn.TUPLE else list(obj)) for obj in objs]
        self.node_edges.fromlist(counts)
        return True

    def dicts(self, objs: list[Any]) -> bool:
        """Dicts in runs: the small ones with only str keys all at once, any other one by itself (one big
        dict or int key in a group no longer sends its thousand neighbours one at a time)."""
        lens = list(map(len, objs))
        if max(lens) <= SMALL and self._str_keyed(objs, lens):
            return True
        start = 0
        for odd in [*self._odd_dicts(objs, lens), len(objs)]:
            if start < odd and not self._str_keyed(objs[start:odd], lens[start:odd]):
                deque(map(self._dict, objs[start:odd]), 0)  # one changed size meanwhile
            if odd < len(objs):
                self._dict(objs[odd])
            start = odd + 1
        return True

    def _dict(self, d: dict[Any, object]) -> None:
        self.pending = 0
        self.items(d)
        self.node_edges.append(self.pending)

    @staticmethod
    def _odd_dicts(objs: list[Any], lens: list[int]) -> list[int]:
        """Where in ``objs`` the dicts are that are big or have a key that is not a str (all of them
        if one changed size meanwhile)."""
        try:
            keys = list(chain.from_iterable(objs))
        except RuntimeError:
            keys = []
        if len(keys) != sum(lens):
            return list(range(len(objs)))
        owners = chain.from_iterable(map(repeat, range(len(objs)), lens))
        odd = set(compress(owners, map(is_not, map(type, keys), repeat(str))))
        odd.update(compress(range(len(objs)), map(lt, repeat(SMALL), lens)))
        return sorted(odd)

    def _str_keyed(self, objs: list[Any], lens: list[int]) -> bool:
        """Small dicts with only str keys, all at once; False (nothing done) for any other run."""
        if max(lens) > SMALL:
            return False
        try:
            flat = list(chain.from_iterable(objs))  # the keys
            values = list(chain.from_iterable(map(dict.values, objs)))
        except RuntimeError:  # a dict changed size meanwhile
            return False
        if not len(flat) == len(values) == sum(lens) or not set(map(type, flat)) <= {str}:
            return False
        self.emit(values, cached(self.keynames, flat, self._key_label))
        self.node_edges.fromlist(lens)
        return True

    def others(self, objs: list[object]) -> bool:
        """Kinds with nothing to name their references by (descriptors, weakrefs...): "referent"
        edges, the whole group in a few C calls."""
        refs = list(map(gc.get_referents, objs))
        flat = list(chain.from_iterable(refs))
        self.emit(flat, repeat(self.referent, len(flat)))
        self.node_edges.fromlist(list(map(len, refs)))
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
                    info.layout = tuple(edge_label(self.strings.add(n), hn.edge_type(n)) for n in layout)
                    break
        if info.layout is None:
            return False
        labels = info.layout
        # One call for the group; each instance's referents end with its class, so a run of the right
        # length with the class at every ``len(labels)``-th place has the layout's shape throughout.
        refs = gc.get_referents(*objs)
        k = len(labels)
        if len(refs) != k * len(objs) or not all(map(is_, refs[k - 1 :: k], repeat(kind))):
            return False
        self.emit(refs, chain.from_iterable(repeat(labels, len(objs))))
        self.node_edges.extend(repeat(k, len(objs)))
        return True

    def probed(self, info: hn.Kind, objs: list[object]) -> bool:
        """Builtin kinds with named attributes (functions, code, cells...), a group at a time: each
        referent is named by the first probed attribute of its own object that holds it, looked up by
        (place in the group, id of the value), so the whole group is a few C calls per attribute."""
        refs = list(map(gc.get_referents, objs))
        lens = list(map(len, refs))
        names: dict[int, int] = {}  # (place << 64 | id(value)) → the edge's label
        places = range(len(objs))
        for name in reversed(info.probes):  # the first name that holds a value names its edge
            try:
                values = list(map(attrgetter(name), objs))
            except (AttributeError, ValueError):  # unset, or an empty cell
                values = list(map(builtin_attr, objs, repeat(name), repeat(_MISSING)))
            keys = map(or_, map(lshift, places, repeat(_OWNER_SHIFT)), map(id, values))
            names.update(zip(keys, repeat(edge_label(self.strings.add(name), hn.edge_type(name)))))
        flat = list(chain.from_iterable(refs))
        owners = chain.from_iterable(map(repeat, places, lens))
        keys = map(or_, map(lshift, owners, repeat(_OWNER_SHIFT)), map(id, flat))
        self.emit(flat, list(map(names.get, keys, repeat(self.referent))))
        self.node_edges.fromlist(lens)
        return True
