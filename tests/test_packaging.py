"""The Pythons the package claims are exactly the ones CI proves: the classifiers in pyproject.toml,
``requires-python`` and the version list ``.ci/run`` runs the suite on, and the Makefile gives each
interpreter a venv of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from testkit import REPO

ROOT = REPO


def _ci_versions() -> list[str]:
    text = (ROOT / ".ci" / "run").read_text()
    found = re.search(r'^VERSIONS=\$\{CI_PYTHON_VERSIONS:-"([0-9. ]+)"\}$', text, re.MULTILINE)
    assert found is not None, 'VERSIONS=${CI_PYTHON_VERSIONS:-"..."} not found in .ci/run'
    return found.group(1).split()


def test_classifiers_are_what_ci_runs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    claimed = [
        c.removeprefix(prefix)
        for c in project["classifiers"]
        if re.fullmatch(r"3\.\d+", c.removeprefix(prefix))
    ]
    versions = _ci_versions()
    assert claimed == versions
    assert project["requires-python"] == f">={versions[0]}"


def test_each_interpreter_gets_its_own_venv() -> None:
    def venv(*args: str) -> str:
        rule = "print-venv: ; @echo $(VENV)"
        # as typed in a shell: not as a sub-make of `make test PYTHON=...`, which passes PYTHON on
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON")}
        return subprocess.run(
            ["make", "-s", "--eval", rule, "print-venv", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert venv() == ".venv"  # `make test` and `make demo` as a newcomer types them
    python = shutil.which("python3")
    assert python is not None
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert venv(f"PYTHON={python}") == f".venv-{version}"


def _build_wheel_from_a_clean_tree(tmp_path: Path, *, include_package_data: bool) -> tuple[str, Path]:
    """Build a wheel from the tracked files alone, as a fresh clone would: static/vendor does not
    exist yet when setuptools discovers packages, build_web makes it afterwards. npm is not run
    again: the tree borrows this checkout's web/node_modules, whose stamp matches the lock."""
    node_modules = ROOT / "web" / "node_modules"
    assert (node_modules / ".opsconsole-lock.sha256").exists(), "the install ran npm ci (setup.py)"
    tree = tmp_path / "tree"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (tree / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / source.relative_to(ROOT))
    (tree / "web" / "node_modules").symlink_to(node_modules)
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    assert "include-package-data = false" in text
    if include_package_data:
        pyproject.write_text(text.replace("include-package-data = false", "include-package-data = true"))
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", wheels, "."],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("opsconsole-*.whl")
    return built.stdout + built.stderr, wheel


@pytest.mark.slow
def test_a_fresh_build_warns_about_nothing_and_ships_the_web_assets(tmp_path: Path) -> None:
    output, wheel = _build_wheel_from_a_clean_tree(tmp_path, include_package_data=False)
    assert "BuildBackendWarning" not in output
    assert "absent from the" not in output
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in ("xterm.js", "xterm.css", "addon-fit.js", "uPlot.iife.min.js", "LICENSE.xterm"):
        assert f"opsconsole/static/vendor/{name}" in names
    assert "opsconsole/static/ui/index.html" in names


@pytest.mark.slow
def test_the_build_check_sees_the_setuptools_warning(tmp_path: Path) -> None:
    # Guards the test above against passing vacuously: setuptools' default does warn here.
    output, _ = _build_wheel_from_a_clean_tree(tmp_path, include_package_data=True)
    assert "Package 'opsconsole.static.vendor' is absent from the `packages` configuration" in output
