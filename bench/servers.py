"""Servers the seeds benchmarks start in a process of their own, so that their CPU is not
counted as the client's: the fault-injecting fake server and ``seeds.simulator``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(module: str, *arguments: str) -> tuple[subprocess.Popen, str]:
    """``python -m module arguments...``, once it prints ``ready <base url>``."""
    command = [sys.executable, "-m", module, *arguments]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        process.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return process, line.split()[1]


def simulator_stats(url: str) -> dict:
    """What the simulator counted (``GET /v1/simulator/stats``)."""
    with urllib.request.urlopen(f"{url}/simulator/stats", timeout=60) as response:
        return json.loads(response.read())
