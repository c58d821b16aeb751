"""SSHSIG: the signature format of ``ssh-keygen -Y sign`` (OpenSSH's PROTOCOL.sshsig).

A login proves key possession with an SSHSIG over a server challenge, so clients can
sign with ``ssh-keygen``, an ssh-agent or our CLI. This module parses and verifies;
``signer.py`` (client side) produces signatures with the helpers defined here.

Parsing is strict on purpose: every length is checked, nothing may trail the last
field, and the algorithm policy (no ``ssh-rsa``/SHA-1, no small RSA keys) is applied
here before paramiko sees the signature: older paramiko releases, which our
dependency range allows, verify SHA-1 RSA signatures without complaint.
Functions without state: they run on whichever thread logs in (the console IO loop, an SSH
worker thread) or signs (the CLI).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

import paramiko

from opsconsole.auth.keys import MAX_RSA_BITS, MIN_RSA_BITS
from opsconsole.errors import AuthError

__all__ = [
    "ALLOWED_SIG_ALGS",
    "ARMOR_BEGIN",
    "ARMOR_END",
    "HASH_ALGORITHMS",
    "MAGIC",
    "NAMESPACE",
    "SIG_ALGS_FOR_KEY",
    "VERSION",
    "SshSig",
    "WireReader",
    "armor",
    "check_algorithm",
    "encode_blob",
    "key_type_of",
    "parse_armored",
    "parse_blob",
    "signed_data",
    "split_signature",
    "verify",
    "wire_string",
]

MAGIC = b"SSHSIG"
VERSION = 1
NAMESPACE = "opsconsole"
HASH_ALGORITHMS = frozenset({"sha256", "sha512"})
# Which signature algorithms each key type may use; a signature claiming another
# algorithm than its key's is refused rather than handed to a library to sort out.
# Never "ssh-rsa": that is RSA with SHA-1.
SIG_ALGS_FOR_KEY: dict[str, frozenset[str]] = {
    "ssh-ed25519": frozenset({"ssh-ed25519"}),
    "ecdsa-sha2-nistp256": frozenset({"ecdsa-sha2-nistp256"}),
    "ecdsa-sha2-nistp384": frozenset({"ecdsa-sha2-nistp384"}),
    "ecdsa-sha2-nistp521": frozenset({"ecdsa-sha2-nistp521"}),
    "ssh-rsa": frozenset({"rsa-sha2-256", "rsa-sha2-512"}),
}
ALLOWED_SIG_ALGS: frozenset[str] = frozenset().union(*SIG_ALGS_FOR_KEY.values())
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
# A 16384-bit RSA signature armors to under 6 KiB; anything far larger is not ours.
MAX_ARMORED_CHARS = 32768


def _malformed(detail: str) -> AuthError:
    return AuthError("malformed_signature", detail)


class WireReader:
    """A strict reader of SSH wire types (RFC 4251): truncation is an error, not zeros."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def raw(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise _malformed("truncated")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.raw(4))[0]
        return value

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("string is not UTF-8") from None

    def mpint(self) -> int:
        """A non-negative mpint in its one canonical encoding."""
        b = self.string()
        if b and (b[0] & 0x80 or (b[0] == 0 and (len(b) == 1 or not b[1] & 0x80))):
            raise _malformed("mpint is negative or not minimally encoded")
        return int.from_bytes(b, "big")

    def end(self) -> None:
        if self._pos != len(self._data):
            raise _malformed(f"{len(self._data) - self._pos} trailing bytes")


def wire_string(b: bytes | str) -> bytes:
    """Encode an SSH ``string`` (uint32 length + bytes)."""
    raw = b.encode("utf-8") if isinstance(b, str) else b
    return struct.pack(">I", len(raw)) + raw


@dataclass(frozen=True, slots=True)
class SshSig:
    """A structurally valid SSHSIG blob; nothing about it is verified yet."""

    public_key_blob: bytes
    namespace: str
    hash_algorithm: str
    sig_algorithm: str
    signature: bytes  # the inner ``string alg, string sigbytes`` blob
    raw: bytes  # the whole SSHSIG blob


def split_signature(signature: bytes) -> tuple[str, bytes]:
    """The inner signature is exactly ``string alg, string sigbytes``."""
    r = WireReader(signature)
    alg, sig_bytes = r.text(), r.string()
    r.end()
    return alg, sig_bytes


def parse_blob(b: bytes) -> SshSig:
    """Parse a binary SSHSIG; any deviation from the format is ``malformed_signature``."""
    r = WireReader(b)
    if r.raw(len(MAGIC)) != MAGIC:
        raise _malformed("bad magic")
    version = r.uint32()
    if version != VERSION:
        raise _malformed(f"unsupported version {version}")
    public_key_blob = r.string()
    namespace = r.text()
    if r.string():
        raise _malformed("reserved field is not empty")
    hash_algorithm = r.text()
    signature = r.string()
    r.end()
    if not namespace:
        raise _malformed("empty namespace")
    if hash_algorithm not in HASH_ALGORITHMS:
        raise _malformed(f"unsupported hash algorithm {hash_algorithm!r}")
    sig_algorithm, _ = split_signature(signature)
    return SshSig(public_key_blob, namespace, hash_algorithm, sig_algorithm, signature, b)


def parse_armored(text: str) -> SshSig:
    """Parse the ``-----BEGIN SSH SIGNATURE-----`` text form, whatever its line wrapping."""
    if len(text) > MAX_ARMORED_CHARS:
        raise _malformed("armored signature too long")
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise _malformed("missing SSH SIGNATURE armor")
    body = "".join(lines[1:-1])
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("armored body is not base64") from None
    # The decoder ignores the unused low bits of the last character; OpenSSH refuses them
    # set, and so do we: one signature has one text form.
    if base64.b64encode(blob).decode("ascii") != body:
        raise _malformed("armored body is not canonical base64")
    return parse_blob(blob)


def armor(blob: bytes, *, width: int = 76) -> str:
    """The text form of an SSHSIG blob, as ``ssh-keygen -Y verify`` reads it."""
    body = base64.b64encode(blob).decode("ascii")
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def signed_data(message: bytes, *, namespace: str, hash_algorithm: str) -> bytes:
    """The bytes the key actually signs (PROTOCOL.sshsig, "Signed Data")."""
    if hash_algorithm not in HASH_ALGORITHMS:
        raise _malformed(f"unsupported hash algorithm {hash_algorithm!r}")
    digest = hashlib.new(hash_algorithm, message).digest()
    return (
        MAGIC + wire_string(namespace) + wire_string(b"") + wire_string(hash_algorithm) + wire_string(digest)
    )


def encode_blob(public_key_blob: bytes, *, namespace: str, hash_algorithm: str, signature: bytes) -> bytes:
    """The binary SSHSIG; ``signature`` is the inner ``string alg, string sigbytes`` blob."""
    return (
        MAGIC
        + struct.pack(">I", VERSION)
        + wire_string(public_key_blob)
        + wire_string(namespace)
        + wire_string(b"")
        + wire_string(hash_algorithm)
        + wire_string(signature)
    )


def key_type_of(blob: bytes) -> str:
    """The type string a public key blob starts with."""
    return WireReader(blob).text()


def _check_sig_bytes(key_type: str, sig_bytes: bytes) -> None:
    # paramiko reads these leniently (missing bytes become zeros), so fix their shape here.
    if key_type == "ssh-ed25519" and len(sig_bytes) != 64:
        raise _malformed("ed25519 signature is not 64 bytes")
    if key_type.startswith("ecdsa-"):
        r = WireReader(sig_bytes)
        r.mpint()
        r.mpint()
        r.end()


def check_algorithm(key_type: str, sig_algorithm: str) -> None:
    """Refuse a signature algorithm outside the policy or not matching the key type."""
    if sig_algorithm not in ALLOWED_SIG_ALGS or sig_algorithm not in SIG_ALGS_FOR_KEY.get(
        key_type, frozenset()
    ):
        raise AuthError("disallowed_algorithm", f"{sig_algorithm} with a {key_type} key")


def verify(sig: SshSig, message: bytes, *, expected_blob: bytes, namespace: str = NAMESPACE) -> None:
    """Return if ``sig`` is a valid signature of ``message`` by ``expected_blob``; raise AuthError."""
    if sig.namespace != namespace:
        raise AuthError("wrong_namespace", f"{sig.namespace!r} instead of {namespace!r}")
    if sig.public_key_blob != expected_blob:
        raise AuthError("key_mismatch", "signed by another key")
    key_type = key_type_of(sig.public_key_blob)
    check_algorithm(key_type, sig.sig_algorithm)
    _check_sig_bytes(key_type, split_signature(sig.signature)[1])
    try:
        key = paramiko.PKey.from_type_string(key_type, sig.public_key_blob)
    except Exception:  # paramiko raises many exception types on bad key data
        raise _malformed(f"unreadable {key_type} key") from None
    if key_type == "ssh-rsa" and not MIN_RSA_BITS <= key.get_bits() <= MAX_RSA_BITS:
        raise AuthError("weak_key", f"RSA key of {key.get_bits()} bits")
    data = signed_data(message, namespace=sig.namespace, hash_algorithm=sig.hash_algorithm)
    try:
        ok = key.verify_ssh_sig(data, paramiko.Message(sig.signature))
    except Exception:  # a library error on hostile input is just a failed verification
        ok = False
    if not ok:
        raise AuthError("bad_signature", "signature does not verify")
