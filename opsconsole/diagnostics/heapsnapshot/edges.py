"""The edges of one object in a ``.heapsnapshot``: by index, by dict key, or by attribute name.

Edge types and names: ``element`` edges by index for lists, tuples and sets; ``property`` edges named
by dict key or attribute; ``internal`` edges for ``__class__``, ``__dict__``, ``(key)`` and unnamed
"referent"s. Each function adds to the walk's ``WalkState`` (see ``state``); ``kinds`` uses them for
each kind of object. Nothing here runs host code (see ``names``). Runs on the thread doing the export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.labels import cached, edge_label, element_labels
from opsconsole.diagnostics.heapsnapshot.state import REFS_STEP, WalkState


def elements(st: WalkState, items: Sequence[object]) -> int:
    """``element`` edges to each of ``items`` (a tuple, or a copy); returns how many."""
    for start in range(0, len(items), REFS_STEP):
        part = items[start : start + REFS_STEP]
        st.emit(part, element_labels(start, start + len(part)))
    return len(items)


def list_elements(st: WalkState, items: list[object]) -> int:
    """``element`` edges of a live list, a slice at a time (it may change meanwhile: the count
    returned is of the edges emitted). A copy of a big list would be a young GC container
    that the next automatic collection visits whole, a stall of the host."""
    start = 0
    while part := items[start : start + REFS_STEP]:
        st.emit(part, element_labels(start, start + len(part)))
        start += len(part)
    return start


def key_name(st: WalkState, key: str) -> int:
    """The label of the property edge under a str dict key (see ``cached`` for many at once)."""
    found = st.keynames.get(key)
    if found is None:
        found = st.keynames[key] = key_edge(st, key)
    return found


def key_edge(st: WalkState, key: str) -> int:
    """The label of a new property edge under a str dict key, redacted unless it looks like a name."""
    shown = st.full or hn.looks_like_name(key)
    return edge_label(st.strings.add(hn.shown(key, str) if shown else hn.redacted(key)), hn.E_PROPERTY)


def shown_edge(st: WalkState, key: str) -> int:
    """The label of a new property edge under a module global's name, shown in full."""
    return edge_label(st.strings.add(key), hn.E_PROPERTY)


def items(st: WalkState, d: dict[Any, object], *, names_shown: bool = False) -> None:
    """One edge per entry of ``d``; ``names_shown``: a module's globals, named in full."""
    keys, values = list(dict.keys(d)), list(dict.values(d))
    if len(keys) != len(values):  # changed between the two calls: take one consistent copy
        pairs = list(dict.items(d))
        keys, values = [k for k, _ in pairs], [v for _, v in pairs]
    if set(map(type, keys)) <= {str}:
        cache = st.shownnames if names_shown else st.keynames
        make = partial(shown_edge if names_shown else key_edge, st)
        for start in range(0, len(keys), REFS_STEP):
            labels = cached(cache, keys[start : start + REFS_STEP], make)
            st.emit(values[start : start + REFS_STEP], labels)
        return
    to_key = edge_label(st.strings.add("(key)"), hn.E_INTERNAL)
    for key, value in zip(keys, values, strict=True):
        if type(key) is str:
            st.emit((value,), (key_name(st, key),))
        else:
            name = st.strings.add(hn.key_edge_name(key))
            st.emit((value, key), (edge_label(name, hn.E_PROPERTY), to_key))


def named(st: WalkState, refs: list[object], byid: dict[int, str], unnamed_dict: str | None = None) -> None:
    """``refs`` as edges named through ``byid`` (id of a value → attribute name); others "referent"."""
    labels = []
    add: Callable[[str], int] = st.strings.add
    for ref, found in zip(refs, map(byid.get, map(id, refs)), strict=True):
        name = unnamed_dict if found is None and type(ref) is dict else found
        if name is None:
            labels.append(st.referent)
        else:
            labels.append(edge_label(add(name), hn.edge_type(name)))
    st.emit(refs, labels)
