"""Results a reader can trace: the model repo's Hub commit when it holds these files (else
the content digest), against a local Hub; and ``.eval_results`` naming the benchmark."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kit.cli import run_stage
from tests.fake_hub import FakeHub
from tests.model_card_fixtures import write_model_folder, write_sts

REPO = "acme/tiny-embedder"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    with FakeHub(user="acme") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield server


def _push(hub: FakeHub, folder: Path) -> str:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(REPO, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=REPO).oid


def test_the_revision_is_the_commit_that_holds_these_exact_files(
    hub: FakeHub, tiny_st_model_dir: Path, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi

    from model_card.encoders import hub_revision

    model_dir = Path(shutil.copytree(tiny_st_model_dir, tmp_path / "model"))
    assert hub_revision(REPO, model_dir, hub.token) is None  # no such repo yet
    pushed = _push(hub, model_dir)
    assert hub_revision(REPO, model_dir, hub.token) == pushed
    # A later commit that leaves the model's files alone (the card) keeps the revision.
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id=REPO)
    assert hub_revision(REPO, model_dir, hub.token) == pushed
    # Local files that differ from the Hub's are not that revision.
    modules = model_dir / "modules.json"
    modules.write_text(modules.read_text() + "\n")
    assert hub_revision(REPO, model_dir, hub.token) is None


def _config(root: Path, write_config: Callable[..., Path]) -> Path:
    sts = write_sts(root / "data" / "sts.tsv")
    task = {"name": "TinySTS", "type": "sts", "path": str(sts), "languages": "eng-Latn"}
    return write_config(
        hub={"namespace": "acme", "model_repo": "tiny-embedder", "dataset_repo": "tiny-data"},
        evaluation={"local_tasks": [task], "evaluate_base": False, "compression": False,
                    "batch_size": 8, "model_license": "apache-2.0"},
    )  # fmt: skip


def _stage(config: Path, *extra: str) -> int:
    from model_card.__main__ import add_arguments, runs_anyway

    argv = ["--config", str(config), *extra]
    return run_stage("model_card", "model_card.stage:main", argv, add_arguments, runs_anyway)


def _results(root: Path) -> dict:
    return json.loads((root / "build" / "eval" / "results.json").read_text(encoding="utf-8"))


def test_after_a_push_the_card_relabels_its_results_without_evaluating_again(
    hub: FakeHub,
    tiny_st_model_dir: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
) -> None:
    from kit.config import load_config
    from kit.staleness import StageRun, expected_provenance, why_stale

    model_dir = write_model_folder(tiny_st_model_dir, tmp_path / "build" / "model", None)
    config_path = _config(tmp_path, write_config)
    config = load_config(config_path)
    assert _stage(config_path) == 0
    before = _results(tmp_path)
    digest = before["models"]["trained"]["revision"]
    assert before["models"]["trained"]["revision_source"] == "content digest"
    relative = before["tasks"][0]["results"]["trained"]["scores_file"]
    scores_file = tmp_path / "build" / "eval" / relative

    # The release pushes this model folder: the card stage sees it in the release's provenance.
    commit = _push(hub, model_dir)
    release = StageRun.open("release", config)
    release.folder.mkdir(parents=True)
    release.publish(facts={"model": commit})
    card = expected_provenance("model_card", config)
    assert card.inputs["pushed_model"] == commit
    assert why_stale(_provenance(config), card) == "input changed: pushed_model"

    stamp = scores_file.stat().st_mtime_ns
    assert _stage(config_path) == 0
    after = _results(tmp_path)
    trained = after["models"]["trained"]
    assert (trained["revision"], trained["revision_source"]) == (commit, f"Hub commit of {REPO}")
    task = after["tasks"][0]["results"]["trained"]
    assert task["scores_file"] == before["tasks"][0]["results"]["trained"]["scores_file"].replace(
        digest, commit
    )
    assert task["main_score"] == before["tasks"][0]["results"]["trained"]["main_score"]
    assert scores_file.stat().st_mtime_ns == stamp  # the digest's results were kept, not redone
    card_text = (tmp_path / "build" / "card" / "README.md").read_text(encoding="utf-8")
    assert f"results labelled with revision `{commit}` (Hub commit of {REPO})" in card_text
    staged = tmp_path / "build" / "card" / "results" / "acme__tiny-embedder" / commit
    assert json.loads((staged / "model_meta.json").read_text())["revision"] == commit


def _provenance(config: object) -> object:
    from kit.provenance import read_provenance
    from kit.staleness import STAGES

    return read_provenance(STAGES["model_card"].folder(config))


def test_eval_results_name_the_benchmark_subsets_and_dataset(tmp_path: Path) -> None:
    """``.eval_results/mteb.yaml`` as huggingface_hub reads it back, for a registry task."""
    import yaml
    from huggingface_hub import EvalResultEntry, parse_eval_result_entries
    from mteb import TaskResult

    from kit.artifacts import EvaluationResults, ModelRun, TaskSummary
    from model_card.card import EVAL_RESULTS_FILE, write_eval_results

    source = tmp_path / "STS17.json"
    source.write_text(json.dumps({
        "dataset_revision": "f3ad7d4", "task_name": "STS17", "mteb_version": "2.26.24",
        "evaluation_time": 1.0,
        "scores": {"test": [{"hf_subset": "en-en", "main_score": 0.8125,
                             "languages": ["eng-Latn"]}]},
    }), encoding="utf-8")  # fmt: skip
    result = TaskResult.from_disk(source)
    task = TaskSummary(
        name="STS17", source="registry", type="STS",
        dataset={"name": "MTEB STS17", "path": "mteb/sts17-crosslingual-sts"}, revision="f3ad7d4",
        languages=["eng-Latn"], main_score="cosine_spearman", query_prompt="", document_prompt="",
        prompt_source="mteb", size={}, results={"trained": ModelRun(0.8125, "x.json")},
        splits=["test"], subsets=["en-en"], subsets_origin="as MTEB(eng, v2) runs it",
        benchmark="MTEB(eng, v2)",
    )  # fmt: skip
    results = EvaluationResults("2.26.24", {}, [task], benchmark="MTEB(eng, v2)")
    path = write_eval_results(tmp_path, results, {"STS17": result})
    assert path == tmp_path / EVAL_RESULTS_FILE
    (entry,) = parse_eval_result_entries(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert entry == EvalResultEntry(
        dataset_id="mteb/sts17-crosslingual-sts",
        task_id="STS17",
        value=81.25,
        dataset_revision="f3ad7d4",
        source_url="https://github.com/embeddings-benchmark/mteb",
        source_name="mteb 2.26.24",
        notes="mteb 2.26.24; benchmark MTEB(eng, v2); splits test; subsets en-en; main score "
        "cosine_spearman",
    )
    local = dataclasses.replace(task, source="local")
    assert write_eval_results(tmp_path, dataclasses.replace(results, tasks=[local]),
                              {"STS17": result}) is None  # fmt: skip
    assert not path.exists()
