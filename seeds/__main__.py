"""``python -m seeds --config configs/default.toml [--estimate]``."""

import argparse
import sys

from kit.cli import run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the requests, tokens, cost and wall time of the run, and send nothing",
    )


def runs_anyway(args: argparse.Namespace) -> bool:
    """An estimate is printed even for a finished run; it changes nothing on disk."""
    return args.estimate


if __name__ == "__main__":
    sys.exit(run_stage("seeds", "seeds.main:main", sys.argv[1:], add_arguments, runs_anyway))
