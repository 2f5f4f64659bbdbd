"""``python -m dataset_builder --config configs/default.toml``: seeds run -> Hub dataset folder."""

import sys

from kit.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("dataset_builder", "dataset_builder.export:main", sys.argv[1:]))
