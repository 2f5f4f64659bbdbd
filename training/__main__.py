"""``python -m training --config configs/default.toml``."""

import argparse
import sys

from kit.cli import run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true", help="ignore checkpoints and start from step 0"
    )


if __name__ == "__main__":
    sys.exit(
        run_stage("training", "training.run:main", sys.argv[1:], add_arguments,
                  runs_anyway=lambda args: args.fresh)  # fmt: skip
    )
