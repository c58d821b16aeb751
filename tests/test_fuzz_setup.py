"""The fuzz tests' own setup: repeatable in CI, and nothing written into the repository."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.configuration import storage_directory

from testkit import REPO
from testkit.fuzz import HYPOTHESIS_HOME, SCALE, fuzz

SEEN: list[list[int]] = []


def test_hypothesis_keeps_its_files_outside_the_repository() -> None:
    where = storage_directory("constants", intent_to_write=False).path.resolve()
    assert where.is_relative_to(HYPOTHESIS_HOME.resolve())
    assert not where.is_relative_to(REPO)
    assert not (REPO / ".hypothesis").exists()


@fuzz(20)
@given(st.lists(st.integers(), max_size=5))
def _draw(values: list[int]) -> None:
    SEEN.append(values)


@pytest.mark.skipif(SCALE != 1, reason="a longer hunt draws new examples on purpose")
def test_the_examples_are_the_same_every_run() -> None:
    # Derandomized and without a database: CI runs exactly what a developer ran.
    SEEN.clear()
    _draw()
    first = list(SEEN)
    SEEN.clear()
    _draw()
    assert first == SEEN
    assert len(first) == 20
