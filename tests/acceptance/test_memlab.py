"""The demo's ``.heapsnapshot`` export, taken with the CLI and loaded by memlab: the deliberate leak is
the largest object.

memlab (npm, pinned in tests/acceptance/memlab/package-lock.json) is installed by the ``memlab``
fixture with ``npm ci`` into tests/acceptance/memlab/node_modules (ignored by git). Without npm
the test skips loudly (and fails under CI=true).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsconsole.cli.client import TokenCache
from testkit import REPO
from testkit.demo_process import Demo, run_demo

MEMLAB = REPO / "tests" / "acceptance" / "memlab"


@pytest.fixture(scope="session")
def memlab() -> Path:
    """tests/acceptance/memlab's pinned memlab, installed with ``npm ci`` (again only when the lock
    file changed)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        reason = "!!! MEMLAB TEST NOT RUN: npm/node are missing. Install them (`apt-get install npm`) !!!"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    digest = hashlib.sha256((MEMLAB / "package-lock.json").read_bytes()).hexdigest()
    stamp = MEMLAB / "node_modules" / ".opsconsole-lock-sha256"
    if not stamp.is_file() or stamp.read_text() != digest:
        # --ignore-scripts and PUPPETEER_SKIP_DOWNLOAD: memlab depends on puppeteer, whose install
        # script would download a browser; loading a snapshot file needs none.
        env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "true"}
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=MEMLAB,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        stamp.write_text(digest)
    return Path(node)


def memlab_load(node: Path, snapshot: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(node), str(MEMLAB / "check.js"), str(snapshot)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
    return dict(json.loads(line.removeprefix("RESULT ")))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    yield from run_demo(tmp_path_factory.mktemp("demo"))


def test_memlab_loads_the_demo_export_and_the_leak_is_the_largest_object(
    demo: Demo, memlab: Path, tmp_path: Path
) -> None:
    demo.hit_app("/leak", 10_000)
    xdg = tmp_path / "xdg"
    TokenCache(xdg / "opsconsole" / "tokens.json").put(demo.url, demo.token, demo.info["user"])
    dest = tmp_path / "demo.heapsnapshot"
    env = {**os.environ, "XDG_CONFIG_HOME": str(xdg)}
    subprocess.run(
        [sys.executable, "-m", "opsconsole", "dump", demo.url, "heapsnapshot", "-o", str(dest)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    doc = json.loads(dest.read_bytes())
    written = len(doc["nodes"]) // 7
    assert written == doc["snapshot"]["node_count"]

    result = memlab_load(memlab, dest)
    assert result["nodes"] == written
    assert result["edges"] == doc["snapshot"]["edge_count"]
    largest = result["largest"][0]
    assert (largest["name"], largest["type"]) == ("list", "object"), result["largest"]
    assert {"edge": "LEAKED", "type": "property", "from": "opsconsole.host.demo"} in largest["retainers"]
    assert largest["edge_count"] >= 10_000
