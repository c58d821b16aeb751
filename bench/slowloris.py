"""Login time through each door with no attack vs during a slowloris, side by side in one run.

The attacker is ``testkit/slowloris.py`` in its own process: 200 sockets from 127.0.0.2 that
send a header line a second (HTTP) or never a banner (SSH), reopened as soon as the console
closes them (observation 2 of issue 12). The operator logs in from 127.0.0.1, in this
process: HTTP with ``http.client`` and the CLI's signer (challenge, SSHSIG, TOTP), SSH with
a paramiko client (publickey, then the TOTP code). The console runs here too, on its own
thread, with a clock moved by hand so every login has a fresh TOTP step. Phases alternate
quiet / attacked per door; the ratio is the median over rounds of attacked p50 / quiet p50.

    .venv/bin/python bench/slowloris.py [ROUNDS] [SECONDS_PER_PHASE]
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pyotp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from opsconsole import config
from opsconsole.auth import signer
from opsconsole.console import Console

ROOT = Path(__file__).resolve().parent.parent
USER = "bench"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _post(port: int, path: str, body: dict[str, str]) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {data[:200]!r}")
    return json.loads(data)  # type: ignore[no-any-return]


def http_login(port: int, key: paramiko.PKey, code: str) -> None:
    challenge = _post(port, "/ops/auth/challenge", {"user": USER})
    signature = signer.sign(challenge["message"].encode(), key)
    body = {"user": USER, "nonce": challenge["nonce"], "signature": signature, "totp": code}
    _post(port, "/ops/auth/login", body)


def ssh_login(port: int, key: paramiko.PKey, code: str) -> None:
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=30)
        transport.auth_publickey(USER, key)
        transport.auth_interactive(USER, lambda _t, _i, prompts: [code for _ in prompts])
        if not transport.is_authenticated():
            raise RuntimeError("SSH login did not complete")
    finally:
        transport.close()


def phase(seconds: float, login: Callable[[], None]) -> list[float]:
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        login()
        times.append(time.perf_counter() - started)
    return times


def attacked(port: int, mode: str, seconds: float, login: Callable[[], None]) -> tuple[list[float], float]:
    """Logins during the attack; also the attacker's connects per second."""
    cmd = [sys.executable, "-m", "testkit.slowloris", "--port", str(port), "--mode", mode]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        times = phase(seconds, login)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    counts = json.loads(out)
    return times, counts["connects"] / counts["seconds"]


def _ms(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return 1e3 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        private = ed25519.Ed25519PrivateKey.generate()
        (d / "id").write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
        pub = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        (d / "authorized_keys").write_text(f'user="{USER}",role="operator" {pub.decode()}\n')
        secret = pyotp.random_base32(32)
        (d / "totp_secrets").write_text(f"{USER} {secret}\n")
        for name in ("id", "authorized_keys", "totp_secrets"):
            (d / name).chmod(0o600)
        settings = config.load(
            None,
            environ={},
            port=0,
            ssh_port=0,
            state_dir=d / "state",
            authorized_keys=d / "authorized_keys",
            totp_secrets=d / "totp_secrets",
            # Back-to-back logins, far faster than any operator: not what the rate limit is for.
            unauthenticated_rate=10_000,
            unauthenticated_burst=10_000,
        )
        clock = Clock()
        key = signer.load_private_key(d / "id", None)

        def code() -> str:
            clock.now += 30  # each TOTP step is accepted once
            return pyotp.TOTP(secret).at(clock.now)

        with Console(settings, clock=clock).start() as console:
            assert console.ssh_port is not None
            doors: dict[str, tuple[int, Callable[[], None]]] = {
                "http": (console.port, lambda: http_login(console.port, key, code())),
                "ssh": (console.ssh_port, lambda: ssh_login(console.ssh_port or 0, key, code())),
            }
            quiet: dict[str, list[float]] = {door: [] for door in doors}
            attack: dict[str, list[float]] = {door: [] for door in doors}
            ratios: dict[str, list[float]] = {door: [] for door in doors}
            rates: dict[str, list[float]] = {door: [] for door in doors}
            for _ in range(rounds):
                for door, (port, login) in doors.items():
                    calm = phase(seconds, login)
                    busy, rate = attacked(port, door, seconds, login)
                    quiet[door] += calm
                    attack[door] += busy
                    rates[door].append(rate)
                    ratios[door].append(statistics.median(busy) / statistics.median(calm))
            refused = {
                "http": dict(console.http_admission.stats().refused),
                "ssh": dict(console.ssh.admission.stats().refused) if console.ssh else {},
            }

    print(f"{rounds} rounds of {seconds:.0f} s per phase; operator client: http.client + opsconsole signer")
    print("(HTTP), paramiko (SSH); attacker: testkit/slowloris.py, 200 sockets from 127.0.0.2\n")
    print(f"{'door':<5} {'phase':<10} {'logins':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for door, calm in quiet.items():
        for name, times in (("quiet", calm), ("slowloris", attack[door])):
            line = f"{door:<5} {name:<10} {len(times):>7} {_ms(times, 0.5):>8.1f} {_ms(times, 0.99):>8.1f}"
            print(f"{line} {1e3 * max(times):>8.1f}")
    print()
    for door in quiet:
        print(
            f"{door}: login p50 attacked / quiet, median of rounds: {statistics.median(ratios[door]):.2f}x; "
            f"attacker connects/s: {statistics.median(rates[door]):.0f}; refused at accept: {refused[door]}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)
