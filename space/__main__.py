"""``python -m space --config configs/default.toml``: stage the Space repo folder."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kit.cli import run_stage
from kit.config import Config
from kit.paths import layout
from space.staging import stage_space

log = logging.getLogger("space")


def main(config: Config, args: argparse.Namespace) -> None:
    space_dir = Path(layout(str(config.path))["space_dir"])
    written = stage_space(config, space_dir)
    model_id, dataset_id = config.hub.repo_id("model"), config.hub.repo_id("dataset")
    log.info("staged %s (%s)", space_dir, ", ".join(path.name for path in written))
    log.info("the app loads %s and samples %s by default", model_id, dataset_id)
    log.info("try it locally: MODEL_ID=<model folder> python %s", space_dir / "app.py")


if __name__ == "__main__":
    sys.exit(run_stage("space", main, sys.argv[1:]))
