"""The roots a reference search starts from, read once before the walk.

Module globals (``sys.modules``), the local variables of every other thread's frames, then loose
objects and the caller's extra roots. CPython 3.11 reports nothing through ``gc.get_referents`` for a
frame that is executing, so a thread's locals are read with ``frame.f_locals``, copied once per frame
(a plain dict up to 3.12, a write-through proxy from 3.13 on: only ever read, never written). A
thread inside a census or reference search is left out: its locals hold lists of every object.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Collection
from dataclasses import dataclass

from opsconsole.diagnostics.objects import census
from opsconsole.diagnostics.objects.introspection import namespace


@dataclass(slots=True)
class RootSet:
    """The roots of one search: every root object, and what is needed to name the one a chain starts at."""

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


def gather_roots(
    modules: tuple[str, ...] | None,
    threads: bool,
    extra: tuple[tuple[str, object], ...],
    exclude_threads: Collection[int],
) -> RootSet:
    """The roots, in root order: module globals, other threads' frame locals, then the entries of
    ``sys.modules`` that are not modules and ``extra``."""
    namespaces: list[tuple[str, dict[str, object]]] = []
    loose: list[tuple[str, object]] = []
    names = list(sys.modules) if modules is None else list(modules)
    for name in names:
        module: object = sys.modules.get(name)
        ns = namespace(module)
        if ns is not None:
            namespaces.append((name, ns))
        elif module is not None:  # sys.modules may hold any object
            loose.append((name, module))
    frames: list[tuple[str, dict[str, object]]] = []
    if threads:
        me = threading.get_ident()
        thread_names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me or ident in exclude_threads:
                continue
            frames.extend(_thread_locals(ident, frame, thread_names.get(ident, f"ident {ident}")))
    objects: list[object] = []
    for _, ns in namespaces:
        objects.extend(list(ns.values()))
    for _, local_vars in frames:
        objects.extend(list(local_vars.values()))
    labelled = (*loose, *extra)
    objects.extend(value for _, value in labelled)
    return RootSet(objects, namespaces, frames, labelled)
