"""The one way every stage starts: parse ``--config``, validate, run, map errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from kit.config import Config, ConfigError, load_config
from kit.errors import StageError

EXIT_CONFIG = 2
__all__ = ["EXIT_CONFIG", "StageError", "run_stage"]


def run_stage(
    name: str,
    main: Callable[[Config, argparse.Namespace], None],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Run a stage's ``main``; config and input errors print one line and return 2."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--config", default="configs/default.toml", help="TOML config file")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        config = load_config(args.config)
        main(config, args)
    except (ConfigError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
