"""The one way every stage starts: parse ``--config``, validate, run, map errors to exit codes."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kit.config import Config, ConfigError, load_config
from kit.errors import StageError
from kit.files import remove_temporaries
from kit.staleness import StageRun

EXIT_CONFIG = 2
__all__ = ["EXIT_CONFIG", "StageError", "run_command", "run_stage"]
# Errors of a place that cannot be written: full, over quota, read-only, or a size limit.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
UNWRITABLE_WORDS = ("No space left", "Disk quota", "Read-only file system", "File too large")


def unwritable(exc: OSError, folder: object = None) -> str | None:
    """One line for an error that means "cannot write here", or None for any other; a
    library that does not say which file (pyarrow) is named by the ``folder`` it wrote in."""
    text = str(exc)
    if exc.errno not in UNWRITABLE and not any(word in text for word in UNWRITABLE_WORDS):
        return None
    target = exc.filename or folder
    where = f" {target}" if target else ""
    reason = exc.strerror or text.splitlines()[0]
    return (
        f"cannot write{where}: {reason}; make room (or make it writable) and run the same "
        "command again: finished files were kept"
    )


StageMain = Callable[[Config, argparse.Namespace, StageRun], None]


def run_command(
    name: str,
    main: Callable[[Config, argparse.Namespace], None],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse ``--config``, validate it, run ``main``; config and input errors print one line
    and return 2."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--config", default="configs/default.toml", help="TOML config file")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        config = load_config(args.config)
        # A stage killed mid-write left its temporary files: no later stage may publish them.
        for leftover in remove_temporaries(Path(config.project.build_dir)):
            logging.getLogger(name).info("removed %s, left by an interrupted write", leftover)
        main(config, args)
    except (ConfigError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        line = unwritable(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def run_stage(
    name: str,
    main: StageMain | str,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    runs_anyway: Callable[[argparse.Namespace], bool] | None = None,
) -> int:
    """Run stage ``name`` unless its output is current (``kit.staleness``): then it says so
    and does nothing. ``main`` may be ``"module:function"``, imported only when the stage
    runs, so asking a finished stage costs no heavy import. ``runs_anyway`` names the
    options that ask for more than the output (serving it, a dry run)."""

    def add_all(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="run even when the output is up to date"
        )
        if add_arguments is not None:
            add_arguments(parser)

    def start(config: Config, args: argparse.Namespace) -> None:
        log = logging.getLogger(name)
        stage = StageRun.open(name, config)
        decision = stage.decision
        if decision.current and not args.force and not (runs_anyway and runs_anyway(args)):
            log.info("%s is up to date: nothing to do", stage.folder)
            return
        if not decision.current:
            log.info("building %s: %s", stage.folder, decision.reason)
        stage_main = _resolve(main) if isinstance(main, str) else main
        stage_main(config, args, stage)

    return run_command(name, start, argv, add_all)


def _resolve(reference: str) -> StageMain:
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)
