"""``python -m seeds --config configs/default.toml``."""

import argparse
import sys

from kit.cli import run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


if __name__ == "__main__":
    sys.exit(run_stage("seeds", "seeds.main:main", sys.argv[1:], add_arguments))
