"""The object-graph walk behind ``.heapsnapshot``: every object reached, numbered, sized and linked.

Breadth-first from synthetic roots (node 0 → "(modules)" → each module by name, "(threads)" → one
node per frame of every other thread with its locals, "(other roots)" → the app loops and loose
``sys.modules`` entries), then "(gc objects)" → every GC-tracked object not reached that way, so
everything in the file is reachable from node 0. Untracked objects (str, int, ...) are reached through
their referrers. The result is flat arrays (a few bytes per node and per edge), no per-node objects;
see ``ids`` for the numbering. Objects are processed a chunk at a time in the order they
were numbered, which is their order in the file, so each node's edges come out together, in node
order, as the format wants; each batch of new objects is numbered grouped by class, so a chunk is a
few runs of one class each (most of the work is then a few C calls per run).

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
only the young generations are ever collected (once, at the start; see ``_run``). The heap changes
meanwhile; the result is best effort.

Memory: the walk charges its ``Budget`` per node and edge it records (``NODE_BYTES``, ``EDGE_BYTES``)
and, as it goes, compares the process's measured size with its size at the start; past the budget
it stops with ``BudgetError`` and frees everything (see ``budget``).
"""

from __future__ import annotations

import gc
import sys
import time
from array import array
from collections.abc import Collection
from dataclasses import dataclass
from itertools import compress, pairwise, repeat
from operator import is_not
from types import FrameType
from typing import Any

from opsconsole.diagnostics.budget import DEFAULT_LIMIT, Budget
from opsconsole.diagnostics.heapsnapshot import kinds as kinds_mod
from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.address_table import AddressTable
from opsconsole.diagnostics.heapsnapshot.ids import Ordinals, reset_if_nearly_full
from opsconsole.diagnostics.heapsnapshot.kinds import GROUP_EDGES
from opsconsole.diagnostics.heapsnapshot.labels import node_label
from opsconsole.diagnostics.heapsnapshot.roots import SyntheticRoots
from opsconsole.diagnostics.heapsnapshot.state import WalkState
from opsconsole.diagnostics.objects import census
from opsconsole.diagnostics.objects.roots import gather_roots

CHUNK = 1_000  # objects processed per step
YIELD_EVERY = 0.002  # seconds of work between explicit GIL releases
MAX_FRAME_NODES = 10_000  # frame nodes under "(threads)" (synthetic ids stay below 65536)
NODE_BYTES = 32  # kept per node: its four fields, its place in the object list, its table slot
EDGE_BYTES = 8  # kept per edge: its label and its target


@dataclass(frozen=True, slots=True)
class Graph:
    """A walked heap: node fields by ordinal, edges grouped by node (in ``edge_parts`` order)."""

    node_label: array[int]  # name and type: see ``labels.node_label``
    node_id: array[int]
    node_size: array[int]
    node_edges: array[int]
    edge_parts: tuple[tuple[array[int], array[int]], ...]  # (label: see ``labels.edge_label``, to_node)
    strings: list[str]
    ids_restarted: bool  # the id table was full and started over: ids differ from earlier exports

    @property
    def node_count(self) -> int:
        return len(self.node_label)

    @property
    def edge_count(self) -> int:
        return sum(len(part[0]) for part in self.edge_parts)


def process(st: WalkState, chunk: list[object], first: int) -> None:
    """One step: the nodes numbered ``first .. first + len(chunk) - 1``, in order. Objects are numbered
    in runs of one class (``Ordinals``), and each run is handled a group at a time."""
    kinds = list(map(type, chunk))
    n = len(chunk)
    cuts = [0, *compress(range(1, n), map(is_not, kinds[1:], kinds)), n]
    sizes: list[int] = []
    for start, stop in pairwise(cuts):
        kind = kinds[start]
        info = st.kinds.get(id(kind))
        if info is None:
            info = st.kinds[id(kind)] = hn.Kind(kind, st.strings)
        group = chunk[start:stop]
        sizes += hn.sizes(kind, info, group)
        _group_nodes(st, kind, info, group)
        if not GROUP_EDGES[info.how](st, kind, info, group):
            for i, obj in enumerate(group, start):
                sizes[i] += _one(st, obj, kind, info, first + i)
    if max(sizes) > 0xFFFFFFFF:
        sizes = [min(s, 0xFFFFFFFF) for s in sizes]
    st.node_size.fromlist(sizes)


def _group_nodes(st: WalkState, kind: type, info: hn.Kind, objs: list[Any]) -> None:
    """The type and name of a group of nodes of one class (their edges: ``kinds.GROUP_EDGES``)."""
    if info.name >= 0:
        st.node_label.fromlist([node_label(info.name, info.node_type)] * len(objs))
        return
    if info.node_type == hn.N_STRING and not st.full:
        names = kinds_mod.text_names_of(st, kind, objs)
    else:
        names = list(map(st.strings.add, map(hn.object_name, objs, repeat(kind), repeat(st.full))))
    st.node_label.fromlist(list(map(node_label, names, repeat(info.node_type))))


def _one(st: WalkState, obj: Any, kind: type, info: hn.Kind, ordinal: int) -> int:
    """The edges of one object; returns the size its node gets on top of its own (a module's globals).
    Only instances off their class's layout, modules and classes come here: groups take the rest."""
    st.pending = 0
    how, extra = info.how, 0
    if how == hn.INSTANCE:
        kinds_mod.instance(st, obj, kind, info)
    elif how == hn.MODULE:
        extra = kinds_mod.module(st, obj, ordinal)
    else:
        kinds_mod.klass(st, obj)
    st.node_edges.append(st.pending)
    return extra


def drain(st: WalkState, budget: Budget) -> None:
    """Process every numbered node not processed yet, a chunk at a time, until none is left.
    Raises BudgetError when what the walk keeps would pass ``budget``."""
    done = len(st.node_label)
    edges = len(st.edge_label) + len(st.buf_targets)
    ords = st.ords
    rested = time.perf_counter()
    while done < ords.count or st.buf_targets:
        if done == ords.count:
            st.flush()  # the buffered edges may number new objects
            continue
        start = done - ords.first
        chunk = ords.objects[start : start + CHUNK]
        process(st, chunk, done)
        done += len(chunk)
        now_edges = len(st.edge_label) + len(st.buf_targets)
        budget.charge(len(chunk) * NODE_BYTES + (now_edges - edges) * EDGE_BYTES)
        edges = now_edges
        del chunk
        now = time.perf_counter()
        if now - rested > YIELD_EVERY:
            time.sleep(0)  # let the host's threads in (the switch interval alone lets them wait 5 ms)
            rested = now
    st.flush()


def walk(
    *,
    full: bool = False,
    extra: tuple[tuple[str, object], ...] = (),
    exclude_threads: Collection[int] = (),
    memory_budget: int = DEFAULT_LIMIT,
) -> Graph:
    """Walk the live heap. ``full``: str/bytes contents and every dict key in clear (default: redacted).
    ``extra``: labelled roots such as the app's event loops. ``memory_budget``: bytes the walk may add
    to the process (BudgetError past it). Dump worker or REPL thread."""
    # this frame holds every object until the walk ends: refchain skips it
    with census.working(), Budget("heap snapshot", memory_budget) as budget:
        st = WalkState(full)
        try:
            return _run(st, extra, exclude_threads, budget)
        finally:
            st.ords.close()


def _run(
    st: WalkState, extra: tuple[tuple[str, object], ...], exclude_threads: Collection[int], budget: Budget
) -> Graph:
    restarted = reset_if_nearly_full()
    roots = SyntheticRoots(st, gather_roots(None, True, extra, exclude_threads), MAX_FRAME_NODES)
    st.ords = Ordinals(roots.count, roots.ids)
    # The list that will hold every object is empty now: one collection of the two young
    # generations (what the interpreter runs by itself every few hundred allocations) moves it
    # to the oldest one for good. Left young, every automatic collection while it grows visits
    # all its items, each time a stall of the host. (A list of blocks does not help: the walk frees what it
    # allocates, so collections are rare and a dozen blocks are still young together.)
    gc.collect(1)
    synthetic = roots.seed()
    drain(st, budget)
    roots.gc_pass(synthetic, _own_ids(st, roots), budget)
    drain(st, budget)
    return Graph(
        st.node_label,
        st.ords.ids,
        st.node_size,
        st.node_edges,
        (synthetic, (st.edge_label, st.edge_to)),
        st.strings.items,
        restarted,
    )


def _own_ids(st: WalkState, roots: SyntheticRoots) -> set[int]:
    """The walk's own objects (its arrays, tables, caches) and this thread's frames: left out of
    "(gc objects)", so an export never shows its own machinery."""
    own: set[int] = {id(st), id(roots), id(roots.__dict__)}
    own.update(roots.own_ids)
    holders = ((st, WalkState.__slots__), (st.ords, Ordinals.__slots__), (st.strings, hn.Strings.__slots__))
    for holder, slots in holders:
        for slot in slots:
            value = getattr(holder, slot)
            own.add(id(value))
            if value is st.kinds:
                own.update(map(id, value.values()))  # Kind objects
    table = st.ords.table
    own.update(id(getattr(table, slot)) for slot in AddressTable.__slots__)
    own.add(id(getattr(table.get, "__self__", None)))  # the fallback's dict (no slot of its own)
    own.update(id(kind.attrs) for kind in st.kinds.values())
    own.add(id(own))
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        own.add(id(frame))
        frame = frame.f_back
    return own
