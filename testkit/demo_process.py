"""The demo as a separate process, logged in once (TOTP steps are single use)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyotp

from testkit.support import call, ssh_keygen_sign, wait_until


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    token: str
    output: str = ""
    errors: str = ""

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def get(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        return call(self.url, "GET", path, token=token or self.token)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return call(self.url, "POST", path, {} if body is None else body, token=self.token)

    def hit_app(self, path: str, times: int) -> None:
        """``times`` requests to the demo app over one keep-alive connection."""
        parts = urllib.parse.urlsplit(self.info["app_url"])
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            for _ in range(times):
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
        finally:
            conn.close()


def seed_token_cache(xdg_config_home: Path, demo: Demo) -> None:
    """Put the demo's token where the CLI looks for it (as ``opsconsole login`` would)."""
    cache = xdg_config_home / "opsconsole" / "tokens.json"
    if not cache.exists():
        cache.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        cache.write_text(json.dumps({demo.url: {"token": demo.token, "user": demo.info["user"]}}))
        cache.chmod(0o600)


def login(info: dict[str, Any]) -> str:
    _, ch = call(info["url"], "POST", "/ops/auth/challenge", {"user": info["user"]})
    body = {
        "user": info["user"],
        "nonce": ch["nonce"],
        "signature": ssh_keygen_sign(Path(info["identity"]), ch["message"]),
        "totp": pyotp.TOTP(info["totp_secret"]).now(),
    }
    status, answer = call(info["url"], "POST", "/ops/auth/login", body)
    assert status == 200, answer
    return str(answer["token"])


def run_demo(
    state: Path,
    *,
    log_in: bool = True,
    env: dict[str, str] | None = None,
    stderr: IO[str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[Demo]:
    """Start ``opsconsole demo`` on free ports; stop it with SIGINT (as Ctrl-C) afterwards.

    ``args`` are more ``opsconsole demo`` options. With ``log_in=False`` the token is empty
    (each TOTP step logs in only once).
    The process's output is in ``demo.output`` once the generator has finished; its stderr
    in ``demo.errors``, or in the file ``stderr`` if given (a pipe read only at the end
    could fill and block the demo).
    """
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsconsole",
            "demo",
            "--state",
            str(state),
            "--port",
            "0",
            "--app-port",
            "0",
            "--ssh-port",
            "0",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
    )
    demo: Demo | None = None
    try:
        wait_until(
            lambda: (state / "demo.json").exists() or proc.poll() is not None, 30, "demo.json", interval=0.05
        )
        assert proc.poll() is None, proc.communicate()
        info = json.loads((state / "demo.json").read_text())
        demo = Demo(proc, info, login(info) if log_in else "")
        yield demo
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if demo is not None:
            demo.output, demo.errors = out, err or ""
