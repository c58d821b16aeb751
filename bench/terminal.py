"""Terminal latency and throughput, measured side by side in one run.

1. keystroke → echo over the websocket against the real demo process (another process, as
   an operator's browser would be), vs the same ReplSession driven directly on a local pipe
   in this process (bench/repl_pipe.py);
2. the same over the websocket while the demo's main thread spins in /spin;
3. bulk output: 10 MB printed in the REPL, received by the client; throughput and the
   growth of the demo process's RSS.

    .venv/bin/python bench/terminal.py [N]
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import repl_pipe
from tests.demo_process import Demo, run_demo
from tests.terminal_client import Term, clean


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def keystrokes(term: Term, n: int) -> list[float]:
    """Type ``n`` characters one at a time; time each until its echo arrives."""
    latencies = []
    for i in range(n):
        ch = "abcdefghij"[i % 10]
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


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def over_websocket(demo: Demo, n: int) -> None:
    term = await Term.open(demo.url, demo.token)
    await term.expect(r">>> ?$")
    idle = await keystrokes(term, n)
    spinner = threading.Thread(target=demo.hit_app, args=("/spin?seconds=30", 1), daemon=True)
    spinner.start()
    await asyncio.sleep(0.5)
    spinning = await keystrokes(term, min(n, 200))
    await term.send("\x15")
    spinner.join(40)

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

    report("websocket keystroke→echo", idle)
    report("  while main thread spins", spinning)
    rate, grown = mb / elapsed, growth / 2**20
    print(f"bulk output {mb:.1f} MB in {elapsed:.2f} s = {rate:.1f} MB/s; demo RSS growth {grown:.1f} MiB")


def report(label: str, latencies: list[float]) -> None:
    p50, p99 = pct(latencies, 0.5) * 1e3, pct(latencies, 0.99) * 1e3
    print(f"{label:<26} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  (n={len(latencies)})")


def main(n: int) -> None:
    p50, p99 = repl_pipe.measure(repl_pipe.default_factory("lean"), n)
    print(f"{'local pipe keystroke→echo':<26} p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  (n={n})")
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_demo(Path(tmp) / "demo")
        demo = next(runner)
        try:
            asyncio.run(over_websocket(demo, n))
        finally:
            next(runner, None)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
