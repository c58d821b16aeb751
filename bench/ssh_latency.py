"""Keystroke → echo through the real OpenSSH client vs the websocket, side by side in one run.

Both doors reach the same demo process (another process, as in production) and the same kind
of REPL session. The SSH client runs in a pseudo-terminal, as an operator's terminal would run
it: the clock starts when a byte is written to the pty and stops when its echo comes back out.
The websocket side uses the blocking client of testkit/ws_client.py (the SSH side is OpenSSH,
in C). Batches alternate between the two doors so drift on a noisy machine hits both alike.

    .venv/bin/python bench/ssh_latency.py [N]
"""

from __future__ import annotations

import os
import select
import sys
import tempfile
import time
from pathlib import Path

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.terminal import BATCH, LETTERS, blocking_keystrokes, open_blocking, ssh_vs_websocket
from testkit.demo_process import Demo, run_demo
from testkit.ssh_client import PROMPT, PtyClient


def open_ssh(demo: Demo, state: Path) -> PtyClient:
    info = demo.info
    argv = ["ssh", "-F", "/dev/null", "-p", str(info["ssh_port"]), "-i", info["identity"]]
    argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
    argv += ["-o", f"UserKnownHostsFile={state / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes"]
    client = PtyClient([*argv, f"{info['user']}@127.0.0.1"], rows=40, cols=200)
    client.expect(r"TOTP code: ")
    # The HTTP login of the demo harness used this step's code; a step is accepted once.
    client.send(pyotp.TOTP(info["totp_secret"]).at(time.time() + 30) + "\n")
    client.expect(PROMPT)
    time.sleep(0.3)
    return client


def ssh_keystrokes(client: PtyClient, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        ch = LETTERS[i % len(LETTERS)].encode()
        t0 = time.perf_counter()
        os.write(client.master, ch)
        seen = b""
        while ch not in seen:
            ready, _, _ = select.select([client.master], [], [], 10)
            assert ready, "no echo within 10 s"
            seen += os.read(client.master, 65536)
        latencies.append(time.perf_counter() - t0)
    os.write(client.master, b"\x15")  # Ctrl-U: keep the line short
    time.sleep(0.05)
    drain(client)
    return latencies


def drain(client: PtyClient) -> None:
    while select.select([client.master], [], [], 0.05)[0]:
        os.read(client.master, 65536)


def compare(demo: Demo, state: Path, n: int) -> tuple[list[float], list[float]]:
    client = open_ssh(demo, state)
    term = open_blocking(demo)
    ssh: list[float] = []
    ws: list[float] = []
    try:
        while len(ssh) < n:
            ws += blocking_keystrokes(term, BATCH)
            ssh += ssh_keystrokes(client, BATCH)
    finally:
        term.close()
        client.send("\x04")
        client.wait()
        client.close()
    return ssh, ws


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_demo(Path(tmp) / "demo")
        demo = next(runner)
        try:
            ssh_vs_websocket(demo, Path(tmp) / "demo", n)
        finally:
            next(runner, None)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
