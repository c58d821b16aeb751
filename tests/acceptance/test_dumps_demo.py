"""Issue acceptance against the real demo process: leak growth, heap diff, refchain,
threads while the app's main thread spins, and a profile of the spin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.demo_process import Demo, run_demo, seed_token_cache
from testkit.support import run_cli, wait_until


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    yield from run_demo(tmp_path_factory.mktemp("demo"))


def test_growth_names_leakyrecord_and_the_heap_diff_names_the_leaking_line(demo: Demo) -> None:
    assert demo.post("/ops/heap/start?frames=1")[0] == 200
    try:
        assert demo.post("/ops/heap/snapshots", {"name": "before"})[0] == 201
        assert demo.post("/ops/objects/baseline?name=before")[0] == 200
        demo.hit_app("/leak", 10_000)
        status, growth = demo.get("/ops/objects/growth?since=before")
        assert status == 200, growth
        assert growth["rows"][0]["name"] == "opsconsole.host.demo.LeakyRecord"
        assert growth["rows"][0]["delta"] >= 10_000
        assert demo.post("/ops/heap/snapshots", {"name": "after"})[0] == 201
        status, diff = demo.get("/ops/heap/diff?base=before&other=after")
        assert status == 200, diff
        top = diff["rows"][0]
        assert top["file"].endswith("opsconsole/host/demo.py")
        assert "# the deliberate leak" in top["source"] or "LEAKED.append" in top["source"]
        status, text = demo.get("/ops/heap/diff?base=before&other=after&format=text")
        assert status == 200
        assert "LEAKED.append" in text
    finally:
        demo.post("/ops/heap/stop")


def test_refchain_of_leakyrecord_ends_at_the_module_level_list(demo: Demo) -> None:
    demo.hit_app("/leak", 10)
    status, chain = demo.get("/ops/objects/refchain?type=opsconsole.host.demo.LeakyRecord")
    assert status == 200, chain
    assert chain["found"] is True
    assert "opsconsole.host.demo" in chain["root"] and "LEAKED" in chain["root"]
    assert chain["steps"][-1]["type_name"] == "opsconsole.host.demo.LeakyRecord"


def _spin(demo: Demo, seconds: float) -> tuple[threading.Thread, str]:
    """Make the app's main thread busy-loop; return once a threads dump shows it spinning (the
    dump answering while it spins), with that dump."""
    t = threading.Thread(target=demo.hit_app, args=(f"/spin?seconds={seconds}", 1), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while True:
        status, text = demo.get("/ops/threads?format=text")
        assert status == 200, text
        if "busy_spin" in text:
            return t, text
        assert t.is_alive() and time.monotonic() < deadline, "no dump showed the main thread spinning"


def test_threads_answers_while_the_main_thread_spins(demo: Demo) -> None:
    spinner, text = _spin(demo, 3)
    assert re.search(r'"MainThread"', text)
    spinner.join(30)


def test_profile_of_a_spin_puts_the_busy_function_on_top(demo: Demo) -> None:
    spinner, _ = _spin(demo, 6)  # outlasts the 1.5 s profile that starts once it spins
    status, collapsed = demo.get("/ops/profile?seconds=1.5&format=collapsed")
    spinner.join(30)
    assert status == 200
    counts: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        counts[leaf] = counts.get(leaf, 0) + int(count)
    hottest = max(counts, key=lambda k: counts[k])
    assert "busy_spin" in hottest, sorted(counts.items(), key=lambda kv: -kv[1])[:5]


def _cli(demo: Demo, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``opsconsole ARGS`` as another process, logged in through the token cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    seed_token_cache(tmp_path / "xdg", demo)
    return run_cli(*args, env=env)


def test_downloaded_snapshot_is_saved_by_the_cli(demo: Demo, tmp_path: Path) -> None:
    # The tracemalloc file itself is checked in test_dumps_http; here the CLI's streaming path.
    assert demo.post("/ops/heap/start?frames=1")[0] == 200
    try:
        assert demo.post("/ops/heap/snapshots", {"name": "cli"})[0] == 201
        out = _cli(demo, tmp_path, "dump", demo.url, "snapshot", "--name", "cli", "-o", str(tmp_path / "s"))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "s").stat().st_size > 0
        text = _cli(demo, tmp_path, "dump", demo.url, "threads")
        assert text.returncode == 0, text.stderr
        assert "MainThread" in text.stdout
    finally:
        demo.post("/ops/heap/stop")


def test_cli_dumps_the_leak_report(demo: Demo, tmp_path: Path) -> None:
    assert demo.post("/ops/leaks/start?interval=1")[0] == 200
    try:
        wait_until(lambda: demo.get("/ops/leaks")[1]["samples"] >= 2, 30, "a couple of samples")
        text = _cli(demo, tmp_path, "dump", demo.url, "leaks")
        assert text.returncode == 0, text.stderr
        assert "running every 1 s" in text.stdout
        data = _cli(demo, tmp_path, "dump", demo.url, "leaks", "--format", "json")
        assert data.returncode == 0, data.stderr
        report = json.loads(data.stdout)
        assert report["running"] is True and report["samples"] >= 1
        assert report["verdict"] in ("leak", "no_leak", "insufficient_data")
        assert len(report["history"]["rss"]) == report["samples"]
    finally:
        assert demo.post("/ops/leaks/stop")[0] == 200


@pytest.mark.asyncio
async def test_terminal_in_the_demo_ops_growth_and_echo_while_spinning(demo: Demo) -> None:
    from testkit.terminal_client import Term

    term = await Term.open(demo.url, demo.token)
    try:
        await term.expect(r">>> ?$")
        await term.run("ops.baseline('ws')", r">>> ?$")
        demo.hit_app("/leak", 2_000)
        await term.run("g = ops.growth('ws')", r"LeakyRecord", timeout=30)
        spinner, _ = _spin(demo, 10)
        start = len(term.text)
        await term.send("'still-echoing'")
        await term.expect(r"still-echoing", timeout=10, start=start)
        assert spinner.is_alive()  # keys echoed while the app's main thread still spun
        spinner.join(30)
    finally:
        await term.close()
