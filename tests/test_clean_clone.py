"""A user's clone with nothing beside it: the default configuration's files are all inside
it, and the stages run there end to end on tiny models (no ``../shared``, no network),
publishing nothing that names a path of the build machine."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kit.config import load_config
from tests.clone import REPO, copy_repository
from tests.dataset_raw import synthesize, write_run
from tests.toml_writer import dump_toml

pytestmark = pytest.mark.slow
STAGES = ("dataset_builder", "training", "model_card", "space", "release")


def _clone_config(clone: Path, base: Path) -> Path:
    """The default configuration with the tiny decoder as base and a few training steps."""
    sections = tomllib.loads((clone / "configs" / "default.toml").read_text(encoding="utf-8"))
    sections["training"] |= {
        "base_model": str(base), "max_steps": 2, "batch_size": 8, "mini_batch_size": 4,
        "save_steps": 100, "gguf": [],
    }  # fmt: skip
    sections["evaluation"] |= {"base_model": str(base), "batch_size": 64}
    path = clone / "configs" / "clone-test.toml"
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


def _run(clone: Path, module: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTHONPATH")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(config.relative_to(clone))],
        cwd=clone, capture_output=True, text=True, check=False, env=env, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def released_clone(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict) -> dict:
    clone = copy_repository(tmp_path_factory.mktemp("user") / "synthembed")
    assert not (clone.parent / "shared").exists()
    config = _clone_config(clone, tiny_model_dirs["gemma3"])
    write_run(clone / "runs" / "default", synthesize(60, seed=11), shards=2)
    logs = {}
    for module in STAGES:
        result = _run(clone, module, config)
        assert result.returncode == 0, (module, result.stderr[-3000:])
        logs[module] = result.stdout + result.stderr
    return {"clone": clone, "config": config, "logs": logs}


def test_the_stages_run_from_the_clone_itself(released_clone: dict) -> None:
    """Each module was imported from the clone, not from the checkout it was copied from."""
    clone = released_clone["clone"]
    probe = subprocess.run(
        [sys.executable, "-c", "import kit, model_card; print(kit.__file__, model_card.__file__)"],
        cwd=clone, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(Path(p).is_relative_to(clone) for p in probe.stdout.split())


def test_every_default_path_resolves_inside_the_clone(released_clone: dict) -> None:
    clone = released_clone["clone"]
    cwd = Path.cwd()
    os.chdir(clone)
    try:
        config = load_config(clone / "configs" / "default.toml")
        files = [file for task in config.evaluation.local_tasks for file in task.files]
        files += [Path(extra.path).resolve() for extra in config.training.extra_datasets]
    finally:
        os.chdir(cwd)
    assert files
    for file in files:
        assert file.exists() and file.resolve().is_relative_to(clone), file


def test_corpus_mode_reads_the_corpus_the_clone_carries(released_clone: dict) -> None:
    """The default config's corpus is in the clone: seeds plans its grounded rows from it
    (``--estimate`` reads and checks every document, sends nothing)."""
    clone, config = released_clone["clone"], released_clone["config"]
    corpus = load_config(config).generation.corpus
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "seeds", "--config", str(config.relative_to(clone)), "--estimate"],
        cwd=clone, capture_output=True, text=True, check=False, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    asked = sum(corpus.targets.values())
    assert (f"corpus: 6,609 documents from seeds/corpora/wikipedia-passages; {asked:,} "
            "corpus-grounded rows asked for") in result.stdout  # fmt: skip


def test_the_card_reports_every_kind_of_task_against_the_base(released_clone: dict) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(released_clone["clone"] / "build" / "release" / "model" / "README.md")
    names = {result.dataset_type for result in card.data.eval_results}
    assert names == {"STS17-en-en", "XQuADRetrieval-de", "XQuADRetrieval-de-en", "Tatoeba-deu-eng"}
    assert "| base model | change |" in card.text
    public = ("STS17 (SemEval-2017 Task 1)", "XQuAD", "Tatoeba", "CC BY-SA 4.0", "CC BY 2.0 FR")
    assert all(name in card.text for name in public)
    assert "evaluation took" in released_clone["logs"]["model_card"]


def test_nothing_staged_names_a_path_of_the_build_machine(released_clone: dict) -> None:
    clone = released_clone["clone"]
    forbidden = {str(clone), str(REPO), str(Path.home()), "../shared", str(clone.parent)}
    staged = [
        path
        for kind in ("dataset", "model", "space")
        for path in (clone / "build" / "release" / kind).rglob("*")
        if path.is_file()
    ]
    assert len(staged) > 20
    for path in staged:
        data = path.read_bytes()
        for needle in forbidden:
            assert needle.encode() not in data, (path.relative_to(clone), needle)
