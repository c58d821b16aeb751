"""Server time of one full login vs one raw ed25519 verification, side by side in one run.

A full login = lockout check, nonce take, SSHSIG parse + verify, authorized_keys lookup,
TOTP check + persisted step (fsync), session creation, audit record (fsync). The ratio
shows what the login costs over its unavoidable signature check.

    .venv/bin/python bench/login.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyotp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from opsconsole.auth import signer
from opsconsole.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench.record import figure
from testkit.support import console_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = ed25519.Ed25519PrivateKey.generate()
        priv = d / "id"
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
        pub_line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        (d / "authorized_keys").write_text(f'user="bench",role="operator" {pub_line.decode()}\n')
        secret = pyotp.random_base32(32)
        (d / "totp_secrets").write_text(f"bench {secret}\n")
        for f in ("authorized_keys", "totp_secrets", "id"):
            (d / f).chmod(0o600)
        clock = Clock()
        console = Console(console_settings(d, d), clock=clock)  # services only; no thread needed
        auth = console.auth
        pkey = signer.load_private_key(priv, None)

        login_times, verify_times = [], []
        raw_pub = key.public_key()
        for _ in range(n):
            clock.now += 30  # a fresh TOTP step for every login (each is single-use)
            ch = auth.challenge("bench", origin="http://127.0.0.1:8780", source="127.0.0.1")
            sig = signer.sign(ch.message.encode(), pkey)
            code = pyotp.TOTP(secret).at(clock.now)
            t0 = time.perf_counter()
            auth.login(user="bench", nonce=ch.nonce, signature=sig, totp=code, source="127.0.0.1")
            login_times.append(time.perf_counter() - t0)
            # Interleaved: the raw verification of a signature over the same message.
            raw_sig = key.sign(ch.message.encode())
            t0 = time.perf_counter()
            raw_pub.verify(raw_sig, ch.message.encode())
            verify_times.append(time.perf_counter() - t0)
        console.audit.close()

    login_med, verify_med = statistics.median(login_times), statistics.median(verify_times)
    print(f"logins measured:            {n}")
    print(f"median full login (server): {login_med * 1e3:8.3f} ms")
    print(f"median raw ed25519 verify:  {verify_med * 1e3:8.3f} ms")
    print(f"ratio login / verify:       {login_med / verify_med:8.1f}x")
    figure("login.server_ms", login_med * 1e3, "ms")
    figure("login.over_verify", login_med / verify_med, "×")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
