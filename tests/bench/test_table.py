"""bench/table.py: the figures table rewritten from BENCH lines, the rest of the README untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import record, table

README = f"""# Benchmarks

intro
{table.BEGIN}
| figure | value | goal | measured |
|---|---|---|---|
| `old.kept` | 2.0 × | ≤ 3 × | recorded earlier |
| `login.server_ms` | 9.0 ms | — | recorded earlier |
{table.END}

## After
"""


def test_a_run_replaces_its_rows_keeps_the_others_and_adds_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.txt"
    monkeypatch.setenv("BENCH_RESULTS", str(results))
    record.figure("login.server_ms", 8.2041, "ms")
    record.figure("stall.worst_dump_ms", 41.5, "ms", "≤ 50 ms")
    assert capsys.readouterr().out.count("BENCH name=") == 2
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert table.main([str(results), str(readme)]) == 0
    text = readme.read_text()
    head, _, rest = text.partition(table.BEGIN)
    block, _, tail = rest.partition(table.END)
    assert head == "# Benchmarks\n\nintro\n" and tail == "\n\n## After\n"
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    assert rows[0] == "| `old.kept` | 2.0 × | ≤ 3 × | recorded earlier |"
    assert rows[1].startswith("| `login.server_ms` | 8.204 ms | — | ")
    assert rows[2].startswith("| `stall.worst_dump_ms` | 41.5 ms | ≤ 50 ms | ")
    assert len(rows) == 3


def test_no_figures_leave_the_table_alone(tmp_path: Path) -> None:
    results = tmp_path / "results.txt"
    results.write_text("a report with no BENCH lines\n")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert table.main([str(results), str(readme)]) == 1
    assert readme.read_text() == README


def test_a_name_or_unit_the_table_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="bad figure"):
        record.figure("no-dot", 1.0, "ms")
    with pytest.raises(ValueError, match="bad figure"):
        record.figure("a.b", 1.0, "two words")
