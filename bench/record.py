"""Machine-readable figures for the table in bench/README.md.

Each script prints its report for people as before, and calls :func:`figure` once for each
figure the table shows. That prints one line ``BENCH name=… value=… unit=… goal=…`` and, when
``BENCH_RESULTS`` names a file (``make bench`` sets it), appends the same line there;
``bench/table.py`` reads that file and rewrites the table.
"""

from __future__ import annotations

import os
import re

LINE = re.compile(r"^BENCH name=(?P<name>\S+) value=(?P<value>\S+) unit=(?P<unit>\S*) goal=(?P<goal>.*)$")


def figure(name: str, value: float, unit: str, goal: str = "") -> str:
    """Print (and record) one figure; ``name`` is ``script.what``, ``unit`` has no spaces."""
    if not re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_.]+", name) or " " in unit:
        raise ValueError(f"bad figure name {name!r} or unit {unit!r}")
    line = f"BENCH name={name} value={value:.4g} unit={unit} goal={goal}"
    print(line, flush=True)
    path = os.environ.get("BENCH_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line
