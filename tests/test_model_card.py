"""The model_card stage end to end on the tiny model: results, card, plot, snippets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kit.cli import run_stage
from tests.model_card_fixtures import write_beir, write_model_folder, write_sts
from tests.toml_writer import dump_toml

INSTRUCTION = "Given a word, find the text about it"


def _stage(config: Path, *extra: str) -> int:
    from model_card.__main__ import add_arguments

    return run_stage(
        "model_card", "model_card.stage:main", ["--config", str(config), *extra], add_arguments,
        runs_anyway=lambda args: args.fresh or args.skip_eval,
    )  # fmt: skip


def _config(root: Path, base_model: str, **evaluation: Any) -> Path:
    sections = {
        "project": {"build_dir": str(root / "build"), "runs_dir": str(root / "runs")},
        "hub": {"namespace": "acme", "model_repo": "tiny-embedder", "dataset_repo": "tiny-data"},
        "training": {"base_model": base_model},
        "evaluation": {"batch_size": 8, "model_license": "apache-2.0", **evaluation},
    }
    path = root / "config.toml"
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def evaluated(tiny_st_model_dir: Path, tiny_model_dirs: dict, tmp_path_factory) -> dict:
    """One full stage run (trained + base, a retrieval and an STS task) shared by the checks."""
    root = tmp_path_factory.mktemp("model-card")
    base = str(tiny_model_dirs["gemma3"])
    write_model_folder(tiny_st_model_dir, root / "build" / "model", base)
    beir = write_beir(root / "data" / "beir")
    sts = write_sts(root / "data" / "sts.tsv")
    local_tasks = [
        {
            "name": "TinyRetrieval",
            "type": "retrieval",
            "path": str(beir),
            "instruction": INSTRUCTION,
            "languages": "eng-Latn",
            "max_queries": 6,
        },
        {"name": "TinySTS", "type": "sts", "path": str(sts), "languages": "eng-Latn"},
    ]
    config = _config(root, base, local_tasks=local_tasks, mteb_tasks=["STS17"])
    assert _stage(config) == 0
    eval_dir = root / "build" / "eval"
    return {
        "root": root,
        "config": config,
        "model_dir": root / "build" / "model",
        "card_dir": root / "build" / "card",
        "eval_dir": eval_dir,
        "results": json.loads((eval_dir / "results.json").read_text(encoding="utf-8")),
    }


def test_card_model_index_matches_mteb_result_files(evaluated: dict) -> None:
    from huggingface_hub import ModelCard
    from mteb import TaskResult

    card = ModelCard.load(evaluated["card_dir"] / "README.md")
    data = card.data
    assert data.library_name == "sentence-transformers"
    assert data.pipeline_tag == "sentence-similarity"
    assert data.license == "apache-2.0"
    assert data.datasets == ["acme/tiny-data"]
    assert data.model_name == "acme/tiny-embedder"
    assert "sentence-transformers" in data.tags
    by_name = {r.dataset_name: r for r in data.eval_results}
    assert set(by_name) == {"TinyRetrieval", "TinySTS"}
    for task in evaluated["results"]["tasks"]:
        cached = TaskResult.from_disk(
            evaluated["eval_dir"] / task["results"]["trained"]["scores_file"]
        )
        entry = by_name[task["name"]]
        assert entry.metric_type == task["main_score"]
        assert entry.metric_value == pytest.approx(cached.get_score() * 100, abs=1e-3)
        assert entry.dataset_revision == cached.dataset_revision
    assert evaluated["results"]["skipped"] == [
        {
            "name": "STS17",
            "reason": "mteb registry task; its data is on the Hub, which could not be reached "
            "(subsets en-en, as MTEB(eng, v2) runs it)",
        }
    ]
    assert "- STS17: mteb registry task" in card.text
    for entry in data.eval_results:
        assert (entry.dataset_config, entry.dataset_split) == ("default", "test")
        assert entry.source_name.endswith("(local task); the local set")


def test_means_are_mteb_s_and_the_card_says_how_each_task_and_model_ran(evaluated: dict) -> None:
    results = evaluated["results"]
    assert results["benchmark"] == ""
    assert results["means_scope"] == "the 2 tasks run here (not a benchmark score)"
    text = (evaluated["card_dir"] / "README.md").read_text(encoding="utf-8")
    for role in ("trained", "base"):
        scores = [task["results"][role]["main_score"] for task in results["tasks"]]
        # one Retrieval and one STS task: the mean over types equals the mean over tasks
        assert results["means"][role]["Mean(Task)"] == pytest.approx(np.mean(scores), abs=1e-6)
        assert results["means"][role]["Mean(TaskType)"] == pytest.approx(np.mean(scores), abs=1e-6)
    trained, base = (results["means"][r]["Mean(Task)"] * 100 for r in ("trained", "base"))
    row = f"| **mean over tasks** | | | | {trained:.2f} | {base:.2f} | {trained - base:+.2f} |"
    assert row in text
    assert "over the 2 tasks run here (not a benchmark score)" in text
    for task in results["tasks"]:
        assert (task["splits"], task["subsets"]) == (["test"], ["default"])
        assert f"**{task['name']}**" in text
    assert "; split test, subsets default (the local set); query prompt" in text
    trained_model = results["models"]["trained"]
    assert trained_model["revision_source"] == "content digest"
    assert trained_model["encoding"] == (
        "cpu, float32, batch 8 (device auto: no CUDA device, so cpu; fp32 on cpu; batch "
        "configured)"
    )
    # The digest is not printed: a rerun whose weights differ in the last bit (a resumed
    # training) gives the same card.
    assert (
        "- trained model `acme/tiny-embedder`, results labelled with its content digest; "
        f"encoded on {trained_model['encoding']}." in text
    )
    assert trained_model["revision"] not in text
    # No registry task ran, so there is nothing for .eval_results.
    assert not (evaluated["card_dir"] / ".eval_results").exists()


def test_staged_results_hold_only_the_subsets_a_task_runs(evaluated: dict) -> None:
    """A cached file may hold more subsets (an earlier run of all of them): the score and
    the published file keep the task's own."""
    from mteb import TaskResult

    task = evaluated["results"]["tasks"][1]
    cached = evaluated["eval_dir"] / task["results"]["trained"]["scores_file"]
    data = json.loads(cached.read_text(encoding="utf-8"))
    extra = {**data["scores"]["test"][0], "hf_subset": "xx", "main_score": 0.0}
    data["scores"]["test"].append(extra)
    cached.write_text(json.dumps(data), encoding="utf-8")
    rerun = _current_results(evaluated)
    by_name = {t["name"]: t for t in rerun["tasks"]}
    assert by_name[task["name"]]["results"]["trained"]["main_score"] == pytest.approx(
        task["results"]["trained"]["main_score"]
    )
    staged = evaluated["card_dir"] / "results" / task["results"]["trained"]["scores_file"].split(
        "/", 1
    )[1]
    assert [s["hf_subset"] for s in TaskResult.from_disk(staged).scores["test"]] == ["default"]


def test_base_model_is_wrapped_and_prompted_like_the_trained_one(evaluated: dict) -> None:
    """The tiny model is its base decoder wrapped by the release recipe: equal scores prove
    the base is wrapped (EOS, BOS, lasttoken, normalize) and prompted the same way."""
    results = evaluated["results"]
    assert set(results["models"]) == {"trained", "base"}
    assert results["models"]["trained"]["name"] == "acme/tiny-embedder"
    for task in results["tasks"]:
        trained, base = task["results"]["trained"], task["results"]["base"]
        assert trained["main_score"] == pytest.approx(base["main_score"], abs=1e-6)
        assert trained["scores_file"] != base["scores_file"]
    retrieval, sts = results["tasks"]
    assert retrieval["query_prompt"] == f"Instruct: {INSTRUCTION}\nQuery: "
    assert retrieval["document_prompt"] == ""
    assert retrieval["prompt_source"] == "config"
    assert retrieval["size"] == {"queries": 6, "queries_total": 8, "corpus": 12, "corpus_total": 12}
    assert sts["query_prompt"] == "Instruct: Retrieve semantically similar text.\nQuery: "
    assert sts["document_prompt"] == sts["query_prompt"]


def test_card_body_has_table_prompts_training_and_plot(evaluated: dict) -> None:
    text = (evaluated["card_dir"] / "README.md").read_text(encoding="utf-8")
    for task in evaluated["results"]["tasks"]:
        trained = task["results"]["trained"]["main_score"] * 100
        base = task["results"]["base"]["main_score"] * 100
        row = f"| {task['name']} | {task['type']} | eng-Latn | {task['main_score']} | "
        assert f"{row}{trained:.2f} | {base:.2f} | {trained - base:+.2f} |" in text
    assert "| final training loss | 2.125 |" in text
    assert "| `lora_r` | 16 |" in text
    assert "| `query` | `Instruct: Given a web search query" in text
    assert "model.encode_query(queries)" in text and "last_hidden_state" in text
    assert "@article{wang2024improving" in text
    png = evaluated["card_dir"] / "eval_results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](eval_results.png)" in text


def test_second_run_reuses_cache_and_reevaluates_changed_data(evaluated: dict) -> None:
    eval_dir = evaluated["eval_dir"]
    files = {
        t["name"]: eval_dir / t["results"]["trained"]["scores_file"]
        for t in evaluated["results"]["tasks"]
    }
    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    sts_path = evaluated["root"] / "data" / "sts.tsv"
    original = sts_path.read_text(encoding="utf-8")
    try:
        sts_path.write_text(original.replace("\t4\n", "\t3\n"), encoding="utf-8")
        assert _stage(evaluated["config"]) == 0
    finally:
        sts_path.write_text(original, encoding="utf-8")
    assert files["TinyRetrieval"].stat().st_mtime_ns == stamps["TinyRetrieval"]
    assert files["TinySTS"].stat().st_mtime_ns != stamps["TinySTS"]


def _python_blocks(card_text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def test_card_snippets_run_and_match_the_kit(tiny_st_model_dir: Path) -> None:
    """Both usage snippets, executed as written, give the embeddings the evaluation uses."""
    from datasets import Dataset
    from mteb.types import PromptType
    from sentence_transformers import SentenceTransformer
    from torch.utils.data import DataLoader

    from model_card.card import build_card
    from model_card.encoders import Embedder, mteb_encoder

    model = SentenceTransformer(str(tiny_st_model_dir))
    card = build_card(
        repo_id="acme/tiny-embedder",
        model=model,
        training_record=None,
        results=None,
        staged={},
        license_id="apache-2.0",
        dataset_id=None,
        languages=[],
        not_evaluated_reason="Not run in this test.",
    )
    blocks = [b for b in _python_blocks(str(card)) if "model_id = " in b]
    assert len(blocks) == 2
    outputs = []
    for block in blocks:
        assert 'model_id = "acme/tiny-embedder"' in block
        code = block.replace('"acme/tiny-embedder"', repr(str(tiny_st_model_dir)))
        namespace: dict[str, Any] = {}
        exec(compile(code, "<card snippet>", "exec"), namespace)  # noqa: S102 - our own card
        outputs.append(namespace)
    st_ns, hf_ns = outputs
    queries, documents = st_ns["queries"], st_ns["documents"]
    for key in ("query_embeddings", "document_embeddings"):
        np.testing.assert_allclose(np.asarray(st_ns[key]), hf_ns[key].numpy(), atol=1e-5, rtol=1e-4)

    task_name = "SnippetCheck"
    prompts = {f"{task_name}-query": model.prompts["query"], f"{task_name}-document": ""}
    encoder = mteb_encoder(Embedder("trained", model, "acme/tiny", "r", "x"), prompts)
    metadata = _retrieval_metadata(task_name)
    for texts, prompt_type, key in (
        (queries, PromptType.query, "query_embeddings"),
        (documents, PromptType.document, "document_embeddings"),
    ):
        loader = DataLoader(Dataset.from_dict({"text": texts}), batch_size=4)
        kit = encoder.encode(
            loader,
            task_metadata=metadata,
            hf_split="test",
            hf_subset="default",
            prompt_type=prompt_type,
        )
        np.testing.assert_allclose(np.asarray(kit), hf_ns[key].numpy(), atol=1e-5, rtol=1e-4)


def _retrieval_metadata(name: str) -> Any:
    from mteb import TaskMetadata

    return TaskMetadata(
        name=name,
        description="snippet check",
        type="Retrieval",
        category="t2t",
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        dataset={"path": "local", "revision": "0"},
    )


def _card_text(model_dir: Path) -> str:
    return (model_dir / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("evaluation", "argv", "reason"),
    [
        ({}, (), "No evaluation tasks are configured"),
        ({"mteb_tasks": ["SciFact"]}, (), "None of the configured tasks could be run here."),
        ({"local_tasks": []}, ("--skip-eval",), "Evaluation was skipped"),
    ],
)
def test_unevaluated_model_card_says_so(
    tiny_st_model_dir: Path, tmp_path: Path, evaluation: dict, argv: tuple, reason: str
) -> None:
    from huggingface_hub import ModelCard

    write_model_folder(tiny_st_model_dir, tmp_path / "build" / "model", None)
    card_dir = tmp_path / "build" / "card"
    card_dir.mkdir(parents=True)
    (card_dir / "eval_results.png").write_bytes(b"stale plot from an older run")
    config = _config(tmp_path, "bundled:gemma-3-270m", **evaluation)
    assert _stage(config, *argv) == 0
    card = ModelCard.load(card_dir / "README.md")
    assert card.data.eval_results is None
    assert "model-index" not in card.content
    assert "**This model has not been evaluated.**" in card.text
    assert reason in card.text
    assert "| this model |" not in card.text
    assert not (card_dir / "eval_results.png").exists()
    assert not (tmp_path / "build" / "eval" / "results.json").exists()


def test_stage_stops_on_malformed_folder_and_keeps_the_old_card(
    tiny_st_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model_folder(tiny_st_model_dir, tmp_path / "build" / "model", None)
    card_dir = tmp_path / "build" / "card"
    card_dir.mkdir(parents=True)
    (card_dir / "README.md").write_text("old card\n", encoding="utf-8")
    beir = write_beir(tmp_path / "beir")
    lines = (beir / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    lines[4] = "{not json"
    (beir / "queries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = {"name": "Broken", "type": "retrieval", "path": str(beir)}
    config = _config(tmp_path, "bundled:gemma-3-270m", local_tasks=[task])
    assert _stage(config) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {beir / 'queries.jsonl'}:5: not valid JSON (")
    assert (card_dir / "README.md").read_text(encoding="utf-8") == "old card\n"
    assert not (tmp_path / "build" / "eval" / "results.json").exists()


def test_missing_model_folder_is_one_line(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, "bundled:gemma-3-270m")
    assert _stage(config) == 2
    err = capsys.readouterr().err.strip()
    model_dir = tmp_path / "build" / "model"
    assert err == (
        f"error: {model_dir}: no sentence-transformers model here (modules.json missing); "
        "run the training stage first"
    )


def _current_results(evaluated: dict) -> dict:
    """results.json of a stage run on the data as it is now (another test changes it)."""
    assert _stage(evaluated["config"]) == 0
    return json.loads((evaluated["eval_dir"] / "results.json").read_text(encoding="utf-8"))


def test_compression_variants_are_scored_from_the_same_embeddings(evaluated: dict) -> None:
    """The tiny model is 32 wide: with no Matryoshka record the card reports 16, 8 and 4
    dims, int8 and binary, each an mteb result of its own under ``experiments/``, and the
    model-index keeps the model's own scores only."""
    from mteb import TaskResult

    results = _current_results(evaluated)
    ladder = results["compression"]
    assert ladder["width"] == 32 and ladder["matryoshka_dims"] == []
    assert [v["name"] for v in ladder["variants"]] == [
        "16 dims",
        "8 dims",
        "4 dims",
        "int8",
        "binary",
    ]
    assert [v["bytes_per_vector"] for v in ladder["variants"]] == [64, 32, 16, 32, 4]
    for task in results["tasks"]:
        variants = task["results"]["trained"]["compression"]
        assert task["results"]["base"]["compression"] is None
        for name, variant in variants.items():
            assert "/experiments/" in variant["scores_file"], name
            staged = evaluated["card_dir"] / "results" / variant["scores_file"].split("/", 1)[1]
            assert TaskResult.from_disk(staged).get_score() == pytest.approx(
                variant["main_score"], abs=1e-6
            )
        assert variants["16 dims"]["main_score"] != pytest.approx(variants["binary"]["main_score"])
    text = (evaluated["card_dir"] / "README.md").read_text(encoding="utf-8")
    assert "| stored as | bytes per vector | TinyRetrieval | TinySTS | score kept (mean) |" in text
    assert "| 32 dims, fp32 (full) | 128 | " in text and "| binary, 32 dims | 4 | " in text
    assert 'SentenceTransformer("acme/tiny-embedder", truncate_dim=16)' in text
    snippet = next(block for block in _python_blocks(text) if "quantize_embeddings" in block)
    code = snippet.replace('"acme/tiny-embedder"', repr(str(evaluated["model_dir"])))
    namespace: dict[str, Any] = {}
    exec(compile(code, "<card snippet>", "exec"), namespace)  # noqa: S102 - our own card
    assert namespace["embeddings"].shape == (2, 16)
    assert namespace["int8_embeddings"].dtype == np.int8
    assert namespace["binary_embeddings"].shape == (2, 2)  # 16 bits packed into 2 bytes


def test_a_truncated_variant_scores_like_the_model_loaded_with_truncate_dim(
    evaluated: dict, tmp_path: Path
) -> None:
    """Deriving the first 16 values from the kept embeddings is what a user gets from
    ``SentenceTransformer(..., truncate_dim=16)``: mteb scores the two alike."""
    import mteb
    from sentence_transformers import SentenceTransformer

    from kit.config import load_config
    from model_card.encoders import Embedder, mteb_encoder
    from model_card.tasks import local_eval_task

    tasks = [local_eval_task(t) for t in load_config(evaluated["config"]).evaluation.local_tasks]
    model = SentenceTransformer(str(evaluated["model_dir"]), truncate_dim=16)
    prompts: dict[str, str] = {}
    for task in tasks:
        prompts.update(task.prompts())
    encoder = mteb_encoder(Embedder("trained", model, "acme/truncated", "r", "x"), prompts)
    for task in tasks:
        (result,) = mteb.evaluate(
            encoder, task.task, cache=mteb.ResultCache(tmp_path), co2_tracker=False
        ).task_results
        by_name = {t["name"]: t for t in _current_results(evaluated)["tasks"]}
        derived = by_name[task.name]["results"]["trained"]["compression"]["16 dims"]
        assert result.get_score() == pytest.approx(derived["main_score"], abs=1e-6)


def test_variants_encode_nothing_again() -> None:
    """A variant reads the embeddings its task's own run kept: the model encodes each input
    set once, however many variants are scored."""
    from datasets import Dataset
    from mteb.types import PromptType
    from torch.utils.data import DataLoader

    from model_card.compression import EmbeddingMemo, MemoEncoder, variants_for

    class CountingEncoder:
        mteb_model_meta = _retrieval_metadata("Counting")  # any pydantic model with copy
        calls = 0

        def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
            CountingEncoder.calls += 1
            texts = [t for batch in inputs for t in batch["text"]]
            return np.arange(len(texts) * 8, dtype=np.float32).reshape(len(texts), 8) - 10

    memo = EmbeddingMemo()
    inner = CountingEncoder()
    own = MemoEncoder(inner, memo)
    loader = DataLoader(Dataset.from_dict({"text": ["a", "b", "c"]}), batch_size=2)
    kwargs = {"task_metadata": _retrieval_metadata("T"), "hf_split": "test",
              "hf_subset": "default", "prompt_type": PromptType.document}  # fmt: skip
    full = own.encode(loader, **kwargs)
    shapes = [MemoEncoder(inner, memo, v).encode(loader, **kwargs) for v in variants_for([4, 2])]
    assert CountingEncoder.calls == 1
    assert [s.shape for s in shapes] == [(3, 4), (3, 2), (3, 8), (3, 8)]
    np.testing.assert_array_equal(shapes[0], full[:, :4])
    assert set(np.unique(shapes[3])) == {-1.0, 1.0}
    assert len(np.unique(shapes[2])) <= 256
