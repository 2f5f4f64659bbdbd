"""``python -m bench``: run every stage benchmark and write BENCHMARKS.md.

Each ``bench/<stage>_bench.py`` exposes ``run(config_path) -> str`` (a Markdown section that
compares against a named peer in the same run). ``--only`` picks some; sections not rerun
are kept from the previous BENCHMARKS.md so one slow benchmark need not be repeated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import traceback

from bench import FULL_RUN_VARIABLE, OUTPUT, full_run, previous_sections

BENCHES = (
    "bundled",
    "seeds",
    "pacing",
    "gates",
    "judge",
    "dataset",
    "decontamination",
    "training",
    "model_card",
    "space",
    "space_backends",
    "serving",
    "release",
    "corpus",
)
# Run only when named: quality trains five models (``make bench-quality``, about 75
# minutes), settings six (``make bench-settings``, about 75 minutes), domain one on passage-long
# rows (``make bench-domain``, about 40 minutes); rehearsal runs the paper config's generation
# at up to 500k rows (about an hour).
ON_REQUEST = ("quality", "settings", "domain", "rehearsal")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, no GPU"
        if not torch.cuda.is_available()
        else f"{os.cpu_count()} CPU cores, GPU {torch.cuda.get_device_name(0)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--config", default="configs/default.toml")
    parser.add_argument("--only", nargs="*", choices=BENCHES + ON_REQUEST, default=list(BENCHES))
    args = parser.parse_args()
    sections = previous_sections()
    failed = []
    for name in args.only:
        print(f"== bench {name}", flush=True)
        started = dt.datetime.now(dt.UTC)
        try:
            body = importlib.import_module(f"bench.{name}_bench").run(args.config)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        full = f"{FULL_RUN_VARIABLE}=1 " if full_run() else ""
        command = f"{full}make bench (python -m bench --config {args.config} --only {name})"
        sections[name] = (
            f"_Command: `{command}` · date: {started:%Y-%m-%d %H:%M} UTC · "
            f"machine: {machine()}_\n\n{body.strip()}\n\n"
        )
    parts = [
        "# Benchmarks\n\nWritten by `make bench`; each section compares against a named peer "
        "in the same run, so ratios hold when the machine's speed drifts.\n"
    ]
    for name in BENCHES + ON_REQUEST:
        if name in sections:
            parts.append(f"<!-- bench:{name} -->\n{sections[name]}<!-- /bench:{name} -->\n")
    OUTPUT.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
