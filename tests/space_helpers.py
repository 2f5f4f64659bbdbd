"""Helpers for the Space tests: a local dataset repo, ports, the staged app in a subprocess, a
headless Chromium driven by Selenium (Debian's chromium + chromedriver, nothing downloaded)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"

DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/default/train-*.parquet
---
A tiny dataset in the release layout, written by the Space tests.
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_local_dataset(folder: Path, positives: Sequence[str]) -> Path:
    """A dataset folder shaped like the release (unified ``default`` config) for DATASET_ID."""
    from datasets import Dataset

    rows = {
        "id": [f"doc-{i}" for i in range(len(positives))],
        "task_type": ["short_long"] * len(positives),
        "task_definition": ["Retrieve documents that answer a question."] * len(positives),
        "language": ["en"] * len(positives),
        "query": [f"question {i}" for i in range(len(positives))],
        "positive": list(positives),
        "negative": [None] * len(positives),
    }
    (folder / "data" / "default").mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows).to_parquet(str(folder / "data" / "default" / "train-00000.parquet"))
    (folder / "README.md").write_text(DATASET_CARD, encoding="utf-8")
    return folder


def _wait_until_serving(
    url: str, process: subprocess.Popen, log_path: Path, limit_s: float
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"the Space app exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/gradio_api/info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the Space app did not answer at {url} within {limit_s:.0f} s")


@contextmanager
def serve_staged_app(
    space_dir: Path, env_overrides: dict[str, str], log_path: Path, limit_s: float = 120
) -> Iterator[str]:
    """Run ``python app.py`` from the staged folder, as the Space does, outside the repo."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        **env_overrides,
    )
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=space_dir, env=env, stdout=log, stderr=log
        )
        try:
            _wait_until_serving(url, process, log_path, limit_s)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def headless_chromium() -> Iterator[object]:
    """A Selenium Chrome driver on Debian's chromium with a fresh profile, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="space-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def keep_artifact(path: Path) -> Path:
    """Copy a test artifact (a screenshot) where CI keeps it: build/test-artifacts/."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS_DIR / path.name
    shutil.copyfile(path, target)
    return target
