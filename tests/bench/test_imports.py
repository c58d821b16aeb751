"""The benchmarks and the shared helpers import nothing from tests/: what both use is in testkit/."""

from __future__ import annotations

import ast

import pytest

from testkit import REPO


@pytest.mark.parametrize("folder", ["bench", "testkit"])
def test_nothing_is_imported_from_tests(folder: str) -> None:
    offenders = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not offenders
