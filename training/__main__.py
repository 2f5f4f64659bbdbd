"""``python -m training --config configs/default.toml``."""

import sys

from kit.cli import run_stage
from training.run import add_arguments, main

if __name__ == "__main__":
    sys.exit(run_stage("training", main, sys.argv[1:], add_arguments))
