"""The shared config loader: every bad input is one line naming file and key, exit 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.cli import run_stage
from kit.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["default.toml", "e5-mistral.toml", "my-documents.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert config.training.scale == 50.0
    assert config.generator.temperature == 1.0
    assert set(config.generation.targets) == {
        "short_long",
        "long_short",
        "short_short",
        "long_long",
        "sts",
        "bitext",
    }


def test_paper_recipe_values() -> None:
    training = load_config(REPO / "configs" / "e5-mistral.toml").training
    assert (training.batch_size, training.learning_rate, training.warmup_steps) == (2048, 1e-4, 100)
    assert (training.lora_r, training.max_length, training.weight_decay) == (16, 512, 0.1)
    assert training.deepspeed == "auto"  # ZeRO-2 or ZeRO-3, picked by the training plan


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"training": {"batch_size": "big"}},
            "training.batch_size: expected an integer, got 'big'",
        ),
        (
            {"generator": {"top_p": 1.5}},
            "generator.top_p: 1.5 is outside the allowed range 0.0 .. 1.0",
        ),
        (
            {"generator": {"backend": "bard"}},
            "generator.backend: 'bard' is not one of 'local', 'openai'",
        ),
        ({"training": {"lora_rank": 8}}, "unknown key training.lora_rank (allowed: "),
        ({"trainig": {"seed": 1}}, "unknown section [trainig]"),
        ({"generation": {"targets": {"qa": 3}}}, "generation.targets.qa is not a task type"),
        ({"training": {"gradient_checkpointing": 1}}, "expected true or false, got 1"),
        (
            {"training": {"batch_size": 10, "mini_batch_size": 4}},
            "training.mini_batch_size=4 must divide training.batch_size=10",
        ),
        ({"training": {"deepspeed": "configs/nope.json"}}, "training.deepspeed: file not found"),
        (
            {"training": {"matryoshka_dims": [64, 0]}},
            "training.matryoshka_dims[1]: 0 is not a positive width",
        ),
        (
            {"training": {"matryoshka_dims": [64, 128, 64]}},
            "training.matryoshka_dims[2]: 64 is listed twice",
        ),
        (
            {"training": {"matryoshka_dims": [64.5]}},
            "training.matryoshka_dims[0]: expected an integer, got 64.5",
        ),
        (
            {"training": {"base_model": "./no/such/model"}},
            "training.base_model: model path does not exist: ./no/such/model",
        ),
        (
            {"training": {"base_model": "bundled:llama-9000"}},
            "training.base_model: unknown bundled model 'llama-9000'",
        ),
        (
            {"evaluation": {"local_tasks": [{"name": "x", "type": "cluster", "path": "p"}]}},
            "evaluation.local_tasks[0].type: 'cluster' is not one of 'retrieval', 'sts'",
        ),
        (
            {"evaluation": {"local_tasks": [{"name": "x", "type": "sts", "path": "p", "k": 1}]}},
            "evaluation.local_tasks[0]: unknown key k",
        ),
    ],
)
def test_bad_values_name_file_and_key(
    write_config: Callable[..., Path], sections: dict, message: str
) -> None:
    path = write_config(**sections)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[training\nseed = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(broken)


def test_defaults_fill_missing_sections(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(training={"seed": 7}))
    assert isinstance(config, Config)
    assert config.training.seed == 7
    assert config.training.lora_r == 16
    assert config.generator.backend == "local"


def test_stage_exits_2_and_runs_nothing(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Config] = []
    path = write_config(training={"learning_rate": -1.0})
    code = run_stage(
        "training", lambda config, args, stage: calls.append(config), ["--config", str(path)]
    )
    assert code == 2
    assert calls == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {path}: training.learning_rate: -1.0 is outside the allowed range 0.0 .. 1.0"
    ]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "build").exists()


def test_cli_subprocess_exit_code(write_config: Callable[..., Path], tmp_path: Path) -> None:
    bad = write_config(name="bad.toml", hub={"private": "yes"})
    result = subprocess.run(
        [sys.executable, "-m", "kit", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: hub.private: expected true or false, got 'yes'"
    assert result.stdout == ""
    good = write_config(name="good.toml")
    result = subprocess.run(
        [sys.executable, "-m", "kit", "--config", str(good)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{good}: valid" in result.stdout
    assert str(tmp_path / "build") + "/model" in result.stdout


STAGE_MAINS = {
    "seeds": "seeds.main:main",
    "dataset_builder": "dataset_builder.export:main",
    "training": "training.run:main",
    "model_card": "model_card.stage:main",
    "space": "space.__main__:main",
    "release": "release.stage:main",
}


def _bad_local_task(tmp_path: Path, kind: str) -> tuple[dict, str]:
    """A local task entry that is missing or malformed, and the exact message it must get."""
    folder = tmp_path / "sets"
    folder.mkdir(exist_ok=True)
    if kind == "missing-folder":
        path = folder / "nope"
        entry = {"name": "X", "type": "retrieval", "path": str(path)}
        return entry, (
            f"evaluation.local_tasks[0].path: {path}: not a folder (a BEIR folder holds "
            "corpus.jsonl, queries.jsonl and qrels/test.tsv)"
        )
    if kind == "beir-bad-json":
        beir = folder / "beir"
        (beir / "qrels").mkdir(parents=True)
        (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
        (beir / "queries.jsonl").write_text('{"_id": "q1", "text": \n')
        (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        entry = {"name": "X", "type": "retrieval", "path": str(beir)}
        return entry, (
            f"evaluation.local_tasks[0].path: {beir / 'queries.jsonl'}:1: not valid JSON "
            "(Expecting value)"
        )
    if kind == "sts-bad-header":
        sts = folder / "sts.tsv"
        sts.write_text("a\tb\tc\nx\ty\t1\n")
        entry = {"name": "X", "type": "sts", "path": str(sts)}
        return entry, (
            f"evaluation.local_tasks[0].path: {sts}:1: the header must name the columns "
            "sentence1, sentence2, score (tab-separated), found ['a', 'b', 'c']"
        )
    bitext = folder / "pairs.tsv"
    bitext.write_text("src\teng\tmore\nx\ty\tz\n")
    entry = {"name": "X", "type": "bitext", "path": str(bitext)}
    return entry, (
        f"evaluation.local_tasks[0].path: {bitext}:1: expected two tab-separated columns, "
        "found 3 column(s)"
    )


@pytest.mark.parametrize("kind", ["missing-folder", "beir-bad-json", "sts-bad-header", "bitext"])
def test_a_broken_local_task_stops_every_stage_in_seconds(
    write_config: Callable[..., Path],
    tmp_path: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before any generation: the config check reads the sets' first lines only."""

    entry, message = _bad_local_task(tmp_path, kind)
    path = write_config(evaluation={"local_tasks": [entry]})
    for stage, module in STAGE_MAINS.items():
        code = run_stage(stage, module, ["--config", str(path)])
        assert code == 2, stage
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}: {message}"]
    result = subprocess.run(
        [sys.executable, "-m", "kit", "--config", str(path)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {path}: {message}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "build").exists()


def test_the_default_config_reads_nothing_outside_the_repository() -> None:
    config = load_config(REPO / "configs" / "default.toml")
    tasks = config.evaluation.local_tasks
    assert {t.type for t in tasks} == {"retrieval", "sts", "bitext"}
    for task in tasks:
        for file in task.files:
            assert file.is_file() and file.resolve().is_relative_to(REPO), file
    for extra in config.training.extra_datasets:
        assert (REPO / extra.path).resolve().is_relative_to(REPO)
