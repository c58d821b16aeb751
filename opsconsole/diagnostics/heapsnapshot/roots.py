"""The synthetic roots of a ``.heapsnapshot`` and the "(gc objects)" pass that makes everything reachable.

Node 0 (the root, id 1) → "(modules)" → each module by its ``sys.modules`` name; "(threads)" → one
node per frame of every other thread (``objects.roots`` reads them), named by thread, function and
line, with an edge per local variable; "(other roots)" → the app's event loops and the non-module
entries of ``sys.modules``; "(gc objects)" → every GC-tracked object the walk from the other roots did
not reach (reference cycles awaiting collection, objects only C code holds...). Synthetic nodes take
the odd ids 1, 3, 5...: below 65536, where object ids start. Runs on the thread doing the export.
"""

from __future__ import annotations

import sys
import time
from array import array
from itertools import compress, repeat
from operator import not_

from opsconsole.diagnostics.budget import Budget
from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.ids import NODE_FIELDS
from opsconsole.diagnostics.heapsnapshot.labels import edge_labels, element_labels, node_label
from opsconsole.diagnostics.heapsnapshot.state import REFS_STEP, WalkState
from opsconsole.diagnostics.objects import census
from opsconsole.diagnostics.objects.introspection import namespace
from opsconsole.diagnostics.objects.roots import RootSet

EdgeArrays = tuple["array[int]", "array[int]"]  # (label, to_node = ordinal × 7): see ``state``


class SyntheticRoots:
    """Synthetic nodes by number: 0 the root, 1 "(modules)", 2 "(threads)", 3.. one per frame, then
    "(other roots)" and "(gc objects)"."""

    def __init__(self, st: WalkState, root_set: RootSet, max_frames: int) -> None:
        self.st = st
        self.root_set = root_set
        self.frames = root_set.frames[:max_frames]
        self.count = 5 + len(self.frames)
        self.ids = array("I", range(1, 2 * self.count, 2))
        self.own_ids = {
            id(root_set),
            id(root_set.objects),
            id(root_set.modules),
            id(root_set.frames),
            id(self.frames),
        }
        self.own_ids.update(id(x) for pair in root_set.frames for x in (pair, pair[1]))
        self.own_ids.update(map(id, root_set.modules))

    def seed(self) -> EdgeArrays:
        """The synthetic nodes and their edges (all but "(gc objects)"'s), numbering what they point at."""
        st, add = self.st, self.st.strings.add
        f = len(self.frames)
        other, gc_node = 3 + f, 4 + f
        labels = [
            "",
            "(modules)",
            "(threads)",
            *(name for name, _ in self.frames),
            "(other roots)",
            "(gc objects)",
        ]
        st.node_label.extend(map(node_label, map(add, labels), repeat(hn.N_SYNTHETIC)))
        st.node_size.extend(repeat(0, self.count))
        st.node_edges.extend(repeat(0, self.count))
        edges: EdgeArrays = (array("I"), array("I"))

        def link(node: int, targets: list[object], etype: int, names: list[int]) -> list[int]:
            indexes: list[int] = []  # node indexes (ordinal × 7)
            for start in range(0, len(targets), REFS_STEP):
                indexes.extend(st.ords.lookup(targets[start : start + REFS_STEP]))
            edges[0].extend(edge_labels(names, etype))
            edges[1].extend(indexes)
            st.node_edges[node] = len(targets)
            return indexes

        link_to_synthetic = [n * NODE_FIELDS for n in (1, 2, other, gc_node)]
        edges[0].extend(element_labels(0, 4))
        edges[1].extend(link_to_synthetic)
        st.node_edges[0] = 4
        names: list[int] = []
        mods: list[object] = []
        for name, ns in self.root_set.modules:
            module: object = sys.modules.get(name)
            names.append(add(name))
            mods.append(module if namespace(module) is ns else ns)
        for module, index in zip(mods, link(1, mods, hn.E_PROPERTY, names), strict=True):
            globals_ = namespace(module)
            if globals_ is not None:
                st.ords.alias(globals_, index)  # before anything else can reach the namespace on its own
        edges[0].extend(element_labels(0, f))
        edges[1].extend(range(3 * NODE_FIELDS, (3 + f) * NODE_FIELDS, NODE_FIELDS))
        st.node_edges[2] = f
        for i, (_, local_vars) in enumerate(self.frames):
            keys = [k if isinstance(k, str) else repr(k) for k in local_vars]
            link(3 + i, list(local_vars.values()), hn.E_PROPERTY, [add(k) for k in keys])
        extra = self.root_set.extra
        link(other, [obj for _, obj in extra], hn.E_PROPERTY, [add(name) for name, _ in extra])
        return edges

    def gc_pass(self, edges: EdgeArrays, own: set[int], budget: Budget) -> None:
        """Number every GC-tracked object not reached yet and link it under "(gc objects)" (the last
        synthetic node, so its edges come last among theirs). ``gc.get_objects()`` is one C call that
        holds the GIL throughout; the list is then consumed from its end a batch at a time."""
        st = self.st
        start = st.ords.count
        with census.every_object() as objs:
            own.add(id(objs))
            budget.charge(len(objs) * 8)  # the list, while it is consumed
            while objs:
                time.sleep(0)  # first of all: the host's threads waited through get_objects()
                part = objs[-REFS_STEP:]
                del objs[-REFS_STEP:]
                fresh = st.ords.unseen(part)  # most were reached from the roots: only the rest are sifted
                if fresh:
                    st.ords.lookup(list(compress(fresh, map(not_, map(own.__contains__, map(id, fresh))))))
                del part
                budget.charge(0)  # the numbering grows the tables: measured now and then
        found = st.ords.count - start
        edges[0].extend(element_labels(0, found))
        edges[1].extend(range(start * NODE_FIELDS, (start + found) * NODE_FIELDS, NODE_FIELDS))
        st.node_edges[self.count - 1] = found
