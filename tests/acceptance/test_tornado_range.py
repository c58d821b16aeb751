"""The websocket gate and frame reader on the oldest Tornado pyproject.toml accepts.

The rest of the suite runs on the newest (what ``pip install`` picks). This test installs the
lower bound named in pyproject.toml into a temporary directory and reruns
tests/transport/http/test_ws_gate.py and tests/transport/http/test_ws_protocol.py in a child
process with that directory first on ``sys.path``, so the bound is proved, not assumed, and
cannot drift from the file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testkit import REPO

ROOT = REPO
FILES = ["tests/transport/http/test_ws_gate.py", "tests/transport/http/test_ws_protocol.py"]


def lower_bound() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = [m.group(1) for d in deps if (m := re.fullmatch(r"tornado>=([0-9.]+)", d.replace(" ", "")))]
    assert len(bounds) == 1, f"pyproject.toml must name tornado>=X once: {deps}"
    return bounds[0]


@pytest.mark.slow
def test_gate_and_frames_on_the_oldest_supported_tornado(tmp_path: Path) -> None:
    oldest = lower_bound()
    target = tmp_path / f"tornado-{oldest}"
    pip_args = ["install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target", str(target)]
    pip = subprocess.run(
        [sys.executable, "-m", "pip", *pip_args, f"tornado=={oldest}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if pip.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"pip could not install tornado=={oldest} in CI:\n{pip.stderr[-2000:]}")
        pytest.skip(
            f"NOT PROVED: tornado=={oldest} (the lower bound) could not be installed, so the gate "
            f"was not run on it; is the package registry reachable? {pip.stderr.strip()[-300:]}"
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    version = subprocess.run(
        [sys.executable, "-c", "import tornado; print(tornado.version)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert version == oldest, f"the child imported tornado {version}, not {oldest}"
    run = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, f"on tornado {oldest}:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert re.search(r"\b\d+ passed\b", run.stdout) and " failed" not in run.stdout, run.stdout[-2000:]
