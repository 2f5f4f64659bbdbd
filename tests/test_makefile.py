"""make sees every change and nothing else: per-section stamps, checked with ``make -n``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clone import copy_repository

STAGES = ("seeds", "dataset_builder", "training", "model_card", "space", "release")


@pytest.fixture(scope="module")
def finished_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone in which every stage has finished: stamps newer than every input."""
    repo = copy_repository(tmp_path_factory.mktemp("clone") / "repo")
    (repo / ".venv").mkdir()
    (repo / ".venv" / ".installed").touch()
    _make(repo)  # writes the section stamps
    _finish_everything(repo)
    return repo


def _make(repo: Path, *targets: str, env: dict[str, str] | None = None) -> list[str]:
    """The stage modules ``make -n`` would run, in order."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "MAKEFLAGS")} | (env or {})
    result = subprocess.run(
        ["make", "-n", f"PYTHON={sys.executable}", *targets],
        cwd=repo, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return re.findall(r"-m (\w+) --config", result.stdout)


def _finish_everything(repo: Path) -> None:
    """Inputs a while ago, every stage's stamp after them, and now is later than both."""
    now = time.time()
    for path in repo.rglob("*"):
        if path.is_file():
            os.utime(path, (now - 100, now - 100))
    stamps = repo / "build" / ".stamps"
    for name in ("generate", "dataset", "train", "evaluate", "space", "release-stage"):
        (stamps / f"{name}.done").touch()
        os.utime(stamps / f"{name}.done", (now - 50, now - 50))


@contextmanager
def _edited(repo: Path, old: str, new: str) -> Iterator[None]:
    """Edit the config for one check, then put it back and finish the release again."""
    config = repo / "configs" / "default.toml"
    original = config.read_text(encoding="utf-8")
    assert old in original
    config.write_text(original.replace(old, new, 1), encoding="utf-8")
    try:
        yield
    finally:
        config.write_text(original, encoding="utf-8")
        _make(repo)
        _finish_everything(repo)


def test_makes_helpers_need_the_standard_library_only(tmp_path: Path) -> None:
    """make asks kit.paths and kit.stamps for the stamp folder before .venv exists (``-S``:
    no site-packages); a third-party import on their way leaves make with no stamps."""
    repo = copy_repository(tmp_path / "repo")
    bare = [sys.executable, "-S", "-m"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*bare, *args], cwd=repo, capture_output=True, text=True)

    layout = run("kit.paths", "configs/default.toml", "stamp_dir")
    assert (layout.returncode, layout.stdout.strip(), layout.stderr) == (0, "build/.stamps", "")
    stamps = run("kit.stamps", "configs/default.toml", "build/.stamps")
    assert (stamps.returncode, stamps.stderr) == (0, "")
    assert (repo / "build" / ".stamps" / "training.sha256").is_file()


def test_a_fresh_clone_runs_every_stage_in_order(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo")
    (repo / ".venv").mkdir()
    (repo / ".venv" / ".installed").touch()
    assert _make(repo) == list(STAGES)


def test_a_finished_release_and_a_touched_config_rerun_nothing(finished_release: Path) -> None:
    assert _make(finished_release) == []
    config = finished_release / "configs" / "default.toml"
    later = config.stat().st_mtime + 60
    os.utime(config, (later, later))
    assert _make(finished_release) == []


def test_editing_training_retrains_and_stops_there(finished_release: Path) -> None:
    with _edited(finished_release, "\nmax_steps = ", "\nmax_steps = 1"):  # 24 -> 124
        assert _make(finished_release) == ["training", "model_card", "release"]


def test_editing_evaluation_reevaluates_without_retraining(finished_release: Path) -> None:
    with _edited(finished_release, "evaluate_base = true", "evaluate_base = false"):
        assert _make(finished_release) == ["model_card", "release"]


def test_a_token_makes_release_a_new_target(finished_release: Path) -> None:
    """Staged without a token, a later run with one pushes (and nothing else reruns)."""
    env_token = {"HF_TOKEN": "hf_test_not_a_real_token"}
    assert _make(finished_release, env=env_token) == ["release"]
