"""The README's quick start, run as written against a demo process (README "Two commands").

The shell block after "In another terminal:" is read from README.md and each line is run
from a directory holding the demo's `.opsconsole-demo/`, with the demo's own URL in place of
the README's port and the TOTP code given with `--totp` (the CLI would ask for it).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pyotp

from testkit import REPO
from testkit.demo_process import run_demo

README = REPO / "README.md"


def quick_start_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"In another terminal:\n\n```sh\n(.*?)```", text, re.S)
    assert block is not None, "README: the quick start's shell block after 'In another terminal:'"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    lines = quick_start_lines()
    assert any(" login " in line for line in lines) and any(" audit verify " in line for line in lines)
    cli = str(Path(sys.executable).with_name("opsconsole"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["BROWSER"] = "true"  # `open` hands the link to a browser command: one that does nothing
    for demo in run_demo(tmp_path / ".opsconsole-demo", log_in=False):
        for line in lines:
            words = shlex.split(line.replace("http://127.0.0.1:8780", demo.url))
            assert words[0] == ".venv/bin/opsconsole", line
            if words[1] == "login":
                words += ["--totp", pyotp.TOTP(demo.info["totp_secret"]).now()]
            run = subprocess.run(
                [cli, *words[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
            if words[1] == "whoami":
                assert "demo" in run.stdout, run.stdout
            if words[1] == "dump":
                assert "MainThread" in run.stdout, run.stdout
