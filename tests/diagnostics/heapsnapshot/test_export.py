"""The ``.heapsnapshot`` export: the format (parsed here), names, redaction, roles, one at a time,
the REPL helper and the CLI (memlab loads the demo's export in tests/acceptance/test_memlab.py)."""

from __future__ import annotations

import http.client
import json
import secrets
import stat
import sys
import threading
import urllib.parse
from array import array
from collections import deque
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest

from opsconsole.console import Console
from opsconsole.diagnostics.heapsnapshot.document import HeapSnapshot
from opsconsole.diagnostics.service import Diagnostics
from opsconsole.repl.helpers import Ops
from testkit.support import FakeClock, Operator, audit_events, login_token

NODE_FIELDS = ["type", "name", "id", "self_size", "edge_count", "trace_node_id", "detachedness"]


class Thing:
    """A class whose instances the format test finds by name, attribute edges included."""

    def __init__(self, label: str, size: int) -> None:
        self.label = label
        self.size = size


# Module globals: reached through "(modules)" → this module → HELD.
HELD = [Thing(f"thing-{i}", i) for i in range(3)]
SECRET = "s3cr3t-" + secrets.token_hex(12)  # a str value in the heap
KEYED = {"tok-" + secrets.token_hex(12): "value", "plain_key": 1}  # a secret-looking dict key
# One run of dicts in the walk: small str-keyed ones around an int-keyed one and a big one.
MIXED_DICTS = [
    *({"a": i} for i in range(3)),
    {7: "seven"},
    {"b": 1},
    {f"k{i}": i for i in range(100)},
    {"c": 2},
]
DESCRIPTORS = [vars(Thing)["__dict__"], vars(Thing)["__weakref__"]]  # only unnamed "referent" edges


def export(contents: str = "redacted") -> tuple[bytes, dict[str, Any]]:
    snapshot = HeapSnapshot(contents="full" if contents == "full" else "redacted")
    raw = b"".join(snapshot)
    doc = json.loads(raw)  # the whole document is valid JSON
    assert snapshot.nodes == doc["snapshot"]["node_count"]
    assert snapshot.edges == doc["snapshot"]["edge_count"]
    return raw, doc


class Parsed:
    """The node and edge arrays of a parsed document, with the few lookups the tests need."""

    def __init__(self, doc: dict[str, Any]) -> None:
        # Flat arrays, not the parsed lists: millions of int objects would be walked by later exports.
        self.keys = list(doc)
        self.snapshot: dict[str, Any] = doc["snapshot"]
        self.nodes = array("q", doc.pop("nodes"))
        self.edges = array("q", doc.pop("edges"))
        self.strings: list[str] = doc["strings"]
        self.node_types: list[str] = doc["snapshot"]["meta"]["node_types"][0]
        self.edge_types: list[str] = doc["snapshot"]["meta"]["edge_types"][0]
        self.first_edge = array("q", [0])
        self.first_edge.extend(accumulate(self.nodes[4::7]))

    def name(self, ordinal: int) -> str:
        return self.strings[self.nodes[ordinal * 7 + 1]]

    def node_type(self, ordinal: int) -> str:
        return self.node_types[self.nodes[ordinal * 7]]

    def out(self, ordinal: int) -> list[tuple[str, str | int, int]]:
        """(edge type, name or index, target ordinal) of one node's edges."""
        found = []
        for e in range(self.first_edge[ordinal], self.first_edge[ordinal + 1]):
            kind, name, to = self.edges[e * 3 : e * 3 + 3]
            etype = self.edge_types[kind]
            found.append((etype, name if etype in ("element", "hidden") else self.strings[name], to // 7))
        return found

    def child(self, ordinal: int, edge: str) -> int:
        (target,) = [to for _, name, to in self.out(ordinal) if name == edge]
        return target

    def module(self, name: str) -> int:
        return self.child(self.child(0, 0), name)  # root → "(modules)" → module by name


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    raw, doc = export()
    assert b'"nodes":[' in raw and b'"edges":[' in raw and b'"strings":[' in raw  # no space before ':'
    return Parsed(doc)


def test_the_document_is_a_v8_heap_snapshot(parsed: Parsed) -> None:
    assert parsed.keys == [
        "snapshot",
        "nodes",
        "edges",
        "trace_function_infos",
        "trace_tree",
        "samples",
        "locations",
        "strings",
    ]
    meta = parsed.snapshot["meta"]
    assert meta["node_fields"] == NODE_FIELDS
    assert meta["edge_fields"] == ["type", "name_or_index", "to_node"]
    assert meta["edge_types"][1:] == ["string_or_number", "node"]
    n, e = parsed.snapshot["node_count"], parsed.snapshot["edge_count"]
    assert len(parsed.nodes) == 7 * n and len(parsed.edges) == 3 * e
    assert sum(parsed.nodes[4::7]) == e  # every edge belongs to a node, in node order
    assert all(to % 7 == 0 and to < 7 * n for to in parsed.edges[2::3])
    assert max(parsed.nodes[0::7]) < len(parsed.node_types)
    assert max(parsed.nodes[1::7]) < len(parsed.strings)
    ids = parsed.nodes[2::7]
    assert ids[0] == 1 and parsed.node_type(0) == "synthetic"  # the root, as V8 numbers it
    assert len(set(ids)) == n and min(ids[1:]) > 1 and max(ids) < 2**32
    assert set(parsed.nodes[5::7]) == {0} and set(parsed.nodes[6::7]) == {0}


def test_everything_is_reachable_from_the_root(parsed: Parsed) -> None:
    seen = bytearray(len(parsed.nodes) // 7)
    seen[0] = 1
    todo = deque([0])
    while todo:
        node = todo.popleft()
        for e in range(parsed.first_edge[node], parsed.first_edge[node + 1]):
            to = parsed.edges[e * 3 + 2] // 7
            if not seen[to]:
                seen[to] = 1
                todo.append(to)
    assert all(seen)
    assert [parsed.name(to) for _, _, to in parsed.out(0)] == [
        "(modules)",
        "(threads)",
        "(other roots)",
        "(gc objects)",
    ]


def test_python_names_modules_attributes_and_elements(parsed: Parsed) -> None:
    module = parsed.module(__name__)
    assert parsed.name(module) == __name__ and parsed.node_type(module) == "synthetic"
    held = parsed.child(module, "HELD")
    assert parsed.name(held) == "list"
    assert [(kind, index) for kind, index, _ in parsed.out(held)] == [
        ("element", 0),
        ("element", 1),
        ("element", 2),
    ]
    thing = parsed.out(held)[1][2]
    assert parsed.name(thing) == f"{__name__}.Thing"
    edges = {name: (kind, to) for kind, name, to in parsed.out(thing)}
    assert edges["label"][0] == "property" and parsed.name(edges["label"][1]) == "(str, 7 chars)"
    assert parsed.name(edges["size"][1]) == "int" and parsed.node_type(edges["size"][1]) == "number"
    assert parsed.name(edges["__class__"][1]) == f"class {__name__}.Thing"
    function = parsed.child(module, "export")
    assert parsed.node_type(function) == "closure" and parsed.name(function) == "export"
    assert parsed.child(function, "__globals__") == module  # a module and its globals are one node


def test_dicts_in_one_run_keep_their_own_edges_whatever_their_neighbours(parsed: Parsed) -> None:
    mixed = parsed.child(parsed.module(__name__), "MIXED_DICTS")
    dicts = [to for _, _, to in parsed.out(mixed)]
    names = [[(kind, name) for kind, name, _ in parsed.out(d)] for d in dicts]
    assert names[:3] == [[("property", "a")]] * 3
    assert names[3] == [("property", "[7]"), ("internal", "(key)")]
    assert names[4] == [("property", "b")] and names[6] == [("property", "c")]
    assert names[5] == [("property", f"k{i}") for i in range(100)]
    assert [parsed.name(to) for _, _, to in parsed.out(dicts[2])] == ["int"]
    descriptors = [to for _, _, to in parsed.out(parsed.child(parsed.module(__name__), "DESCRIPTORS"))]
    for ref in descriptors:
        assert [(kind, name, parsed.name(to)) for kind, name, to in parsed.out(ref)] == [
            ("internal", "referent", f"class {__name__}.Thing")
        ]


def test_node_ids_are_stable_while_the_object_lives(parsed: Parsed) -> None:
    again = Parsed(export()[1])
    first = parsed.nodes[parsed.child(parsed.module(__name__), "HELD") * 7 + 2]
    second = again.nodes[again.child(again.module(__name__), "HELD") * 7 + 2]
    assert first == second


def test_strings_and_odd_keys_are_redacted_unless_full_contents_are_asked_for() -> None:
    key = next(k for k in KEYED if k.startswith("tok-"))
    raw, doc = export()
    assert SECRET.encode() not in raw and key.encode() not in raw
    assert b"thing-1" not in raw and b'"plain_key"' in raw
    keyed = Parsed(doc)
    names = {name for _, name, _ in keyed.out(keyed.child(keyed.module(__name__), "KEYED"))}
    assert names == {"plain_key", f"(str, {len(key)} chars)"}
    del raw, doc, keyed  # not part of the next export's heap
    raw, _ = export("full")
    assert SECRET.encode() in raw and key.encode() in raw and b"thing-1" in raw


def test_full_contents_show_at_most_1024_of_a_big_str_or_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The name of a str/bytes node stays in memory until the export ends (a bytes repr is up to
    # four times its size): a big buffer must not cost the host its size again, or four times.
    blob = b"\xff" * 4_000_000 + b"tail-of-blob"
    text = "y" * 3_000_000 + "tail-of-text"
    key = "k" * 2_000_000 + "tail-of-key"  # a dict key names an edge, in clear with contents=full
    monkeypatch.setattr(sys.modules[__name__], "BIG", ({key: 1}, blob, text), raising=False)
    raw, doc = export("full")
    strings = doc["strings"]
    assert repr(blob[:1024]) + f"… (+{len(blob) - 1024} bytes)" in strings
    assert f"{'y' * 1024}… (+{len(text) - 1024} chars)" in strings
    assert f"{'k' * 1024}… (+{len(key) - 1024} chars)" in strings
    assert b"tail-of-blob" not in raw and b"tail-of-text" not in raw and b"tail-of-key" not in raw
    longest = max(map(len, strings))  # no name is longer than the repr of 1024 bytes and the note
    assert longest <= 4 * 1024 + 40, longest


# -- over HTTP, on the real console -------------------------------------------------------------


@pytest.fixture
def tokens(console: Console, operators: dict[str, Operator], clock: FakeClock) -> dict[str, str]:
    return {
        "operator": login_token(console.url, operators["alice"], clock()),
        "viewer": login_token(console.url, operators["bob"], clock()),
    }


def get_raw(url: str, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_http_export_is_streamed_for_operators_only_and_full_contents_are_audited(
    console: Console, tokens: dict[str, str]
) -> None:
    status, _, body = get_raw(console.url, "/ops/heapsnapshot", tokens["viewer"])
    assert status == 403 and json.loads(body)["error"] == "forbidden"
    status, headers, body = get_raw(console.url, "/ops/heapsnapshot", tokens["operator"])
    assert status == 200, body[:200]
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    assert SECRET.encode() not in body
    assert json.loads(body)["snapshot"]["node_count"] > 1000
    del body  # not part of the next export's heap
    status, _, body = get_raw(console.url, "/ops/heapsnapshot?contents=full", tokens["operator"])
    assert status == 200 and SECRET.encode() in body
    events = [e for e in audit_events(console.settings.audit_path) if e["event"] == "dump.heapsnapshot"]
    assert [(e["fields"]["user"], e["fields"]["contents"]) for e in events] == [
        ("alice", "redacted"),
        ("alice", "full"),
    ]


def test_a_second_expensive_dump_gets_429_while_one_runs(console: Console, tokens: dict[str, str]) -> None:
    release = threading.Event()
    running = console.diagnostics.expensive("test hold", lambda: release.wait(30), expected_seconds=5)
    try:
        status, headers, body = get_raw(console.url, "/ops/heapsnapshot", tokens["operator"])
        assert status == 429 and json.loads(body)["error"] == "busy"
        assert int(headers["Retry-After"]) >= 1
    finally:
        release.set()
        running.result(10)
    assert get_raw(console.url, "/ops/heapsnapshot", tokens["operator"])[0] == 200


def test_repl_helper_writes_a_private_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    diag = Diagnostics(dump_dir=tmp_path / "dumps")
    try:
        dest = tmp_path / "x.heapsnapshot"
        info = Ops(diag, app_loop=None).heapsnapshot(dest)
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        doc = json.loads(dest.read_bytes())
        assert info.nodes == doc["snapshot"]["node_count"] and info.bytes == dest.stat().st_size
        assert "x.heapsnapshot" in capsys.readouterr().out
        with pytest.raises(FileExistsError):  # never replaces a file
            Ops(diag, app_loop=None).heapsnapshot(dest)
    finally:
        diag.close()
