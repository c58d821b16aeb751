"""What starting costs: a bare interpreter, ``import opsconsole``, and two CLI verbs, side by side.

Each round runs every command once as a fresh process, in an order that rotates from round
to round; a command's figure is its median over rounds, and each ratio is the median over
rounds of (command / bare start) within the same round. ``whoami`` runs against a real
demo started on free ports and logged in through the real CLI (key file + TOTP), so its
figure includes one HTTP round trip; that round trip is timed in this process too and
reported beside it. Bytecode caches are on (``PYTHONDONTWRITEBYTECODE`` is dropped), as
they are for an installed package. Goals: ``import opsconsole`` ≤ 1.2× a bare start; a CLI verb ≤ 2× a
bare start plus its round trip.

    .venv/bin/python bench/import_cost.py [ROUNDS]      (default 21)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pyotp

from bench.record import figure

PYTHON = sys.executable
SCRIPT = Path(PYTHON).with_name("opsconsole")  # the console script pip installed
CLI = [str(SCRIPT)] if SCRIPT.exists() else [PYTHON, "-m", "opsconsole"]
START_TIMEOUT = 60.0


@contextlib.contextmanager
def demo(state: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``opsconsole demo`` on free ports, SSH off; yields its demo.json. SIGINT stops it."""
    proc = subprocess.Popen(
        [*CLI, "demo", "--state", str(state), "--port", "0", "--app-port", "0", "--ssh-port", "-1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        info = None
        while info is None:
            if proc.poll() is not None:
                raise RuntimeError(f"the demo exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no demo.json within {START_TIMEOUT:.0f} s")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                info = json.loads((state / "demo.json").read_text())
            time.sleep(0.05)
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def round_trip(url: str, token: str, n: int = 50) -> float:
    """Median of ``n`` GET /ops/whoami from this warm process, a new connection each, as the CLI."""
    parts = urllib.parse.urlsplit(url)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            conn.request("GET", "/ops/whoami", headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
        finally:
            conn.close()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Bytecode caches on, as an installed package has them: the warm-up round writes them.
        skip = ("OPSCONSOLE_", "SSH_AUTH_SOCK", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        env["XDG_CONFIG_HOME"] = str(Path(tmp) / "xdg")
        with demo(Path(tmp) / "demo", env) as info:
            url = info["url"]
            login = [*CLI, "login", url, "--user", info["user"], "--identity", info["identity"]]
            subprocess.run(
                [*login, "--totp", pyotp.TOTP(info["totp_secret"]).now()],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            tokens = json.loads((Path(tmp) / "xdg" / "opsconsole" / "tokens.json").read_text())
            commands = {
                "python -c pass": [PYTHON, "-c", "pass"],
                "python -c 'import opsconsole'": [PYTHON, "-c", "import opsconsole"],
                "opsconsole --help": [*CLI, "--help"],
                "opsconsole whoami URL": [*CLI, "whoami", url],
            }
            names = list(commands)
            times: dict[str, list[float]] = {name: [] for name in names}
            ratios: dict[str, list[float]] = {name: [] for name in names}
            for name in names:  # one warm-up each: page cache, .pyc files
                timed(commands[name], env)
            for r in range(rounds):
                got = {}
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    got[name] = timed(commands[name], env)
                    times[name].append(got[name])
                for name in names:
                    ratios[name].append(got[name] / got[names[0]])
            rtt = round_trip(url, tokens[url]["token"])
    bare = statistics.median(times[names[0]])
    print(f"start-up cost, {rounds} rounds, order rotating; ratios are per-round medians vs a bare start")
    for name in names:
        median = statistics.median(times[name])
        print(f"  {name:<30} {median * 1e3:7.1f} ms   {statistics.median(ratios[name]):5.2f}× bare start")
    whoami = statistics.median(times[names[3]])
    own = whoami - rtt
    print(f"  GET /ops/whoami round trip     {rtt * 1e3:7.1f} ms   (from a warm process, new connection)")
    print(f"  whoami minus its round trip    {own * 1e3:7.1f} ms   {own / bare:5.2f}× bare start (goal ≤ 2×)")
    print(f"  import opsconsole goal ≤ 1.2×: {statistics.median(ratios[names[1]]):.2f}×")
    figure("import_cost.import_over_bare", statistics.median(ratios[names[1]]), "×", "≤ 1.2 ×")
    figure("import_cost.help_over_bare", statistics.median(ratios[names[2]]), "×", "≤ 2 ×")
    figure("import_cost.whoami_over_bare", (whoami - rtt) / bare, "×", "≤ 2 × (round trip taken off)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
