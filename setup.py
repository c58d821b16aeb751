"""setuptools shim plus the build step of the web assets.

All metadata lives in pyproject.toml. This file adds one command, ``build_web``: it installs
the browser libraries pinned in web/package-lock.json (xterm.js for the terminal, uPlot for
the memory dashboard's charts) with ``npm ci`` and copies the few files the web console
loads into opsconsole/static/vendor/, which the console serves
at /ops/ui/vendor/. Nothing is fetched at run time and nothing comes from a CDN.

It runs on every install path:

* ``pip install .`` builds a wheel: ``build`` runs its sub-commands, ``build_web`` first,
  then ``build_py`` copies opsconsole/static/** into the wheel as package data.
* ``pip install -e .`` (PEP 660): setuptools' ``editable_wheel`` runs the sub-commands of
  ``build`` too. ``build_web`` is one of them on purpose: ``editable_wheel`` runs a
  customised ``build_py`` in a try/except that turns any failure into a warning, which would
  hide a missing npm; a sub-command of its own fails the install as it should.
* From an sdist, which ships the built vendor files but not web/, there is nothing to build.
"""

from __future__ import annotations

import filecmp
import hashlib
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError, FileError

HERE = Path(__file__).resolve().parent
WEB = HERE / "web"
LOCK = WEB / "package-lock.json"
NODE_MODULES = WEB / "node_modules"
VENDOR = HERE / "opsconsole" / "static" / "vendor"
# npm ci removes node_modules first, so this stamp exists only after a complete install of
# the lock whose hash it holds.
STAMP = NODE_MODULES / ".opsconsole-lock.sha256"

# What the page loads, and the licence that has to travel with it: source in node_modules
# -> name in opsconsole/static/vendor/.
VENDOR_FILES = {
    "@xterm/xterm/lib/xterm.js": "xterm.js",
    "@xterm/xterm/css/xterm.css": "xterm.css",
    "@xterm/xterm/LICENSE": "LICENSE.xterm",
    "@xterm/addon-fit/lib/addon-fit.js": "addon-fit.js",
    "@xterm/addon-fit/LICENSE": "LICENSE.addon-fit",
    # uPlot draws the memory dashboard's charts (MIT, no dependencies, ~50 KB minified).
    "uplot/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "uplot/dist/uPlot.min.css": "uPlot.min.css",
    "uplot/LICENSE": "LICENSE.uplot",
}


class build_web(Command):
    description = "npm ci the pinned xterm.js (web/package-lock.json); copy it to opsconsole/static/vendor"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        if not LOCK.exists():
            # An sdist: it carries the vendor files built when it was made, and no web/.
            missing = [name for name in VENDOR_FILES.values() if not (VENDOR / name).exists()]
            if missing:
                raise FileError(
                    f"{LOCK} is missing and so are the built web assets {missing} in {VENDOR}; "
                    "build from a checkout of the repository"
                )
            self.announce("build_web: no web/package-lock.json; using the vendor files shipped", logging.INFO)
            return
        self._npm_ci()
        self._copy_vendor_files()

    def _npm_ci(self) -> None:
        lock_hash = hashlib.sha256(LOCK.read_bytes()).hexdigest()
        if STAMP.exists() and STAMP.read_text().strip() == lock_hash and self._sources_present():
            self.announce("build_web: web/node_modules matches web/package-lock.json", logging.INFO)
            return
        npm = shutil.which("npm")
        if npm is None:
            raise ExecError(
                "npm was not found on PATH. Installing opsconsole from source builds its browser "
                "terminal (xterm.js, pinned in web/package-lock.json) with `npm ci`: install Node.js "
                "and npm (Debian: apt-get install npm), then install again."
            )
        cmd = [npm, "ci", "--no-audit", "--no-fund"]
        self.announce(f"build_web: running {' '.join(cmd)} in {WEB}", logging.INFO)
        try:
            subprocess.run(cmd, cwd=WEB, check=True)
        except subprocess.CalledProcessError as exc:
            raise ExecError(f"`npm ci` in {WEB} failed with exit status {exc.returncode}") from None
        if not self._sources_present():
            raise FileError(f"npm ci finished but {WEB} lacks some of {sorted(VENDOR_FILES)}")
        STAMP.write_text(lock_hash + "\n")

    @staticmethod
    def _sources_present() -> bool:
        return all((NODE_MODULES / src).is_file() for src in VENDOR_FILES)

    def _copy_vendor_files(self) -> None:
        VENDOR.mkdir(parents=True, exist_ok=True)
        for src, name in VENDOR_FILES.items():
            source, target = NODE_MODULES / src, VENDOR / name
            # Unchanged files keep their mtime, so rebuilds stay quiet and caches stay valid.
            if not target.exists() or not filecmp.cmp(source, target, shallow=False):
                shutil.copyfile(source, target)
                self.announce(f"build_web: {src} -> {target.relative_to(HERE)}", logging.INFO)
        # The directory is generated: whatever else is in it is left over from another pin.
        for stale in VENDOR.iterdir():
            if stale.name not in VENDOR_FILES.values():
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()


class build_with_web(build):
    # First, so that build_py (wheels) and editable_wheel see the vendor files.
    sub_commands: ClassVar[list[tuple[str, Any]]] = [("build_web", None), *build.sub_commands]


class build_py_with_web(build_py):
    def run(self) -> None:
        # Also when build_py runs on its own (`setup.py build_py`); a command runs only once
        # per invocation, so running it from `build` as well costs nothing.
        self.run_command("build_web")
        super().run()


setup(cmdclass={"build_web": build_web, "build": build_with_web, "build_py": build_py_with_web})
