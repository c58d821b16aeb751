"""The ``opsconsole`` command as an operator runs it: a separate process, a real ssh-agent."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from opsconsole.cli.client import TokenCache
from opsconsole.console import Console
from testkit.support import FakeClock, Operator, audit_events, call, console_settings, keygen, run_cli
from testkit.tls import certificate


@pytest.fixture
def agent(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real ssh-agent for this test only."""
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    sock = re.search(r"SSH_AUTH_SOCK=([^;]+);", out)
    pid = re.search(r"SSH_AGENT_PID=(\d+);", out)
    assert sock and pid
    env = cli_env | {"SSH_AUTH_SOCK": sock.group(1)}
    yield env
    os.kill(int(pid.group(1)), signal.SIGTERM)


def test_login_with_identity_file_then_whoami(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    op = operators["alice"]
    out = run_cli(
        "login",
        console.url,
        "--user",
        "alice",
        "--identity",
        str(op.key),
        "--totp",
        op.code(clock()),
        env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    assert "logged in" in out.stdout and "operator" in out.stdout
    cache = Path(cli_env["XDG_CONFIG_HOME"]) / "opsconsole" / "tokens.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    who = run_cli("whoami", console.url, env=cli_env)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["user"] == "alice"
    token = json.loads(cache.read_text())[console.url]["token"]
    assert call(console.url, "GET", "/ops/whoami", token=token)[0] == 200
    assert run_cli("logout", console.url, env=cli_env).returncode == 0
    assert call(console.url, "GET", "/ops/whoami", token=token)[0] == 401


@pytest.mark.parametrize("user", ["alice", "carol"])  # ed25519 and RSA (must sign rsa-sha2-512)
def test_login_through_ssh_agent(
    console: Console, operators: dict[str, Operator], clock: FakeClock, agent: dict[str, str], user: str
) -> None:
    op = operators[user]
    subprocess.run(["ssh-add", "-q", str(op.key)], env=agent, check=True, capture_output=True)
    out = run_cli("login", console.url, "--user", user, "--totp", op.code(clock()), env=agent)
    assert out.returncode == 0, out.stderr
    logins = [e for e in audit_events(console.settings.audit_path) if e["event"] == "auth.login"]
    assert logins[-1]["fields"]["user"] == user


def test_agent_key_chosen_by_identity_pub(
    console: Console,
    operators: dict[str, Operator],
    clock: FakeClock,
    agent: dict[str, str],
    keypairs: dict[str, Path],
) -> None:
    for k in (keypairs["stranger"], operators["alice"].key):
        subprocess.run(["ssh-add", "-q", str(k)], env=agent, check=True, capture_output=True)
    pub = str(operators["alice"].key) + ".pub"
    out = run_cli(
        "login",
        console.url,
        "--user",
        "alice",
        "--identity",
        pub,
        "--totp",
        operators["alice"].code(clock()),
        env=agent,
    )
    assert out.returncode == 0, out.stderr


def test_failed_login_says_so_and_caches_nothing(
    console: Console, operators: dict[str, Operator], cli_env: dict[str, str]
) -> None:
    op = operators["alice"]
    out = run_cli(
        "login", console.url, "--user", "alice", "--identity", str(op.key), "--totp", "000000", env=cli_env
    )
    assert out.returncode == 1
    assert "401 authentication_failed" in out.stderr
    assert not (Path(cli_env["XDG_CONFIG_HOME"]) / "opsconsole" / "tokens.json").exists()


def test_no_agent_and_no_identity_is_a_clear_error(console: Console, cli_env: dict[str, str]) -> None:
    out = run_cli("login", console.url, "--user", "alice", "--totp", "123456", env=cli_env)
    assert out.returncode == 2 and "ssh-agent" in out.stderr


def test_enroll_then_log_in(tmp_path: Path, cli_env: dict[str, str], clock: FakeClock) -> None:
    key = keygen(tmp_path / "newop")
    keys_dir = tmp_path / "keys"
    out = run_cli(
        "enroll", "zoe", "--key", f"{key}.pub", "--role", "viewer", "--keys-dir", str(keys_dir), env=cli_env
    )
    assert out.returncode == 0, out.stderr
    uri = re.search(r"otpauth://totp/\S+", out.stdout)
    assert uri, out.stdout
    assert "█" in out.stdout or "▀" in out.stdout  # the QR code, drawn with block characters
    secret = pyotp.parse_uri(uri.group(0)).secret
    assert len(secret) >= 32  # ≥160 bits of base32
    for name in ("authorized_keys", "totp_secrets"):
        assert (keys_dir / name).stat().st_mode & 0o777 == 0o600
    assert (keys_dir / "authorized_keys").read_text().startswith('user="zoe",role="viewer" ssh-ed25519 ')
    again = run_cli("enroll", "zoe", "--key", f"{key}.pub", "--keys-dir", str(keys_dir), env=cli_env)
    assert again.returncode == 2 and "already has this key" in again.stderr

    console = Console(
        console_settings(tmp_path, keys_dir),
        clock=clock,
    ).start()
    try:
        out = run_cli(
            "login",
            console.url,
            "--user",
            "zoe",
            "--identity",
            str(key),
            "--totp",
            pyotp.TOTP(secret).at(clock()),
            env=cli_env,
        )
        assert out.returncode == 0, out.stderr
        assert "(viewer)" in out.stdout
    finally:
        console.stop()


def test_enroll_rejects_a_bad_key_and_a_bad_name(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = run_cli(
        "enroll", "zoe", "--key", "ssh-ed25519 AAAAnotbase64", "--keys-dir", str(tmp_path / "k"), env=cli_env
    )
    assert out.returncode == 2
    out = run_cli("enroll", "Zoe Smith", "--key", "x", "--keys-dir", str(tmp_path / "k"), env=cli_env)
    assert out.returncode == 2 and "user name" in out.stderr


def test_audit_verify(
    console: Console, cli_env: dict[str, str], operators: dict[str, Operator], clock: FakeClock
) -> None:
    run_cli(
        "login",
        console.url,
        "--user",
        "alice",
        "--identity",
        str(operators["alice"].key),
        "--totp",
        "000000",
        env=cli_env,
    )
    path = console.settings.audit_path
    ok = run_cli("audit", "verify", str(path), env=cli_env)
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"auth.failure"', '"auth.login"')
    path.write_text("".join(lines))
    bad = run_cli("audit", "verify", str(path), env=cli_env)
    assert bad.returncode == 1 and ":2:" in bad.stderr


def test_audit_verify_against_an_anchored_head(
    tmp_path: Path,
    keys_dir: Path,
    clock: FakeClock,
    cli_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="opsconsole.audit.head")
    console = Console(console_settings(tmp_path, keys_dir), clock=clock).start()
    call(
        console.url, "POST", "/ops/auth/login", {"user": "alice", "nonce": "x", "signature": "x", "totp": "1"}
    )
    console.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "opsconsole.audit.head"]
    # one grep-able line at start and one at stop: tag, seq, hash, why, file
    assert [line.split(" hash=")[0] for line in lines] == [
        "opsconsole-audit-head seq=1",
        "opsconsole-audit-head seq=3",
    ]
    path = console.settings.audit_path
    assert all(line.endswith(f"file={path}") for line in lines)
    start, stop = (re.search(r"seq=(\d+) hash=([0-9a-f]{64})", line) for line in lines)
    assert start is not None and stop is not None
    heads = [f"{m.group(1)}:{m.group(2)}" for m in (start, stop)]
    ok = run_cli("audit", "verify", str(path), "--head", heads[0], "--head", heads[1], env=cli_env)
    assert ok.returncode == 0 and "reaches the anchored head(s)" in ok.stdout, ok.stderr
    # The tail is cut: the chain alone still verifies, the anchored head does not.
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    assert run_cli("audit", "verify", str(path), env=cli_env).returncode == 0
    cut = run_cli("audit", "verify", str(path), "--head", heads[1], env=cli_env)
    assert cut.returncode == 1
    assert f"BROKEN: {path}:3: the file ends at record 2, before the anchored head 3" in cut.stderr
    # The log is rewritten from scratch (a valid chain of its own): the hash gives it away.
    path.unlink()
    again = Console(console_settings(tmp_path, keys_dir), clock=clock).start()
    again.stop()
    forged = run_cli("audit", "verify", str(path), "--head", heads[0], env=cli_env)
    assert forged.returncode == 1
    assert f"{path}:1: record 1 has hash" in forged.stderr and "the anchored head says" in forged.stderr
    bad = run_cli("audit", "verify", str(path), "--head", "3:nothex", env=cli_env)
    assert bad.returncode == 2 and "--head: '3:nothex' is not SEQ:HASH" in bad.stderr


def _log_in(console: Console, op: Operator, clock: FakeClock, env: dict[str, str]) -> None:
    out = run_cli(
        "login",
        console.url,
        "--user",
        op.user,
        "--identity",
        str(op.key),
        "--totp",
        op.code(clock()),
        env=env,
    )
    assert out.returncode == 0, out.stderr


def test_leak_detector_verbs_start_report_stop(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    top = run_cli("--help", env=cli_env)
    assert top.returncode == 0 and "leaks" in top.stdout
    helped = run_cli("leaks", "--help", env=cli_env)
    assert helped.returncode == 0
    assert all(word in helped.stdout for word in ("start", "stop", "report", "--interval"))
    _log_in(console, operators["alice"], clock, cli_env)

    before = run_cli("leaks", console.url, "report", env=cli_env)
    assert before.returncode == 0, before.stderr
    assert "never started" in before.stdout
    started = run_cli("leaks", console.url, "start", "--interval", "2", env=cli_env)
    assert started.returncode == 0, started.stderr
    assert "running every 2 s" in started.stdout
    assert console.diagnostics.leak_detector.running
    again = run_cli("leaks", console.url, "start", env=cli_env)
    assert again.returncode == 1 and "already running every 2 s" in again.stderr
    report = run_cli("leaks", console.url, "report", "--format", "json", env=cli_env)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["running"] is True and data["interval"] == 2.0
    stopped = run_cli("leaks", console.url, "stop", env=cli_env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not console.diagnostics.leak_detector.running
    events = [e["event"] for e in audit_events(console.settings.audit_path)]
    # the refused second start is audited too: requests are recorded before they run
    assert [e for e in events if e.startswith("dump.leaks_")] == [
        "dump.leaks_start",
        "dump.leaks_start",
        "dump.leaks_stop",
    ]
    wrong = run_cli("leaks", console.url, "stop", "--interval", "5", env=cli_env)
    assert wrong.returncode == 2 and "--interval only goes with start" in wrong.stderr
    bad = run_cli("leaks", console.url, "start", "--interval", "0.1", env=cli_env)
    assert bad.returncode == 1 and "interval" in bad.stderr
    assert not console.diagnostics.leak_detector.running


def test_viewer_cannot_start_the_leak_detector_from_the_cli(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    _log_in(console, operators["bob"], clock, cli_env)
    out = run_cli("leaks", console.url, "start", env=cli_env)
    assert out.returncode == 1 and "403" in out.stderr
    assert not console.diagnostics.leak_detector.running
    assert run_cli("leaks", console.url, "report", env=cli_env).returncode == 0


def test_second_login_with_the_same_code_says_it_was_used(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    op = operators["alice"]
    code = op.code(clock())
    args = ("login", console.url, "--user", "alice", "--identity", str(op.key), "--totp", code)
    assert run_cli(*args, env=cli_env).returncode == 0
    used = Path(cli_env["XDG_CONFIG_HOME"]) / "opsconsole" / "used_totp.json"
    assert used.stat().st_mode & 0o777 == 0o600
    assert code not in used.read_text()  # a digest, not the code
    again = run_cli(*args, env=cli_env)
    assert again.returncode == 1
    assert "401" in again.stderr and "this code was already used; wait for the next one" in again.stderr
    # A wrong code is still only a failure: the hint is for the code this client just used.
    wrong = run_cli(*args[:-1], "000000" if code != "000000" else "111111", env=cli_env)
    assert wrong.returncode == 1 and "already used" not in wrong.stderr
    # The next step's code logs in.
    clock.advance(30)
    assert run_cli(*args[:-1], op.code(clock()), env=cli_env).returncode == 0


def test_dump_diff_without_base_says_base_is_required(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    _log_in(console, operators["alice"], clock, cli_env)
    out = run_cli("dump", console.url, "diff", env=cli_env)
    assert out.returncode == 2
    assert "dump diff needs --base NAME" in out.stderr and "1-64" not in out.stderr
    assert not [e for e in audit_events(console.settings.audit_path) if e["event"].startswith("dump.")]


def test_dump_snapshots_is_a_table(
    console: Console, operators: dict[str, Operator], clock: FakeClock, cli_env: dict[str, str]
) -> None:
    _log_in(console, operators["alice"], clock, cli_env)
    assert run_cli("dump", console.url, "heap", env=cli_env).returncode == 0
    token = json.loads((Path(cli_env["XDG_CONFIG_HOME"]) / "opsconsole" / "tokens.json").read_text())[
        console.url
    ]["token"]
    assert call(console.url, "POST", "/ops/heap/start?frames=1", {}, token=token)[0] == 200
    try:
        assert call(console.url, "POST", "/ops/heap/snapshots", {"name": "tbl"}, token=token)[0] == 201
        text = run_cli("dump", console.url, "snapshots", env=cli_env)
        assert text.returncode == 0, text.stderr
        assert "tbl" in text.stdout and not text.stdout.lstrip().startswith("{")
        data = run_cli("dump", console.url, "snapshots", "--format", "json", env=cli_env)
        assert data.returncode == 0, data.stderr
        assert [s["name"] for s in json.loads(data.stdout)["snapshots"]] == ["tbl"]
    finally:
        call(console.url, "POST", "/ops/heap/stop", {}, token=token)


def test_heapsnapshot_progress_only_on_a_terminal(
    console: Console,
    operators: dict[str, Operator],
    clock: FakeClock,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    _log_in(console, operators["alice"], clock, cli_env)
    piped = run_cli("dump", console.url, "heapsnapshot", "-o", str(tmp_path / "a.heapsnapshot"), env=cli_env)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and " KiB" not in piped.stderr
    assert piped.stderr.startswith("saved ") and (tmp_path / "a.heapsnapshot").stat().st_size > 256 * 1024

    # stderr a terminal: the progress line is drawn (and ended before "saved").
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opsconsole",
                "dump",
                console.url,
                "heapsnapshot",
                "-o",
                str(tmp_path / "b"),
            ],
            env=cli_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        shown = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=30) == 0, shown
    finally:
        os.close(master)
    assert b"\r" in shown and b" KiB" in shown and b"\r\nsaved " in shown


def test_demo_refuses_a_leak_interval_under_a_second(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = run_cli(
        "demo",
        "--state",
        str(tmp_path / "demo"),
        "--port",
        "0",
        "--app-port",
        "0",
        "--ssh-port",
        "-1",
        "--leak-interval",
        "0.5",
        env=cli_env,
    )
    assert out.returncode == 2 and "leak_interval" in out.stderr and "at least 1 second" in out.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A hostile or misconfigured peer: answers every request with ``answer`` and records it."""

    answer: tuple[int, dict[str, str]] = (404, {})
    seen: list[tuple[str, str]]

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        status, headers = self.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads `seen`
        pass


@contextlib.contextmanager
def _peer(status: int, headers: dict[str, str]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    handler = type("Peer", (_Recorder,), {"answer": (status, headers), "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-peer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_token_goes_only_to_the_console_url(cli_env: dict[str, str]) -> None:
    """A redirect is not followed and a proxy variable is not honoured: the bearer token never
    reaches another host."""
    with (
        _peer(404, {}) as (elsewhere, stolen),
        _peer(302, {"Location": f"{elsewhere}/ops/whoami"}) as (
            console_url,
            asked,
        ),
    ):
        TokenCache(Path(cli_env["XDG_CONFIG_HOME"]) / "opsconsole" / "tokens.json").put(
            console_url, "t0k-secret", "alice"
        )
        env = cli_env | {"http_proxy": elsewhere, "HTTP_PROXY": elsewhere, "no_proxy": "", "NO_PROXY": ""}
        out = run_cli("whoami", console_url, env=env)
    assert out.returncode != 0 and "302" in out.stderr, out.stderr
    assert asked == [("/ops/whoami", "Bearer t0k-secret")]
    assert stolen == []


def test_login_and_whoami_over_https_verify_the_console(
    tmp_path: Path,
    keys_dir: Path,
    operators: dict[str, Operator],
    clock: FakeClock,
    cli_env: dict[str, str],
) -> None:
    """An https console is verified: refused without its CA, logged in with SSL_CERT_FILE naming it."""
    ca, ca_key, ca_path, _ = certificate(tmp_path, "ca", None, server=False)
    _, _, crt, key = certificate(tmp_path, "server", (ca, ca_key), server=True)
    settings = console_settings(tmp_path, keys_dir, tls_cert=crt, tls_key=key)
    console = Console(settings, clock=clock).start()
    try:
        assert console.url.startswith("https://")
        op = operators["alice"]
        login = ("login", console.url, "--user", "alice", "--identity", str(op.key), "--totp")
        untrusted = run_cli(*login, op.code(clock()), env=cli_env)
        assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
        trusted = cli_env | {"SSL_CERT_FILE": str(ca_path)}
        out = run_cli(*login, op.code(clock()), env=trusted)
        assert out.returncode == 0, out.stderr
        who = run_cli("whoami", console.url, env=trusted)
        assert who.returncode == 0 and json.loads(who.stdout)["user"] == "alice", who.stderr
    finally:
        console.stop()
