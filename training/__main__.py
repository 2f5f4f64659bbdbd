"""``python -m training --config configs/default.toml [--fresh | --plan ...]``.

Also the worker command of a multi-process run: ``torchrun ... -m training --config X``.
"""

import argparse
import sys

from kit.cli import run_command, run_stage
from training import plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true", help="ignore checkpoints and start from step 0"
    )
    plan.add_plan_arguments(parser)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--plan" in argv:
        sys.exit(run_command("training", plan.main, argv, add_arguments))
    sys.exit(
        run_stage("training", "training.run:main", argv, add_arguments,
                  runs_anyway=lambda args: args.fresh)  # fmt: skip
    )
