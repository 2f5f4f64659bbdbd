"""The embedded default generator: llama.cpp's OpenAI-compatible server (``seeds.llama_serve``)
on loopback, started for the run and stopped after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.bundled import smollm2_gguf_path
from kit.cli import StageError
from kit.net import free_port
from kit.processes import stop

BUNDLED_GENERATOR = "bundled:smollm2-135m-instruct"


def resolve_gguf(reference: str) -> Path:
    """``bundled:smollm2-135m-instruct`` or a path to a .gguf file."""
    if reference == BUNDLED_GENERATOR:
        return smollm2_gguf_path()
    path = Path(reference).expanduser()
    if not path.is_file():
        raise StageError(f"generator.local_model: file not found: {path}")
    return path


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def llama_server(
    model: Path, context: int, parallel: int, timeout_s: float, log_path: Path
) -> Iterator[str]:
    """Yield the server's base URL once it answers; always stop it afterwards."""
    port = free_port()
    command = [
        sys.executable, "-m", "seeds.llama_serve", "--model", str(model),
        "--port", str(port), "--n_ctx", str(context),
        "--n_threads", str(max(1, (os.cpu_count() or 2) - 1)), "--parallel", str(parallel),
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers(url):
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-500:]
                    raise StageError(f"the local llama.cpp server exited early: {tail}")
                if time.monotonic() > deadline:
                    raise StageError(f"the local llama.cpp server did not answer in {timeout_s}s")
                time.sleep(0.25)
            yield url
        finally:
            stop(process)
