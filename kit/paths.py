"""The on-disk layout of a release, and ``python3 -m kit.paths CONFIG NAME`` for the Makefile.

It reads the TOML without validating it, so that make can name its targets even for a config
that the first stage will then reject with a clear message. Standard library only: the
Makefile calls it before the virtual environment exists.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tomllib
from pathlib import Path

from kit.config import GenerationSection, HubSection, ProjectSection

DEFAULT_ENDPOINT = "https://huggingface.co"


def layout(config_path: str) -> dict[str, str]:
    """The places a release uses; the stages and the Makefile agree through this."""
    raw = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    project = raw.get("project", {})
    runs_dir = project.get("runs_dir", ProjectSection.runs_dir)
    build_dir = project.get("build_dir", ProjectSection.build_dir)
    run_name = raw.get("generation", {}).get("run_name", GenerationSection.run_name)
    token_env = raw.get("hub", {}).get("token_env", HubSection.token_env)
    return {
        "run_dir": f"{runs_dir}/{run_name}",
        "build_dir": build_dir,
        "dataset_dir": f"{build_dir}/dataset",
        "model_dir": f"{build_dir}/model",
        "eval_dir": f"{build_dir}/eval",
        "space_dir": f"{build_dir}/space",
        "checkpoint_dir": f"{build_dir}/checkpoints",
        "stamp_dir": f"{build_dir}/.stamps",
        "release_mode": release_mode(token_env),
    }


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def release_mode(token_env: str) -> str:
    """``stage`` without a token, else ``push-<endpoint hash>``: a new token or Hub is a new
    release target for make, so setting ``HF_TOKEN`` later still pushes."""
    if not os.environ.get(token_env, "").strip():
        return "stage"
    return "push-" + hashlib.sha256(hub_endpoint().encode()).hexdigest()[:12]


if __name__ == "__main__":
    try:
        print(layout(sys.argv[1])[sys.argv[2]])
    except (OSError, tomllib.TOMLDecodeError, KeyError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
