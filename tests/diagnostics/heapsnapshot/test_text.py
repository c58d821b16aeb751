"""The ``.heapsnapshot`` text against the arrays it is made from, on graphs built to hit every way a
chunk is formatted: cached row pieces, chunks that recur, rows formatted in full (many distinct
names), runs of consecutive element indexes across thousands, and a cache that fills up."""

from __future__ import annotations

import json
import random
from array import array

import pytest

from opsconsole.diagnostics.heapsnapshot import document as hs
from opsconsole.diagnostics.heapsnapshot.labels import EDGE_SHIFT
from opsconsole.diagnostics.heapsnapshot.walk import Graph


def _graph(node_rows: list[tuple[int, int, int, int]], edge_rows: list[tuple[int, int]]) -> Graph:
    """(label, id, size, edge_count) per node; (label, to_node) per edge, split in two parts as the
    walk does (synthetic nodes' edges first)."""
    labels, ids, sizes, counts = (array("I", column) for column in zip(*node_rows, strict=True))
    cut = len(edge_rows) // 7
    parts = tuple(
        (array("I", [label for label, _ in rows]), array("I", [to for _, to in rows]))
        for rows in (edge_rows[:cut], edge_rows[cut:])
    )
    return Graph(labels, ids, sizes, counts, parts, ["", "a", 'q"\u2028\udc80'], False)


def _expected(graph: Graph) -> tuple[list[int], list[int]]:
    nodes: list[int] = []
    for label, node_id, size, count in zip(
        graph.node_label, graph.node_id, graph.node_size, graph.node_edges, strict=True
    ):
        nodes += [label & 15, label >> 4, node_id, size, count, 0, 0]
    edges: list[int] = []
    for labels, targets in graph.edge_parts:
        for label, to in zip(labels, targets, strict=True):
            edges += [label & ((1 << EDGE_SHIFT) - 1), label >> EDGE_SHIFT, to]
    return nodes, edges


@pytest.mark.parametrize("seed", [1, 2])
def test_the_text_holds_exactly_the_arrays(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hs, "PIECES", 3000)  # the piece caches fill up and start over
    rng = random.Random(seed)
    nodes = []  # recurring chunks: the same short period of a few kinds, over and over
    period = [(17 << 4 | 3, 56, 2), (18 << 4 | 5, 28, 0), (19 << 4 | 3, 64, 4)]
    for i in range(hs.ROWS * 6):
        label, size, count = period[i % 3]
        grown = i >= hs.ROWS * 4 and i % 3 == 1  # the same labels in the last chunks, another size
        nodes.append((label, 65536 + i, size + 8 * grown, count))
    for i in range(hs.ROWS * 3):  # many distinct names and sizes: rows formatted in full
        nodes.append((rng.randrange(1 << 20) << 4 | rng.randrange(14), rng.randrange(1 << 32), i, i % 9))
    edges = []
    element = 1  # the element type's code: runs of consecutive indexes (a big list's elements)
    for start, stop in ((0, 5000), (998, 3003), (999_000, 1_002_500), (7, 8)):
        edges += [(name << EDGE_SHIFT | element, 7 * rng.randrange(1 << 20)) for name in range(start, stop)]
    for i in range(hs.ROWS * 4):  # a few labels, repeating
        edges.append(((i % 5) << EDGE_SHIFT | 2, 7 * i))
    for _ in range(hs.ROWS * 2):  # random labels
        edges.append((rng.randrange(1 << 29), 7 * rng.randrange(1 << 28)))
    graph = _graph(nodes, edges)
    doc = json.loads(b"".join(hs._document(graph)))
    want_nodes, want_edges = _expected(graph)
    assert doc["nodes"] == want_nodes
    assert doc["edges"] == want_edges
    assert doc["strings"] == graph.strings
    assert doc["snapshot"]["node_count"] == len(nodes) and doc["snapshot"]["edge_count"] == len(edges)
