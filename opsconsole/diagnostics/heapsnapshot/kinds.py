"""The edges of each kind of object in a ``.heapsnapshot``: instances, classes, modules, containers.

Each function adds to the walk's ``WalkState`` (see ``state``) the edges of one object of a kind, or
of a group of objects of one class at once when their shape allows (small lists, tuples, sets and
dicts, instances with a learned attribute layout): then the work is a few C calls per group, not per
object. ``GROUP_EDGES`` picks the group function by the class's ``Kind.how``. Nothing here runs host
code (see ``names``). Runs on the thread doing the export.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not, lshift, lt, mul, or_
from typing import Any

from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.edges import elements, items, key_edge, list_elements, named
from opsconsole.diagnostics.heapsnapshot.ids import NODE_FIELDS
from opsconsole.diagnostics.heapsnapshot.labels import EDGE_SHIFT, cached, edge_label
from opsconsole.diagnostics.heapsnapshot.state import WalkState
from opsconsole.diagnostics.objects.introspection import (
    MISSING,
    TYPE_DICT,
    TYPE_DICTOFFSET,
    TYPE_MRO,
    builtin_attr,
    namespace,
)
from opsconsole.diagnostics.objects.referents import referents

SMALL = 64  # containers up to this size are handled a group at a time
_TYPE_BASES = vars(type)["__bases__"]
_TYPE_BASE = vars(type)["__base__"]
_OWNER_SHIFT = 64  # (place in a group << 64) | id(value): a key per object and value (ids are < 2**64)


def _element_runs(lens: Sequence[int]) -> chain[int]:
    """The element labels of containers of these lengths, back to back (0 .. len - 1 for each)."""
    step = 1 << EDGE_SHIFT
    return chain.from_iterable(map(range, repeat(hn.E_ELEMENT), map(mul, lens, repeat(step)), repeat(step)))


def instance(st: WalkState, obj: object, kind: type, info: hn.Kind) -> None:
    """Edges of an instance off its class's learned layout, named by attribute where one holds them."""
    refs = gc.get_referents(obj)
    byid = {id(kind): "__class__"}
    attrs = info.attrs
    if attrs:
        byid.update(zip(map(id, map(hn.candidate_value, repeat(obj), attrs)), attrs, strict=True))
    if info.misses < 3 and not all(map(byid.__contains__, map(id, refs))):
        info.misses += 1  # look for the missing names among everything the class's code uses
        unnamed = set(map(id, refs)).difference(byid)
        for name in hn.candidates(kind, info):
            value_id = id(hn.candidate_value(obj, name))
            if value_id in unnamed and name not in attrs:
                attrs.append(name)
                byid[value_id] = name
    named(st, refs, byid, "__dict__" if TYPE_DICTOFFSET.__get__(kind, type) else None)


def klass(st: WalkState, cls: type) -> None:
    """Edges of a class: ``__mro__``, ``__bases__``, ``__base__``, ``__class__``, ``__dict__``."""
    byid = {id(TYPE_MRO.__get__(cls, type)): "__mro__", id(_TYPE_BASES.__get__(cls, type)): "__bases__"}
    byid[id(_TYPE_BASE.__get__(cls, type))] = "__base__"
    byid[id(type(cls))] = "__class__"
    for real in gc.get_referents(TYPE_DICT.__get__(cls, type)):  # the mappingproxy's dict
        byid[id(real)] = "__dict__"
    named(st, gc.get_referents(cls), byid)


def module(st: WalkState, mod: object, ordinal: int) -> int:
    """Edges of a module; returns the extra size when its namespace is folded into its node."""
    ns = namespace(mod)
    if ns is None:
        named(st, referents(mod), {})
        return 0
    if st.ords.alias(ns, ordinal * NODE_FIELDS):
        items(st, ns, names_shown=True)
        return sys.getsizeof(ns)
    st.emit((ns,), (edge_label(st.strings.add("__dict__"), hn.E_INTERNAL),))
    return 0


def text_names_of(st: WalkState, kind: type, objs: list[Any]) -> list[int]:
    """Redacted str/bytes nodes' names: their type and length, one name per length."""
    by_length = st.text_names.get(id(kind))
    if by_length is None:
        by_length = st.text_names[id(kind)] = {}
    make = partial(_text_name, st, hn.redacted_name(kind))
    return cached(by_length, list(map(len, objs)), make)


def _text_name(st: WalkState, template: str, length: int) -> int:
    return st.strings.add(template % length)


def sequences(st: WalkState, kind: type, info: hn.Kind, objs: list[Any]) -> bool:
    """Lists, tuples and sets: ``element`` edges by index. Small ones all at once, without a list
    per object (each would be a young GC object: enough of them trigger a full collection)."""
    how = info.how
    lens = list(map(len, objs))
    if max(lens) <= SMALL:
        try:
            flat = list(chain.from_iterable(objs))
        except RuntimeError:  # a set changed size meanwhile
            flat = []
        if len(flat) == sum(lens):  # else a list changed meanwhile: copy each one below
            st.emit(flat, _element_runs(lens))
            st.node_edges.fromlist(lens)
            return True
    if how == hn.LIST:
        counts = list(map(partial(list_elements, st), objs))
    else:  # a tuple as it is; a set copied (it cannot be sliced)
        counts = [elements(st, obj if how == hn.TUPLE else list(obj)) for obj in objs]
    st.node_edges.fromlist(counts)
    return True


def dicts(st: WalkState, kind: type, info: hn.Kind, objs: list[Any]) -> bool:
    """Dicts in runs: the small ones with only str keys all at once, any other one by itself (one big
    dict or int key in a group no longer sends its thousand neighbours one at a time)."""
    lens = list(map(len, objs))
    if max(lens) <= SMALL and _str_keyed(st, objs, lens):
        return True
    start = 0
    for odd in [*_odd_dicts(objs, lens), len(objs)]:
        if start < odd and not _str_keyed(st, objs[start:odd], lens[start:odd]):
            deque(map(partial(_dict, st), objs[start:odd]), 0)  # one changed size meanwhile
        if odd < len(objs):
            _dict(st, objs[odd])
        start = odd + 1
    return True


def _dict(st: WalkState, d: dict[Any, object]) -> None:
    st.pending = 0
    items(st, d)
    st.node_edges.append(st.pending)


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


def _str_keyed(st: WalkState, objs: list[Any], lens: list[int]) -> bool:
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
    st.emit(values, cached(st.keynames, flat, partial(key_edge, st)))
    st.node_edges.fromlist(lens)
    return True


def others(st: WalkState, kind: type, info: hn.Kind, objs: list[object]) -> bool:
    """Kinds with nothing to name their references by (descriptors, weakrefs...): "referent"
    edges, the whole group in a few C calls."""
    refs = list(map(gc.get_referents, objs))
    flat = list(chain.from_iterable(refs))
    st.emit(flat, repeat(st.referent, len(flat)))
    st.node_edges.fromlist(list(map(len, refs)))
    return True


def instances(st: WalkState, kind: type, info: hn.Kind, objs: list[object]) -> bool:
    """Instances whose referents match the class's learned layout (attribute values in the class's
    key order, then the class), all at once; False (nothing done) if any does not match."""
    if info.layout is None and info.misses < 3:
        info.misses += 1
        for obj in objs[:8]:
            found = gc.get_referents(obj)
            layout = hn.learn_layout(kind, info, obj, found)
            if layout is not None:
                info.layout = tuple(edge_label(st.strings.add(n), hn.edge_type(n)) for n in layout)
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
    st.emit(refs, chain.from_iterable(repeat(labels, len(objs))))
    st.node_edges.extend(repeat(k, len(objs)))
    return True


def probed(st: WalkState, kind: type, info: hn.Kind, objs: list[object]) -> bool:
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
            values = list(map(builtin_attr, objs, repeat(name), repeat(MISSING)))
        keys = map(or_, map(lshift, places, repeat(_OWNER_SHIFT)), map(id, values))
        names.update(zip(keys, repeat(edge_label(st.strings.add(name), hn.edge_type(name)))))
    flat = list(chain.from_iterable(refs))
    owners = chain.from_iterable(map(repeat, places, lens))
    keys = map(or_, map(lshift, owners, repeat(_OWNER_SHIFT)), map(id, flat))
    st.emit(flat, list(map(names.get, keys, repeat(st.referent))))
    st.node_edges.fromlist(lens)
    return True


def atoms(st: WalkState, kind: type, info: hn.Kind, objs: list[object]) -> bool:
    """str, numbers, None...: nodes without edges."""
    st.node_edges.fromlist([0] * len(objs))
    return True


def one_at_a_time(st: WalkState, kind: type, info: hn.Kind, objs: list[object]) -> bool:
    """Modules and classes: never a group (the walk makes their edges one object at a time)."""
    return False


GroupEdges = Callable[[WalkState, type, hn.Kind, list[Any]], bool]
_BY_HOW: dict[int, GroupEdges] = {
    hn.ATOM: atoms,
    hn.LIST: sequences,
    hn.TUPLE: sequences,
    hn.MEMBERS: sequences,
    hn.DICT: dicts,
    hn.MODULE: one_at_a_time,
    hn.CLASS: one_at_a_time,
    hn.INSTANCE: instances,
    hn.PROBED: probed,
    hn.OTHER: others,
}
# The edges of a group of objects of one class, indexed by its ``Kind.how``: the codes are plain ints
# so that the walk's per-group dispatch is one tuple index, not an if-chain or an Enum lookup. Each
# returns False (nothing done) when the group's shape does not allow it: the walk then goes one object
# at a time.
GROUP_EDGES: tuple[GroupEdges, ...] = tuple(_BY_HOW[how] for how in range(len(_BY_HOW)))
