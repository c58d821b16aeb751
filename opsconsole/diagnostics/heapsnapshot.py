"""The live Python heap as a Chrome DevTools / V8 ``.heapsnapshot``, streamed.

``HeapSnapshot`` walks the heap (``heapsnapshot_walk``) when iteration starts, then yields the JSON
document in chunks of bytes: the transport writes each one out, and the document never exists whole
in memory. The walk keeps a few flat arrays (16 bytes per node plus 8 per edge) and its id
tables; the text is made from them a slice at a time.

The format (what Chrome's Memory tab and memlab read): ``snapshot.meta`` names the fields; each node
is 7 ints ``type,name,id,self_size,edge_count,trace_node_id,detachedness``; each edge 3 ints
``type,name_or_index,to_node`` where ``to_node`` is the target's ordinal × 7; edges are grouped by
node in node order; ``name`` fields index ``strings``, which comes last. Node 0 is the root (id 1).
No space before ``:`` — memlab finds the arrays by searching for ``"nodes":``.

Runs on the dump worker (or a REPL session thread); between chunks the consumer runs, and each chunk
is a few milliseconds of C work, so the host's threads keep running.
"""

from __future__ import annotations

import functools
import json
import os
import time
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import and_, rshift
from pathlib import Path
from typing import Literal

from opsconsole.diagnostics.heapsnapshot_edges import EDGE_SHIFT
from opsconsole.diagnostics.heapsnapshot_names import EDGE_TYPES, NODE_TYPES, string_literals
from opsconsole.diagnostics.heapsnapshot_walk import Graph, walk

NODE_FIELDS = ("type", "name", "id", "self_size", "edge_count", "trace_node_id", "detachedness")
EDGE_FIELDS = ("type", "name_or_index", "to_node")
ROWS = 2_000  # nodes or edges formatted per chunk (one join: about a millisecond of C work)
STRINGS_BYTES = 1 << 20  # string-table text per chunk, roughly
Contents = Literal["redacted", "full"]

_NODE_ROW = "%s%d,%d,%d,0,0"  # "type,name," cached; trace_node_id and detachedness are always 0
HEADS = 1 << 16  # row heads cached at most
_EDGE_ROW = "%s%d"  # "type,name_or_index," cached, then to_node
_NODE_ROW_FULL = "%d,%d,%d,%d,%d,0,0"
_EDGE_ROW_FULL = "%d,%d,%d"


@functools.lru_cache(maxsize=8)
def _rows(row: str, count: int) -> str:
    """A format for ``count`` rows: one ``%`` over a flat tuple beats a format call per row."""
    return ",".join([row] * count)


@dataclass(frozen=True, slots=True)
class HeapSnapshotInfo:
    """What an export wrote (a file from the REPL, or a streamed download)."""

    path: str  # "" when streamed
    contents: Contents
    nodes: int
    edges: int
    strings: int
    bytes: int
    walk_seconds: float
    seconds: float


class HeapSnapshot:
    """An iterable of the document's bytes; ``nodes``/``edges``/``size`` are set once it has been read."""

    def __init__(
        self,
        *,
        contents: Contents = "redacted",
        extra_roots: tuple[tuple[str, object], ...] = (),
        exclude_threads: Collection[int] = (),
    ) -> None:
        self.contents = contents
        self._extra = extra_roots
        self._exclude = frozenset(exclude_threads)
        self.nodes = self.edges = self.strings = self.size = 0
        self.walk_seconds = self.seconds = 0.0

    def __iter__(self) -> Iterator[bytes]:
        started = time.monotonic()
        graph = walk(full=self.contents == "full", extra=self._extra, exclude_threads=self._exclude)
        self.walk_seconds = time.monotonic() - started
        self.nodes, self.edges, self.strings = graph.node_count, graph.edge_count, len(graph.strings)
        for chunk in _document(graph):
            data = chunk.encode("ascii")
            self.size += len(data)
            yield data
            time.sleep(0)
        self.seconds = time.monotonic() - started

    def info(self, path: str = "") -> HeapSnapshotInfo:
        return HeapSnapshotInfo(
            path,
            self.contents,
            self.nodes,
            self.edges,
            self.strings,
            self.size,
            self.walk_seconds,
            self.seconds,
        )


def _meta(graph: Graph) -> str:
    meta = {
        "node_fields": list(NODE_FIELDS),
        "node_types": [list(NODE_TYPES), "string", "number", "number", "number", "number", "number"],
        "edge_fields": list(EDGE_FIELDS),
        "edge_types": [list(EDGE_TYPES), "string_or_number", "node"],
        "trace_function_info_fields": ["function_id", "name", "script_name", "script_id", "line", "column"],
        "trace_node_fields": ["id", "function_info_index", "count", "size", "children"],
        "sample_fields": ["timestamp_us", "last_assigned_id"],
        "location_fields": ["object_index", "script_id", "line", "column"],
    }
    head = {
        "meta": meta,
        "node_count": graph.node_count,
        "edge_count": graph.edge_count,
        "trace_function_count": 0,
    }
    return '{"snapshot":' + json.dumps(head, separators=(",", ":")) + ",\n"


def _heads(cache: dict[int, str], labels: array[int], shift: int) -> list[str] | None:
    """The text of each label ("type,name,", the type in its low ``shift`` bits): ``%s`` of a cached
    str is much cheaper than two ``%d``. None when many labels are new (the indexes of a big list's
    elements, met once each): such rows are cheaper formatted in full, and stay out of the cache."""
    found = list(map(cache.get, labels))
    if None in found:
        missing = set(labels).difference(cache)
        if len(missing) > len(labels) // 4:
            return None
        if len(cache) + len(missing) > HEADS:
            cache.clear()
        mask = (1 << shift) - 1
        cache.update(
            zip(
                missing,
                map("{},{},".format, map(and_, missing, repeat(mask)), map(rshift, missing, repeat(shift))),
                strict=True,
            )
        )
        found = list(map(cache.__getitem__, labels))
    return found  # type: ignore[return-value]


def _split(fields: list[object], at: int, step: int, labels: array[int], shift: int) -> None:
    """Labels as their two fields (type, then name), for rows formatted in full."""
    fields[at::step] = map(and_, labels, repeat((1 << shift) - 1))
    fields[at + 1 :: step] = map(rshift, labels, repeat(shift))


def _document(graph: Graph) -> Iterator[str]:
    yield _meta(graph) + '"nodes":['
    n = graph.node_count
    heads: dict[int, str] = {}  # node label → "type,name," (a few thousand distinct ones)
    for start in range(0, n, ROWS):
        stop = min(n, start + ROWS)
        labels = graph.node_label[start:stop]
        found = _heads(heads, labels, 4)
        k, row = (4, _NODE_ROW) if found is not None else (5, _NODE_ROW_FULL)
        fields: list[object] = [0] * (k * (stop - start))  # the varying fields, interleaved in C
        if found is None:
            _split(fields, 0, k, labels, 4)
        else:
            fields[0::k] = found
        fields[k - 3 :: k] = graph.node_id[start:stop]
        fields[k - 2 :: k] = graph.node_size[start:stop]
        fields[k - 1 :: k] = graph.node_edges[start:stop]
        yield ("," if start else "") + _rows(row, stop - start) % tuple(fields) + "\n"
    yield '],\n"edges":['
    first = True
    heads.clear()  # edge label → "type,name_or_index,"
    for edge_labels, targets in graph.edge_parts:
        for start in range(0, len(edge_labels), ROWS):
            stop = min(len(edge_labels), start + ROWS)
            labels = edge_labels[start:stop]
            found = _heads(heads, labels, EDGE_SHIFT)
            k, row = (2, _EDGE_ROW) if found is not None else (3, _EDGE_ROW_FULL)
            fields = [0] * (k * (stop - start))
            if found is None:
                _split(fields, 0, k, labels, EDGE_SHIFT)
            else:
                fields[0::k] = found
            fields[k - 1 :: k] = targets[start:stop]  # to_node: already ordinal × 7
            yield ("" if first else ",") + _rows(row, stop - start) % tuple(fields) + "\n"
            first = False
    yield '],\n"trace_function_infos":[],\n"trace_tree":[],\n"samples":[],\n"locations":[],\n"strings":['
    strings = graph.strings
    start = 0
    while start < len(strings):
        stop, size = start, 0
        while stop < len(strings) and size < STRINGS_BYTES and stop - start < ROWS:
            size += len(strings[stop]) + 3
            stop += 1
        yield ("," if start else "") + string_literals(strings, start, stop) + "\n"
        start = stop
    yield "]}\n"


def write_file(path: Path, snapshot: HeapSnapshot) -> HeapSnapshotInfo:
    """Write the export to a new 0600 file at ``path`` (refuses to replace an existing file or follow a
    symlink). Runs on the calling thread."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in snapshot:
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return snapshot.info(str(path))
