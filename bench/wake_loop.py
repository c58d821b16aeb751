"""Is overriding asyncio's private wake-up read worth it? Plain loop vs one-recv loop, side by side.

A keystroke crosses two event loops woken from another thread (the console's IO loop, then
the REPL session's loop) and comes back to the client. This measures that path without
the REPL: the main thread wakes loop A with ``call_soon_threadsafe``, A wakes loop B, B sets
an Event the main thread waits on. Each loop class runs in rounds that alternate with the
other's; the figure is the median over rounds of (one-recv / plain) per-round medians.
It is measured with the host idle and with a host thread spinning pure Python (it keeps
the GIL for a whole switch interval whenever a system call hands it away).

Then the same comparison on the real path: keystroke → echo of a ReplSession driven
in-process (bench/repl_pipe.py) with a busy host thread, the session loop's wake-up read
switched between asyncio's own and the one-recv override, rounds alternating.

    .venv/bin/python bench/wake_loop.py [ROUNDS]      (default 12 rounds)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench import repl_pipe
from opsconsole.repl.loop import SessionLoop


class OneRecvLoop(asyncio.SelectorEventLoop):
    """The patch under test: drain the self-pipe with one ``recv`` instead of reading to empty."""

    def _read_from_self(self) -> None:
        try:
            data = self._ssock.recv(4096)  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._process_self_data(data)  # type: ignore[attr-defined]


SAMPLES = 200


@contextmanager
def running(cls: type[asyncio.SelectorEventLoop]) -> Iterator[asyncio.AbstractEventLoop]:
    loop = cls()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextmanager
def spinning(on: bool) -> Iterator[None]:
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join(5)


def round_trip_median(cls: type[asyncio.SelectorEventLoop]) -> float:
    with running(cls) as a, running(cls) as b:
        times = []
        for _ in range(SAMPLES):
            done = threading.Event()
            t0 = time.perf_counter()
            a.call_soon_threadsafe(b.call_soon_threadsafe, done.set)
            if not done.wait(5):
                raise RuntimeError("a loop did not wake within 5 s")
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def compare(rounds: int, spin: bool) -> None:
    plain: list[float] = []
    quick: list[float] = []
    ratios: list[float] = []
    with spinning(spin):
        for r in range(rounds):
            order = [(asyncio.SelectorEventLoop, plain), (OneRecvLoop, quick)]
            if r % 2:
                order.reverse()
            got = {}
            for cls, sink in order:
                got[cls] = round_trip_median(cls)
                sink.append(got[cls])
            ratios.append(got[OneRecvLoop] / got[asyncio.SelectorEventLoop])
    label = "host thread spinning" if spin else "host idle"
    print(
        f"{label:<22} plain {statistics.median(plain) * 1e3:7.3f} ms   one-recv "
        f"{statistics.median(quick) * 1e3:7.3f} ms   ratio one-recv/plain {statistics.median(ratios):.2f} "
        f"(rounds {min(ratios):.2f}–{max(ratios):.2f})"
    )


@contextmanager
def one_recv_wakeups(on: bool) -> Iterator[None]:
    """While ``on``: REPL session loops read their wake-ups as :class:`OneRecvLoop` does."""
    if on:
        SessionLoop._read_from_self = OneRecvLoop._read_from_self  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if on:
            del SessionLoop._read_from_self  # type: ignore[attr-defined]


def compare_echo(rounds: int, keys: int, switch: float) -> None:
    plain: list[float] = []
    quick: list[float] = []
    ratios: list[float] = []
    with repl_pipe.switch_interval(switch), repl_pipe.busy_host():
        for r in range(rounds):
            got = {}
            for use_plain in (False, True) if r % 2 else (True, False):
                with one_recv_wakeups(not use_plain):
                    got[use_plain] = repl_pipe.measure(repl_pipe.default_factory("lean"), keys)[0]
                (plain if use_plain else quick).append(got[use_plain])
            ratios.append(got[False] / got[True])
    label = f"echo, busy host, {switch * 1e3 or sys.getswitchinterval() * 1e3:g} ms switch"
    print(
        f"{label:<34} plain p50 {statistics.median(plain) * 1e3:6.2f} ms   one-recv p50 "
        f"{statistics.median(quick) * 1e3:6.2f} ms   ratio {statistics.median(ratios):.2f} "
        f"(rounds {min(ratios):.2f}–{max(ratios):.2f})"
    )


def main(rounds: int) -> None:
    print(f"two-loop wake-up round trip, median of {SAMPLES} per round, {rounds} alternating rounds")
    compare(rounds, spin=False)
    compare(rounds, spin=True)
    keys = 60
    print(f"keystroke → echo in a ReplSession, p50 of {keys} keys a round, {rounds // 2} alternating rounds")
    compare_echo(rounds // 2, keys, 0)
    compare_echo(rounds // 2, keys, repl_pipe.SWITCH)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
