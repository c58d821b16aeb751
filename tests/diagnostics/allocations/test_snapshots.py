"""The snapshot store on real files and real tracemalloc: names, modes, budget, failures, after-GC.

Every test that traces stops tracemalloc again (fixture); the after-GC tests disable the
automatic collector so that only the collections the test makes happen.
"""

from __future__ import annotations

import gc
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opsconsole.diagnostics.allocations import diff
from opsconsole.diagnostics.allocations.snapshots import SnapshotInfo, SnapshotStore
from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.errors import InsecureFileError, InvalidRequestError, NotFoundError, StateError
from testkit.support import holds_for, wait_until


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.stop()
    tracemalloc.start(5)
    yield
    tracemalloc.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SnapshotStore]:
    s = SnapshotStore(tmp_path / "snaps")
    yield s
    s.close()


@pytest.fixture
def no_auto_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def workload(keep: list[object]) -> None:
    keep.append([bytearray(300) for _ in range(5_000)])  # the workload's allocating line


WORKLOAD_LINE = workload.__code__.co_firstlineno + 1


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its mode and size, to prove nothing else was touched."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.join(dirpath, n)] = (st.st_mode, st.st_size)
    return out


def run_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


# -- files and names ----------------------------------------------------------------------


def test_files_are_0600_in_a_0700_dir(store: SnapshotStore, tracing: None) -> None:
    assert stat.S_IMODE(os.lstat(store.directory).st_mode) == 0o700
    info = store.take("first")
    assert (info.name, info.state, info.after_gc, info.frames) == ("first", "ready", False, 5)
    assert info.traces > 0 and info.traced_bytes > 0 and info.taken_at is not None
    path = store.path("first")
    assert path == store.directory / "first.tracemalloc"
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == info.file_bytes
    assert os.listdir(store.directory) == ["first.tracemalloc"]
    assert "first" in to_text(info) and "ready" in to_text(store.summary())
    json.dumps(to_data(store.list()))
    # Stopping tracemalloc drops no file; close() removes them all.
    tracemalloc.stop()
    assert path.exists() and store.list() == (info,)
    store.close()
    assert os.listdir(store.directory) == []
    tracemalloc.start(1)
    with pytest.raises(StateError, match="closed"):
        store.take("again")


def test_directory_must_be_private_and_real(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o750)
    with pytest.raises(InsecureFileError, match="chmod 700"):
        SnapshotStore(open_dir)
    assert stat.S_IMODE(os.lstat(open_dir).st_mode) == 0o750  # refused, not "fixed"
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        SnapshotStore(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InsecureFileError, match="not a directory"):
        SnapshotStore(tmp_path / "file")
    nested = SnapshotStore(tmp_path / "a" / "b")
    assert stat.S_IMODE(os.lstat(nested.directory).st_mode) == 0o700


BAD_NAMES = [
    "../x",
    "%2e%2e/x",
    "a/b",
    "a\x00b",
    "",
    "a" * 65,
    ".",
    "..",
    ".hidden",
    "-x",
    "x\n",
    "sp ace",
    "é",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(
    tmp_path: Path, store: SnapshotStore, tracing: None, name: str
) -> None:
    store.take("good")
    before = tree(tmp_path)
    calls: list[Callable[[], object]] = [
        lambda: store.take(name),
        lambda: store.take_after_gc(name, timeout=0.01),
        lambda: store.path(name),
        lambda: store.drop(name),
        lambda: store.diff(name),
        lambda: store.diff("good", name),
        lambda: store.top(name),
    ]
    for call in calls:
        with pytest.raises(InvalidRequestError):
            call()
    assert tree(tmp_path) == before
    assert [i.name for i in store.list()] == ["good"]


def test_longest_name_and_a_taken_name(store: SnapshotStore, tracing: None) -> None:
    longest = "A" + "b.-_9" * 12 + "xyz"
    assert len(longest) == 64
    first = store.take(longest)
    data = store.path(longest).read_bytes()
    with pytest.raises(InvalidRequestError, match="exists"):
        store.take(longest)
    assert store.path(longest).read_bytes() == data and store.list() == (first,)


def test_take_needs_tracing(store: SnapshotStore) -> None:
    tracemalloc.stop()
    with pytest.raises(StateError, match="not tracing"):
        store.take("x")
    with pytest.raises(StateError, match="not tracing"):
        store.take_after_gc("x", timeout=0.01)
    assert store.list() == () and os.listdir(store.directory) == []


def test_unknown_and_dropped(store: SnapshotStore, tracing: None) -> None:
    for call in (store.path, store.drop, store.diff):
        with pytest.raises(NotFoundError):
            call("nope")
    store.take("a")
    store.drop("a")
    assert store.list() == () and os.listdir(store.directory) == []
    with pytest.raises(NotFoundError):
        store.path("a")


# -- failed writes ------------------------------------------------------------------------


def test_existing_foreign_file_is_not_overwritten(store: SnapshotStore, tracing: None) -> None:
    foreign = store.directory / "taken.tracemalloc"
    foreign.write_bytes(b"someone else's")
    with pytest.raises(StateError, match="not overwriting"):
        store.take("taken")
    assert foreign.read_bytes() == b"someone else's"
    assert store.list() == () and os.listdir(store.directory) == ["taken.tracemalloc"]
    store.close()
    assert foreign.exists()  # close() deletes only what the store wrote


def test_write_failing_midway_leaves_nothing(tmp_path: Path) -> None:
    # A real EFBIG after the first 4 KiB of the pickle: RLIMIT_FSIZE in a child process
    # (SIGXFSZ ignored so write() fails instead of killing it).
    out = run_python(
        """
        import os, resource, signal, sys, tracemalloc
        from pathlib import Path
        from opsconsole.diagnostics.allocations.snapshots import SnapshotStore
        from opsconsole.errors import StateError
        store = SnapshotStore(Path(sys.argv[1]))
        tracemalloc.start(1)
        keep = [str(i) * 3 for i in range(20000)]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            store.take("big")
        except StateError as exc:
            print("StateError:", exc)
        print(os.listdir(sys.argv[1]), store.list())
        """,
        str(tmp_path / "snaps"),
    )
    assert "StateError: could not write" in out and "File too large" in out
    assert out.splitlines()[-1] == "[] ()"


# -- budget -------------------------------------------------------------------------------


def test_count_budget_drops_the_oldest(tmp_path: Path, tracing: None) -> None:
    store = SnapshotStore(tmp_path / "snaps", max_count=2)
    try:
        for name in ("a", "b", "c"):
            store.take(name)
        assert [i.name for i in store.list()] == ["b", "c"]
        assert sorted(os.listdir(store.directory)) == ["b.tracemalloc", "c.tracemalloc"]
    finally:
        store.close()


def test_byte_budget_drops_the_oldest(tmp_path: Path, tracing: None) -> None:
    keep: list[object] = []
    workload(keep)  # 5000 live traces: the few the store itself adds per snapshot barely count
    probe = SnapshotStore(tmp_path / "probe")
    size = probe.take("probe").file_bytes
    probe.close()
    store = SnapshotStore(tmp_path / "snaps", max_bytes=int(size * 2.5))  # room for two
    try:
        for name in ("a", "b", "c"):
            store.take(name)
        assert [i.name for i in store.list()] == ["b", "c"]
        assert sorted(os.listdir(store.directory)) == ["b.tracemalloc", "c.tracemalloc"]
        assert store.summary().file_bytes <= store.max_bytes
    finally:
        store.close()
    tiny = SnapshotStore(tmp_path / "tiny", max_bytes=100)
    with pytest.raises(StateError, match="over the budget"):
        tiny.take("x")
    assert tiny.list() == () and os.listdir(tiny.directory) == []


# -- reading back and diffs ---------------------------------------------------------------


def test_file_loads_in_another_process_with_the_same_statistics(store: SnapshotStore, tracing: None) -> None:
    keep: list[object] = []
    workload(keep)
    store.take("loaded")
    ours = store.top("loaded", top=5)
    out = run_python(
        """
        import json, sys, tracemalloc
        snap = tracemalloc.Snapshot.load(sys.argv[1])
        filters = [tracemalloc.Filter(False, f) for f in json.loads(sys.argv[2])]
        filters += [tracemalloc.Filter(False, p + "/*") for p in json.loads(sys.argv[3])]
        stats = snap.filter_traces(filters).statistics("lineno")[:5]
        print(json.dumps([[s.traceback[0].filename, s.traceback[0].lineno, s.size, s.count] for s in stats]))
        """,
        str(store.path("loaded")),
        json.dumps(diff.DEFAULT_EXCLUDE_FILES),
        json.dumps(diff.DEFAULT_EXCLUDE_PREFIXES),
    )
    theirs = json.loads(out)
    assert [[s.file, s.line, s.size, s.count] for s in ours.sites] == theirs
    assert theirs[0][:2] == [__file__, WORKLOAD_LINE]
    assert "loaded" in to_text(ours)


def test_diff_names_the_workload_line_first(store: SnapshotStore, tracing: None) -> None:
    keep: list[object] = []
    store.take("before")
    workload(keep)
    store.take("after")
    d = store.diff("before", "after", top=5)
    assert (d.base, d.other, d.key) == ("before", "after", "lineno")
    assert (d.rows[0].file, d.rows[0].line) == (__file__, WORKLOAD_LINE)
    assert d.rows[0].count_diff >= 5_000 and d.rows[0].size_diff >= 5_000 * 300
    assert d.total_size_diff >= 5_000 * 300
    # Against "now" (not stored), and by whole traceback (read back from the file).
    now = store.diff("before")
    assert now.other == "now" and (now.rows[0].file, now.rows[0].line) == (__file__, WORKLOAD_LINE)
    assert [i.name for i in store.list()] == ["before", "after"]
    by_tb = store.diff("before", "after", key="traceback", top=3)
    frames = [(f.file, f.line) for f in by_tb.rows[0].traceback]
    assert frames[0] == (__file__, WORKLOAD_LINE)
    here = test_diff_names_the_workload_line_first.__code__.co_firstlineno + 3
    assert (__file__, here) in frames
    assert "workload's allocating line" in to_text(by_tb)
    with pytest.raises(InvalidRequestError):
        store.diff("before", key="filename")


# -- after a full collection --------------------------------------------------------------


def test_after_gc_waits_for_a_full_collection(store: SnapshotStore, tracing: None, no_auto_gc: None) -> None:
    hooks = len(gc.callbacks)
    result: list[SnapshotInfo | BaseException] = []

    def waiter() -> None:
        try:
            result.append(store.take_after_gc("post", timeout=5))
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=waiter, name="test-aftergc")
    t.start()
    wait_until(lambda: [(i.name, i.state, i.after_gc) for i in store.list()] == [("post", "pending", True)])
    with pytest.raises(StateError, match="pending"):
        store.path("post")
    for generation in (0, 1, 0):
        gc.collect(generation)
    holds_for(
        lambda: t.is_alive() and store.list()[0].state == "pending" and result == [],
        0.3,
        "pending after gen-0/1 collections",
    )
    assert os.listdir(store.directory) == []
    full_at = time.time()
    gc.collect()
    t.join(5)
    assert not t.is_alive()
    (info,) = result
    assert isinstance(info, SnapshotInfo)
    assert info.state == "ready" and info.after_gc and info.taken_at is not None
    assert info.taken_at >= full_at >= info.requested_at
    assert store.list() == (info,) and store.path("post").exists()
    assert len(gc.callbacks) == hooks


def test_after_gc_timeout_removes_the_pending_entry(
    store: SnapshotStore, tracing: None, no_auto_gc: None
) -> None:
    hooks = len(gc.callbacks)
    t0 = time.monotonic()
    with pytest.raises(StateError, match="no full garbage collection within 0.2 s"):
        store.take_after_gc("late", timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 30  # waited its timeout; the upper bound is a deadline
    assert store.list() == () and os.listdir(store.directory) == [] and len(gc.callbacks) == hooks
    with pytest.raises(InvalidRequestError):
        store.take_after_gc("late", timeout=0)


def test_after_gc_with_collect(store: SnapshotStore, tracing: None, no_auto_gc: None) -> None:
    info = store.take_after_gc("now", timeout=2, collect=True)
    assert info.state == "ready" and info.after_gc


@pytest.mark.parametrize("how", ["drop", "close"])
def test_pending_after_gc_is_cancelled(
    store: SnapshotStore, tracing: None, no_auto_gc: None, how: str
) -> None:
    result: list[BaseException] = []

    def waiter() -> None:
        try:
            store.take_after_gc("p", timeout=5)
        except StateError as exc:
            result.append(exc)

    t = threading.Thread(target=waiter, name="test-aftergc")
    t.start()
    wait_until(lambda: len(store.list()) == 1)
    if how == "drop":
        store.drop("p")
    else:
        store.close()
    t.join(3)
    assert not t.is_alive() and len(result) == 1
    assert ("dropped" if how == "drop" else "closed") in str(result[0])
    assert store.list() == () and os.listdir(store.directory) == []
