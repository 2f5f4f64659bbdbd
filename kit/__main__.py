"""``python -m kit [check|plan|clean] --config FILE``.

``check`` (the default) validates a config (the registry tasks and benchmark it names
included, from mteb's metadata) and shows where each stage publishes; ``plan``
prints which stages a ``make release`` would run and why, and runs nothing; ``clean``
removes the build folder and the config's seeds run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys

from kit.cli import run_command
from kit.config import Config, config_notes
from kit.staleness import STAGES, plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", nargs="?", choices=("check", "plan", "clean"), default="check")


def main(config: Config, args: argparse.Namespace) -> None:
    if args.command == "plan":
        print_plan(config)
        return
    if args.command == "clean":
        for folder in (config.layout.build_dir, config.layout.run_dir):
            shutil.rmtree(folder, ignore_errors=True)
            print(f"removed {folder}")
        return
    evaluation = config.evaluation
    if evaluation.benchmark or evaluation.mteb_tasks:
        from kit.registry_tasks import resolve

        tasks = resolve(evaluation.benchmark, evaluation.mteb_tasks)
        print(f"evaluation: {len(tasks)} registry tasks "
              f"(benchmark: {evaluation.benchmark or 'none'})")  # fmt: skip
    print(f"{config.path}: valid")
    for note in config_notes(config):
        print(f"note: {note}")
    for name, path in dataclasses.asdict(config.layout).items():
        print(f"  {name:15} {path}")


def print_plan(config: Config) -> None:
    decisions = plan(config)
    width = max(len(name) for name in STAGES)
    for decision in decisions:
        target = STAGES[decision.stage].target
        state = "up to date" if decision.current else decision.reason
        print(f"{decision.stage:<{width}}  {target:<13}  {state}")
    running = [d.stage for d in decisions if not d.current]
    print(f"{len(running)} of {len(decisions)} stages would run" if running
          else "nothing to run: the release is up to date")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_command("kit", main, add_arguments=add_arguments))
