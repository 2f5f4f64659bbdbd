"""``python -m dataset_builder --config configs/default.toml``: seeds run -> Hub dataset folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dataset_builder.export import build
from kit.cli import run_stage
from kit.config import Config
from kit.paths import layout

LOG = logging.getLogger("dataset_builder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="rebuild even when the run has not changed"
    )


def main(config: Config, args: argparse.Namespace) -> None:
    paths = layout(str(config.path))
    result = build(config, Path(paths["run_dir"]), Path(paths["dataset_dir"]), force=args.force)
    if result.skipped:
        LOG.info(
            "%s is up to date with the run (fingerprint %s)",
            result.output_dir,
            result.fingerprint[:12],
        )
        return
    scan = result.scan
    assert scan is not None
    LOG.info(
        "%d raw lines -> %d rows, %d dropped",
        scan.lines_read,
        scan.accepted,
        sum(scan.dropped.values()),
    )
    for reason, count in sorted(scan.dropped.items()):
        LOG.warning("%d dropped: %s", count, reason)
    LOG.info(
        "%s: %d file(s) written, %d removed, %d unchanged",
        result.output_dir,
        len(result.written),
        len(result.removed),
        result.files - len(result.written),
    )


if __name__ == "__main__":
    raise SystemExit(run_stage("dataset_builder", main, add_arguments=add_arguments))
