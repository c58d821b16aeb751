"""Node ordinals and ids of the ``.heapsnapshot`` walk: the flat address table and its dict fallback
give the same answers, 16-byte neighbours included, and a kernel that refuses the table's
reservation gets the fallback, not a failed export."""

from __future__ import annotations

import json
import subprocess
import sys
from array import array

import pytest

from opsconsole.diagnostics.heapsnapshot.address_table import AddressTable
from opsconsole.diagnostics.heapsnapshot.ids import NODE_FIELDS, Ordinals
from testkit import REPO

ROOT = REPO


def _mixed() -> list[object]:
    """Objects of many sizes: 16-byte ``object()``s side by side (two per 32-byte slot), the static
    16-byte singletons, ints, strs, containers; each referenced twice or more."""
    small = [object() for _ in range(2000)]
    others: list[object] = [None, NotImplemented, Ellipsis, *range(10**6, 10**6 + 500), "a", (1, 2), [3]]
    few_kinds = [x for i in range(400) for x in (object(), 10**7 + i, f"t{i}", (i,))]  # four classes
    return small + others + small[::3] + others[::2] + [None] * 5 + few_kinds + few_kinds[::5]


def _number(table: AddressTable, objs: list[object]) -> list[int]:
    """The node id each reference in ``objs`` gets, looked up in batches as the walk does."""
    ords = Ordinals(1, array("I", [1]), table)
    try:
        found = []
        for start in range(0, len(objs), 700):  # several batches: later ones meet numbered objects
            found.extend(ords.lookup(objs[start : start + 700]))
        assert sorted(set(found)) == list(range(NODE_FIELDS, ords.count * NODE_FIELDS, NODE_FIELDS))
        for obj, index in zip(objs, found, strict=True):  # each reference's node is that object's
            assert ords.objects[index // NODE_FIELDS - ords.first] is obj
        return [ords.ids[index // NODE_FIELDS] for index in found]
    finally:
        ords.close()


@pytest.mark.skipif(not AddressTable().flat, reason="no flat address table on this platform")
def test_the_flat_table_and_the_dict_fallback_number_alike() -> None:
    objs = _mixed()
    flat = _number(AddressTable(), objs)
    assert flat == _number(AddressTable(flat=False), objs)  # ordinals may come in another order
    by_object: dict[int, int] = {}  # each distinct object one node, wherever it is referenced
    for obj, node_id in zip(objs, flat, strict=True):
        assert by_object.setdefault(id(obj), node_id) == node_id
    assert len(set(by_object.values())) == len(by_object)


def test_unseen_lists_only_objects_without_a_node() -> None:
    objs = [object() for _ in range(100)]
    for table in (AddressTable(), AddressTable(flat=False)):
        ords = Ordinals(1, array("I", [1]), table)
        try:
            ords.lookup(objs[::2])
            assert sorted(map(id, ords.unseen(objs))) == sorted(map(id, objs[1::2]))
        finally:
            ords.close()


def test_a_refused_reservation_falls_back_and_the_export_still_works() -> None:
    """``ulimit -v`` a few GiB above what the process uses: the 16 TiB reservation fails for real."""
    script = """
import json, resource, sys
from opsconsole.diagnostics.heapsnapshot.document import HeapSnapshot
from opsconsole.diagnostics.heapsnapshot.address_table import AddressTable
with open("/proc/self/statm") as fh:
    used = int(fh.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (4 << 30), resource.RLIM_INFINITY))
snapshot = HeapSnapshot()
doc = json.loads(b"".join(snapshot))
print(json.dumps({"flat": AddressTable().flat, "nodes": len(doc["nodes"]) // 7, "said": snapshot.nodes}))
"""
    if sys.platform != "linux":
        pytest.skip("RLIMIT_AS semantics are Linux's here")
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["flat"] is False
    assert result["nodes"] == result["said"] > 1000
