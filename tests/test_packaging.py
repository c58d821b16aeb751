"""The Pythons the package claims are exactly the ones CI proves: the classifiers in pyproject.toml,
``requires-python`` and the version list ``.ci/run`` runs the suite on, and the Makefile gives each
interpreter a venv of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

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
