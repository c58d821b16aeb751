"""Settings shared by the property-based tests (tests/test_fuzz_*.py).

Derandomized and without an example database, so CI runs the same examples every time;
Hypothesis's caches go to a temp directory, never into the repository.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

HYPOTHESIS_HOME = Path(tempfile.gettempdir()) / f"opsconsole-hypothesis-{os.getuid()}"
set_hypothesis_home_dir(HYPOTHESIS_HOME)


def fuzz(max_examples: int) -> settings:
    """``max_examples`` per property; no deadline (a loaded 2-core machine is slow, not wrong)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        # Slow generation is the machine's load, not a bug; large data is what fuzzing is for.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
