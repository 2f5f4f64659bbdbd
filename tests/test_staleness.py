"""One staleness rule: what ``python -m kit plan`` says, and what the stages then do.

The plan cases run in a copy of the repository (so code can be edited) whose stages are
marked finished through the kit's own ``StageRun``, each in order, as the real stages do
it: every stage records its code, config sections and input digests, so an edit shows up
exactly where it is read. The seeds case runs the real seeds and dataset stages.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.cli import run_stage
from kit.config import load_config
from kit.staleness import STAGES, code_files
from seeds.__main__ import add_arguments as seeds_arguments
from tests.clone import REPO, copy_repository
from tests.seeds_fake_server import FakeLLM, ServerThread
from tests.seeds_helpers import API_KEY, API_KEY_ENV, seeds_config

ORDER = list(STAGES)
# Marks every stage finished: each publishes one file, in pipeline order, so each later
# stage records the published digest of the one before it.
FINISH = """
import sys
from kit.config import load_config
from kit.staleness import STAGES, StageRun
config = load_config(sys.argv[1])
for name in STAGES:
    stage = StageRun.open(name, config)
    stage.folder.mkdir(parents=True, exist_ok=True)
    (stage.folder / "made.txt").write_text(f"made by {name}")
    stage.publish()
"""


def _python(clone: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, *args], cwd=clone, capture_output=True, text=True, check=False,
        env=environment | (env or {}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _plan(clone: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Stage -> what the plan says of it ("up to date", or why it runs)."""
    lines = _python(clone, "-m", "kit", "plan", "--config", "configs/default.toml", env=env)
    plan = {}
    for line in lines.splitlines()[:-1]:
        stage, _make, _target, state = line.split(maxsplit=3)
        plan[stage] = state
    return plan


def _running(plan: dict[str, str]) -> list[str]:
    return [stage for stage in ORDER if plan[stage] != "up to date"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone in which every stage has finished."""
    clone = copy_repository(tmp_path_factory.mktemp("clone") / "repo")
    _python(clone, "-c", FINISH, "configs/default.toml")
    return clone


def _edited(clone: Path, path: str, old: str, new: str) -> Callable[[], None]:
    """Edit one file of the clone; return the function that puts it back."""
    target = clone / path
    original = target.read_text(encoding="utf-8")
    assert old in original
    target.write_text(original.replace(old, new, 1), encoding="utf-8")
    return lambda: target.write_text(original, encoding="utf-8")


def test_a_fresh_clone_runs_every_stage_and_says_why(tmp_path: Path) -> None:
    clone = copy_repository(tmp_path / "repo")
    plan = _plan(clone)
    assert _running(plan) == ORDER
    assert set(plan.values()) == {"not made yet (no provenance.json)"}


def test_a_finished_release_and_a_touched_config_run_nothing(finished: Path) -> None:
    assert _running(_plan(finished)) == []
    config = finished / "configs" / "default.toml"
    later = config.stat().st_mtime + 60
    os.utime(config, (later, later))
    restore = _edited(finished, "configs/default.toml", "[training]", "# a comment\n[training]")
    try:
        assert _running(_plan(finished)) == []
    finally:
        restore()


def test_an_edit_to_training_code_retrains_and_what_follows_waits(finished: Path) -> None:
    restore = _edited(finished, "training/run.py", '"""The training stage', '"""The stage')
    try:
        plan = _plan(finished)
    finally:
        restore()
    assert _running(plan) == ["training", "model_card", "space", "release"]
    assert plan["training"] == "code changed: training/run.py"
    assert plan["model_card"] == "after training: runs if what it reads changes"
    # The Space reads the model card's GGUF verdicts (they pick its backend).
    assert plan["space"] == "after model_card: runs if what it reads changes"
    assert plan["release"] == "after training, model_card, space: runs if what it reads changes"


def test_an_edit_to_a_kit_module_reruns_the_stages_that_import_it(finished: Path) -> None:
    users = [name for name in ORDER if REPO / "kit" / "embedder.py" in code_files(name)]
    # Mining loads a published embedder, so the dataset stage does not build one.
    assert users == ["training", "model_card"]  # not seeds, dataset_builder, space, release
    restore = _edited(finished, "kit/embedder.py", '"""', '"""Edited. ')
    try:
        plan = _plan(finished)
    finally:
        restore()
    assert [s for s in ORDER if plan[s] == "code changed: kit/embedder.py"] == users
    assert _running(plan) == [*users, "space", "release"]
    assert plan["seeds"] == plan["dataset_builder"] == "up to date"
    assert plan["space"] == "after model_card: runs if what it reads changes"


def test_config_sections_rerun_their_stage_and_a_token_only_the_release(finished: Path) -> None:
    restore = _edited(finished, "configs/default.toml", "evaluate_base = true",
                      "evaluate_base = false")  # fmt: skip
    try:
        plan = _plan(finished)
    finally:
        restore()
    assert _running(plan) == ["model_card", "space", "release"]
    assert plan["model_card"] == "config changed: [evaluation]"
    plan = _plan(finished, env={"HF_TOKEN": "hf_test_not_a_real_token"})
    assert _running(plan) == ["release"] and plan["release"] == "input changed: target"


def test_the_plan_imports_no_heavy_library(finished: Path) -> None:
    code = (
        "import runpy, sys; sys.argv = ['kit', 'plan', '--config', 'configs/default.toml'];\n"
        "try:\n    runpy.run_module('kit', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'mteb') "
        "if m in sys.modules))"
    )
    assert _python(finished, "-c", code).splitlines()[-1] == "[]"


def test_a_seeds_run_that_adds_no_rows_leaves_the_dataset_and_its_mining_alone(
    write_config: Callable[..., Path],
    tiny_st_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Seeds runs again (its [generator] section changed) and asks for nothing new; the
    dataset stage then finds its input unchanged: no mining, no file written."""
    import dataset_builder.export

    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    targets = {"short_long": 4, "sts": 2}
    mining = {"enabled": True, "embedder": str(tiny_st_model_dir), "max_length": 32,
              "num_negatives": 1}  # fmt: skip
    with ServerThread(FakeLLM()) as server:

        def configure(timeout_s: float) -> Path:
            config = seeds_config(write_config, server.url, generator={"timeout_s": timeout_s},
                                  generation={"targets": targets})  # fmt: skip
            text = config.read_text(encoding="utf-8")
            config.write_text(text + _mining_toml(mining), encoding="utf-8")
            return config

        def stage(name: str, config: Path) -> int:
            argv = ["--config", str(config)]
            if name == "seeds":
                return run_stage(name, "seeds.main:main", [*argv, "--no-progress"],
                                 seeds_arguments)  # fmt: skip
            return run_stage(name, "dataset_builder.export:main", argv)

        config = configure(2.0)
        assert stage("seeds", config) == 0 and stage("dataset_builder", config) == 0
        dataset = tmp_path / "build" / "dataset"
        assert (dataset / "data" / "default").is_dir()
        before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*") if p.is_file()}
        asked = len(server.fake.log)
        time.sleep(0.01)
        config = configure(3.0)
        caplog.set_level(logging.INFO)
        assert stage("seeds", config) == 0
        assert f"building {load_config(config).layout.run_dir}: config changed: [generator]" in (
            caplog.text
        )
        assert len(server.fake.log) == asked  # nothing asked again: no row added
        monkeypatch.setattr(dataset_builder.export, "mine", _no_mining)
        caplog.clear()
        assert stage("dataset_builder", config) == 0
    assert f"{dataset} is up to date: nothing to do" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*") if p.is_file()} == before


def _mining_toml(settings: dict[str, object]) -> str:
    lines = [f"{key} = {value!r}".replace("'", '"').replace("True", "true")
             for key, value in settings.items()]  # fmt: skip
    return "\n[dataset.hard_negatives]\n" + "\n".join(lines) + "\n"


def _no_mining(*args: object) -> None:
    raise AssertionError("the dataset stage mined again")
