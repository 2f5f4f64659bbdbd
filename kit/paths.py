"""Print a layout path from a config, using the standard library only (the Makefile calls it
before the virtual environment exists)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

DEFAULTS = {"runs_dir": "runs", "build_dir": "build", "run_name": "default"}


def layout(config_path: str) -> dict[str, str]:
    """The on-disk places a release uses; the stages and the Makefile agree through this."""
    raw = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    project = raw.get("project", {})
    runs_dir = project.get("runs_dir", DEFAULTS["runs_dir"])
    build_dir = project.get("build_dir", DEFAULTS["build_dir"])
    run_name = raw.get("generation", {}).get("run_name", DEFAULTS["run_name"])
    return {
        "run_dir": f"{runs_dir}/{run_name}",
        "build_dir": build_dir,
        "dataset_dir": f"{build_dir}/dataset",
        "model_dir": f"{build_dir}/model",
        "eval_dir": f"{build_dir}/eval",
        "space_dir": f"{build_dir}/space",
        "checkpoint_dir": f"{build_dir}/checkpoints",
    }


if __name__ == "__main__":
    try:
        print(layout(sys.argv[1])[sys.argv[2]])
    except (OSError, tomllib.TOMLDecodeError, KeyError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
