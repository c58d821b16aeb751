"""Settings shared by the property-based tests (tests/**/test_fuzz_*.py).

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


# OPSCONSOLE_FUZZ_SCALE=N runs N times the examples, new ones each run: a longer hunt on a
# developer's machine. Unset (CI), every run draws the same examples.
SCALE = int(os.environ.get("OPSCONSOLE_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    """``max_examples`` per property; no deadline (a loaded 2-core machine is slow, not wrong)."""
    return settings(
        max_examples=max_examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        print_blob=False,
        # Slow generation is the machine's load, not a bug; large data is what fuzzing is for.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
