"""`opsconsole demo` run as a process, driven by the operator's tools: curl with `ssh-keygen -Y sign`
(scripts/curl-login.sh), and the `opsconsole leaks` verbs against `--leak-interval`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyotp

from testkit import REPO
from testkit.demo_process import run_demo, seed_token_cache
from testkit.support import call, run_cli


def test_demo_and_the_curl_recipe(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`opsconsole demo`, then only curl + ssh-keygen -Y sign log in (scripts/curl-login.sh)."""
    state = tmp_path / "demo"
    runner = run_demo(state, log_in=False, env=cli_env)
    demo = next(runner)
    try:
        info = demo.info
        assert set(info) == {
            "url",
            "user",
            "identity",
            "totp_secret",
            "authorized_keys",
            "app_url",
            "ssh_port",
        }
        assert (state / "demo.json").stat().st_mode & 0o777 == 0o600
        assert call(info["app_url"], "GET", "/leak")[1] == {"leaked": 1}
        script = REPO / "scripts" / "curl-login.sh"
        code = pyotp.TOTP(info["totp_secret"]).now()
        token = subprocess.run(
            ["bash", str(script), info["url"], info["user"], info["identity"], code],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        assert call(info["url"], "GET", "/ops/whoami", token=token) == (
            200,
            {"user": "demo", "role": "operator", "expires_in": 900},
        )
        assert call(info["url"], "GET", "/ops/whoami")[0] == 401
        assert call(info["url"], "GET", "/ops/whoami", token=token[::-1])[0] == 401
    finally:
        next(runner, None)  # SIGINT, as Ctrl-C
    assert demo.proc.returncode == 0, demo.errors
    assert info["url"] in demo.output and "opsconsole login" in demo.output and "stopped" in demo.output


def test_demo_leak_interval_starts_the_detector(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # README "The leak detector": the demo run with --leak-interval, then `leaks URL report`
    runner = run_demo(tmp_path / "demo", env=cli_env, args=("--leak-interval", "1"))
    demo = next(runner)
    try:
        seed_token_cache(Path(cli_env["XDG_CONFIG_HOME"]), demo)
        report = run_cli("leaks", demo.url, "report", env=cli_env)
        assert report.returncode == 0, report.stderr
        assert "running every 1 s" in report.stdout
        stopped = run_cli("leaks", demo.url, "stop", env=cli_env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    finally:
        next(runner, None)
    assert demo.proc.returncode == 0, demo.errors
    assert "Leak detector (running every 1 s)" in demo.output
    assert f"opsconsole leaks {demo.url} report" in demo.output
