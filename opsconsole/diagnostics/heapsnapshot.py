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
from operator import and_, mul, rshift
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


def _heads(cache: dict[int, str], labels: array[int], shift: int) -> list[str]:
    """The text of each label ("type,name,", the type in its low ``shift`` bits): ``%s`` of a cached
    str is much cheaper than two ``%d``. Labels met once (the indexes of a big list's elements) are
    formatted, in C, without filling the cache."""
    found = list(map(cache.get, labels))
    if None in found:
        missing = list(set(labels).difference(cache))
        texts = map(
            "{},{},".format, map(and_, missing, repeat((1 << shift) - 1)), map(rshift, missing, repeat(shift))
        )
        fresh = dict(zip(missing, texts, strict=True))
        if len(cache) + len(fresh) <= HEADS:
            cache.update(fresh)
            found = list(map(cache.__getitem__, labels))
        else:
            found = list(map(fresh.get, labels, found))
    return found  # type: ignore[return-value]


def _document(graph: Graph) -> Iterator[str]:
    yield _meta(graph) + '"nodes":['
    n = graph.node_count
    heads: dict[int, str] = {}  # node label → "type,name," (a few thousand distinct ones)
    for start in range(0, n, ROWS):
        stop = min(n, start + ROWS)
        fields: list[object] = [0] * (4 * (stop - start))  # the varying fields, interleaved in C
        fields[0::4] = _heads(heads, graph.node_label[start:stop], 4)
        fields[1::4] = graph.node_id[start:stop]
        fields[2::4] = graph.node_size[start:stop]
        fields[3::4] = graph.node_edges[start:stop]
        yield ("," if start else "") + _rows(_NODE_ROW, stop - start) % tuple(fields) + "\n"
    yield '],\n"edges":['
    first = True
    heads.clear()  # edge label → "type,name_or_index,"
    for labels, targets in graph.edge_parts:
        for start in range(0, len(labels), ROWS):
            stop = min(len(labels), start + ROWS)
            fields = [0] * (2 * (stop - start))
            fields[0::2] = _heads(heads, labels[start:stop], EDGE_SHIFT)
            fields[1::2] = list(map(mul, targets[start:stop], repeat(7)))
            yield ("" if first else ",") + _rows(_EDGE_ROW, stop - start) % tuple(fields) + "\n"
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
