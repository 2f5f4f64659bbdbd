"""Benchmarks: each module compares the kit against a named peer in the same run."""

import os

FULL_RUN_VARIABLE = "SYNTHEMBED_BENCH_FULL"


def full_run() -> bool:
    """``SYNTHEMBED_BENCH_FULL=1`` adds the large cases (slow; not part of a plain make bench)."""
    return os.environ.get(FULL_RUN_VARIABLE) == "1"
