"""Reference chains on real objects: module globals, thread locals, attributes, limits, rendering."""

from __future__ import annotations

import json
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

from opsconsole.diagnostics.objects.census import census, type_name
from opsconsole.diagnostics.objects.refchain import RefChain, refchain
from opsconsole.diagnostics.objects.refchain import SearchRoots as Roots
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InvalidRequestError, NotFoundError

MODULE = "opsconsole_refchain_fixture"

# "not reachable" is only the answer once the search has run out of heap: the test process may
# hold chains deeper than the default depth (another test's linked structures), so searches that
# must prove an absence go as deep as the heap does.
EXHAUSTIVE = 1000  # the most refchain allows


class Leaf:
    """Instances exist only where a test puts them."""

    def __init__(self, n: int = 0) -> None:
        self.n = n


class Holder:
    def __init__(self, thing: object) -> None:
        self.thing = thing


class Slotted:
    __slots__ = ("other", "thing")

    def __init__(self, thing: object) -> None:
        self.thing = thing


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    """A real module in sys.modules, so its globals are roots."""
    mod = types.ModuleType(MODULE)
    sys.modules[MODULE] = mod
    yield mod
    del sys.modules[MODULE]


def test_module_list_to_instance(module: Any) -> None:
    class Local:
        pass

    module.items = [Local(), Local(), Local()]
    result = refchain(type_name(Local), roots=Roots())
    assert result.found, result
    assert result.reason == "found"
    assert result.root == f"{MODULE}.items"
    assert result.target_type == type_name(Local)
    assert [s.type_name for s in result.steps] == ["list", type_name(Local)]
    assert result.steps[0].label == f"{MODULE}.items"
    assert result.steps[0].summary == "len 3"
    index = int(result.steps[1].label.strip("[]"))
    assert result.steps[1].label == f"[{index}]"
    assert result.visited > 0
    assert result.steps[1].size == sys.getsizeof(module.items[index])


def test_target_as_class_and_as_object(module: Any) -> None:
    class Local:
        pass

    first, second = Local(), Local()
    module.pair = {"a": first, "b": second}
    by_class = refchain(Local, roots=Roots())
    assert by_class.found
    by_object = refchain(second, roots=Roots())
    assert by_object.found
    assert by_object.root == f"{MODULE}.pair"
    assert by_object.steps[1].label == "['b']"


def test_attribute_labels_without_materialising(module: Any) -> None:
    class Local:
        pass

    inner = Holder(Local())
    outer = Holder({"key": Slotted(inner)})
    module.root = outer
    result = refchain(Local, roots=Roots())
    assert result.found
    labels = [s.label for s in result.steps]
    assert labels == [f"{MODULE}.root", ".thing", "['key']", ".thing", ".thing"]
    # Finding the names read the inline values: neither Holder got a materialised __dict__.
    assert all(type(r) is not dict for r in __import__("gc").get_referents(inner))


def test_materialised_instance_dict_reads_as_attribute(module: Any) -> None:
    class Local:
        pass

    holder = Holder(Local())
    holder.__dict__["extra"] = 1  # materialises the dict on 3.11
    module.root = holder
    result = refchain(Local, roots=Roots())
    assert [s.label for s in result.steps] == [f"{MODULE}.root", ".thing"]
    assert [s.type_name for s in result.steps] == [type_name(Holder), type_name(Local)]


def test_closure_cell_and_module_attribute(module: Any) -> None:
    class Local:
        pass

    def make() -> types.FunctionType:
        kept = Local()

        def inner() -> object:
            return kept

        return inner  # type: ignore[return-value]

    module.fn = make()
    result = refchain(Local, roots=Roots())
    labels = [s.label for s in result.steps]
    assert labels == [f"{MODULE}.fn", ".__closure__", "[0]", ".cell_contents"]
    assert result.steps[0].summary.startswith("function ")


def test_module_and_class_namespaces_fold_into_attributes(module: Any) -> None:
    class Local:
        pass

    detached: Any = types.ModuleType("detached_module")  # not in sys.modules, so not a root itself
    detached.thing = Local()
    module.sub = detached
    assert [s.label for s in refchain(Local, roots=Roots()).steps] == [f"{MODULE}.sub", ".thing"]
    del module.sub
    module.Registry = type("Registry", (), {"cache": [Local()]})
    result = refchain(Local, roots=Roots())
    assert [s.label for s in result.steps] == [f"{MODULE}.Registry", ".cache", "[0]"]
    assert result.steps[0].summary.startswith("class ")


def test_big_containers_are_walked_in_slices(module: Any) -> None:
    class Local:
        pass

    big: list[object] = [None] * 45_000
    big.append(Local())
    module.big = big
    result = refchain(Local, roots=Roots())
    assert [s.label for s in result.steps] == [f"{MODULE}.big", "[45000]"]
    del module.big
    table: dict[object, object] = {n: n for n in range(30_000)}
    table[(1, 2)] = [Local()]
    module.table = table
    result = refchain(Local, roots=Roots())
    assert [s.label for s in result.steps] == [f"{MODULE}.table", "[(1, 2)]", "[0]"]


def test_thread_local_is_a_root() -> None:
    class Local:
        pass

    ready = threading.Event()
    done = threading.Event()

    def worker() -> None:
        secret_local = Local()
        ready.set()
        done.wait(10)
        assert secret_local is not None

    t = threading.Thread(target=worker, name="refchain-test-worker")
    t.start()
    try:
        assert ready.wait(5)
        result = refchain(Local, roots=Roots())
        assert result.found, result
        assert result.root.startswith('thread "refchain-test-worker" frame worker (')
        assert result.root.endswith(" local secret_local")
        assert len(result.steps) == 1
        # the same thread excluded (as the console excludes its own): nothing else holds it
        assert t.ident is not None
        hidden = refchain(Local, roots=Roots(), exclude={t.ident}, max_depth=EXHAUSTIVE)
        assert not hidden.found
        assert hidden.reason == "not_reachable"
        assert not refchain(Local, roots=Roots(exclude_threads=frozenset({t.ident}))).found
    finally:
        done.set()
        t.join(5)


def test_extra_roots(module: Any) -> None:
    class Local:
        pass

    loop_like = Holder([Local()])
    result = refchain(
        Local, roots=Roots(modules=(MODULE,), threads=False, extra=(("app loop 0", loop_like),))
    )
    assert result.root == "app loop 0"
    assert [s.label for s in result.steps] == ["app loop 0", ".thing", "[0]"]


def test_cycle_only_is_not_reachable() -> None:
    a, b = Leaf(1), Leaf(2)
    a.other = b  # type: ignore[attr-defined]
    b.other = a  # type: ignore[attr-defined]
    # only this test's frame holds it; the caller is never a root
    result = refchain(a, roots=Roots(), max_depth=EXHAUSTIVE)
    assert not result.found
    assert result.reason == "not_reachable"
    assert result.root == ""
    assert result.steps == ()
    assert result.visited > 1000


def test_depth_limit(module: Any) -> None:
    class Local:
        pass

    deep: list[object] = [Local()]
    for _ in range(9):
        deep = [deep]
    module.deep = deep
    stopped = refchain(Local, roots=Roots(), max_depth=3)
    assert not stopped.found
    assert stopped.reason == "depth_limit"
    found = refchain(Local, roots=Roots(), max_depth=20)
    assert found.found
    assert len(found.steps) == 11
    assert [s.label for s in found.steps[1:]] == ["[0]"] * 10


def test_time_limit() -> None:
    class Local:
        pass

    lonely = Local()
    result = refchain(lonely, roots=Roots(), time_limit=0.000_001)
    assert not result.found
    assert result.reason == "time_limit"


def test_bad_requests() -> None:
    with pytest.raises(InvalidRequestError):
        refchain("1 not a name", roots=Roots())
    with pytest.raises(InvalidRequestError):
        refchain(Leaf, roots=Roots(), max_depth=0)
    with pytest.raises(InvalidRequestError):
        refchain(Leaf, roots=Roots(), time_limit=0)
    with pytest.raises(NotFoundError):
        refchain("no_such_module.NoSuchType", roots=Roots())


def test_does_not_walk_a_running_census() -> None:
    """Another thread's census holds a list of every object; the search must not go through it."""
    lonely = Leaf(3)  # held by this frame only: the calling thread is never a root
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            census(top=1, sizes=False)

    t = threading.Thread(target=count, name="census-loop")
    t.start()
    try:
        for _ in range(3):
            # a whole-heap walk while another thread takes the GIL for censuses: a generous limit
            result = refchain(lonely, roots=Roots(), time_limit=120, max_depth=EXHAUSTIVE)
            assert not result.found, result.root
            assert result.reason == "not_reachable"
    finally:
        stop.set()
        t.join(5)


def test_render_text_and_json(module: Any) -> None:
    class Local:
        pass

    module.items = [Local()]
    result = refchain(Local, roots=Roots())
    text = to_text(result)
    assert f"root: {MODULE}.items" in text
    assert "→ [0]" in text
    data = json.loads(json.dumps(to_data(result)))
    assert data["found"] is True
    assert data["steps"][1]["label"] == "[0]"
    missing = RefChain("x.Y", False, "time_limit", "", (), 0.5, 10)
    assert "time limit" in to_text(missing)
    json.dumps(to_data(missing))
