"""How a ``.heapsnapshot`` node's or edge's name and type pack into one int.

A node's label is its name (an index into the strings) and its type; an edge's label is its name (a
string index, or an element index) and its type. Packed, they have few distinct values, so the
document writer caches each one's text instead of formatting every row (see ``document``). Pure
arithmetic; runs on the thread doing the export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from operator import lshift, or_
from typing import Any

from opsconsole.diagnostics.heapsnapshot.names import E_ELEMENT

NODE_SHIFT = 4  # NODE_TYPES fit in 4 bits
EDGE_SHIFT = 3  # EDGE_TYPES fit in 3 bits


def node_label(name: int, node_type: int) -> int:
    """A node's name and type in one int."""
    return name << NODE_SHIFT | node_type


def edge_label(name: int, edge_type: int) -> int:
    """An edge's name (string index, or element index) and type in one int."""
    return name << EDGE_SHIFT | edge_type


def edge_labels(names: Iterable[int], edge_type: int) -> Iterable[int]:
    """``edge_label`` of each name, in C."""
    return map(or_, map(lshift, names, repeat(EDGE_SHIFT)), repeat(edge_type))


def element_labels(start: int, stop: int) -> range:
    """The labels of ``element`` edges ``start .. stop - 1``: no per-edge work."""
    return range(edge_label(start, E_ELEMENT), edge_label(stop, E_ELEMENT), 1 << EDGE_SHIFT)


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
