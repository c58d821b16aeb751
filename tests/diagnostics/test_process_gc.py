"""process_info against this very process (and a hand-made /proc), gc_info and the pause
monitor against real collections, on this thread and on others."""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.diagnostics.gcstats import BUCKET_BOUNDS_MS, GcPauseMonitor, gc_info
from opsconsole.diagnostics.process import process_info
from opsconsole.diagnostics.render import to_data, to_text

LINUX = sys.platform.startswith("linux")

# -- process -----------------------------------------------------------------------------------


def test_process_info_describes_this_process() -> None:
    before = time.time()
    info = process_info()
    after = time.time()
    assert info.pid == os.getpid()
    assert info.executable == sys.executable
    assert info.python_version == platform.python_version()
    assert info.modules_loaded > 50
    assert info.threads >= 1
    assert info.cpu_user_seconds > 0
    assert info.uptime_seconds >= 0
    # start + uptime is the moment of the call; the slack is the boot time's whole-second rounding
    assert before - 1.5 <= info.started_at + info.uptime_seconds <= after + 1.5
    if LINUX:
        assert info.uptime_source == "proc"
        assert info.rss_bytes is not None and info.rss_bytes > 1 << 20
        assert info.peak_rss_bytes is not None and info.peak_rss_bytes >= info.rss_bytes
        assert info.native_threads is not None and info.native_threads >= info.threads
        assert info.open_fds is not None and info.open_fds >= 3


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_process_info_follows_memory_fds_and_threads() -> None:
    before = process_info()
    assert before.rss_bytes is not None and before.open_fds is not None
    block = b"x" * (64 << 20)  # written, so resident
    pipes = [os.pipe() for _ in range(10)]
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, args=(5,), daemon=True)
    worker.start()
    try:
        after = process_info()
        assert after.rss_bytes is not None and after.rss_bytes - before.rss_bytes > 48 << 20
        assert after.peak_rss_bytes is not None and after.peak_rss_bytes >= after.rss_bytes
        assert after.open_fds is not None and after.open_fds - before.open_fds >= 18
        assert after.threads == before.threads + 1
    finally:
        stop.set()
        worker.join(timeout=2)
        for r, w in pipes:
            os.close(r)
            os.close(w)
        del block


def test_process_info_falls_back_without_proc(tmp_path: Path) -> None:
    info = process_info(proc_root=tmp_path / "no-proc")
    assert info.uptime_source == "import"
    assert info.uptime_seconds > 0  # opsconsole was imported before this test ran
    assert info.rss_bytes is None and info.open_fds is None and info.native_threads is None
    if sys.platform != "win32":
        assert info.peak_rss_bytes is not None and info.peak_rss_bytes > 1 << 20
    assert "since opsconsole was imported" in to_text(info)


@pytest.mark.skipif(not LINUX, reason="needs os.sysconf('SC_CLK_TCK')")
def test_process_info_parses_a_hostile_proc_stat(tmp_path: Path) -> None:
    (tmp_path / "self" / "fd").mkdir(parents=True)
    for n in range(4):
        (tmp_path / "self" / "fd" / str(n)).touch()
    tck = os.sysconf("SC_CLK_TCK")
    # A command name with spaces and parentheses: the fields must be counted after the last ')'.
    fields = ["S", *["7"] * 18, str(500 * tck), "123", "456"]
    (tmp_path / "self" / "stat").write_text(f"42 (evil) (name 1 2) {' '.join(fields)}\n")
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    (tmp_path / "uptime").write_text("1234.50 999.00\n")
    (tmp_path / "self" / "status").write_text("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n")
    info = process_info(proc_root=tmp_path)
    assert info.uptime_source == "proc"
    assert info.started_at == pytest.approx(1_700_000_500)
    assert info.uptime_seconds == pytest.approx(734.5)
    assert info.rss_bytes == 1024 * 1024 and info.peak_rss_bytes == 2048 * 1024
    assert info.native_threads == 7 and info.open_fds == 4
    text = to_text(info)
    assert "uptime          12m 14s" in text
    assert "1.0 MiB (1048576 B)" in text
    assert "7 native" in text


def test_process_text_and_json() -> None:
    info = process_info()
    text = to_text(info)
    assert text.splitlines()[0].split() == ["key", "value"]
    assert f"pid             {info.pid}" in text
    assert sys.executable in text
    data = json.loads(json.dumps(to_data(info)))
    assert data["pid"] == os.getpid() and "rss_bytes" in data and "uptime_seconds" in data


# -- gc ---------------------------------------------------------------------------------------


class LeakyNode:
    def __init__(self) -> None:
        self.other: LeakyNode | None = None


def make_cycles(n: int) -> None:
    for _ in range(n):
        a, b = LeakyNode(), LeakyNode()
        a.other, b.other = b, a


def running(m: GcPauseMonitor) -> bool:
    # A function, not the property inline: mypy would keep an asserted property narrowed.
    return m.running


@pytest.fixture
def monitor() -> Iterator[GcPauseMonitor]:
    m = GcPauseMonitor()
    yield m
    m.stop()


def test_monitor_installs_one_callback_only_while_started(monitor: GcPauseMonitor) -> None:
    before = list(gc.callbacks)
    assert not GcPauseMonitor().running
    monitor.start()
    monitor.start()  # idempotent: still one
    assert running(monitor)
    assert len(gc.callbacks) == len(before) + 1
    other = GcPauseMonitor()
    other.start()
    assert len(gc.callbacks) == len(before) + 2
    other.stop()
    assert len(gc.callbacks) == len(before) + 1  # the other one's, not ours
    monitor.stop()
    monitor.stop()
    assert not running(monitor)
    assert gc.callbacks == before


def test_monitor_measures_explicit_collections(monitor: GcPauseMonitor) -> None:
    monitor.start()
    make_cycles(1000)
    gc.collect(0)
    gc.collect(2)
    gc.collect(2)
    pauses = monitor.snapshot()
    assert [p.generation for p in pauses] == [0, 1, 2]
    assert pauses[0].collections >= 1 and pauses[2].collections >= 2
    assert pauses[2].total_ms > 0 and 0 < pauses[2].max_ms <= pauses[2].total_ms
    for p in pauses:
        assert sum(b.count for b in p.buckets) == p.collections
        assert len(p.buckets) == len(BUCKET_BOUNDS_MS) + 1
        assert p.buckets[0].from_ms == 0 and p.buckets[0].below_ms == BUCKET_BOUNDS_MS[0]
        assert p.buckets[-1].below_ms is None and p.buckets[-1].from_ms == BUCKET_BOUNDS_MS[-1]
    # The max pause fell into a bucket whose range holds it.
    top = max(i for i, b in enumerate(pauses[2].buckets) if b.count)
    bucket = pauses[2].buckets[top]
    assert bucket.from_ms <= pauses[2].max_ms
    assert bucket.below_ms is None or pauses[2].max_ms < bucket.below_ms


def test_monitor_sees_collections_on_other_threads_and_stops_counting(monitor: GcPauseMonitor) -> None:
    monitor.start()
    gen1 = monitor.snapshot()[1].collections

    def host_work() -> None:
        for _ in range(5):
            make_cycles(100)
            gc.collect(1)

    t = threading.Thread(target=host_work, name="host-gc")
    t.start()
    t.join(timeout=5)
    assert monitor.snapshot()[1].collections >= gen1 + 5
    monitor.stop()
    frozen = monitor.snapshot()
    gc.collect(1)
    assert monitor.snapshot() == frozen
    monitor.start()  # a fresh window
    assert all(p.collections == 0 for p in monitor.snapshot())


def test_gc_info_never_collects(monitor: GcPauseMonitor) -> None:
    monitor.start()
    was_enabled = gc.isenabled()
    gc.disable()  # so only an explicit gc.collect() could collect
    try:
        before = monitor.snapshot()
        for _ in range(20):
            info = gc_info(monitor)
        assert monitor.snapshot() == before
        assert info.enabled is False
    finally:
        if was_enabled:
            gc.enable()


def test_gc_info_reads_the_collector(monitor: GcPauseMonitor) -> None:
    info = gc_info(None)
    assert info.enabled == gc.isenabled()
    assert info.thresholds == gc.get_threshold()
    assert len(info.counts) == 3 and len(info.generations) == 3
    assert info.generations[2].collections == gc.get_stats()[2]["collections"]
    assert not info.pause_monitor and info.pauses == () and info.pauses_since is None
    assert gc_info(monitor).pauses == ()  # a stopped monitor reports nothing
    monitor.start()
    gc.collect()
    running = gc_info(monitor)
    assert running.pause_monitor and running.pauses_since is not None
    assert running.pauses[2].collections >= 1


def test_gc_info_reports_garbage_and_freeze() -> None:
    gc.collect()
    old_flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)  # unreachable objects land in gc.garbage instead of freed
    try:
        make_cycles(30)
        gc.collect()
        info = gc_info(None)
        assert info.garbage == len(gc.garbage) >= 60
        assert len(info.garbage_types) == 20
        assert f"{__name__}.LeakyNode" in info.garbage_types
        text = to_text(info)
        assert f"gc.garbage: {info.garbage} objects" in text
        assert f"garbage types (first 20): {__name__}.LeakyNode" in text
    finally:
        gc.set_debug(old_flags)
        gc.garbage.clear()
    gc.freeze()
    try:
        assert gc_info(None).frozen == gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert gc_info(None).frozen == 0


def test_gc_text_and_json(monitor: GcPauseMonitor) -> None:
    off = to_text(gc_info(None))
    assert "gen  count  threshold  collections  collected  uncollectable" in off
    assert "pause monitor: off" in off
    monitor.start()
    gc.collect(0)
    info = gc_info(monitor)
    text = to_text(info)
    for needle in (
        "pauses since",
        "gen 0  gen 1  gen 2",
        "< 0.1 ms",
        "< 250 ms",
        ">= 250 ms",
        "max ms",
        "mean ms",
    ):
        assert needle in text, needle
    data = json.loads(json.dumps(to_data(info)))
    assert data["pauses"][0]["buckets"][-1] == {"from_ms": 250, "below_ms": None, "count": 0}
    assert data["generations"][0]["generation"] == 0
