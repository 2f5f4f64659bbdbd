"""``python -m release --config configs/default.toml [--dry-run]``."""

import argparse
import sys

from kit.cli import run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be pushed, even with a token"
    )


if __name__ == "__main__":
    sys.exit(run_stage("release", "release.stage:main", sys.argv[1:], add_arguments,
                       runs_anyway=lambda args: args.dry_run))  # fmt: skip
