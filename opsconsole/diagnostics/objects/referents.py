"""``gc.get_referents`` for whole-heap walks, without the interpreter trap one of them fell into.

CPython 3.12 (and 3.13 before its second release candidate) traverses the ``_asyncio`` module's
free list of ``FutureIter`` objects when asked for the module's referents (CPython gh-122695).
Those are freed objects: ``gc.get_referents`` hands them out with a reference, dropping it frees
them a second time, and the free list can become a cycle; the next ``gc.get_referents`` of the
module then appends to its result without end, in one C call nothing can interrupt, until the
process runs out of memory. No walk here ever asks for the referents of such a
module: on those versions a module's referents are read as its namespace dict, which is what
every walk follows anyway (the C state of a module is also reachable through its globals).

Everything here is pure C calls on objects of known builtin types; it runs on whichever thread
walks (the dump worker or a REPL session thread).
"""

from __future__ import annotations

import gc
import sys
import types
from itertools import compress
from operator import not_

# Versions whose _asyncio module traversal visits its free list. The fix (removing that traversal)
# reached the 3.12 branch in August 2024; every 3.12 is treated as affected, which costs only the
# module-state edges of modules, and 3.13 up to its first release candidate.
FREELIST_TRAVERSED = (
    sys.version_info[:2] == (3, 12)
    or (sys.version_info[:3] == (3, 13, 0) and sys.version_info.releaselevel in ("alpha", "beta"))
    or sys.version_info[:5] == (3, 13, 0, "candidate", 1)
)

_MODULE_DICT = vars(types.ModuleType)["__dict__"]  # the getset: reads md_dict, runs no host code


def _is_module(obj: object) -> bool:
    # issubclass on the real class: isinstance could read a host ``__class__``
    return issubclass(type(obj), types.ModuleType)


def module_namespace(module: object) -> list[object]:
    """The referents a walk follows from a module on an affected version: its namespace dict."""
    try:
        ns = _MODULE_DICT.__get__(module, types.ModuleType)
    except (AttributeError, TypeError):
        return []
    return [ns] if type(ns) is dict else []


def referents(*objs: object) -> list[object]:
    """``gc.get_referents(*objs)``, except that on affected versions a module contributes its
    namespace dict instead of being traversed (its referents come last then)."""
    if not FREELIST_TRAVERSED:
        return gc.get_referents(*objs)
    modules = list(map(_is_module, objs))
    if not any(modules):
        return gc.get_referents(*objs)
    found = gc.get_referents(*compress(objs, map(not_, modules)))
    for module in compress(objs, modules):
        found.extend(module_namespace(module))
    return found


def each(objs: list[object]) -> list[list[object]]:
    """``[gc.get_referents(o) for o in objs]``, guarded as ``referents`` is."""
    if not FREELIST_TRAVERSED or not any(map(_is_module, objs)):
        return list(map(gc.get_referents, objs))
    return [referents(obj) for obj in objs]
