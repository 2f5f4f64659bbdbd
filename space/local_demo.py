"""``make demo``: the staged Space, run as the Space runs it, on this release's own files.

The staged ``settings.json`` names the Hub repos, which a build with no Hub account (or no
network) cannot load; the local run points the app at the model and dataset folders of this
build instead, through the same environment variables a Space's settings use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kit.cli import StageError


def demo_environment(model_dir: Path, dataset_dir: Path) -> dict[str, str]:
    """This process's environment with the app pointed at the local folders, on loopback
    unless the caller chose another address."""
    if not (model_dir / "modules.json").is_file():
        raise StageError(f"no trained model in {model_dir}: run `make train` first")
    env = dict(os.environ)
    env["MODEL_ID"] = str(model_dir.resolve())
    env["DATASET_ID"] = str(dataset_dir.resolve()) if (dataset_dir / "data").is_dir() else ""
    # The build's model folder holds the GGUF files but not the model card's verdicts on them
    # (those join it in the assembled repo), so the local run embeds with sentence-transformers
    # unless BACKEND says otherwise.
    env.setdefault("BACKEND", "sentence-transformers")
    env.setdefault("GRADIO_SERVER_NAME", "127.0.0.1")
    return env


def serve_locally(space_dir: Path, model_dir: Path, dataset_dir: Path) -> None:
    """Become ``python app.py`` in the staged folder: Ctrl-C or a kill stops the app itself,
    with no server left behind."""
    env = demo_environment(model_dir, dataset_dir)
    host = env["GRADIO_SERVER_NAME"]
    port = env.get("GRADIO_SERVER_PORT", "7860")
    print(f"open http://{host}:{port} (Ctrl-C stops it)", flush=True)
    os.chdir(space_dir)
    os.execve(sys.executable, [sys.executable, "app.py"], env)
