"""The authorized keys file: OpenSSH ``authorized_keys`` syntax with our own options.

A line is ``options keytype base64 [comment]``, for example::

    user="alice",role="operator",from="10.0.0.0/8",expiry-time="20300101Z" ssh-ed25519 AAAA... alice@laptop

Only ``user`` (required), ``role``, ``from`` and ``expiry-time`` are understood. Any
other option — including OpenSSH's own ``command=``, ``no-pty`` or ``restrict`` — makes
the whole line rejected: a restriction we do not enforce must never turn into a key
that works without it. Rejected lines are logged and returned so they can be audited.
Parsing keeps no state: it runs on whichever thread reads the file (``OperatorStore`` at
each login, on the console IO loop or an SSH worker thread; ``enroll`` in the CLI).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import paramiko

from opsconsole import log, private_files
from opsconsole.auth.principal import ROLES, Role
from opsconsole.errors import ConfigError

_log = log.get("auth.keys")

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

KEY_TYPES = frozenset(
    {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"}
)
MIN_RSA_BITS = 2048
# OpenSSH's own ceiling; larger keys only make verification a CPU sink.
MAX_RSA_BITS = 16384

_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# name or name="value"; inside the quotes only \" is an escape, as in OpenSSH. The
# possessive loop keeps a trailing backslash from being re-read as a literal.
_OPTION_RE = re.compile(r'([A-Za-z0-9_-]+)(?:="((?:\\"|[^"])*+)")?')
# ASCII digits only (re's \d would take any Unicode digit, which OpenSSH does not).
_EXPIRY_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:([0-9]{2})([0-9]{2})([0-9]{2})?)?([Zz]?)")
_KNOWN_OPTIONS = ("user", "role", "from", "expiry-time")


class _Rejected(Exception):
    """A line is unusable; the message is the reason that gets logged."""


def fingerprint_of(blob: bytes) -> str:
    """``SHA256:...`` of a public key blob, exactly as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """One accepted line of the keys file."""

    user: str
    role: Role
    key_type: str
    blob: bytes
    comment: str
    from_networks: tuple[Network, ...]  # empty: any source address
    expires_at: float | None  # UTC epoch seconds
    line_no: int

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.blob)

    def allows_source(self, addr: str) -> bool:
        if not self.from_networks:
            return True
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False  # an address we cannot read matches nothing: fail closed
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.from_networks)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public_key(self) -> paramiko.PKey:
        return paramiko.PKey.from_type_string(self.key_type, self.blob)


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A skipped line and why, for the audit log."""

    line_no: int
    reason: str


@dataclass(frozen=True, slots=True)
class AuthorizedKeys:
    """The parsed keys file: accepted entries in file order, and the skipped lines."""

    entries: tuple[AuthorizedKey, ...]
    rejected: tuple[RejectedLine, ...]

    def for_user(self, user: str) -> tuple[AuthorizedKey, ...]:
        return tuple(e for e in self.entries if e.user == user)

    def find(self, user: str, blob: bytes) -> AuthorizedKey | None:
        for entry in self.entries:
            if entry.user == user and entry.blob == blob:
                return entry
        return None


def _parse_options(line: str) -> tuple[dict[str, str], str]:
    """Parse the comma-separated options that start ``line``; return them and the rest."""
    options: dict[str, str] = {}
    pos = 0
    while True:
        m = _OPTION_RE.match(line, pos)
        if m is None:
            raise _Rejected(f"bad option syntax at column {pos + 1}")
        name, value = m.group(1).lower(), m.group(2)  # OpenSSH: names are case-insensitive
        if name not in _KNOWN_OPTIONS:
            raise _Rejected(f"unsupported option {name!r} (only {', '.join(_KNOWN_OPTIONS)} are accepted)")
        if value is None:
            if line.startswith('="', m.end()):
                raise _Rejected(f"unterminated quote in option {name!r}")
            raise _Rejected(f"option {name!r} needs a value in double quotes")
        if name in options:
            raise _Rejected(f"option {name!r} given twice")
        options[name] = value.replace('\\"', '"')
        pos = m.end()
        if line[pos : pos + 1] != ",":
            break
        pos += 1
    rest = line[pos:]
    if not rest.strip():
        raise _Rejected("missing key type and key data")
    if rest[0] not in " \t":
        raise _Rejected(f"bad option syntax at column {pos + 1}")
    return options, rest.strip()


def _parse_from(value: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in value.split(","):
        if entry.startswith("!"):
            raise _Rejected(f"negated from= entry {entry!r} is not supported")
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError:
            raise _Rejected(f"from= accepts only IP addresses and CIDRs, not {entry!r}") from None
    return tuple(networks)


def _parse_expiry(value: str) -> float:
    m = _EXPIRY_RE.fullmatch(value)
    if m is None:
        raise _Rejected(f"expiry-time {value!r} is not YYYYMMDD[HHMM[SS]][Z]")
    year, month, day, hour, minute, second, zulu = m.groups()
    try:
        when = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
        # As in OpenSSH: a trailing Z means UTC, otherwise the server's local time. A local
        # time near year 1 or 9999 has no timestamp (ValueError, or OverflowError/OSError
        # from the platform's mktime).
        return when.replace(tzinfo=dt.UTC).timestamp() if zulu else when.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise _Rejected(f"expiry-time {value!r}: {exc}") from None


def _blob_type(blob: bytes) -> str:
    if len(blob) < 4:
        raise _Rejected("key blob is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if len(blob) < 4 + length:
        raise _Rejected("key blob is truncated")
    return blob[4 : 4 + length].decode("ascii", errors="replace")


def _parse_key(rest: str) -> tuple[str, bytes, str]:
    """``keytype base64 [comment]`` -> (key_type, blob, comment), validated with paramiko."""
    fields = rest.split(None, 2)
    if len(fields) < 2:
        raise _Rejected("missing key type or key data")
    key_type, b64 = fields[0], fields[1]
    comment = fields[2].strip() if len(fields) == 3 else ""
    if key_type not in KEY_TYPES:
        raise _Rejected(f"unsupported key type {key_type!r}")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected("key data is not valid base64") from None
    inner = _blob_type(blob)
    if inner != key_type:
        raise _Rejected(f"key type {key_type} does not match the key's own type {inner!r}")
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
        canonical = key.asbytes()
    except Exception:  # paramiko raises a zoo of types (SSHException, ValueError, nacl errors...)
        raise _Rejected(f"not a valid {key_type} key") from None
    # Re-encoding must give the same bytes: trailing data or odd encodings are refused,
    # so one key has exactly one blob (and one fingerprint).
    if canonical != blob:
        raise _Rejected(f"malformed {key_type} key data (it does not re-encode to the same bytes)")
    if key_type == "ssh-rsa" and not MIN_RSA_BITS <= key.get_bits() <= MAX_RSA_BITS:
        raise _Rejected(f"RSA key has {key.get_bits()} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted")
    return key_type, blob, comment


def _parse_line(line: str, line_no: int) -> AuthorizedKey:
    first, *more = line.split(None, 2)
    if first in KEY_TYPES:
        raise _Rejected('no options; user="..." is required')
    if "=" not in first and more and more[0].startswith("AAAA"):
        # Looks like "keytype base64" with a type we do not know, not like options.
        raise _Rejected(f"unsupported key type {first!r}")
    options, rest = _parse_options(line)
    key_type, blob, comment = _parse_key(rest)
    user = options.get("user")
    if user is None:
        raise _Rejected('missing required option user="..."')
    if not _USER_RE.fullmatch(user):
        raise _Rejected(f"user {user!r} must match {_USER_RE.pattern}")
    role = options.get("role", "viewer")  # least privilege unless stated
    if role not in ROLES:
        raise _Rejected(f"role {role!r} is not viewer or operator")
    networks = _parse_from(options["from"]) if "from" in options else ()
    expiry = options.get("expiry-time")
    return AuthorizedKey(
        user=user,
        role="operator" if role == "operator" else "viewer",
        key_type=key_type,
        blob=blob,
        comment=comment,
        from_networks=networks,
        expires_at=_parse_expiry(expiry) if expiry is not None else None,
        line_no=line_no,
    )


def parse_authorized_keys(text: str, *, source: str) -> AuthorizedKeys:
    """Parse a whole file; bad lines are skipped, logged and listed in ``rejected``."""
    entries: list[AuthorizedKey] = []
    rejected: list[RejectedLine] = []
    seen: dict[tuple[str, bytes], int] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = _parse_line(line, line_no)
            first = seen.setdefault((entry.user, entry.blob), line_no)
            if first != line_no:
                # Two lines for one user and key could disagree on role or from=;
                # refusing the later one keeps the first, as OpenSSH would.
                raise _Rejected(f"duplicate key for user {entry.user!r} (first on line {first})")
        except _Rejected as exc:
            _log.warning("%s:%d: skipped: %s", source, line_no, exc)
            rejected.append(RejectedLine(line_no, str(exc)))
            continue
        entries.append(entry)
    return AuthorizedKeys(entries=tuple(entries), rejected=tuple(rejected))


def load_authorized_keys(path: Path) -> AuthorizedKeys:
    """Read ``path`` (refusing symlinks and files others may write) and parse it."""
    keys = parse_authorized_keys(private_files.read_protected(path, secret=False), source=str(path))
    _log.info("%s: %d keys loaded, %d lines skipped", path, len(keys.entries), len(keys.rejected))
    return keys


def parse_public_key(public_key_line: str) -> tuple[str, bytes, str]:
    """Validate an OpenSSH public key line (``ssh-ed25519 AAAA... comment``).

    Returns (key_type, blob, comment); raises ``ConfigError`` on anything we would not
    accept in the keys file.
    """
    text = public_key_line.strip()
    if "\n" in text or "\r" in text:
        raise ConfigError("expected exactly one public key line")
    try:
        return _parse_key(text)
    except _Rejected as exc:
        raise ConfigError(f"not a usable public key: {exc}") from None


def format_key_line(user: str, role: Role, public_key_line: str) -> str:
    """Build a keys-file line for ``user`` from their ``.pub`` line (for ``enroll``)."""
    if not _USER_RE.fullmatch(user):
        raise ConfigError(f"user {user!r} must match {_USER_RE.pattern}")
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not viewer or operator")
    key_type, blob, comment = parse_public_key(public_key_line)
    b64 = base64.b64encode(blob).decode("ascii")
    line = f'user="{user}",role="{role}" {key_type} {b64}'
    if comment:
        line += f" {comment}"
    try:
        _parse_line(line, 1)  # the same parser the server runs: what we write, it loads
    except _Rejected as exc:
        raise ConfigError(f"cannot build a key line: {exc}") from None
    return line
