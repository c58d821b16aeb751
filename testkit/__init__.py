"""Helpers shared by the tests and the benchmarks: real keys, clients, processes, a fake clock.

Not part of the shipped package (pyproject's package discovery takes ``opsconsole*`` only).
"""

from pathlib import Path

# The repository's root: the tests read README.md, pyproject.toml and docs/ from it and run
# child processes in it.
REPO = Path(__file__).resolve().parent.parent
