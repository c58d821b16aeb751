"""Everything in this folder is an acceptance test, end to end: it needs npm, Chromium, OpenSSH's
``ssh`` client, the demo or another process of its own (a host, an attacker, a pip install), or
it is a soak of many sessions or samples. The folder is the marker: ``make test-fast`` deselects
it with ``-m "not acceptance"``, ``make test`` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


# The hook sees every collected item, not only this folder's: mark those that live here, and run
# them after the rest, so a quick test fails first and the soaks measure a process already warm
# (as they always have: their RSS slack assumes jedi's caches and malloc's arenas are in use).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    for item in ours:
        item.add_marker(pytest.mark.acceptance)
    items[:] = [item for item in items if not item.path.is_relative_to(HERE)] + ours
