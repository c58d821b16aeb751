"""The dump API on the real console thread: roles, one-at-a-time, names, streaming, after-GC,
and answers while the host's main thread is stuck."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsconsole.console import Console
from opsconsole.diagnostics.allocations import diff
from testkit.support import FakeClock, Operator, audit_events, call, holds_for, login_token, wait_until


@pytest.fixture
def tokens(console: Console, operators: dict[str, Operator], clock: FakeClock) -> dict[str, str]:
    return {
        "operator": login_token(console.url, operators["alice"], clock()),
        "viewer": login_token(console.url, operators["bob"], clock()),
    }


@pytest.fixture
def tracing() -> Iterator[None]:
    yield
    tracemalloc.stop()


VIEWER_OK = ["/ops/threads", "/ops/gc", "/ops/process", "/ops/objects?top=5", "/ops/objects/growth?top=5"]
OPERATOR_ONLY_GET = [
    "/ops/heap?top=0",
    "/ops/heap/snapshots",
    "/ops/objects/refchain?type=dict",
    "/ops/profile?seconds=0.2",
]


@pytest.mark.parametrize("path", VIEWER_OK)
def test_viewer_routes(console: Console, tokens: dict[str, str], path: str) -> None:
    for role in ("viewer", "operator"):
        status, body = call(console.url, "GET", path, token=tokens[role])
        assert status == 200, (role, body)
    assert call(console.url, "GET", path)[0] == 401
    status, text = call(
        console.url, "GET", path + ("&" if "?" in path else "?") + "format=text", token=tokens["viewer"]
    )
    assert status == 200 and isinstance(text, str) and text.strip()


@pytest.mark.parametrize("path", OPERATOR_ONLY_GET)
def test_operator_only_routes(console: Console, tokens: dict[str, str], path: str) -> None:
    status, body = call(console.url, "GET", path, token=tokens["viewer"])
    assert (status, body["error"]) == (403, "forbidden")
    assert call(console.url, "GET", path, token=tokens["operator"])[0] == 200


def test_viewer_cannot_control_tracemalloc_or_take_snapshots(
    console: Console, tokens: dict[str, str]
) -> None:
    for path, body in (
        ("/ops/heap/start?frames=1", {}),
        ("/ops/heap/stop", {}),
        ("/ops/heap/snapshots", {"name": "x"}),
        ("/ops/gc/monitor?enable=true", {}),
    ):
        assert call(console.url, "POST", path, body, token=tokens["viewer"])[0] == 403
    assert not tracemalloc.is_tracing()


def test_ten_concurrent_census_requests_one_runs(console: Console, tokens: dict[str, str]) -> None:
    ballast = [[i] for i in range(2_500_000)]  # make one census take a while (~0.3 s)
    barrier = threading.Barrier(10)
    results: list[tuple[int, dict[str, str] | None]] = []

    def ask() -> None:
        barrier.wait()
        status, _ = call(console.url, "GET", "/ops/objects?sizes=true", token=tokens["viewer"])
        results.append((status, None))

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] + [429] * 9, statuses
    status, _ = call(console.url, "GET", "/ops/objects?top=3", token=tokens["viewer"])
    assert status == 200
    del ballast


def test_busy_answer_carries_retry_after(console: Console, tokens: dict[str, str]) -> None:
    holder = threading.Thread(
        target=call,
        args=(console.url, "GET", "/ops/profile?seconds=1.5"),
        kwargs={"token": tokens["operator"]},
    )
    holder.start()
    wait_until(lambda: console.diagnostics.jobs.running is not None, what="the profile on the dump worker")
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request("GET", "/ops/objects", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    holder.join(10)
    assert resp.status == 429
    assert int(resp.getheader("Retry-After") or "0") >= 1


@pytest.mark.parametrize(
    "name", ["../x", "%2e%2e/x", "a/b", "bad\x00name", "", ".", "..", "x" * 65, "/etc/passwd"]
)
def test_bad_snapshot_names_are_400_and_touch_nothing(
    console: Console, tokens: dict[str, str], tracing: None, tmp_path: Path, name: str
) -> None:
    tracemalloc.start(1)
    before = sorted(p for p in tmp_path.rglob("*"))
    status, body = call(console.url, "POST", "/ops/heap/snapshots", {"name": name}, token=tokens["operator"])
    assert (status, body["error"]) == (400, "bad_request"), body
    if name:
        import urllib.parse

        quoted = urllib.parse.quote(name, safe="/%")
        for method in ("GET", "DELETE"):
            status, _ = call(console.url, method, "/ops/heap/snapshots/" + quoted, token=tokens["operator"])
            assert status in (400, 404), (method, status)
            assert status == 400 or "/" in name  # a slash never reaches the handler: 404
    after = sorted(p for p in tmp_path.rglob("*") if p.name != "audit.jsonl")
    assert [p for p in after if p not in before and "audit" not in p.name] == []


def test_snapshot_download_loads_in_another_process(
    console: Console, tokens: dict[str, str], tracing: None, tmp_path: Path
) -> None:
    tracemalloc.start(1)
    keep = [bytearray(1000) for _ in range(2000)]  # something to see
    status, info = call(console.url, "POST", "/ops/heap/snapshots", {"name": "s1"}, token=tokens["operator"])
    assert status == 201, info
    dump_dir = console.settings.state_dir / "dumps"
    assert dump_dir.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in dump_dir.iterdir())
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    conn.request("GET", "/ops/heap/snapshots/s1", headers={"Authorization": f"Bearer {tokens['operator']}"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status == 200
    out = tmp_path / "s1.tracemalloc"
    out.write_bytes(data)
    script = (
        "import sys, tracemalloc\n"
        "s = tracemalloc.Snapshot.load(sys.argv[1])\n"
        "for st in s.statistics('lineno'):\n"
        "    f = st.traceback[0]\n"
        "    print(f'{f.filename}:{f.lineno} {st.size} {st.count}')\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, check=True
    )
    # The server leaves the console's own and tracemalloc's allocations out; so do we here.
    own = tuple(diff.DEFAULT_EXCLUDE_PREFIXES)
    theirs = [
        line
        for line in loaded.stdout.splitlines()
        if not line.split(":")[0].startswith(own) and line.split(":")[0] not in diff.DEFAULT_EXCLUDE_FILES
    ][:5]
    status, server = call(console.url, "GET", "/ops/heap/snapshots/s1/top?top=5", token=tokens["operator"])
    assert status == 200, server
    ours = [f"{s['file']}:{s['line']} {s['size']} {s['count']}" for s in server["sites"]]
    assert theirs == ours
    assert theirs[0].startswith(__file__)  # the bytearrays above are the biggest site
    assert call(console.url, "DELETE", "/ops/heap/snapshots/s1", token=tokens["operator"])[0] == 200
    assert not (dump_dir / "s1.tracemalloc").exists()
    assert "dump.snapshot" in [e["event"] for e in audit_events(console.settings.audit_path)]
    del keep


def test_after_gc_snapshot_waits_for_a_full_collection(
    console: Console, tokens: dict[str, str], tracing: None
) -> None:
    tracemalloc.start(1)
    gc.disable()  # no automatic full collection may sneak in during the test
    try:
        status, body = call(
            console.url,
            "POST",
            "/ops/heap/snapshots",
            {"name": "post-gc", "when": "after-gc"},
            token=tokens["operator"],
        )
        assert (status, body["state"]) == (202, "pending")
        wait_until(_after_gc_armed, what="the snapshot waiting for a full collection")

        def post_gc() -> list[dict[str, Any]]:
            listed = call(console.url, "GET", "/ops/heap/snapshots", token=tokens["operator"])[1]["snapshots"]
            return [s for s in listed if s["name"] == "post-gc"]

        gc.collect(0)
        holds_for(lambda: [s["state"] for s in post_gc()] == ["pending"], 0.3, "pending after gen-0 gc")
        collected_at = time.time()
        gc.collect()

        wait_until(lambda: [s["state"] for s in post_gc()] == ["ready"], what="the after-GC snapshot ready")
        assert post_gc()[0]["taken_at"] >= collected_at - 0.01
    finally:
        gc.enable()


def _after_gc_armed() -> bool:
    # The after-GC wait hooks gc.callbacks (opsconsole.diagnostics.allocations.settle) from the worker.
    return any("full_gc_signal" in getattr(cb, "__qualname__", "") for cb in gc.callbacks)


def _threads_while(
    console: Console, token: str, stuck: threading.Event, block: threading.Event
) -> list[tuple[int, str]]:
    """Ask for the threads dump from a helper thread once the test's main thread is in its stuck
    function (``stuck``); the dump showing that function proves it answered while the main thread
    was stuck. ``block`` is set when the answer is in."""
    result: list[tuple[int, str]] = []

    def ask() -> None:
        assert stuck.wait(30)
        result.append(call(console.url, "GET", "/ops/threads?format=text", token=token))
        block.set()

    threading.Thread(target=ask, daemon=True).start()
    return result


def test_threads_while_main_thread_sleeps(console: Console, tokens: dict[str, str]) -> None:
    entered, done = threading.Event(), threading.Event()
    result = _threads_while(console, tokens["viewer"], entered, done)

    def sleeping_main_thread() -> None:
        entered.set()
        assert done.wait(30)  # asleep until the dump has been taken

    sleeping_main_thread()
    status, text = result[0]
    assert status == 200
    assert "sleeping_main_thread" in text


def test_threads_while_main_thread_is_deadlocked(console: Console, tokens: dict[str, str]) -> None:
    entered, done = threading.Event(), threading.Event()
    lock = threading.Lock()
    lock.acquire()
    result = _threads_while(console, tokens["viewer"], entered, done)
    threading.Thread(target=lambda: (done.wait(30), lock.release()), daemon=True).start()

    def deadlocked_main_thread() -> None:
        entered.set()
        lock.acquire()  # held above: blocks until the dump has been taken

    deadlocked_main_thread()
    status, text = result[0]
    assert status == 200
    assert "deadlocked_main_thread" in text


def test_threads_lists_the_registered_app_loops_tasks(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, operators: dict[str, Operator]
) -> None:
    import asyncio

    from testkit.support import console_settings

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="app-loop", daemon=True)
    runner.start()

    async def waiting_for_orders() -> None:  # a host task, suspended until cancelled below
        await asyncio.Event().wait()

    loop.call_soon_threadsafe(lambda: loop.create_task(waiting_for_orders(), name="order-poller"))
    console = Console(console_settings(tmp_path, keys_dir), clock=clock, app_loop=loop).start()
    try:
        token = login_token(console.url, operators["bob"], clock())
        status, dump = call(console.url, "GET", "/ops/threads", token=token)
        assert status == 200
        tasks = [t for lp in dump["loops"] for t in lp["tasks"]]
        poller = [t for t in tasks if t["name"] == "order-poller"]
        assert poller, tasks
        assert any(f["function"].endswith("waiting_for_orders") for f in poller[0]["frames"])
        assert not any(t["name"].startswith("opsconsole") for t in dump["threads"])
    finally:
        console.stop()

        async def cancel_all() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
