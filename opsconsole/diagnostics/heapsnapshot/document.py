"""The live Python heap as a Chrome DevTools / V8 ``.heapsnapshot``, streamed.

``HeapSnapshot`` walks the heap (``walk``) when iteration starts, then yields the JSON
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
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import and_, rshift
from pathlib import Path
from typing import Literal, TypeVar

from opsconsole import private_files
from opsconsole.diagnostics.budget import DEFAULT_LIMIT
from opsconsole.diagnostics.heapsnapshot.labels import EDGE_SHIFT, NODE_SHIFT
from opsconsole.diagnostics.heapsnapshot.names import EDGE_TYPES, NODE_TYPES, string_literals
from opsconsole.diagnostics.heapsnapshot.walk import Graph, walk

NODE_FIELDS = ("type", "name", "id", "self_size", "edge_count", "trace_node_id", "detachedness")
EDGE_FIELDS = ("type", "name_or_index", "to_node")
ROWS = 2_000  # nodes or edges formatted per chunk (a join and a ``%``: well under a millisecond of C work)
STRINGS_BYTES = 1 << 20  # string-table text per chunk, roughly
Contents = Literal["redacted", "full"]

_Key = TypeVar("_Key", int, tuple[int, int, int])
PIECES = 1 << 16  # row pieces cached at most, per array (a few MB)
RECENT = 16  # chunk formats kept, per array (a format and its key: under 100 KB)
# The text is bytes throughout: bytes ``%`` finds the literal runs with memchr and writes each int
# straight into its buffer, faster than str ``%``, and there is nothing to encode.
# Rows whose labels are not cached, by type: the type is in the format, the rest are arguments.
_NODE_FULL = tuple(b",%d,%%d,%%d,%%d,%%d,0,0" % t for t in range(16))  # name, id, self_size, edge_count
_EDGE_FULL = tuple(b",%d,%%d,%%d" % t for t in range(1 << EDGE_SHIFT))  # name_or_index, to_node
_DIGITS = tuple(b"%d" % i for i in range(1000))  # a name below 1000
_LOW_DIGITS = tuple(b"%03d" % i for i in range(1000))  # the last three digits of a name from 1000 on


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
        memory_budget: int = DEFAULT_LIMIT,
    ) -> None:
        self.contents = contents
        self.memory_budget = memory_budget
        self._extra = extra_roots
        self._exclude = frozenset(exclude_threads)
        self.nodes = self.edges = self.strings = self.size = 0
        self.walk_seconds = self.seconds = 0.0

    def __iter__(self) -> Iterator[bytes]:
        started = time.monotonic()
        graph = walk(
            full=self.contents == "full",
            extra=self._extra,
            exclude_threads=self._exclude,
            memory_budget=self.memory_budget,
        )
        self.walk_seconds = time.monotonic() - started
        self.nodes, self.edges, self.strings = graph.node_count, graph.edge_count, len(graph.strings)
        for data in _document(graph):
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


def _node_piece(key: tuple[int, int, int]) -> bytes:
    label, size, edge_count = key
    return b",%d,%d,%%d,%d,%d,0,0" % (label & ((1 << NODE_SHIFT) - 1), label >> NODE_SHIFT, size, edge_count)


def _edge_piece(label: int) -> bytes:
    return b",%d,%d,%%d" % (label & ((1 << EDGE_SHIFT) - 1), label >> EDGE_SHIFT)


def _format(
    cache: dict[_Key, bytes], keys: Callable[[], Iterable[_Key]], rows: int, piece: Callable[[_Key], bytes]
) -> bytes | None:
    """The chunk's ``%`` format: per row, a cached piece with the text of the row's repeated fields and a
    ``%d`` where its one unique field goes (a node's id, an edge's to_node). Each ``%`` argument costs
    about as much as formatting an int, a join element a fifth of that: so the repeated fields go in
    the format, not in ``%s`` arguments. Each piece starts with the comma before its row. None when
    many keys are new (the names of distinct strings, the indexes of a big list's elements: met once
    each): such rows are cheaper formatted in full, and stay out of the cache."""
    try:
        return b"".join(map(cache.__getitem__, keys()))  # the usual case: no scan for misses
    except KeyError:
        pass
    missing = set(keys()).difference(cache)
    if len(missing) > rows // 4:
        return None
    if len(cache) + len(missing) > PIECES:
        cache.clear()
    cache.update(zip(missing, map(piece, missing), strict=True))
    return b"".join(map(cache.__getitem__, keys()))


def _recent(recent: dict[bytes, bytes], key: bytes, make: Callable[[], bytes | None]) -> bytes | None:
    """A chunk's format, kept while it recurs. Each batch of new objects is numbered grouped by class,
    so a long run of one kind of object (or of its edges) gives the same chunk again and again, in as
    many phases as the run's period: a hit trades the per-row lookups for one hash of the chunk's key
    bytes. The oldest goes first."""
    fmt = recent.get(key)
    if fmt is None and (fmt := make()) is not None:
        if len(recent) >= RECENT:
            del recent[next(iter(recent))]
        recent[key] = fmt
    return fmt


def _full(formats: tuple[bytes, ...], labels: array[int], shift: int) -> bytes:
    """The format of rows formatted in full: the type (one of a handful) is in each row's piece."""
    return b"".join(map(formats.__getitem__, map(and_, labels, repeat((1 << shift) - 1))))


def _run(labels: array[int]) -> bytes | None:
    """The format of an edge chunk that is one run of consecutive names of one type (a big list's
    elements, each index met once: uncached, they would cost two ``%d`` a row): a name's text is its
    thousands then its last three digits from a table, joined in C, so each row costs one argument."""
    step = 1 << EDGE_SHIFT
    first, last = labels[0], labels[-1]
    if last - first != (len(labels) - 1) * step:  # most chunks: no array built to tell
        return None
    if labels != array(labels.typecode, range(first, last + 1, step)):
        return None
    kind, name, stop = first & (step - 1), first >> EDGE_SHIFT, (last >> EDGE_SHIFT) + 1
    parts = []
    while name < stop:  # a part per thousand: at most three
        thousands, low = divmod(name, 1000)
        head = b",%d,%d" % (kind, thousands) if thousands else b",%d," % kind
        digits = _LOW_DIGITS if thousands else _DIGITS
        high = min(low + stop - name, 1000)
        parts.append(head + (b",%d" + head).join(digits[low:high]) + b",%d")
        name += high - low
    return b"".join(parts)


def _args(rows: int, *columns: Iterable[int]) -> tuple[int, ...]:
    """The columns interleaved row by row, in C: slice assignment into a list, then one copy."""
    fields = [0] * (rows * len(columns))
    for at, column in enumerate(columns):
        fields[at :: len(columns)] = column
    return tuple(fields)


def _nodes(graph: Graph) -> Iterator[bytes]:
    """The node rows, a chunk at a time, each chunk starting with a comma."""
    pieces: dict[tuple[int, int, int], bytes] = {}  # (label, self_size, edge_count) → a row's piece
    recent: dict[bytes, bytes] = {}  # the chunk's labels, sizes and edge counts → its format
    for start in range(0, graph.node_count, ROWS):
        stop = min(graph.node_count, start + ROWS)
        labels, ids = graph.node_label[start:stop], graph.node_id[start:stop]
        sizes, counts = graph.node_size[start:stop], graph.node_edges[start:stop]
        keys = functools.partial(zip, labels, sizes, counts, strict=True)
        make = functools.partial(_format, pieces, keys, stop - start, _node_piece)
        fmt = _recent(recent, labels.tobytes() + sizes.tobytes() + counts.tobytes(), make)
        if fmt is not None:
            yield fmt % tuple(ids)
        else:
            names = map(rshift, labels, repeat(4))
            yield _full(_NODE_FULL, labels, 4) % _args(stop - start, names, ids, sizes, counts)


def _edges(graph: Graph) -> Iterator[bytes]:
    """The edge rows, a chunk at a time, each chunk starting with a comma."""
    pieces: dict[int, bytes] = {}  # edge label → a row's piece (a few thousand distinct ones)
    recent: dict[bytes, bytes] = {}  # the chunk's labels → its format
    for edge_labels, targets in graph.edge_parts:
        for start in range(0, len(edge_labels), ROWS):
            stop = min(len(edge_labels), start + ROWS)
            labels, to_nodes = edge_labels[start:stop], targets[start:stop]  # to_node: ordinal × 7
            make = functools.partial(_format, pieces, labels.__iter__, stop - start, _edge_piece)
            fmt = _run(labels) or _recent(recent, labels.tobytes(), make)  # a run never recurs
            if fmt is not None:
                yield fmt % tuple(to_nodes)
            else:
                names = map(rshift, labels, repeat(EDGE_SHIFT))
                yield _full(_EDGE_FULL, labels, EDGE_SHIFT) % _args(stop - start, names, to_nodes)


def _document(graph: Graph) -> Iterator[bytes]:
    yield (_meta(graph) + '"nodes":[').encode("ascii")
    for i, rows in enumerate(_nodes(graph)):
        yield (rows if i else rows[1:]) + b"\n"  # the first row has no comma before it
    yield b'],\n"edges":['
    for i, rows in enumerate(_edges(graph)):
        yield (rows if i else rows[1:]) + b"\n"
    yield b'],\n"trace_function_infos":[],\n"trace_tree":[],\n"samples":[],\n"locations":[],\n"strings":['
    strings = graph.strings
    start = 0
    while start < len(strings):
        stop, size = start, 0
        while stop < len(strings) and size < STRINGS_BYTES and stop - start < ROWS:
            size += len(strings[stop]) + 3
            stop += 1
        yield (("," if start else "") + string_literals(strings, start, stop) + "\n").encode("ascii")
        start = stop
    yield b"]}\n"


def write_file(path: Path, snapshot: HeapSnapshot) -> HeapSnapshotInfo:
    """Write the export to a new 0600 file at ``path`` (refuses to replace an existing file or follow a
    symlink). Runs on the calling thread."""
    fd = private_files.create(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in snapshot:
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return snapshot.info(str(path))
