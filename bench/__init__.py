"""Benchmarks: each module compares the kit against a named peer in the same run."""

import os
import re
from pathlib import Path

FULL_RUN_VARIABLE = "SYNTHEMBED_BENCH_FULL"
OUTPUT = Path("BENCHMARKS.md")
SECTION = re.compile(r"^<!-- bench:(\w+) -->\n(.*?)^<!-- /bench:\1 -->\n", re.M | re.S)


def full_run() -> bool:
    """``SYNTHEMBED_BENCH_FULL=1`` adds the large cases (slow; not part of a plain make bench)."""
    return os.environ.get(FULL_RUN_VARIABLE) == "1"


def previous_sections() -> dict[str, str]:
    """The sections of the current BENCHMARKS.md by bench name, each with its stamp line."""
    if not OUTPUT.is_file():
        return {}
    return {m.group(1): m.group(2) for m in SECTION.finditer(OUTPUT.read_text(encoding="utf-8"))}
