"""Thread and task dumps against real host-like threads: spinning, sleeping, deadlocked, and a
real asyncio loop running on its own thread with tasks suspended in nested coroutines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opsconsole.diagnostics.render import to_data, to_text
from opsconsole.diagnostics.threads import ThreadDump, ThreadInfo, dump_threads
from testkit.support import wait_until


def _thread_named(dump: ThreadDump, name: str) -> ThreadInfo:
    (found,) = [t for t in dump.threads if t.name == name]
    return found


# -- host-like work, each in its own thread -------------------------------------------------


def busy_spin_for_dump(flags: list[bool]) -> None:
    flags[0] = True
    n = 0
    while not flags[1]:  # pure Python: no call that would show up as the innermost frame
        n += 1


def sleepy_for_dump(flags: list[bool]) -> None:
    flags[0] = True
    while not flags[1]:
        time.sleep(0.01)


def deadlocked_for_dump(first: threading.Lock, second: threading.Lock, ready: threading.Barrier) -> None:
    first.acquire()
    ready.wait(timeout=30)
    second.acquire()  # blocks: the other thread holds `second` and wants `first`
    second.release()
    with contextlib.suppress(RuntimeError):  # the test breaks the deadlock by releasing it
        first.release()


@pytest.fixture
def host_thread() -> Iterator[Callable[[str, Callable[[list[bool]], None]], threading.Thread]]:
    started: list[tuple[threading.Thread, list[bool]]] = []

    def start(name: str, fn: Callable[[list[bool]], None]) -> threading.Thread:
        flags = [False, False]
        t = threading.Thread(target=fn, args=(flags,), name=name, daemon=True)
        t.start()
        started.append((t, flags))
        wait_until(lambda: flags[0])
        return t

    yield start
    for t, flags in started:
        flags[1] = True
        t.join(timeout=2)
        assert not t.is_alive()


def test_dump_shows_a_spinning_thread(host_thread: Any) -> None:
    t = host_thread("host-spinner", busy_spin_for_dump)
    dump = dump_threads()
    info = _thread_named(dump, "host-spinner")
    assert info.ident == t.ident
    assert info.native_id == t.native_id
    assert info.daemon is True
    assert info.known
    top = info.frames[0]  # innermost first
    assert top.function == "busy_spin_for_dump"
    assert top.file == __file__
    assert top.source in {
        "while not flags[1]:  # pure Python: no call that would show up as the innermost frame",
        "n += 1",
    }
    assert any(f.function == "Thread.run" for f in info.frames[1:])
    assert info.frames[-1].function == "Thread._bootstrap"


def test_dump_shows_a_sleeping_thread_and_main_first(host_thread: Any) -> None:
    host_thread("host-sleeper", sleepy_for_dump)
    dump = dump_threads()
    assert dump.threads[0].ident == threading.main_thread().ident
    info = _thread_named(dump, "host-sleeper")
    assert info.frames[0].function == "sleepy_for_dump"
    assert info.frames[0].source == "time.sleep(0.01)"
    # The calling thread is in the dump unless excluded, showing dump_threads itself.
    me = next(t for t in dump.threads if t.ident == threading.get_ident())
    assert any(f.function == "dump_threads" for f in me.frames)


def test_dump_shows_two_deadlocked_threads() -> None:
    a, b = threading.Lock(), threading.Lock()
    ready = threading.Barrier(2)
    t1 = threading.Thread(target=deadlocked_for_dump, args=(a, b, ready), name="host-dead-1", daemon=True)
    t2 = threading.Thread(target=deadlocked_for_dump, args=(b, a, ready), name="host-dead-2", daemon=True)
    t1.start()
    t2.start()
    try:

        def both_blocked() -> bool:
            dump = dump_threads()
            return all(
                _thread_named(dump, n).frames[0].source.startswith("second.acquire()")
                for n in ("host-dead-1", "host-dead-2")
            )

        wait_until(both_blocked)
        t1.join(timeout=0.05)  # a wait that ends only if the pair was not really stuck
        assert t1.is_alive() and t2.is_alive()  # really stuck, and the dump still answers
        text = to_text(dump_threads())
        assert f'Thread 0x{t1.ident:x} (native {t1.native_id}, daemon): "host-dead-1"' in text
        assert "deadlocked_for_dump (" in text
        assert "        second.acquire()" in text
    finally:
        # A plain Lock may be released by any thread: breaking t1's hold on `a` frees t2,
        # which then releases `b` for t1.
        a.release()
        t1.join(timeout=2)
        t2.join(timeout=2)
    assert not t1.is_alive() and not t2.is_alive()


def test_exclude_idents_hides_the_consoles_threads(host_thread: Any) -> None:
    t = host_thread("console-own", sleepy_for_dump)
    dump = dump_threads(exclude_idents={t.ident or 0, threading.get_ident()})
    names = {x.name for x in dump.threads}
    assert "console-own" not in names
    assert threading.get_ident() not in {x.ident for x in dump.threads}
    assert dump.excluded == 2
    assert "(2 opsconsole threads not shown)" in to_text(dump)


# -- a real application loop on its own thread ------------------------------------------------


async def inner_wait(event: asyncio.Event) -> None:
    await event.wait()


async def middle_step(event: asyncio.Event) -> None:
    await inner_wait(event)


async def outer_job(event: asyncio.Event) -> str:
    await middle_step(event)
    return "ok"


class AppLoop:
    """An event loop running forever on a daemon thread, as a host application would have."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="app-loop", daemon=True)
        self.thread.start()
        self.event: asyncio.Event | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _spawn(self, n: int) -> None:
        self.event = asyncio.Event()
        for i in range(n):
            self.tasks.append(asyncio.create_task(outer_job(self.event), name=f"job-{i}"))
        # One turn of the loop, not a timed wait: the new tasks run first (FIFO), each up to
        # its innermost await.
        await asyncio.sleep(0)

    async def _finish(self) -> None:
        if self.event is not None:
            self.event.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def close(self) -> None:
        self.run(self._finish())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=2)
        self.loop.close()


@pytest.fixture
def app_loop() -> Iterator[AppLoop]:
    app = AppLoop()
    yield app
    app.close()


def test_tasks_of_an_app_loop_show_their_await_chain(app_loop: AppLoop) -> None:
    app_loop.run(app_loop._spawn(3))
    dump = dump_threads([app_loop.loop])
    (loop,) = dump.loops
    assert loop.running and not loop.closed and loop.error is None
    assert loop.thread_ident == app_loop.thread.ident
    jobs = [t for t in loop.tasks if t.name.startswith("job-")]
    assert [t.name for t in jobs] == ["job-0", "job-1", "job-2"]
    for job in jobs:
        assert job.state == "pending"
        assert job.coroutine == "outer_job"
        names = [f.function for f in job.frames]
        # innermost first: Event.wait, then our three coroutines out to the task's own
        assert names[-3:] == ["inner_wait", "middle_step", "outer_job"]
        assert names[0] == "Event.wait"
        assert job.frames[-3].source == "await event.wait()"
    # The loop thread itself is idle in the selector.
    assert _thread_named(dump, "app-loop").frames

    text = to_text(dump)
    assert f"Event loop 0x{id(app_loop.loop):x} (running, thread 0x{app_loop.thread.ident:x})" in text
    assert 'Task "job-1" (pending): outer_job' in text
    assert "inner_wait (" in text and "await inner_wait(event)" in text
    data = to_data(dump)
    json.dumps(data)
    assert data["loops"][0]["tasks"][0]["frames"][-1]["function"] == "outer_job"


async def churn(stop: list[bool], rounds: list[int]) -> int:
    while not stop[0]:
        tasks = [asyncio.create_task(asyncio.sleep(0)) for _ in range(20)]
        await asyncio.gather(*tasks)
        rounds[0] += 1
    return rounds[0]


def test_task_dump_survives_a_loop_churning_tasks(app_loop: AppLoop) -> None:
    stop, rounds = [False], [0]
    fut = asyncio.run_coroutine_threadsafe(churn(stop, rounds), app_loop.loop)
    try:
        wait_until(lambda: rounds[0] > 0, what="the loop churning")
        for _ in range(20):  # bounded by count, not by a speed the machine may not have today
            (loop,) = dump_threads([app_loop.loop]).loops
            assert loop.error is None
            assert all(t.state in {"pending", "done", "cancelled"} for t in loop.tasks)
    finally:
        stop[0] = True
        assert fut.result(timeout=30) > 0


def test_a_closed_loop_is_reported_empty() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    (info,) = dump_threads([loop]).loops
    assert info.closed and not info.running and info.tasks == ()
    assert "(closed" in to_text(dump_threads([loop]))


def test_dump_is_json_serialisable(host_thread: Any) -> None:
    host_thread("host-json", sleepy_for_dump)
    data = to_data(dump_threads())
    text = json.dumps(data)
    assert '"host-json"' in text
    t = next(x for x in data["threads"] if x["name"] == "host-json")
    assert set(t) == {"name", "ident", "native_id", "daemon", "known", "frames", "omitted_frames"}
    assert set(t["frames"][0]) == {"function", "file", "line", "source"}
