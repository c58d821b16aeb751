"""Terminal latency and throughput, measured side by side in one run.

1. keystroke → echo over the websocket against the real demo process (another process, as
   an operator's browser would be), vs the same ReplSession driven directly in this process
   (bench/repl_pipe.py). The goals are judged with a blocking client that costs next to
   nothing (testkit/ws_client.py), as a browser's does; the tests' asyncio client is timed in
   alternating batches beside it, so its own share of the figure shows;
2. the same over the websocket while the demo's main thread spins in /spin — with the
   default ``repl_switch_interval`` and, in a second demo process, with it off (the
   interpreter's 5 ms), side by side;
3. bulk output: 10 MB printed in the REPL, received by the client; throughput and the
   growth of the demo process's RSS;
4. keystroke → echo through the real OpenSSH client vs the websocket, batches alternating
   (bench/ssh_latency.py);
5. the host's side of ``repl_switch_interval``: CPU-bound host threads' throughput with and
   without it (bench/repl_pipe.py, in this process).

    .venv/bin/python bench/terminal.py [N]    (N keystrokes a row, default 500: p99 is the 5th worst)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import repl_pipe
from bench.repl_pipe import SWITCH
from testkit.demo_process import Demo, run_demo
from testkit.terminal_client import Term, clean
from testkit.ws_client import BlockingTerm

LETTERS = "abcdefghij"
BATCH = 50


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def keystrokes(term: Term, n: int) -> list[float]:
    """Type ``n`` characters one at a time (asyncio client); time each until its echo arrives."""
    latencies = []
    for i in range(n):
        ch = LETTERS[i % len(LETTERS)]
        start = len(term.raw)
        t0 = time.perf_counter()
        await term.send(ch)
        while ch not in term.raw[start:]:
            message = await term.conn.read_message()
            assert message is not None, "closed"
            term.raw += json.loads(message)[1]
        latencies.append(time.perf_counter() - t0)
        if i % 50 == 49:
            await term.send("\x15")  # Ctrl-U: keep the input line short
            await asyncio.sleep(0.05)
    return latencies


def blocking_keystrokes(term: BlockingTerm, n: int) -> list[float]:
    """The same with the blocking client: one send, then reads until the echo is in."""
    latencies = []
    for i in range(n):
        ch = LETTERS[i % len(LETTERS)]
        seen = ""
        t0 = time.perf_counter()
        term.send(ch)
        while ch not in seen:
            seen += term.read_text()
        latencies.append(time.perf_counter() - t0)
        if i % 50 == 49:
            term.send("\x15")
            term.drain(0.05)
    return latencies


def open_blocking(demo: Demo) -> BlockingTerm:
    term = BlockingTerm(demo.url, demo.token)
    seen = ""
    while not re.search(r">>> ?$", clean(seen), re.MULTILINE):
        seen += term.read_text()
    term.drain(0.2)
    return term


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Spinner:
    """Keeps the demo's main thread spinning in pure Python (/spin, 2 s at a time) until stopped."""

    def __init__(self, demo: Demo) -> None:
        self._demo = demo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spinner", daemon=True)

    def __enter__(self) -> Spinner:
        self._thread.start()
        time.sleep(0.3)  # the first request is in
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._demo.hit_app("/spin?seconds=2", 1)


def while_spinning(demo: Demo, n: int) -> list[float]:
    term = open_blocking(demo)
    try:
        with Spinner(demo):
            return blocking_keystrokes(term, n)
    finally:
        term.close()


async def both_clients(demo: Demo, n: int) -> tuple[list[float], list[float]]:
    """Keystrokes with the blocking and the asyncio client, batches alternating."""
    blocking = open_blocking(demo)
    term = await Term.open(demo.url, demo.token)
    await term.expect(r">>> ?$")
    lean: list[float] = []
    loop: list[float] = []
    try:
        while len(lean) < n:
            lean += blocking_keystrokes(blocking, BATCH)
            loop += await keystrokes(term, BATCH)
    finally:
        blocking.close()
        await term.close()
    return lean, loop


async def bulk_output(demo: Demo) -> None:
    term = await Term.open(demo.url, demo.token)
    await term.expect(r">>> ?$")
    before = rss(demo.proc.pid)
    t0 = time.perf_counter()
    await term.send("for _ in range(10): print('y' * 1_000_000)\r\r")
    received, tail = 0, ""
    while received < 10_000_000 or not re.search(r">>> ?$", clean(tail)):
        message = await term.conn.read_message()
        assert message is not None, f"closed ({term.conn.close_code}) after {received} bytes"
        text = json.loads(message)[1]
        received += text.count("y")
        tail = (tail + text)[-200:]
    elapsed = time.perf_counter() - t0
    mb = received / 1e6
    growth = rss(demo.proc.pid) - before
    await term.close()
    rate, grown = mb / elapsed, growth / 2**20
    print(f"bulk output {mb:.1f} MB in {elapsed:.2f} s = {rate:.1f} MB/s; demo RSS growth {grown:.1f} MiB")


def over_websocket(demo: Demo, n: int) -> None:
    lean, loop = asyncio.run(both_clients(demo, n))
    report("websocket keystroke→echo", lean)
    report("  asyncio client (tests'), alternating batches", loop)
    report(f"  while main thread spins, {SWITCH * 1e3:g} ms switch", while_spinning(demo, min(n, 200)))
    asyncio.run(bulk_output(demo))


def report(label: str, latencies: list[float]) -> None:
    p50, p99 = pct(latencies, 0.5) * 1e3, pct(latencies, 0.99) * 1e3
    print(f"{label:<44} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  (n={len(latencies)})")


def ssh_vs_websocket(demo: Demo, state: Path, n: int) -> None:
    """The SSH door through the real OpenSSH client vs the websocket, batches alternating."""
    from bench import ssh_latency  # imported here: it reuses keystrokes() from this module

    ssh, ws = ssh_latency.compare(demo, state, n)
    ssh50, ws50 = pct(ssh, 0.5), pct(ws, 0.5)
    report("ssh (OpenSSH client in a pty) keystroke→echo", ssh)
    report("  websocket, alternating batches with ssh", ws)
    print(f"  median ssh − websocket {(ssh50 - ws50) * 1e3:+.2f} ms (goal: within ±1 ms)")


def main(n: int) -> None:
    p50, p99 = repl_pipe.measure(repl_pipe.default_factory("lean"), n)
    print(f"{'in-process keystroke→echo':<44} p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  (n={n})")
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_demo(Path(tmp) / "demo")
        demo = next(runner)
        try:
            over_websocket(demo, n)
            ssh_vs_websocket(demo, Path(tmp) / "demo", n)
        finally:
            next(runner, None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
        env["OPSCONSOLE_REPL_SWITCH_INTERVAL"] = "0"
        runner = run_demo(Path(tmp) / "demo-no-switch", env=env)
        demo = next(runner)
        try:
            spinning = while_spinning(demo, min(n, 200))
        finally:
            next(runner, None)
    report(f"  while main thread spins, {sys.getswitchinterval() * 1e3:g} ms (setting 0)", spinning)
    repl_pipe.print_host_cost(duration=0.75, pairs=3)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
