"""``python -m model_card --config configs/default.toml``."""

import argparse
import sys

from kit.cli import run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-eval",
        action="store_true",
        help="write the card without evaluating (the card then says the model is not evaluated)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore cached mteb results and evaluate again"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the tasks, their splits, subsets and prompts, and the device; run nothing",
    )


def runs_anyway(args: argparse.Namespace) -> bool:
    return args.fresh or args.skip_eval or args.dry_run


if __name__ == "__main__":
    sys.exit(
        run_stage("model_card", "model_card.stage:main", sys.argv[1:], add_arguments,
                  runs_anyway=runs_anyway)  # fmt: skip
    )
