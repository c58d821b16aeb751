"""``opsconsole login``: challenge → SSHSIG (ssh-agent or key file) → TOTP → cached token.

Runs in the operator's process.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from opsconsole.auth import signer as keysign
from opsconsole.cli.client import Client, config_dir, normalize
from opsconsole.errors import ClientError, OpsConsoleError
from opsconsole.private_files import ensure_private_dir, read_protected, write_private

# How long a code the console accepted stays spent, as far as this client can tell: the
# console accepts a code for its step ±1 (30 s each) and never a step twice.
REUSE_SECONDS = 90.0
REUSED = "this code was already used; wait for the next one (each TOTP code logs in once)"

# AgentKey is a PKey subclass in paramiko, so one type covers both.
Signer = paramiko.PKey


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    role: str
    expires_in: int


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_message(message: str, *, user: str, url: str) -> None:
    """Refuse to sign a message made for another user, purpose or origin.

    A hostile server could otherwise hand us a message minted by the real console and
    relay our signature there.
    """
    lines = dict(line.split(": ", 1) for line in message.splitlines()[1:] if ": " in line)
    expected = {"purpose": "login", "user": user, "origin": origin_of(url)}
    for key, value in expected.items():
        if lines.get(key) != value:
            raise ClientError(
                f"refusing to sign: the challenge names {key} {lines.get(key)!r}, not {value!r}"
            )


def choose_signer(identity: Path | None, ask_passphrase: Callable[[str], str] = getpass.getpass) -> Signer:
    """The agent's key matching ``identity`` (or its first key), else the key file itself."""
    wanted = None
    if identity is not None:
        pub = identity if identity.suffix == ".pub" else identity.with_name(identity.name + ".pub")
        if pub.exists():
            wanted = keysign.public_blob_of(pub.read_text())
    try:
        agent_keys = keysign.agent_keys()
    except paramiko.SSHException:
        agent_keys = []
    for key in agent_keys:
        if wanted is None or key.asbytes() == wanted:
            return key
    if identity is None:
        raise ClientError(
            "ssh-agent has no keys (is SSH_AUTH_SOCK set?); add one with ssh-add or use --identity"
        )
    if identity.suffix == ".pub":
        raise ClientError(
            f"the key for {identity} is not in ssh-agent; ssh-add it or pass the private key file"
        )
    try:
        return keysign.load_private_key(identity, None)
    except paramiko.PasswordRequiredException:
        return keysign.load_private_key(identity, ask_passphrase(f"Passphrase for {identity}: "))
    except (OSError, paramiko.SSHException) as exc:
        raise ClientError(f"cannot read {identity}: {exc}") from None


class UsedCodes:
    """``used_totp.json`` (0600, next to the token cache): the last TOTP code each console
    accepted from this user here, as a digest with the time it was sent.

    The console answers a reused code with the same 401 as any failure (it tells an attacker
    nothing); only this client knows it just sent that code, so only it can say so.
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path or config_dir() / "used_totp.json"
        self._clock = clock

    @staticmethod
    def _key(url: str, user: str) -> str:
        return f"{normalize(url)} {user}"

    @staticmethod
    def _digest(url: str, user: str, code: str) -> str:
        return hashlib.sha256(f"{normalize(url)}\0{user}\0{code}".encode()).hexdigest()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(read_protected(self.path, secret=True))
        except (OpsConsoleError, ValueError):  # missing, unsafe or garbled: nothing remembered
            return {}
        return data if isinstance(data, dict) else {}

    def was_used(self, url: str, user: str, code: str) -> bool:
        entry = self._read().get(self._key(url, user))
        if not isinstance(entry, dict):
            return False
        return _fresh(entry, self._clock()) and entry.get("sha256") == self._digest(url, user, code)

    def remember(self, url: str, user: str, code: str) -> None:
        now = self._clock()
        data = {k: v for k, v in self._read().items() if isinstance(v, dict) and _fresh(v, now)}
        data[self._key(url, user)] = {"sha256": self._digest(url, user, code), "at": now}
        ensure_private_dir(self.path.parent)
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True))


def _fresh(entry: dict[str, object], now: float) -> bool:
    at = entry.get("at")
    return isinstance(at, int | float) and 0 <= now - at < REUSE_SECONDS


def login(
    client: Client, *, user: str, key: Signer, totp: Callable[[], str], used: UsedCodes | None = None
) -> LoginResult:
    """Run the login flow against ``client``; raises ClientError (401 on any auth failure).

    With ``used``, a 401 for a code this client had just logged in with says so.
    """
    challenge = client.post("/ops/auth/challenge", {"user": user})
    check_message(challenge["message"], user=user, url=client.url)
    signature = keysign.sign(challenge["message"].encode(), key)
    code = totp().strip()
    try:
        answer = client.post(
            "/ops/auth/login",
            {"user": user, "nonce": challenge["nonce"], "signature": signature, "totp": code},
        )
    except ClientError as exc:
        if used is not None and exc.status == 401 and used.was_used(client.url, user, code):
            raise ClientError(f"{exc}; {REUSED}", status=401) from None
        raise
    if used is not None:
        used.remember(client.url, user, code)
    return LoginResult(answer["token"], answer["role"], int(answer["expires_in"]))
