"""The ``ops`` helpers against a real Diagnostics and a real app loop on its own thread.

Some run directly (output captured by pytest), some through a real REPL session so that what
the operator sees — one rendering, no dataclass repr after it — is what is checked.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.diagnostics.service import Diagnostics
from opsconsole.errors import StateError
from opsconsole.repl.helpers import HELPERS, Ops
from testkit import REPO
from testkit.support import wait_until
from tests.repl.test_session import PROMPT, Opener, session_opener

KEEP: list[object] = []


class LeakyWidget:
    """Only this test module makes these."""


@pytest.fixture
def repl() -> Iterator[Opener]:
    yield from session_opener()


@pytest.fixture
def app_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The host application's loop, running on a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="host-app-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def diag(tmp_path: Path, app_loop: asyncio.AbstractEventLoop) -> Iterator[Diagnostics]:
    d = Diagnostics(dump_dir=tmp_path / "dumps", app_loops=(app_loop,))
    yield d
    d.close()


@pytest.fixture
def ops(diag: Diagnostics, app_loop: asyncio.AbstractEventLoop) -> Ops:
    return Ops(diag, app_loop=app_loop)


def test_help_lists_every_helper(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    ops.help()
    out = capsys.readouterr().out
    for name in HELPERS:
        assert re.search(rf"^ops\.{name}\(.*\)\s+\S", out, re.MULTILINE), name
    assert {n for n in dir(ops) if not n.startswith("_")} == set(HELPERS)
    assert "ops.help()" in repr(ops)


def test_the_readme_shows_the_real_help(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    # README "The REPL inside the process": its `ops.help()` sample is this output, as printed
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"^>>> ops\.help\(\)\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert sample is not None, "README: the ops.help() sample"
    ops.help()
    assert sample.group(1) == capsys.readouterr().out


def test_growth_names_the_class_that_grew(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    ops.baseline("before-widgets")
    KEEP.extend(LeakyWidget() for _ in range(3000))
    try:
        growth = ops.growth("before-widgets")
    finally:
        KEEP.clear()
    row = next(r for r in growth.rows if r.name.endswith("LeakyWidget"))
    assert row.delta >= 3000
    assert "LeakyWidget" in capsys.readouterr().out


def test_refchain_takes_an_object_a_class_or_a_name(ops: Ops) -> None:
    widget = LeakyWidget()
    KEEP.append(widget)
    try:
        for target in (widget, LeakyWidget, f"{__name__}.LeakyWidget"):
            chain = ops.refchain(target)
            assert chain.found, (target, chain.reason)
            assert chain.steps[-1].type_name.endswith("LeakyWidget")
    finally:
        KEEP.clear()


def test_heap_helpers_round_trip(ops: Ops) -> None:
    try:
        assert ops.heap_start(1).tracing
        first = ops.snapshot("first")
        KEEP.extend(bytearray(100) for _ in range(2000))
        collector = threading.Timer(0.3, gc.collect)
        collector.start()
        second = ops.snapshot("second", after_gc=True)  # waits for that collection
        collector.join()
        assert (first.state, second.state, second.after_gc) == ("ready", "ready", True)
        diff = ops.diff("first", "second")
        assert (diff.base, diff.other) == ("first", "second")
        assert ops.top(5).tracing
        assert ops.profile(0.2).ticks > 0
    finally:
        KEEP.clear()
        assert not ops.heap_stop().tracing


def test_run_returns_the_coroutines_value_from_the_app_loop(ops: Ops) -> None:
    async def where() -> tuple[int, str]:
        await asyncio.sleep(0.01)
        return 42, threading.current_thread().name

    assert ops.run(where()) == (42, "host-app-loop")


def test_run_on_a_stuck_app_loop_times_out_cleanly(ops: Ops, app_loop: asyncio.AbstractEventLoop) -> None:
    stuck, release = threading.Event(), threading.Event()

    def block() -> None:  # the host blocks its own loop until the test lets it go
        stuck.set()
        release.wait(30)

    app_loop.call_soon_threadsafe(block)
    assert stuck.wait(10)
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="may be stuck"):
            ops.run(asyncio.sleep(0, result="late"), timeout=0.5)
        # it waited its timeout, and gave up on its own: the loop is still held here
        assert time.monotonic() - t0 > 0.4
    finally:
        release.set()
    # Once the loop is free again it works, and the cancelled coroutine left nothing behind.
    assert ops.run(asyncio.sleep(0, result="again"), timeout=5) == "again"


def test_run_without_an_app_loop_says_so(diag: Diagnostics) -> None:
    ops = Ops(diag, app_loop=None)
    with pytest.raises(StateError, match="app's event loop"):
        ops.run(asyncio.sleep(0))
    with pytest.raises(TypeError, match="coroutine"):
        ops.run(42)  # type: ignore[arg-type]


def pending_tasks(loop: asyncio.AbstractEventLoop) -> int:
    """How many tasks of ``loop`` are not done, counted on the loop's own thread."""

    async def count() -> int:
        me = asyncio.current_task()
        return sum(1 for t in asyncio.all_tasks() if t is not me and not t.done())

    return asyncio.run_coroutine_threadsafe(count(), loop).result(10)


def test_tasks_shows_the_app_loops_tasks(ops: Ops, app_loop: asyncio.AbstractEventLoop) -> None:
    suspended = threading.Event()

    async def host_job_marker() -> None:  # a host task, suspended until the test cancels it
        suspended.set()
        await asyncio.Event().wait()

    future = asyncio.run_coroutine_threadsafe(host_job_marker(), app_loop)
    try:
        assert suspended.wait(10)
        dump = ops.tasks()
        assert dump.threads == ()
        assert any(t.coroutine.endswith("host_job_marker") for loop in dump.loops for t in loop.tasks)
    finally:
        future.cancel()


# -- through a REPL session: what the operator sees ---------------------------------------------


def test_a_helper_result_is_shown_once_as_text(ops: Ops, repl: Opener) -> None:
    r = repl(namespace={"ops": ops})
    start = len(r.screen.text)
    r.run("ops.gc()", PROMPT)
    r.run("'after' + '-gc'", r"^'after-gc'$")
    shown = r.screen.text[start:]
    assert shown.count("gen  count  threshold") == 1
    assert "GcInfo(" not in shown  # no dataclass repr after the text
    start = len(r.screen.text)
    r.run("info = ops.process()", PROMPT)  # assigned: shown as text all the same
    r.run("info.pid == __import__('os').getpid()", r"^True$")
    r.run("info", PROMPT)  # echoed later: as text again, not as a repr
    r.run("'after' + '-info'", r"^'after-info'$")
    shown = r.screen.text[start:]
    assert shown.count("modules loaded") == 2
    assert "ProcessInfo(" not in shown
    r.run("ops", r"call ops\.help\(\)")


def test_busy_dump_worker_message_reaches_the_operator(ops: Ops, diag: Diagnostics, repl: Opener) -> None:
    r = repl(namespace={"ops": ops})
    release = threading.Event()
    job = diag.expensive("an http heap dump", lambda: release.wait(30))  # busy until released
    try:
        r.run("ops.census()", r"BusyError: an http heap dump is running")
    finally:
        release.set()
        job.result(10)
    r.run("len(ops.census(top=5).types)", r"^5$", timeout=30)


def test_ctrl_c_stops_waiting_for_the_app_loop(
    ops: Ops, app_loop: asyncio.AbstractEventLoop, repl: Opener
) -> None:
    r = repl(namespace={"ops": ops})
    r.run("import asyncio", PROMPT)
    r.session.feed("ops.run(asyncio.sleep(60), timeout=60)\r")
    wait_until(lambda: pending_tasks(app_loop) == 1, what="the coroutine waiting on the app loop")
    start = len(r.screen.text)
    r.session.feed("\x03")
    r.screen.wait_for("KeyboardInterrupt", timeout=5, start=start)
    r.run("1+1", r"^2$")
    wait_until(lambda: pending_tasks(app_loop) == 0, what="the coroutine cancelled")
