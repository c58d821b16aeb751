"""The hash-chained audit log: writing, resuming, concurrency, tampering, escaping, file safety."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pathlib
import stat
import subprocess
import sys
import threading

import pytest

from opsconsole.audit import AuditLog, Head, HeadAnchor, VerifyReport, chain, verify_file
from opsconsole.audit.head import parse as parse_head
from opsconsole.errors import AuditChainError, AuditError, InsecureFileError

T0 = 1_795_941_511.123  # 2026-11-29T08:38:31.123Z


class FakeClock:
    """A clock that ticks 1 ms per read so timestamps are predictable."""

    def __init__(self, start: float = T0) -> None:
        self.start = start
        self.ticks = 0

    def __call__(self) -> float:
        # Computed from a tick count, not accumulated: repeated += 0.001 drifts.
        value = self.start + self.ticks / 1000
        self.ticks += 1
        return value


@pytest.fixture
def log_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "audit" / "audit.jsonl"


def write_events(path: pathlib.Path, n: int, start: int = 0) -> None:
    with AuditLog.open(path, clock=FakeClock()) as audit:
        for i in range(start, start + n):
            audit.record("repl.line", n=i, user="alice", line=f"print({i})")


def lines_of(path: pathlib.Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def expect_broken(path: pathlib.Path, line: int) -> AuditChainError:
    with pytest.raises(AuditChainError) as info:
        verify_file(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    return info.value


# --- chain rules -----------------------------------------------------------------------


def test_seal_check_round_trip() -> None:
    line = chain.seal(
        1, "2026-11-29T08:38:31.123Z", "auth.login", {"user": "alice", "ok": True}, chain.GENESIS
    )
    link = chain.check(line, expected_seq=1, expected_prev=chain.GENESIS)
    obj = json.loads(line)
    assert link == chain.Link(seq=1, ts="2026-11-29T08:38:31.123Z", hash=obj["hash"])
    # The hash rule, spelled out independently of chain.digest.
    body = {k: v for k, v in obj.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(text.encode()).hexdigest() == obj["hash"]
    assert set(obj) == {"seq", "ts", "event", "fields", "prev", "hash"}
    assert "\n" not in line


def test_format_ts() -> None:
    assert chain.format_ts(T0) == "2026-11-29T08:38:31.123Z"
    assert chain.format_ts(0.0) == "1970-01-01T00:00:00.000Z"
    assert chain.format_ts(0.9999) == "1970-01-01T00:00:00.999Z"


@pytest.mark.parametrize("event", ["", "Auth", "1x", "a b", "a-b", "repl.line\n", "é"])
def test_seal_rejects_bad_event_names(event: str) -> None:
    with pytest.raises(chain.ChainError):
        chain.seal(1, "2026-11-29T08:38:31.123Z", event, {}, chain.GENESIS)


def test_check_rejects_duplicate_keys_and_nan() -> None:
    line = chain.seal(1, "2026-11-29T08:38:31.123Z", "x", {"a": 1}, chain.GENESIS)
    with pytest.raises(chain.ChainError, match="duplicate"):
        chain.check('{"seq":1,' + line[1:], expected_seq=1, expected_prev=chain.GENESIS)
    with pytest.raises(chain.ChainError, match="not valid JSON"):
        chain.check(line.replace('"a":1', '"a":NaN'), expected_seq=1, expected_prev=chain.GENESIS)


# --- writing and verifying ---------------------------------------------------------------


def test_chain_of_n_events_verifies(log_path: pathlib.Path) -> None:
    write_events(log_path, 50)
    report = verify_file(log_path)
    assert isinstance(report, VerifyReport)
    assert report.records == 50
    assert report.path == log_path
    assert report.first_ts == "2026-11-29T08:38:31.123Z"
    assert report.last_ts == "2026-11-29T08:38:31.172Z"
    records = [json.loads(raw) for raw in lines_of(log_path)]
    assert [r["seq"] for r in records] == list(range(1, 51))
    assert records[0]["prev"] == chain.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    assert report.last_hash == records[-1]["hash"]


def test_empty_log_verifies(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path) as audit:
        assert audit.last_seq == 0
        assert audit.last_hash == chain.GENESIS
    report = verify_file(log_path)
    assert (report.records, report.last_hash, report.first_ts, report.last_ts) == (
        0,
        chain.GENESIS,
        None,
        None,
    )


def test_resume_after_reopen_keeps_the_chain(log_path: pathlib.Path) -> None:
    write_events(log_path, 3)
    first = verify_file(log_path)
    with AuditLog.open(log_path) as audit:
        assert audit.last_seq == 3
        assert audit.last_hash == first.last_hash
        audit.record("console.start", pid=1)
    records = [json.loads(raw) for raw in lines_of(log_path)]
    assert records[3]["seq"] == 4
    assert records[3]["prev"] == first.last_hash
    assert verify_file(log_path).records == 4


def test_resume_with_a_long_last_line(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path) as audit:
        audit.record("a", x=1)
        audit.record("b", blob="x" * 200_000)  # several tail chunks
    with AuditLog.open(log_path) as audit:
        assert audit.last_seq == 2
        audit.record("c")
    assert verify_file(log_path).records == 3


def test_concurrent_records_form_one_valid_chain(log_path: pathlib.Path) -> None:
    threads_n, per_thread = 8, 200
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    with AuditLog.open(log_path) as audit:

        def worker(t: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    audit.record("repl.line", thread=t, i=i)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert audit.last_seq == threads_n * per_thread
    assert errors == []
    assert verify_file(log_path).records == threads_n * per_thread
    seen = {(r["fields"]["thread"], r["fields"]["i"]) for r in map(json.loads, lines_of(log_path))}
    assert len(seen) == threads_n * per_thread


def test_field_named_event_is_allowed(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path) as audit:
        audit.record("host.signal", event="SIGTERM", nested={"a": [1, 2.5, None, {"b": False}]})
    record = json.loads(log_path.read_bytes())
    assert record["fields"] == {"event": "SIGTERM", "nested": {"a": [1, 2.5, None, {"b": False}]}}


def test_close_is_idempotent_and_final(log_path: pathlib.Path) -> None:
    audit = AuditLog.open(log_path)
    audit.close()
    audit.close()
    assert audit.closed
    with pytest.raises(AuditError, match="closed"):
        audit.record("x")


def test_second_writer_is_refused(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path), pytest.raises(AuditError, match="another writer"):
        AuditLog.open(log_path)
    AuditLog.open(log_path).close()  # the lock goes with close()


# --- tampering -----------------------------------------------------------------------------


def test_edited_field_value_is_caught(log_path: pathlib.Path) -> None:
    write_events(log_path, 10)
    lines = lines_of(log_path)
    assert b'"user":"alice"' in lines[4]
    lines[4] = lines[4].replace(b'"user":"alice"', b'"user":"mallory"')
    log_path.write_bytes(b"".join(lines))
    assert "wrong hash" in expect_broken(log_path, 5).reason


def test_deleted_line_is_caught(log_path: pathlib.Path) -> None:
    write_events(log_path, 10)
    lines = lines_of(log_path)
    del lines[6]
    log_path.write_bytes(b"".join(lines))
    assert "wrong seq" in expect_broken(log_path, 7).reason


def test_reordered_lines_are_caught(log_path: pathlib.Path) -> None:
    write_events(log_path, 10)
    lines = lines_of(log_path)
    lines[2], lines[3] = lines[3], lines[2]
    log_path.write_bytes(b"".join(lines))
    expect_broken(log_path, 3)


def test_truncated_last_line_is_caught_then_cut_off_saved_and_recorded(log_path: pathlib.Path) -> None:
    write_events(log_path, 10)
    data = log_path.read_bytes()
    log_path.write_bytes(data[: len(data) - 30])
    assert "torn" in expect_broken(log_path, 10).reason
    complete = data[: data.rindex(b"\n", 0, len(data) - 1) + 1]
    torn = data[len(complete) : len(data) - 30]
    # The writer cuts only the unterminated tail, keeps it next to the log, and says so in the chain.
    with AuditLog.open(log_path) as audit:
        assert audit.last_seq == 10  # the torn record 10 is gone; its note is the new record 10
    records = [json.loads(line) for line in lines_of(log_path)]
    assert log_path.read_bytes().startswith(complete)
    note = records[-1]
    assert note["event"] == "audit.torn_tail" and note["seq"] == 10
    saved = pathlib.Path(note["fields"]["saved_to"])
    assert saved.read_bytes() == torn and stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert note["fields"]["bytes"] == len(torn)
    assert note["fields"]["sha256"] == hashlib.sha256(torn).hexdigest()
    assert verify_file(log_path).records == 10


def test_a_torn_tail_is_not_cut_twice_into_the_same_file(log_path: pathlib.Path) -> None:
    write_events(log_path, 2)
    with log_path.open("ab") as f:
        f.write(b'{"seq":3,"ts"')
    size = log_path.stat().st_size
    (log_path.parent / f"{log_path.name}.torn-{size - 13}").write_bytes(b"earlier evidence")
    with pytest.raises(AuditError, match="already exists; move that file away"):
        AuditLog.open(log_path)
    assert log_path.stat().st_size == size


def test_forged_line_with_wrong_prev_is_caught(log_path: pathlib.Path) -> None:
    write_events(log_path, 10)
    forged = chain.seal(11, "2026-11-29T09:00:00.000Z", "auth.login", {"user": "mallory"}, "ab" * 32)
    with log_path.open("ab") as f:
        f.write(forged.encode() + b"\n")
    assert "wrong prev" in expect_broken(log_path, 11).reason


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [(b"not json\n", "bad JSON"), (b"[1]\n", "not a JSON object"), (b'{"seq":11}\n', "missing key")],
)
def test_garbage_line_is_caught(log_path: pathlib.Path, garbage: bytes, reason: str) -> None:
    write_events(log_path, 10)
    with log_path.open("ab") as f:
        f.write(garbage)
    assert reason in expect_broken(log_path, 11).reason


def test_writer_refuses_to_resume_from_invalid_last_line(log_path: pathlib.Path) -> None:
    write_events(log_path, 3)
    lines = lines_of(log_path)
    lines[-1] = lines[-1].replace(b'"user":"alice"', b'"user":"bob"')
    log_path.write_bytes(b"".join(lines))
    size = log_path.stat().st_size
    with pytest.raises(AuditError, match="last line is invalid") as info:
        AuditLog.open(log_path)
    # It says why, and how to rotate: keep the file, check it, start a new chain.
    assert str(log_path) in str(info.value)
    assert f"mv {log_path} {log_path}.broken-" in str(info.value)
    assert "opsconsole audit verify" in str(info.value)
    assert log_path.stat().st_size == size


# --- anchored heads --------------------------------------------------------------------------


def test_a_cut_tail_or_a_rewrite_fails_against_an_anchored_head(log_path: pathlib.Path) -> None:
    write_events(log_path, 5)
    with AuditLog.open(log_path) as audit:
        head = audit.head()
    assert head == Head(5, verify_file(log_path).last_hash)
    assert verify_file(log_path, [head]).records == 5
    write_events(log_path, 2, start=5)
    assert verify_file(log_path, [head]).records == 7  # the log went on past the anchor: fine
    # cut the last three records: the chain alone still verifies, the anchor does not
    log_path.write_bytes(b"".join(lines_of(log_path)[:4]))
    assert verify_file(log_path).records == 4
    with pytest.raises(AuditChainError, match="ends at record 4, before the anchored head 5") as info:
        verify_file(log_path, [head])
    assert info.value.line == 5
    # rewritten from scratch with as many records: every link checks, the anchor does not
    log_path.unlink()
    write_events(log_path, 5, start=100)
    with pytest.raises(AuditChainError, match="record 5 has hash .* the anchored head says") as info:
        verify_file(log_path, [head])
    assert info.value.line == 5


def test_head_text_round_trips_and_bad_text_is_refused() -> None:
    head = Head(42, "ab" * 32)
    assert parse_head(str(head)) == head
    assert parse_head(f"seq=42 hash={'ab' * 32}") == head
    for bad in ("42", "42:" + "AB" * 32, "x:" + "ab" * 32, "42:" + "ab" * 31, ""):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            parse_head(bad)


class _Lines(logging.Handler):
    """Collects the head lines and wakes the test when a periodic one arrives."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.periodic = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if "why=periodic" in self.lines[-1]:
            self.periodic.set()


def test_the_anchor_logs_at_start_while_it_changes_and_at_stop(log_path: pathlib.Path) -> None:
    logger = logging.getLogger("opsconsole.audit.head")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with AuditLog.open(log_path) as audit:
            audit.record("console.start")
            anchor = HeadAnchor(audit, interval=0.05)
            anchor.start()
            audit.record("repl.input", text="1")
            assert handler.periodic.wait(10), "no periodic head"
            audit.record("console.stop")
            anchor.stop()
            anchor.stop()  # idempotent
            final = audit.head()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = handler.lines
    assert lines[0].startswith("opsconsole-audit-head seq=1 hash=")
    assert "why=start" in lines[0] and lines[0].endswith(f"file={log_path}")
    assert lines[-1] == f"opsconsole-audit-head seq=3 hash={final.hash} why=stop file={log_path}"
    # one periodic line per change of the head, not one per interval (seq 3 may race the stop)
    periodic = [line.split(" hash=")[0] for line in lines if "why=periodic" in line]
    assert periodic in (
        ["opsconsole-audit-head seq=2"],
        ["opsconsole-audit-head seq=2", "opsconsole-audit-head seq=3"],
    )
    # every line names a head the file reaches
    heads = [parse_head(line.split(" why=")[0].removeprefix("opsconsole-audit-head ")) for line in lines]
    assert verify_file(log_path, heads).records == 3


# --- escaping ------------------------------------------------------------------------------

NASTY = "a\x1b[2Jb\nc\rd\x00e\u2028f\x7fg\x9bh\u2029i\ttäst"


def test_control_characters_are_escaped(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path) as audit:
        audit.record("repl.line", line=NASTY, user="eve\x1b]0;pwned\x07")
        audit.record("auth.login", **{"weird\nkey\x1b": NASTY})
    raw = log_path.read_bytes()
    assert raw.count(b"\n") == 2
    assert raw.endswith(b"\n")
    assert all(b >= 0x20 or b == 0x0A for b in raw)
    assert all(b < 0x7F for b in raw)  # nothing beyond printable ASCII, DEL included
    first, second = (json.loads(line) for line in raw.splitlines())
    assert first["fields"]["line"] == NASTY
    assert first["fields"]["user"] == "eve\x1b]0;pwned\x07"
    assert second["fields"] == {"weird\nkey\x1b": NASTY}
    assert verify_file(log_path).records == 2


# --- file safety ---------------------------------------------------------------------------


def test_file_is_0600_and_dir_0700(log_path: pathlib.Path) -> None:
    old = os.umask(0o022)
    try:
        AuditLog.open(log_path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700


def test_group_readable_existing_file_is_refused(log_path: pathlib.Path) -> None:
    log_path.parent.mkdir(mode=0o700)
    log_path.write_bytes(b"")
    log_path.chmod(0o644)
    with pytest.raises(InsecureFileError, match="0644") as info:
        AuditLog.open(log_path)
    assert str(log_path) in str(info.value)


def test_symlink_is_refused(log_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(b"")
    target.chmod(0o600)
    log_path.parent.mkdir(mode=0o700)
    log_path.symlink_to(target)
    with pytest.raises(InsecureFileError, match="symbolic link") as info:
        AuditLog.open(log_path)
    assert str(log_path) in str(info.value)
    assert target.read_bytes() == b""


def test_directory_in_place_of_file_is_refused(log_path: pathlib.Path) -> None:
    log_path.mkdir(parents=True)
    with pytest.raises(InsecureFileError, match="not a regular file"):
        AuditLog.open(log_path)


# --- guards --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["totp", "TOTP_code", "code", "api_token", "Secret", "password", "sig_signature"]
)
def test_secret_looking_field_is_refused(log_path: pathlib.Path, name: str) -> None:
    with AuditLog.open(log_path) as audit:
        audit.record("auth.login", user="alice")
        size = log_path.stat().st_size
        with pytest.raises(AuditError, match="looks like a secret"):
            audit.record("auth.login", **{name: "123456"})
        with pytest.raises(AuditError, match="looks like a secret"):
            audit.record("auth.login", meta={"inner": [[{name: "123456"}]]})
        assert log_path.stat().st_size == size
        audit.record("auth.login", user="bob")  # the chain goes on unharmed
    assert verify_file(log_path).records == 2


@pytest.mark.parametrize(
    "value",
    [object(), b"bytes", {1: "int key"}, float("nan"), float("inf"), (1, 2), {"a": {1, 2}}],
    ids=["object", "bytes", "int-key", "nan", "inf", "tuple", "nested-set"],
)
def test_non_jsonable_value_is_refused(log_path: pathlib.Path, value: object) -> None:
    with AuditLog.open(log_path) as audit:
        audit.record("x", ok=1)
        size = log_path.stat().st_size
        with pytest.raises(AuditError, match="refusing audit record"):
            audit.record("x", bad=value)
        assert log_path.stat().st_size == size
        audit.record("x", ok=2)
    assert verify_file(log_path).records == 2


def test_cyclic_value_is_refused(log_path: pathlib.Path) -> None:
    loop: list[object] = []
    loop.append(loop)
    with AuditLog.open(log_path) as audit, pytest.raises(AuditError, match="nested deeper"):
        audit.record("x", bad=loop)
    assert log_path.stat().st_size == 0


def test_bad_event_name_is_refused(log_path: pathlib.Path) -> None:
    with AuditLog.open(log_path) as audit, pytest.raises(AuditError, match="bad event name"):
        audit.record("Bad Event")
    assert log_path.stat().st_size == 0


def test_verify_missing_file_raises_audit_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(AuditError, match="cannot read"):
        verify_file(tmp_path / "nope.jsonl")


# --- a log that cannot grow ------------------------------------------------------------------

_CHILD = """
import json, pathlib, resource, signal, sys
from opsconsole.audit import AuditLog
from opsconsole.errors import AuditError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us at the limit
path = pathlib.Path(sys.argv[1])
out = {}
with AuditLog.open(path) as audit:
    audit.record("repl.input", text="first")
    out["size"] = path.stat().st_size
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (out["size"] + 10, hard))  # room for 10 bytes of a line
    for text in ("second", "third"):
        try:
            audit.record("repl.input", text=text)
        except AuditError as exc:
            out.setdefault("errors", []).append(str(exc))
        out.setdefault("sizes", []).append(path.stat().st_size)
    out["failing"] = audit.failing
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    audit.record("repl.input", text="fourth")
    out["failing_after"] = audit.failing
print(json.dumps(out))
"""


def test_a_write_past_a_file_size_limit_leaves_no_half_line_and_the_log_recovers(
    log_path: pathlib.Path,
) -> None:
    # A real short write then EFBIG, in a child process so the limit binds nothing else.
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(log_path)], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(done.stdout)
    assert out["sizes"] == [out["size"], out["size"]]  # the 10 bytes that got in were cut off
    assert len(out["errors"]) == 2 and all("File too large" in e for e in out["errors"])
    assert "not recorded" in out["errors"][0]
    assert "File too large" in out["failing"] and out["failing_after"] is None
    records = [json.loads(line) for line in lines_of(log_path)]
    assert [(r["event"], r["fields"].get("text")) for r in records] == [
        ("repl.input", "first"),
        ("audit.write_failed", None),
        ("repl.input", "fourth"),
    ]
    assert records[1]["fields"] == {"refused": 2, "error": "OSError: File too large"}
    assert verify_file(log_path).records == 3
    # one line when writing starts failing, one when it works again; none per refused record
    assert done.stderr.count("cannot be written") == 1 and done.stderr.count("writable again") == 1
