"""authorized_keys parsing with real keys from ssh-keygen."""

from __future__ import annotations

import base64
import calendar
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.auth import keys
from opsconsole.errors import ConfigError, InsecureFileError
from testkit.sshkeys import GOOD_KEYS, KeyRing

SOURCE = "test_keys"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing(tmp_path_factory.mktemp("keyring"))


@pytest.fixture
def ed(keyring: KeyRing) -> str:
    """The ed25519 public key line."""
    return keyring["ed25519"].pub_line


@pytest.fixture
def posix_tz() -> Iterator[None]:
    """Run in a zone 5 hours behind UTC, so 'local time' differs from UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "TEST+05"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def parse(text: str) -> keys.AuthorizedKeys:
    return keys.parse_authorized_keys(text, source=SOURCE)


def one(line: str) -> keys.AuthorizedKey:
    result = parse(line)
    assert result.rejected == (), result.rejected
    (entry,) = result.entries
    return entry


def rejected(line: str) -> str:
    result = parse(line)
    assert result.entries == ()
    (bad,) = result.rejected
    assert bad.line_no == 1
    return bad.reason


def test_every_option(ed: str) -> None:
    line = (
        'user="alice",role="operator",from="10.0.0.0/8,127.0.0.1,2001:db8::/32",'
        f'expiry-time="20300102030405Z" {ed} alice laptop'
    )
    entry = one(line)
    assert entry.user == "alice"
    assert entry.role == "operator"
    assert entry.key_type == "ssh-ed25519"
    assert entry.blob == base64.b64decode(ed.split()[1])
    assert entry.comment == "test@host alice laptop"
    assert [str(n) for n in entry.from_networks] == ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]
    assert entry.expires_at == calendar.timegm((2030, 1, 2, 3, 4, 5, 0, 0, 0))
    assert entry.line_no == 1


def test_defaults_least_privilege_anywhere_forever(ed: str) -> None:
    entry = one(f'user="bob" {ed}')
    assert entry.role == "viewer"
    assert entry.from_networks == ()
    assert entry.expires_at is None
    assert entry.allows_source("203.0.113.9")
    assert not entry.expired(time.time() + 10 * 365 * 86400)


def test_option_names_case_insensitive_like_openssh(ed: str) -> None:
    assert one(f'USER="bob",Role="operator" {ed}').role == "operator"


@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_each_key_type_and_fingerprint(keyring: KeyRing, spec: str) -> None:
    kp = keyring[spec]
    entry = one(f'user="u" {kp.pub_line}')
    assert entry.key_type == kp.key_type
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(kp.public)], check=True, capture_output=True, text=True
    ).stdout
    assert entry.fingerprint == out.split()[1]
    assert entry.public_key().asbytes() == kp.blob


def test_from_matching_v4_v6_and_mapped(ed: str) -> None:
    entry = one(f'user="u",from="10.0.0.0/8,127.0.0.1,2001:db8::/32" {ed}')
    assert entry.allows_source("10.1.2.3")
    assert entry.allows_source("127.0.0.1")
    assert entry.allows_source("::ffff:10.9.9.9")  # IPv4 client on a dual-stack socket
    assert entry.allows_source("2001:db8::42")
    assert not entry.allows_source("127.0.0.2")
    assert not entry.allows_source("11.0.0.1")
    assert not entry.allows_source("2001:db9::1")
    assert not entry.allows_source("::1")
    assert not entry.allows_source("not-an-address")
    assert not entry.allows_source("")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("*.example.com", "only IP addresses"),
        ("host.example.com", "only IP addresses"),
        ("10.0.*", "only IP addresses"),
        ("!10.0.0.0/8", "negated"),
        ("10.0.0.0/8,!10.1.0.0/16", "negated"),
        ("10.0.0.1/8", "only IP addresses"),  # host bits set: a typo, not a network
        ("10.0.0.0/8,", "only IP addresses"),
        ("10.0.0.0/8, 127.0.0.1", "only IP addresses"),
        ("", "only IP addresses"),
    ],
)
def test_bad_from_rejects_line(ed: str, value: str, fragment: str) -> None:
    assert fragment in rejected(f'user="u",from="{value}" {ed}')


def test_expiry_utc_and_expired(ed: str) -> None:
    entry = one(f'user="u",expiry-time="203001010000Z" {ed}')
    at = calendar.timegm((2030, 1, 1, 0, 0, 0, 0, 0, 0))
    assert entry.expires_at == at
    assert not entry.expired(at - 1)
    assert entry.expired(at)
    assert entry.expired(at + 1)


@pytest.mark.usefixtures("posix_tz")
def test_expiry_without_z_is_local_time(ed: str) -> None:
    entry = one(f'user="u",expiry-time="20300101" {ed}')
    assert entry.expires_at == calendar.timegm((2030, 1, 1, 5, 0, 0, 0, 0, 0))
    assert one(f'user="u",expiry-time="20300101z" {ed}').expires_at == calendar.timegm(
        (2030, 1, 1, 0, 0, 0, 0, 0, 0)
    )


def test_past_expiry_loads_but_is_expired(ed: str) -> None:
    entry = one(f'user="u",expiry-time="20000101Z" {ed}')
    assert entry.expired(time.time())


@pytest.mark.parametrize(
    "value", ["2030", "203001011", "20301301", "20300230", "20300101Q", "2030-01-01", ""]
)
def test_bad_expiry_rejects_line(ed: str, value: str) -> None:
    assert "expiry-time" in rejected(f'user="u",expiry-time="{value}" {ed}')


@pytest.mark.parametrize(
    "options",
    ['command="x"', "no-pty", "restrict", 'environment="A=B"', 'permitopen="h:1"', "cert-authority"],
)
def test_unknown_option_rejected_and_logged(ed: str, options: str, caplog: pytest.LogCaptureFixture) -> None:
    text = f'# header\n\nuser="ok" {ed}\nuser="u",{options} {ed}\n'
    with caplog.at_level(logging.WARNING, logger="opsconsole.auth.keys"):
        result = parse(text)
    assert [e.user for e in result.entries] == ["ok"]
    (bad,) = result.rejected
    assert bad.line_no == 4
    assert "unsupported option" in bad.reason
    (record,) = [r for r in caplog.records if r.name == "opsconsole.auth.keys"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"{SOURCE}:4: skipped: unsupported option")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('role="operator" {ed}', "missing required option user"),
        ("{ed}", "user"),
        ("user=alice {ed}", "needs a value in double quotes"),
        ('user="alice {ed}', "unterminated quote"),
        ('user="alice",user="bob" {ed}', "given twice"),
        ('user="alice",,role="viewer" {ed}', "bad option syntax"),
        ('user="alice", role="viewer" {ed}', "bad option syntax at column 14"),
        ('user="Alice" {ed}', "user 'Alice'"),
        ('user="al\\"ice" {ed}', "user 'al\"ice'"),
        ('user="-x" {ed}', "must match"),
        ('user="{long}" {ed}', "must match"),
        ('user="alice",role="admin" {ed}', "role 'admin'"),
        ('user="alice"', "missing key type"),
        ('user="alice"ssh-ed25519 AAAA', "bad option syntax"),
    ],
)
def test_malformed_lines_rejected(ed: str, line: str, fragment: str) -> None:
    assert fragment in rejected(line.format(ed=ed, long="a" * 33))


def test_quoted_commas_and_escaped_quotes_stay_inside_values(ed: str) -> None:
    # The comma inside from="..." must not end the option, and \" must not end the value.
    entry = one(f'from="10.0.0.0/8,127.0.0.1",user="alice" {ed}')
    assert len(entry.from_networks) == 2
    assert 'al"ice' in rejected(f'user="al\\"ice",role="viewer" {ed}')


def test_key_type_must_match_blob(keyring: KeyRing) -> None:
    ed, ec256, rsa = keyring["ed25519"], keyring["ecdsa256"], keyring["rsa2048"]
    assert "does not match" in rejected(f'user="u" ssh-rsa {ed.b64}')
    assert "does not match" in rejected(f'user="u" ssh-ed25519 {rsa.b64}')
    assert "does not match" in rejected(f'user="u" ecdsa-sha2-nistp384 {ec256.b64}')


def test_bad_key_data_rejected(keyring: KeyRing) -> None:
    ed = keyring["ed25519"]
    assert "unsupported key type" in rejected(f'user="u" ssh-dss {ed.b64}')
    assert "unsupported key type" in rejected(f'user="u" sk-ssh-ed25519@openssh.com {ed.b64}')
    assert "not valid base64" in rejected(f'user="u" ssh-ed25519 {ed.b64[:-1]}!')
    assert "missing key" in rejected('user="u" ssh-ed25519')
    truncated = base64.b64encode(ed.blob[:-1]).decode()
    assert "malformed ssh-ed25519 key data" in rejected(f'user="u" ssh-ed25519 {truncated}')
    trailing = base64.b64encode(ed.blob + b"\0").decode()
    assert "malformed ssh-ed25519 key data" in rejected(f'user="u" ssh-ed25519 {trailing}')
    garbage = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x05short").decode()
    assert "not a valid ssh-ed25519 key" in rejected(f'user="u" ssh-ed25519 {garbage}')
    assert "truncated" in rejected('user="u" ssh-ed25519 AAAA')


def test_small_rsa_rejected(keyring: KeyRing) -> None:
    assert "1024 bits" in rejected(f'user="u" {keyring["rsa1024"].pub_line}')


def test_for_user_find_and_duplicates(keyring: KeyRing) -> None:
    ed, ec = keyring["ed25519"], keyring["ecdsa256"]
    text = "\n".join(
        [
            f'user="alice",role="operator" {ed.pub_line}',
            f'user="alice" {ec.pub_line}',
            f'user="bob" {ed.pub_line}',
            f'user="alice",role="viewer" {ed.pub_line}',  # same user and key again
        ]
    )
    result = parse(text)
    assert [e.line_no for e in result.for_user("alice")] == [1, 2]
    assert [e.line_no for e in result.for_user("bob")] == [3]
    assert result.for_user("carol") == ()
    found = result.find("alice", ed.blob)
    assert found is not None
    assert found.role == "operator"
    assert result.find("bob", ec.blob) is None
    (dup,) = result.rejected
    assert dup.line_no == 4
    assert "duplicate" in dup.reason


def test_comments_blank_lines_and_crlf(ed: str) -> None:
    text = f'\n# comment\n   # indented comment\n\t\r\nuser="u" {ed}\r\n\n'
    result = parse(text)
    assert result.rejected == ()
    assert [e.line_no for e in result.entries] == [5]


def test_load_authorized_keys_file_checks(tmp_path: Path, ed: str) -> None:
    p = tmp_path / "authorized_keys"
    p.write_text(f'user="u" {ed}\nbogus line\n')
    p.chmod(0o644)
    result = keys.load_authorized_keys(p)
    assert len(result.entries) == 1
    assert [r.line_no for r in result.rejected] == [2]
    p.chmod(0o664)
    with pytest.raises(InsecureFileError):
        keys.load_authorized_keys(p)


@pytest.mark.parametrize("spec", GOOD_KEYS)
def test_format_key_line_round_trip(keyring: KeyRing, spec: str) -> None:
    kp = keyring[spec]
    line = keys.format_key_line("alice", "operator", kp.pub_line + "\n")
    assert line == f'user="alice",role="operator" {kp.pub_line}'
    entry = one(line)
    assert (entry.user, entry.role, entry.blob) == ("alice", "operator", kp.blob)


def test_format_key_line_without_comment(keyring: KeyRing) -> None:
    kp = keyring["ed25519"]
    line = keys.format_key_line("bob", "viewer", f"{kp.key_type} {kp.b64}")
    assert line == f'user="bob",role="viewer" {kp.key_type} {kp.b64}'


def test_format_key_line_refuses_bad_input(keyring: KeyRing) -> None:
    ed = keyring["ed25519"].pub_line
    with pytest.raises(ConfigError, match="1024 bits"):
        keys.format_key_line("alice", "viewer", keyring["rsa1024"].pub_line)
    with pytest.raises(ConfigError, match="not a usable public key"):
        keys.format_key_line("alice", "viewer", "ssh-ed25519 AAAAnotakey")
    with pytest.raises(ConfigError, match="not a usable public key"):
        keys.format_key_line("alice", "viewer", f'command="x" {ed}')
    with pytest.raises(ConfigError, match="user"):
        keys.format_key_line("Alice", "viewer", ed)
    with pytest.raises(ConfigError, match="role"):
        keys.format_key_line("alice", "root", ed)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one public key line"):
        keys.format_key_line("alice", "viewer", f"{ed}\n{ed}")
