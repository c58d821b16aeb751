"""The demo app's latency with and without an unauthenticated flood of its console, side by side.

``opsconsole demo`` runs in its own process (the host: a Tornado app on the main thread, the
console on its thread). Rounds alternate: a quiet round, then a flood round, each ROUND
seconds, for ROUNDS pairs. In every round one client measures the app:

  app client: Python ``http.client``, one keep-alive connection, sequential ``GET /``

and in flood rounds four flooder processes, one per loopback source (127.0.0.2-5), send
unauthenticated requests to the console:

  flood client: raw sockets, keep-alive, PIPELINE requests written at a time then their
  responses read (``GET /ops/threads`` with a made-up bearer token; ``--login``: a refused
  ``POST /ops/auth/login`` instead), reconnecting whenever the console closes the socket.

Printed per round: the app's p50/p99; the flood's answers by status (401 and 429 apart) per
second; connections the console refused per second: closed or reset before a single answer
was read on them, which is how a source serving a penalty is refused at accept() (each such
connection carried a pipelined batch, counted as one reject); connections the console closed
after answering; and the lines the host wrote to stderr (the demo sets no logging: Python's
last-resort handler prints WARNING and up, as in many services). Then the median ratio of
flood p99 to quiet p99 over the pairs. Rejects are 401s + 429s + refused connections.
Goals: rejects >= 5,000/s; app p99 during the flood <= 1.5x without; log lines <= 50 per
10 s flood. ``--no-penalty`` turns the per-source penalties off (``penalty_max = 0``) to
measure the 429 path alone. ``--control`` adds, after each flood, a round in which the same
four flooders connect at the flood's connect rate to a port nobody listens on (the kernel
refuses them; the console does nothing): on a small machine the flooders' own CPU use moves
the app's p99 too, and this round shows by how much. The console CPU column is the host's
busiest thread other than its main (app) thread, in % of one core.

    .venv/bin/python bench/flood.py [--rounds 3] [--seconds 10] [--login] [--no-penalty] [--control]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from testkit.demo_process import Demo, run_demo

SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
PIPELINE = 32


def _request(host: str, login: bool) -> bytes:
    if login:
        body = (
            b'{"user":"mallory","nonce":"00000000000000000000000000000000","signature":"x","totp":"123456"}'
        )
        return (
            f"POST /ops/auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    return f"GET /ops/threads HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer not-a-token\r\n\r\n".encode()


def _responses(sock: socket.socket, n: int, buf: bytearray, statuses: Counter[str]) -> bool:
    """Read ``n`` responses; False if the console closed the connection first (OSError if reset)."""
    while n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf += chunk
            continue
        head = bytes(buf[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        while len(buf) < end + 4 + length:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf += chunk
        del buf[: end + 4 + length]
        statuses[head[9:12]] += 1
        n -= 1
    return True


def flooder(
    port: int, source: str, seconds: float, login: bool, out: mp.Queue[Counter[str]], *, pace: float = 0.0
) -> None:
    # runs in its own process: one source address, one connection at a time; ``pace``: at
    # most that many connects per second (0: as fast as it can)
    statuses: Counter[str] = Counter()
    batch = _request(f"127.0.0.1:{port}", login) * PIPELINE
    start = time.monotonic()
    deadline = start + seconds
    connects = 0
    while time.monotonic() < deadline:
        if pace:
            ahead = start + connects / pace - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        connects += 1
        answered = sum(statuses.values())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
                buf = bytearray()
                while time.monotonic() < deadline:
                    sock.sendall(batch)
                    if not _responses(sock, PIPELINE, buf, statuses):
                        raise ConnectionResetError
        except OSError:
            # Not one answer on this connection: refused (at accept, or reset); else closed.
            statuses["refused" if sum(statuses.values()) == answered else "closed"] += 1
    out.put(statuses)


def app_latencies(app_url: str, seconds: float) -> list[float]:
    parts = urllib.parse.urlsplit(app_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            samples.append(time.perf_counter() - start)
            assert resp.status == 200, resp.status
    finally:
        conn.close()
    return samples


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each thread of ``pid`` (Linux /proc; empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            used[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    except OSError:
        pass
    return used


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def lines_in(path: Path) -> int:
    return len([line for line in path.read_text(errors="replace").splitlines() if line.strip()])


@dataclass(frozen=True, slots=True)
class Round:
    p50: float
    p99: float
    per_s: dict[str, float]  # answers by status, and "refused" connections, per second
    closed: int  # connections closed after at least one answer
    lines: int  # host log lines written during the round
    console_cpu: float  # the busiest thread but the host's main one, as a fraction of a core

    @property
    def rejects(self) -> float:
        return sum(self.per_s.get(k, 0.0) for k in ("401", "429", "refused"))


def one_round(
    demo: Demo,
    errors_path: Path,
    args: argparse.Namespace,
    *,
    flood: bool,
    dead_port: int = 0,
    pace: float = 0.0,
) -> Round:
    ctx = mp.get_context("fork")
    port = dead_port or int(demo.url.rsplit(":", 1)[1])
    before = lines_in(errors_path)
    out: mp.Queue[Counter[str]] = ctx.Queue()
    procs = [
        ctx.Process(target=flooder, args=(port, s, args.seconds, args.login, out), kwargs={"pace": pace})
        for s in SOURCES
    ]
    if flood:
        for p in procs:
            p.start()
    cpu_before = thread_cpu(demo.proc.pid)
    samples = app_latencies(demo.info["app_url"], args.seconds)
    cpu_after = thread_cpu(demo.proc.pid)
    busiest = max(
        (used - cpu_before.get(tid, 0.0) for tid, used in cpu_after.items() if tid != demo.proc.pid),
        default=0.0,
    )
    statuses: Counter[str] = Counter()
    if flood:
        for _ in procs:
            statuses += out.get(timeout=60)
        for p in procs:
            p.join(30)
    # A flood's count lines come when its 10 s windows end: often in the quiet round after
    # it (or at the stop, after the last one).
    return Round(
        pct(samples, 0.50),
        pct(samples, 0.99),
        {k: v / args.seconds for k, v in statuses.items() if k != "closed"},
        statuses["closed"],
        lines_in(errors_path) - before,
        busiest / args.seconds,
    )


def main() -> None:  # noqa: PLR0915 - one straight script: options, rounds, summary
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="quiet/flood pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--login", action="store_true", help="flood refused logins instead of GETs")
    parser.add_argument("--no-penalty", action="store_true", help="per-source penalties off (penalty_max 0)")
    parser.add_argument(
        "--control",
        action="store_true",
        help="after each flood, the same flooders at the same connect rate against a port nobody listens on",
    )
    args = parser.parse_args()
    ratios: list[float] = []
    control_ratios: list[float] = []
    rejects: list[float] = []
    dead = socket.socket()  # bound, never listening: connects are refused by the kernel
    dead.bind(("127.0.0.1", 0))
    with tempfile.TemporaryDirectory() as tmp:
        errors_path = Path(tmp) / "demo.stderr"
        with errors_path.open("w") as errors:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
            if args.no_penalty:
                env.update(OPSCONSOLE_PENALTY_MIN="0", OPSCONSOLE_PENALTY_MAX="0")
            gen = run_demo(Path(tmp) / "demo", log_in=False, env=env, stderr=errors)
            demo = next(gen)
            try:
                app_latencies(demo.info["app_url"], 1.0)  # warm-up
                print(f"demo console {demo.url}, app {demo.info['app_url']}; rounds of {args.seconds:.0f} s")
                print("app client: http.client, one keep-alive connection, sequential GET /")
                kind = "POST /ops/auth/login (refused)" if args.login else "GET /ops/threads, bad bearer"
                print(f"flood client: 4 processes (127.0.0.2-5), raw sockets, pipelined x{PIPELINE}: {kind}")
                print(f"per-source penalties: {'off' if args.no_penalty else 'on (defaults)'}")
                print("console CPU: the host's busiest thread but its main one, in % of one core")
                print(
                    f"{'round':<8}{'app p50':>10}{'app p99':>10}{'401/s':>9}{'429/s':>9}"
                    f"{'refused/s':>11}{'other/s':>9}{'closed':>8}{'log lines':>11}{'console CPU':>13}"
                )
                kinds = ("quiet", "flood", "control") if args.control else ("quiet", "flood")
                quiet = flood = None
                for i in range(len(kinds) * args.rounds):
                    kind = kinds[i % len(kinds)]
                    if kind == "control":
                        assert flood is not None
                        connects = flood.per_s.get("refused", 0.0) + flood.closed / args.seconds
                        pace = max(1.0, connects / len(SOURCES))
                        r = one_round(
                            demo, errors_path, args, flood=True, dead_port=dead.getsockname()[1], pace=pace
                        )
                    else:
                        r = one_round(demo, errors_path, args, flood=kind == "flood")
                    other = sum(v for k, v in r.per_s.items() if k not in ("401", "429", "refused"))
                    print(
                        f"{kind:<8}{r.p50 * 1e3:8.2f}ms{r.p99 * 1e3:8.2f}ms"
                        f"{r.per_s.get('401', 0):9.0f}{r.per_s.get('429', 0):9.0f}"
                        f"{r.per_s.get('refused', 0):11.0f}{other:9.0f}{r.closed:8d}{r.lines:11d}"
                        f"{100 * r.console_cpu:12.0f}%"
                    )
                    if kind == "quiet":
                        quiet = r
                    elif kind == "flood" and quiet is not None:
                        ratios.append(r.p99 / quiet.p99)
                        rejects.append(r.rejects)
                        flood = r
                    elif quiet is not None:
                        control_ratios.append(r.p99 / quiet.p99)
            finally:
                for _ in gen:
                    pass
        total = lines_in(errors_path)
    print(
        f"median rejects (401 + 429 + refused connections) in a flood: "
        f"{statistics.median(rejects):,.0f}/s (goal >= 5,000/s)"
    )
    print(f"median app p99 ratio flood/quiet: {statistics.median(ratios):.2f}x (goal <= 1.5x)")
    if control_ratios:
        print(
            f"median app p99 ratio control/quiet (same flooders, same connect rate, no console): "
            f"{statistics.median(control_ratios):.2f}x"
        )
    dead.close()
    print(
        f"host log lines over the whole run, stop included: {total}, "
        f"{total / args.rounds:.0f} per {args.seconds:.0f} s flood (goal <= 50)"
    )


if __name__ == "__main__":
    main()
