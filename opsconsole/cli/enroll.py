"""``opsconsole enroll``: add an operator's key line and a fresh TOTP secret.

Runs on the operator's or admin's machine, against the keys directory a console reads
(a running console picks the change up at the next login).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import segno

from opsconsole.auth import keys, totp
from opsconsole.auth.principal import Role
from opsconsole.errors import ConfigError
from opsconsole.private_files import ensure_private_dir, read_protected, write_private

USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


@dataclass(frozen=True, slots=True)
class Enrolment:
    user: str
    role: Role
    key_line: str
    otpauth_uri: str
    qr: str  # the URI as a QR code drawn with terminal block characters


def _read_or_empty(path: Path, *, secret: bool) -> str:
    return read_protected(path, secret=secret) if path.exists() else ""


def enroll(user: str, public_key: str, *, role: Role, keys_dir: Path, reset_totp: bool = False) -> Enrolment:
    """Add ``public_key`` (a line or a .pub path) for ``user``; raises ConfigError."""
    if not USER_RE.fullmatch(user):
        raise ConfigError(f"user name {user!r} must match {USER_RE.pattern}")
    pub_path = Path(public_key)
    line = pub_path.read_text().strip() if pub_path.is_file() else public_key.strip()
    key_line = keys.format_key_line(user, role, line)
    ensure_private_dir(keys_dir)
    ak_path, secrets_path = keys_dir / "authorized_keys", keys_dir / "totp_secrets"
    ak_text = _read_or_empty(ak_path, secret=False)
    secrets_text = _read_or_empty(secrets_path, secret=True)
    blob = keys.parse_authorized_keys(key_line, source="new key").entries[0].blob
    if keys.parse_authorized_keys(ak_text, source=str(ak_path)).find(user, blob) is not None:
        raise ConfigError(f"{user} already has this key in {ak_path}")
    existing = totp.parse_secrets(secrets_text, source=str(secrets_path))
    if user in existing and not reset_totp:
        raise ConfigError(
            f"{user} already has a TOTP secret in {secrets_path}; pass --reset-totp to replace it"
        )
    secret = totp.new_secret()
    kept = [ln for ln in secrets_text.splitlines() if ln.split()[:1] != [user]]
    # Secrets first: a key line without its secret could not log in anyway.
    write_private(secrets_path, "\n".join([*kept, f"{user} {secret}"]) + "\n")
    write_private(
        ak_path, ak_text + ("" if ak_text.endswith("\n") or not ak_text else "\n") + key_line + "\n"
    )
    uri = totp.provisioning_uri(secret, user=user)
    return Enrolment(user, role, key_line, uri, qr_text(uri))


def qr_text(data: str) -> str:
    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()
