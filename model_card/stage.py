"""The model_card stage: evaluate the trained model (and its base), then write the card.

Inputs are the published model folder (``SentenceTransformer(model_dir)`` plus its
``training_record.json``) and the config; outputs are mteb results under ``eval_dir`` and
``README.md`` + ``eval_results.png`` in the model folder.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from kit.cli import StageError
from kit.config import Config
from kit.files import atomic_write_text, read_json_object
from kit.net import hub_reachable
from kit.paths import layout
from kit.provenance import build_provenance, write_provenance
from model_card.card import build_card
from model_card.compression import Variant, report_dims, variants_for
from model_card.encoders import Embedder, build_base, load_trained
from model_card.evaluation import (
    build_results,
    evaluate_model,
    load_results,
    previous_fingerprints,
    write_results,
)
from model_card.plot import plot_results
from model_card.results import stage_results, staged_scores
from model_card.tasks import EvalTask, local_eval_task, registry_eval_task

log = logging.getLogger(__name__)
TRAINING_RECORD = "training_record.json"
PLOT_FILE = "eval_results.png"


def read_training_record(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / TRAINING_RECORD
    if not path.is_file():
        log.warning("%s not found: the card will say the training details are unknown", path)
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StageError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the training stage did not "
            "finish: run `make train` again"
        ) from None
    if not isinstance(record, dict):
        raise StageError(f"{path}: expected a JSON object")
    return record


def model_facts(model_dir: Path) -> dict[str, Any]:
    """What the training stage recorded about the model's data (its provenance.json)."""
    provenance = read_json_object(model_dir / "provenance.json") or {}
    return provenance.get("facts") or {}


def collect_tasks(config: Config) -> tuple[list[EvalTask], list[dict]]:
    """Local tasks always; registry tasks only when a Hub is reachable (else listed as skipped)."""
    evaluation = config.evaluation
    tasks = [local_eval_task(task) for task in evaluation.local_tasks]
    skipped: list[dict[str, str]] = []
    if evaluation.mteb_tasks:
        if hub_reachable():
            tasks += [registry_eval_task(name) for name in evaluation.mteb_tasks]
        else:
            log.warning("no Hub reachable: skipping registry tasks %s", evaluation.mteb_tasks)
            skipped = [
                {
                    "name": name,
                    "reason": "mteb registry task; its data is on the Hub, which "
                    "could not be reached",
                }
                for name in evaluation.mteb_tasks
            ]
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StageError(f"evaluation: task name {duplicates[0]!r} is used twice")
    return tasks, skipped


def data_caveat(facts: dict[str, Any]) -> str:
    generator = facts.get("generator") or {}
    if generator.get("bundled_small_model"):
        return (
            f"This release used a very small local generator ({generator.get('model')}), so "
            "its synthetic data is weak: it shows the pipeline working end to end, not paper "
            "quality."
        )
    if generator.get("model"):
        return f"The generator was {generator['model']}."
    return "The generator of the training data is not recorded."


def base_reference(config: Config, record: dict[str, Any] | None) -> str | None:
    """The base model to compare with: the record's, unless it names a local folder, whose
    path a published record never holds (then ``evaluation.base_model``)."""
    recorded = (record or {}).get("base_model") or ""
    if config.evaluation.base_model:
        return config.evaluation.base_model
    if recorded and not recorded.startswith("local:"):
        return recorded
    if recorded:
        log.warning(
            "the base model %s is a local folder: set evaluation.base_model to its path to "
            "compare against it", recorded
        )  # fmt: skip
    return None


def compression_variants(config: Config, width: int, trained_dims: list[int]) -> list[Variant]:
    """The smaller and coarser vectors the card reports for the trained model (none when
    ``evaluation.compression`` is off)."""
    if not config.evaluation.compression:
        return []
    return variants_for(report_dims(config.evaluation.compression_dims, trained_dims, width))


def result_files(task: dict[str, Any]) -> list[str]:
    """The trained model's result files of a task: its own and its compression variants'."""
    trained = task["results"]["trained"]
    compressed = (trained.get("compression") or {}).values()
    return [trained["scores_file"], *(v["scores_file"] for v in compressed)]


def run_evaluation(
    config: Config,
    trained: Embedder,
    record: dict[str, Any] | None,
    eval_dir: Path,
    fresh: bool,
) -> tuple[dict[str, Any] | None, str]:
    """Evaluate; return the results (or ``None``) and, when none, the reason the card gives."""
    tasks, skipped = collect_tasks(config)
    if not tasks:
        reason = (
            "None of the configured tasks could be run here."
            if skipped
            else "No evaluation tasks are configured (evaluation.local_tasks, "
            "evaluation.mteb_tasks)."
        )
        return ({"tasks": [], "skipped": skipped} if skipped else None), reason
    started = time.monotonic()
    previous = previous_fingerprints(load_results(eval_dir))
    batch = config.evaluation.batch_size
    width = trained.model.get_embedding_dimension()
    trained_dims = list((record or {}).get("matryoshka_dims") or [])
    ladder = compression_variants(config, width, trained_dims)
    per_model = {
        "trained": evaluate_model(trained, tasks, eval_dir, batch, previous, fresh, True, ladder)
    }
    embedders = [trained]
    base_ref = base_reference(config, record)
    if config.evaluation.evaluate_base and base_ref:
        max_length = int((record or {}).get("max_length") or trained.model.max_seq_length)
        base = build_base(base_ref, max_length)
        per_model["base"] = evaluate_model(base, tasks, eval_dir, batch, previous, fresh)
        embedders.append(base)
        del base
        gc.collect()
    elif config.evaluation.evaluate_base:
        log.warning("no base model to compare with: the base model is not evaluated")
    results = build_results(embedders, tasks, per_model, skipped)
    if ladder:
        results["compression"] = {
            "width": width,
            "matryoshka_dims": trained_dims,
            "variants": [
                {
                    "name": v.name,
                    "truncate_dim": v.truncate_dim,
                    "precision": v.precision,
                    "bytes_per_vector": v.bytes_per_vector(width),
                }
                for v in ladder
            ],
        }
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    log.info("evaluation took %.1f s wall time", results["wall_time_s"])
    log.info("results written to %s", write_results(eval_dir, results))
    return results, ""


def main(config: Config, args: argparse.Namespace) -> None:
    paths = layout(str(config.path))
    model_dir, eval_dir = Path(paths["model_dir"]), Path(paths["eval_dir"])
    repo_id = config.hub.repo_id("model")
    record = read_training_record(model_dir)
    trained = load_trained(model_dir, repo_id)
    if getattr(args, "skip_eval", False):
        results, reason = None, "Evaluation was skipped when this card was written."
    else:
        results, reason = run_evaluation(
            config, trained, record, eval_dir, getattr(args, "fresh", False)
        )
    evaluated = bool(results and results.get("tasks"))
    tasks = results["tasks"] if evaluated else []
    stage_results(eval_dir, model_dir, [name for t in tasks for name in result_files(t)])
    plot_path = model_dir / PLOT_FILE
    if evaluated:
        plot_results(results, plot_path)
    elif plot_path.exists():
        os.remove(plot_path)
    facts = model_facts(model_dir)
    card = build_card(
        repo_id=repo_id,
        model=trained.model,
        training_record=record,
        results=results,
        staged=staged_scores(model_dir),
        license_id=config.evaluation.model_license,
        dataset_id=facts.get("dataset_repo_id") or config.hub.repo_id("dataset"),
        languages=facts.get("languages") or [],
        not_evaluated_reason=reason,
        data_caveat=data_caveat(facts),
    )
    atomic_write_text(model_dir / "README.md", str(card))
    write_provenance(
        eval_dir,
        build_provenance(
            "model_card",
            config,
            ("evaluation",),
            {"model": trained.revision},
            {"tasks": [t["name"] for t in (results or {}).get("tasks", [])]},
        ),
    )
    log.info("model card written to %s", model_dir / "README.md")
