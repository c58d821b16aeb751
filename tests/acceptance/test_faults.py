"""Real faults against a host process: an audit log that cannot grow, kill -9 mid-stream and a
restart, a clock stepped back, keys and secrets files swapped for unsafe ones while running.
Nothing may be lost: no unrecorded action runs, no half line, no reopened TOTP step."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from opsconsole.audit import verify_file
from opsconsole.console import Console
from testkit.host_process import Host
from testkit.ssh_client import paramiko_client, totp_answer
from testkit.support import (
    FakeClock,
    Operator,
    audit_events,
    call,
    console_settings,
    login_attempt,
    login_token,
    run_cli,
)
from testkit.terminal_client import Term

PROMPT = r">>> ?$"


def _settings(tmp_path: Path, keys_dir: Path, **over: Any) -> dict[str, Any]:
    return {
        "port": 0,
        "ssh_port": 0,
        "state_dir": str(tmp_path / "state"),
        "authorized_keys": str(keys_dir / "authorized_keys"),
        "totp_secrets": str(keys_dir / "totp_secrets"),
        **over,
    }


@pytest.fixture
def host(tmp_path: Path, keys_dir: Path) -> Iterator[Host]:
    h = Host(_settings(tmp_path, keys_dir))
    yield h
    h.stop()


def _app_ok(host: Host) -> bool:
    with urllib.request.urlopen(host.info["app_url"], timeout=10) as answer:  # noqa: S310 (http://127.0.0.1)
        return bool(answer.status == 200 and answer.read() == b"app ok\n")


def _now() -> float:
    import time

    return time.time()


# -- the audit file cannot grow -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_audit_log_that_cannot_grow_runs_nothing_unrecorded(
    host: Host, tmp_path: Path, operators: dict[str, Operator]
) -> None:
    audit = tmp_path / "state" / "audit.jsonl"
    pid = int(host.info["pid"])
    at = _now()
    token = login_token(host.url, operators["alice"], at)
    term = await Term.open(host.url, token)
    try:
        await term.expect(PROMPT)
        await term.run("x = 1; print('x set')", r"^x set$")  # output comes after the record
        size = audit.stat().st_size
        # From now on no file of the host may grow past 10 bytes more than the audit log: the next
        # record is a real short write of 10 bytes, then EFBIG.
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (size + 10, hard))
        try:
            # The line that cannot be recorded does not run, and the session is told why.
            await term.run(
                "x = 2", r"not run: the line could not be recorded in the audit log .*File too large"
            )
            # New logins are refused with a clear error, by both doors; the host keeps serving.
            status, answer = login_attempt(host.url, operators["carol"], at)
            assert status == 503 and answer["error"] == "audit_unavailable", answer
            assert "audit log cannot be written" in answer["message"]
            ssh = paramiko.Transport(("127.0.0.1", host.info["ssh_port"]))
            try:
                ssh.start_client(timeout=10)
                with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException, EOFError)):
                    ssh.auth_publickey("carol", paramiko.PKey.from_path(operators["carol"].key))
                assert not ssh.is_authenticated()
                # what the client was told before its first method (get_banner() is None once closed)
                assert b"refused while the audit log cannot be written" in ssh.auth_handler.banner
            finally:
                ssh.close()
            assert _app_ok(host)
            # No half line: the file ends where the last complete record ended, and verifies.
            assert audit.stat().st_size == size
            assert audit.read_bytes().endswith(b"\n")
            assert verify_file(audit).records == len(audit_events(audit))
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        # Space again: the session goes on; x = 2 never ran; the chain says what was refused.
        await term.run("print(x)", r"^1$")
    finally:
        await term.close()
    assert host.stop() == 0  # after this, no record is still on its way (repl.close, console.stop)
    events = audit_events(audit)
    gap = [e for e in events if e["event"] == "audit.write_failed"]
    assert len(gap) == 1 and gap[0]["fields"]["refused"] >= 2
    assert "File too large" in gap[0]["fields"]["error"]
    after = events[events.index(gap[0]) + 1]
    assert after["event"] == "repl.input" and after["fields"]["text"] == "print(x)"
    assert not [e for e in events if e["event"] == "repl.input" and e["fields"]["text"] == "x = 2"]
    assert not [e for e in events if e["event"] == "auth.login" and e["fields"]["user"] == "carol"]
    assert verify_file(audit).records == len(events)
    log = host.log
    # The host log says it once when writing starts failing and once when it works again.
    assert log.count("audit.jsonl cannot be written (") == 1, log
    assert log.count("is writable again") == 1, log
    assert "Traceback" not in log, log


# -- kill -9 in the middle of a stream of audited REPL lines ------------------------------------------

STREAM = 300


@pytest.mark.asyncio
async def test_kill_9_mid_stream_then_a_restart_resumes_a_verified_chain(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator]
) -> None:
    settings = _settings(tmp_path, keys_dir)
    audit = tmp_path / "state" / "audit.jsonl"
    alice, carol = operators["alice"], operators["carol"]
    at = _now()
    first = Host(settings)
    try:
        term = await Term.open(first.url, login_token(first.url, alice, at))
        await term.expect(PROMPT)
        await term.run("n = 0", PROMPT)
        # One message holding many lines: the session runs them one after another, each audited first.
        await term.send("n += 1; print('line', n)\r" * STREAM)
        await term.expect(r"^line 20$", timeout=60)
        first.kill9()  # while the stream is still running
        seen = max(int(m) for m in re.findall(r"(?m)^line (\d+)$", term.text))
        term.conn.close()
    finally:
        first.stop()
    assert seen < STREAM, "the stream ended before the kill"
    # Every line whose output the client saw was recorded before it ran.
    recorded = [e for e in audit_events_tolerant(audit) if e.get("event") == "repl.input"]
    assert len(recorded) >= seen + 1  # "n = 0" and every line seen
    started = first.heads()
    assert started, first.log
    second = Host(settings)
    try:
        assert "error" not in second.info, second.info  # a kill -9 can only tear the last line
        # The chain verifies, through the head the first run anchored in its log at start.
        check = run_cli("audit", "verify", str(audit), "--head", started[0])
        assert check.returncode == 0, check.stderr
        assert "chain intact" in check.stdout and "reaches the anchored head" in check.stdout
        # No accepted TOTP step is reopened: alice's code is refused, and the step stays used.
        status, answer = login_attempt(second.url, alice, at)
        assert status == 401, answer
        step = json.loads((tmp_path / "state" / "totp_state.json").read_text())["alice"]
        assert step == int(at // 30)
        # The console serves again: another operator logs in.
        assert login_attempt(second.url, carol, _now())[0] == 200
    finally:
        assert second.stop() == 0
    events = audit_events(audit)
    replayed = [e for e in events if e["event"] == "auth.failure" and e["fields"]["user"] == "alice"]
    assert replayed and replayed[-1]["fields"]["reason"] in ("totp_replay", "totp_mismatch")
    if _now() - at < 25:  # still inside the code's window: only the replay guard can refuse it
        assert replayed[-1]["fields"]["reason"] == "totp_replay"
    assert verify_file(audit).records == len(events)
    assert "Traceback" not in second.log, second.log


def audit_events_tolerant(path: Path) -> list[dict[str, Any]]:
    """The records of a log that may end in a torn line (read right after a kill -9)."""
    lines = path.read_bytes().split(b"\n")
    return [json.loads(line) for line in lines[:-1]]


def test_a_log_whose_last_line_is_bad_is_refused_with_how_to_rotate(tmp_path: Path, keys_dir: Path) -> None:
    settings = _settings(tmp_path, keys_dir)
    audit = tmp_path / "state" / "audit.jsonl"
    Host(settings).stop()
    lines = audit.read_bytes().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"console.stop"', b'"console.stopped"')
    audit.write_bytes(b"".join(lines))
    refused = Host(settings)
    assert refused.proc.wait(30) == 3
    error = refused.info["error"]
    assert "last line is invalid (wrong hash" in error and "refusing to resume the chain" in error
    assert f"mv {audit} {audit}.broken-" in error
    refused.stop()
    # Doing what it says: the old file is kept and shows where it broke; a new chain starts.
    kept = audit.with_name("audit.jsonl.broken-test")
    audit.rename(kept)
    check = run_cli("audit", "verify", str(kept))
    assert check.returncode == 1 and f"{kept}:{len(lines)}: wrong hash" in check.stderr
    again = Host(settings)
    try:
        assert "error" not in again.info
    finally:
        assert again.stop() == 0
    assert verify_file(audit).records == 2  # console.start, console.stop


# -- the clock steps back -----------------------------------------------------------------------------


def test_a_clock_stepped_back_five_minutes_reopens_no_step(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    alice = operators["alice"]
    console = Console(console_settings(tmp_path, keys_dir, ssh_port=0), clock=clock).start()
    logged_in_at = clock()
    try:
        assert login_attempt(console.url, alice, logged_in_at)[0] == 200
        clock.advance(-300)  # NTP steps the host clock back 5 minutes
        # The code of "now" belongs to a step before the accepted one: refused, by both doors.
        assert login_attempt(console.url, alice, clock())[0] == 401
        ssh = paramiko_client(console)
        try:
            assert ssh.auth_publickey("alice", paramiko.PKey.from_path(alice.key)) == ["keyboard-interactive"]
            with pytest.raises(paramiko.AuthenticationException):
                ssh.auth_interactive("alice", totp_answer(alice.code(clock(), steps=1)))
            assert not ssh.is_authenticated()
        finally:
            ssh.close()
    finally:
        console.stop()
    # ... and after a restart on the same state dir, with the clock still behind.
    again = Console(console_settings(tmp_path, keys_dir), clock=clock).start()
    try:
        assert login_attempt(again.url, alice, clock())[0] == 401
        clock.advance(300 + 30)  # the clock is right again: the next step is new
        assert login_attempt(again.url, alice, clock())[0] == 200
    finally:
        again.stop()
    reasons = [
        e["fields"]["reason"]
        for e in audit_events(again.settings.audit_path)
        if e["event"] == "auth.failure" and e["fields"]["user"] == "alice"
    ]
    assert reasons == ["totp_replay"] * 3


# -- keys and secrets files replaced while running ----------------------------------------------------


def _replace(path: Path, how: str, tmp_path: Path) -> None:
    original = path.read_bytes()
    fresh = path.with_name(path.name + ".new")
    if how == "broken":
        fresh.write_bytes(original + b"\xff\xfe not text\n")
        fresh.chmod(0o600)
    elif how == "world-writable":
        fresh.write_bytes(original)
        fresh.chmod(0o666)
    else:  # a symlink to a copy that is itself fine
        target = tmp_path / f"elsewhere-{path.name}"
        target.write_bytes(original)
        target.chmod(0o600)
        fresh.symlink_to(target)
    os.replace(fresh, path)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["authorized_keys", "totp_secrets"])
@pytest.mark.parametrize("how", ["broken", "world-writable", "symlink"])
async def test_an_unsafe_keys_or_secrets_file_refuses_logins_and_keeps_open_sessions(  # noqa: PLR0917
    console: Console,
    keys_dir: Path,
    operators: dict[str, Operator],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    name: str,
    how: str,
) -> None:
    alice, carol = operators["alice"], operators["carol"]
    path = keys_dir / name
    good = path.read_bytes()
    token = login_token(console.url, alice, clock())
    term = await Term.open(console.url, token)
    try:
        await term.expect(PROMPT)
        await term.run("before = 1", PROMPT)
        _replace(path, how, keys_dir.parent)
        # A new login is refused, with an alert in the host log and in the audit log.
        assert login_attempt(console.url, carol, clock()) == (
            401,
            {"error": "authentication_failed", "message": "authentication failed"},
        )
        alerts = [
            r.getMessage()
            for r in caplog.records
            if r.name == "opsconsole.auth.operators" and r.levelno >= logging.ERROR
        ]
        assert len(alerts) == 1 and str(path) in alerts[0], alerts
        rejected = [
            e["fields"]["reason"]
            for e in audit_events(console.settings.audit_path)
            if e["event"] == "config.rejected"
        ]
        assert len(rejected) == 1 and str(path) in rejected[0], rejected
        # The session that was open stays open (like sshd): it runs lines and its token works.
        await term.run("print(before + 1)", r"^2$")
        assert call(console.url, "GET", "/ops/whoami", token=token)[0] == 200
    finally:
        await term.close()
    # Put a good file back: logins work again without a restart.
    path.unlink()
    path.write_bytes(good)
    path.chmod(0o600)
    assert login_attempt(console.url, carol, clock())[0] == 200
