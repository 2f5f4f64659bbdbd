"""``python -m space --config configs/default.toml``: stage the Space repo folder; with
``--serve``, run it on this build's model and dataset (``make demo``)."""

from __future__ import annotations

import argparse
import logging
import sys

from kit.cli import run_stage
from kit.config import Config
from kit.staleness import StageRun

log = logging.getLogger("space")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then run the staged app on this build's model and dataset, on 127.0.0.1",
    )


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    from space.local_demo import serve_locally
    from space.staging import stage_space

    layout = config.layout
    if args.force or not stage.decision.current:
        stage.begin()
        written = stage_space(config, stage.folder)
        stage.publish(facts={"model_id": config.hub.repo_id("model"),
                             "dataset_id": config.hub.repo_id("dataset")})  # fmt: skip
        log.info("staged %s (%s)", stage.folder, ", ".join(path.name for path in written))
    log.info("the app loads %s and samples %s by default", config.hub.repo_id("model"),
             config.hub.repo_id("dataset"))  # fmt: skip
    if getattr(args, "serve", False):
        log.info("serving the staged app on this build's model and dataset")
        serve_locally(stage.folder, layout.model_dir, layout.dataset_dir)
    else:
        log.info("try it on this build's model: make demo")


if __name__ == "__main__":
    sys.exit(run_stage("space", main, sys.argv[1:], add_arguments,
                       runs_anyway=lambda args: args.serve))  # fmt: skip
