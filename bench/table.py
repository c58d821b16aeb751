"""Rewrite the figures table of bench/README.md from the ``BENCH`` lines of a run.

    .venv/bin/python bench/table.py RESULTS [README]

RESULTS holds the lines :func:`bench.record.figure` wrote (``make bench`` collects them). A row
is keyed by the figure's name: a measured figure replaces its row (value, goal, and the date and
load it was measured at); rows of scripts not run this time keep their last figure; new names
are added at the end. Only the text between the two marker comments is rewritten.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from bench.record import LINE

BEGIN = "<!-- bench-table:begin (make bench rewrites this table from the scripts' BENCH lines) -->"
END = "<!-- bench-table:end -->"
HEADER = ["| figure | value | goal | measured |", "|---|---|---|---|"]


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """The last figure of each name in a results file."""
    found: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LINE.match(line.strip())
        if match:
            found[match["name"]] = match.groupdict()
    return found


def parse_rows(block: str) -> dict[str, list[str]]:
    """The table's rows by figure name (the first cell, in backquotes), in their order."""
    rows: dict[str, list[str]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def measured_at() -> str:
    load = os.getloadavg()[0]
    return f"{datetime.date.today().isoformat()}, load {load:.1f}"


def rewrite(readme: str, results: dict[str, dict[str, str]]) -> str:
    head, sep, rest = readme.partition(BEGIN)
    block, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"bench/README.md lacks the markers {BEGIN!r} … {END!r}")
    rows = parse_rows(block)
    when = measured_at()
    for name, fig in results.items():
        value = f"{fig['value']} {fig['unit']}".strip()
        rows[name] = [f"`{name}`", value, fig["goal"].strip() or "—", when]
    lines = [*HEADER, *("| " + " | ".join(cells) + " |" for cells in rows.values())]
    return head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    results_path = Path(argv[0])
    readme_path = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parent / "README.md"
    results = read_results(results_path) if results_path.exists() else {}
    if not results:
        print(f"{results_path}: no BENCH lines; the table is left as it is", file=sys.stderr)
        return 1
    readme_path.write_text(rewrite(readme_path.read_text(encoding="utf-8"), results), encoding="utf-8")
    print(f"{readme_path}: {len(results)} figure(s) updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
