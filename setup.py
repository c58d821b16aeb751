"""setuptools shim.

All metadata lives in pyproject.toml. This file exists for the build step of the web
assets (xterm.js from npm, built into opsconsole/static at install time), which arrives
with the browser terminal.
"""

from setuptools import setup

setup()
