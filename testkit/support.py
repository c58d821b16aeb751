"""Shared test helpers: real keys from ssh-keygen, a controllable clock, raw HTTP calls."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from opsconsole import config


@dataclass
class FakeClock:
    """A clock the test moves by hand; every component of a console shares it."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def keygen(path: Path, kind: str = "ed25519", bits: int | None = None, comment: str = "test") -> Path:
    """A real key pair from ssh-keygen; returns the private key path."""
    cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits is not None:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def ssh_keygen_sign(key: Path, message: str, namespace: str = "opsconsole") -> str:
    """Sign as an operator's script would: ``ssh-keygen -Y sign -n opsconsole -f KEY``."""
    out = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key)],
        input=message.encode(),
        check=True,
        capture_output=True,
    )
    return out.stdout.decode()


@dataclass
class Operator:
    user: str
    role: str
    key: Path
    secret: str = field(default_factory=pyotp.random_base32)

    def code(self, at: float, steps: int = 0) -> str:
        return pyotp.TOTP(self.secret).at(at + 30 * steps)

    @property
    def pub(self) -> str:
        return Path(str(self.key) + ".pub").read_text().strip()


def write_keys_dir(
    keys_dir: Path, operators: list[Operator], extra_options: dict[str, str] | None = None
) -> None:
    """authorized_keys (0600) and totp_secrets (0600) for ``operators``."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = []
    for op in operators:
        opts = f'user="{op.user}",role="{op.role}"'
        if extra_options and op.user in extra_options:
            opts += "," + extra_options[op.user]
        lines.append(f"{opts} {op.pub}")
    ak = keys_dir / "authorized_keys"
    ak.write_text("\n".join(lines) + "\n")
    ak.chmod(0o600)
    sec = keys_dir / "totp_secrets"
    sec.write_text("".join(f"{op.user} {op.secret}\n" for op in operators))
    sec.chmod(0o600)


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, Any]:
    """One raw HTTP request (from loopback address ``source``, e.g. 127.0.0.2, if given);
    returns (status, decoded JSON body or None)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1",
        parts.port,
        timeout=10,
        source_address=None if source is None else (source, 0),
    )
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def audit_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def login_attempt(url: str, op: Operator, at: float) -> tuple[int, Any]:
    """A real login (ssh-keygen signature + TOTP code for time ``at``); (status, answer)."""
    _, ch = call(url, "POST", "/ops/auth/challenge", {"user": op.user})
    body = {
        "user": op.user,
        "nonce": ch["nonce"],
        "signature": ssh_keygen_sign(op.key, ch["message"]),
        "totp": op.code(at),
    }
    return call(url, "POST", "/ops/auth/login", body)


def login_token(url: str, op: Operator, at: float) -> str:
    """A real login that must succeed; returns the token."""
    status, answer = login_attempt(url, op, at)
    assert status == 200, answer
    return str(answer["token"])


def poll_until(predicate: Callable[[], object], timeout: float, *, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds have passed (False).

    The one poll of the suite and of the benchmarks: for conditions nothing notifies (a kernel
    queue, a thread list, a file another process writes), sleeping ``interval`` between looks is
    the only way to wait. Tests call :func:`wait_until`, which fails when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.005,
) -> None:
    """Wait until ``predicate`` is true; fail after ``timeout`` seconds (a deadline, not a claim
    about speed: keep it generous, the suite runs on loaded machines)."""
    assert poll_until(predicate, timeout, interval=interval), f"{what} not met within {timeout} s"


def holds_for(
    predicate: Callable[[], object], seconds: float, what: str = "condition", *, interval: float = 0.01
) -> None:
    """Check ``predicate`` stays true for ``seconds``, failing at the first look where it is not.

    For what must *not* happen (a wrong wake-up, an early answer): an absence has no event to
    wait on, so it is watched for a window, through the one poll.
    """
    broke = poll_until(lambda: not predicate(), seconds, interval=interval)
    assert not broke, f"{what} stopped holding within {seconds} s"


def repl_sessions_ended(timeout: float = 10.0) -> bool:
    """Wait until no REPL session thread is left (a dropped session ends by itself).

    Tests that drop a printing session wait for this, so its last prints cannot reach the real
    stdout once pytest swaps ``sys.stdout`` back after the test.
    """
    return poll_until(
        lambda: not any(t.name.startswith("opsconsole-repl-") for t in threading.enumerate()),
        timeout,
        interval=0.05,
    )


def browser_cookie(url: str, token: str) -> str:
    """A browser's session cookie value, the real way: a ticket redeemed by the page."""
    _, link = call(url, "POST", "/ops/auth/ticket", {}, token=token)
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        body = json.dumps({"ticket": link["ticket"]})
        conn.request("POST", "/ops/auth/redeem", body, {"Content-Type": "application/json", "Origin": url})
        resp = conn.getresponse()
        resp.read()
        cookie = resp.getheader("Set-Cookie") or ""
    finally:
        conn.close()
    name, _, value = cookie.split(";")[0].partition("=")
    assert resp.status == 200 and name == "opsconsole_session" and value, (resp.status, cookie)
    return value


def rss(pid: int | str = "self") -> int:
    """Resident set size of a process in bytes (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``opsconsole ARGS`` as another process; ``env`` defaults to ours without OPSCONSOLE_*."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    return subprocess.run(
        [sys.executable, "-m", "opsconsole", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def console_settings(tmp_path: Path, keys_dir: Path, **overrides: Any) -> config.Settings:
    return config.load(
        None,
        environ={},
        port=0,
        state_dir=tmp_path / "state",
        authorized_keys=keys_dir / "authorized_keys",
        totp_secrets=keys_dir / "totp_secrets",
        **overrides,
    )
