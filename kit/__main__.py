"""``python -m kit --config FILE``: validate a config and show where the release will go."""

from __future__ import annotations

import argparse
import sys

from kit.cli import run_stage
from kit.config import Config
from kit.paths import layout


def show_layout(config: Config, args: argparse.Namespace) -> None:
    print(f"{config.path}: valid")
    for name, path in layout(str(config.path)).items():
        print(f"  {name:15} {path}")


if __name__ == "__main__":
    sys.exit(run_stage("kit", show_layout))
