"""Observation 2 of issue 12, attacked for real: a slowloris of 200 sockets from one loopback
address (127.0.0.2, its own process) against each door, while an operator logs in from
127.0.0.1 over and over. Every login must succeed within two seconds; the attacker's source
never holds more than its share of the pre-auth connections."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import pytest

from opsconsole.console import Console
from opsconsole.transport.admission import Admission
from testkit import REPO
from testkit.ssh_client import both_factors
from testkit.support import FakeClock, Operator, call, console_settings, login_token

ROOT = REPO
ATTACKER = "127.0.0.2"
ATTACK_SECONDS = 20.0
# A deadline on each login under attack, not a figure: bench/slowloris.py measures login time
# quiet and attacked side by side.
LOGIN_DEADLINE = 10.0
# The operator here logs in back to back, far faster than a person: not what the per-source
# request rate is for (test_preauth_limits.py tests that).
BACK_TO_BACK = {"unauthenticated_rate": 10_000.0, "unauthenticated_burst": 10_000}


@contextmanager
def slowloris(port: int, mode: str) -> Iterator[dict[str, Any]]:
    """Run the attacker while the block runs; then the dict holds its counts."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testkit.slowloris",
            "--port",
            str(port),
            "--mode",
            mode,
            "--source",
            ATTACKER,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    counts: dict[str, Any] = {}
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started", proc.stderr
        yield counts
        out, err = proc.communicate(timeout=30)  # closing its stdin ends the attack
        assert proc.returncode == 0, err
        counts.update(json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _under_attack(
    door: tuple[Admission, int, int], mode: str, login: Callable[[], None], seconds: float = ATTACK_SECONDS
) -> list[float]:
    """Log in again and again for ``seconds`` under the attack; returns each login's time.

    ``door``: its admission, port and per-source cap.
    """
    admission, port, per_source = door
    times: list[float] = []
    with slowloris(port, mode) as counts:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            login()
            times.append(time.monotonic() - started)
            assert admission.pending(ATTACKER) <= per_source
    refused = dict(admission.stats().refused)
    # The attack was real: it held what it was allowed and was refused the rest, many times.
    assert counts["connects"] > 1000 and counts["most_held"] >= 1, counts
    assert refused.get("source_cap", 0) + refused.get("penalty", 0) > 1000, refused
    assert max(times) <= LOGIN_DEADLINE, times
    return times


@pytest.mark.parametrize(
    "case",
    [
        ({}, ATTACK_SECONDS),
        # Without penalties the attacker is refused at its source's cap thousands of times a
        # second instead of being shut out: the per-source cap alone must keep the door open.
        ({"penalty_max": 0, "penalty_min": 0}, ATTACK_SECONDS / 2),
    ],
    ids=["defaults", "no-penalties"],
)
def test_obs2_one_unauthenticated_client_cannot_lock_operators_out(
    tmp_path: Path,
    keys_dir: Path,
    operators: dict[str, Operator],
    clock: FakeClock,
    case: tuple[dict[str, float], float],
) -> None:
    overrides, seconds = case
    op = operators["alice"]

    def login() -> None:
        clock.advance(30)  # every login spends a fresh TOTP step
        token = login_token(console.url, op, clock())  # challenge, SSHSIG by ssh-keygen, TOTP
        assert call(console.url, "GET", "/ops/whoami", token=token)[0] == 200

    settings = console_settings(tmp_path, keys_dir, **overrides, **BACK_TO_BACK)
    with Console(settings, clock=clock).start() as console:
        door = (console.http_admission, console.port, settings.max_unauthenticated_per_source)
        times = _under_attack(door, "http", login, seconds)
    assert len(times) >= 5


def test_obs2_one_unauthenticated_client_cannot_lock_operators_out_of_ssh(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    op = operators["alice"]

    def login() -> None:
        clock.advance(30)
        transport = paramiko.Transport(("127.0.0.1", console.ssh_port or 0))
        try:
            transport.start_client(timeout=LOGIN_DEADLINE)
            both_factors(transport, op.user, op.key, op.code(clock()))
            assert transport.is_authenticated()
        finally:
            transport.close()

    settings = console_settings(tmp_path, keys_dir, ssh_port=0, **BACK_TO_BACK)
    with Console(settings, clock=clock).start() as console:
        assert console.ssh is not None and console.ssh_port is not None
        door = (console.ssh.admission, console.ssh_port, settings.ssh_max_unauthenticated_per_source)
        times = _under_attack(door, "ssh", login)
    assert len(times) >= 5
