"""The state of one ``.heapsnapshot`` walk: its node and edge arrays, string table and caches.

One ``WalkState`` is made per export and owned by the walk (``walk``); the edge makers (``edges``,
``kinds``) and the synthetic roots (``roots``) take it as their first argument and add to it. Nodes
are kept by ordinal, which is also the node's place in the file (ids: ``ords.ids``). An edge is two
ints: its label (see ``labels``) and the target's node index (ordinal × 7, as ``to_node`` wants it).
Edge targets are buffered until they have been numbered, a batch at a time. Runs on the thread doing
the export.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

from opsconsole.diagnostics.heapsnapshot import names as hn
from opsconsole.diagnostics.heapsnapshot.ids import Ordinals
from opsconsole.diagnostics.heapsnapshot.labels import edge_label

REFS_STEP = 10_000  # references looked up per batch


class WalkState:
    """A walk's arrays and caches; ``emit`` adds the edges of the node being processed."""

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
        self.node_label = array("I")  # see ``labels.node_label``: the row's start, cached as text
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
