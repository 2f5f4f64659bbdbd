"""The model_card stage: evaluate the trained model (and its base), then write the card.

Inputs are the published model folder (``SentenceTransformer(model_dir)`` plus its training
record) and ``[evaluation]``; outputs are mteb's result cache and ``results.json`` under
``eval_dir``, and the card folder (``README.md``, ``eval_results.png``, the trained model's
mteb result files and ``.eval_results``), which the release stage puts beside the model's own
files. ``--dry-run`` prints the tasks, their splits, subsets and prompts, and the device
choice, and evaluates nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import time
from pathlib import Path

from kit.artifacts import (
    TRAINING_RECORD_FILE,
    EvaluationResults,
    GgufCheck,
    TaskSummary,
    TrainingRecord,
    read_training_record,
    write_evaluation_results,
)
from kit.cli import StageError
from kit.config import Config
from kit.devices import choose_device
from kit.files import atomic_write_text
from kit.net import hub_reachable
from kit.registry_tasks import resolve
from kit.staleness import StageRun
from model_card.card import build_card, write_eval_results
from model_card.compression import Variant, report_dims, variants_for
from model_card.encoders import Embedder, build_base, load_trained
from model_card.evaluation import build_results, evaluate_model
from model_card.gguf_check import (
    VERIFICATION_FILE,
    check_file,
    gguf_files,
    write_verification,
)
from model_card.plot import plot_results
from model_card.results import adopt_revision, stage_results, staged_scores
from model_card.tasks import EvalTask, local_eval_task, registry_eval_task

log = logging.getLogger(__name__)
PLOT_FILE = "eval_results.png"


def training_record(model_dir: Path) -> TrainingRecord | None:
    """The model's training record; without one the card says the training is unknown."""
    if not (model_dir / TRAINING_RECORD_FILE).is_file():
        log.warning("%s not found: the card will say the training details are unknown",
                    model_dir / TRAINING_RECORD_FILE)  # fmt: skip
        return None
    return read_training_record(model_dir)


def registry_tasks(config: Config) -> list[EvalTask]:
    """The benchmark's tasks and those named alone, with their splits, subsets and prompts
    (from mteb's metadata: no network)."""
    evaluation = config.evaluation
    return [registry_eval_task(r) for r in resolve(evaluation.benchmark, evaluation.mteb_tasks)]


def collect_tasks(config: Config) -> tuple[list[EvalTask], list[dict]]:
    """Local tasks always; registry tasks only when a Hub is reachable (else listed as skipped)."""
    tasks = [local_eval_task(task) for task in config.evaluation.local_tasks]
    registry = registry_tasks(config)
    skipped: list[dict[str, str]] = []
    if registry and hub_reachable():
        tasks += registry
    elif registry:
        log.warning("no Hub reachable: skipping %d registry tasks", len(registry))
        skipped = [
            {
                "name": task.name,
                "reason": "mteb registry task; its data is on the Hub, which could not be "
                f"reached (subsets {', '.join(task.subsets)}, {task.subsets_origin})",
            }
            for task in registry
        ]
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StageError(f"evaluation: task name {duplicates[0]!r} is used twice")
    return tasks, skipped


def data_caveat(record: TrainingRecord | None) -> str:
    generator = record.generator if record else None
    if generator and generator.bundled_small_model:
        return (
            f"This release used a very small local generator ({generator.model}), so "
            "its synthetic data is weak: it shows the pipeline working end to end, not paper "
            "quality."
        )
    if generator and generator.model:
        return f"The generator was {generator.model}."
    return "The generator of the training data is not recorded."


def base_reference(config: Config, record: TrainingRecord | None) -> str | None:
    """The base model to compare with: the record's, unless it names a local folder, whose
    path a published record never holds (then ``evaluation.base_model``)."""
    recorded = record.base_model if record else ""
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


def result_files(task: TaskSummary) -> list[str]:
    """The trained model's result files of a task: its own and its compression variants'."""
    trained = task.results["trained"]
    compressed = (trained.compression or {}).values()
    return [trained.scores_file, *(v.scores_file for v in compressed)]


def check_ggufs(
    config: Config,
    trained: Embedder,
    record: TrainingRecord | None,
    tasks: list[EvalTask],
    results: EvaluationResults,
) -> list[GgufCheck]:
    """Each GGUF file the training record lists, served by llama.cpp and judged against the
    trained model's own scores (none when ``evaluation.gguf_check`` is off)."""
    if not config.evaluation.gguf_check or record is None:
        return []
    scores = {t.name: round(t.results["trained"].main_score * 100, 2) for t in results.tasks}
    files = gguf_files(config.layout.model_dir, record.gguf_files)
    checks = [
        check_file(path, config.layout.model_dir, trained, tasks, scores) for path in files
    ]
    for check in checks:
        log.info("GGUF %s: %s (minimum cosine %.5f)", check.type,
                 "passed" if check.passed else "FAILED", check.min_cosine)  # fmt: skip
    return checks


def run_evaluation(
    config: Config,
    trained: Embedder,
    record: TrainingRecord | None,
    eval_dir: Path,
    fresh: bool,
) -> tuple[EvaluationResults | None, str, list[EvalTask]]:
    """Evaluate; return the results (or ``None``), when none the reason the card gives, and
    the tasks run."""
    tasks, skipped = collect_tasks(config)
    if not tasks:
        reason = (
            "None of the configured tasks could be run here."
            if skipped
            else "No evaluation tasks are configured (evaluation.local_tasks, "
            "evaluation.benchmark, evaluation.mteb_tasks)."
        )
        return (EvaluationResults("", {}, [], skipped) if skipped else None), reason, []
    started = time.monotonic()
    evaluation = config.evaluation
    width = trained.model.get_embedding_dimension()
    trained_dims = list(record.matryoshka_dims) if record else []
    ladder = compression_variants(config, width, trained_dims)
    if trained.revision != trained.digest and adopt_revision(
        eval_dir, trained.cache_name, trained.digest, trained.revision
    ):
        log.info("results cached under the content digest are now labelled %s (%s)",
                 trained.revision, trained.revision_source)  # fmt: skip
    log.info("trained model encodes on %s", trained.plan.describe() if trained.plan else "-")
    batch = trained.plan.batch_size if trained.plan else evaluation.batch_size
    per_model = {"trained": evaluate_model(trained, tasks, eval_dir, batch, fresh, True, ladder)}
    embedders = [trained]
    base_ref = base_reference(config, record)
    if evaluation.evaluate_base and base_ref:
        max_length = record.max_length if record else trained.model.max_seq_length
        base = build_base(base_ref, max_length, evaluation)
        log.info("base model encodes on %s", base.plan.describe() if base.plan else "-")
        per_model["base"] = evaluate_model(base, tasks, eval_dir, batch, fresh)
        embedders.append(base)
        del base
        gc.collect()
    elif evaluation.evaluate_base:
        log.warning("no base model to compare with: the base model is not evaluated")
    results = build_results(
        embedders, tasks, per_model, skipped, eval_dir, evaluation.benchmark
    )
    compression = None
    if ladder:
        compression = {
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
    results = dataclasses.replace(
        results,
        compression=compression,
        gguf=check_ggufs(config, trained, record, tasks, results),
        wall_time_s=round(time.monotonic() - started, 1),
    )
    log.info("evaluation took %.1f s wall time", results.wall_time_s)
    log.info("results written to %s", write_evaluation_results(eval_dir, results))
    return results, "", tasks


def plan_lines(config: Config) -> list[str]:
    """What an evaluation would run, and how, for ``--dry-run``: nothing is loaded or run."""
    evaluation = config.evaluation
    tasks = [local_eval_task(task) for task in evaluation.local_tasks] + registry_tasks(config)
    device = choose_device(evaluation.device)
    devices = ", ".join(device.pool_devices) or device.device
    batch = evaluation.batch_size or "picked per model"
    lines = [
        f"benchmark: {evaluation.benchmark or '(none)'}",
        f"device: {devices} ({device.reason}); precision {evaluation.precision} (auto: bf16 "
        f"for a decoder on a GPU, else fp32); batch size: {batch}",
        f"{len(tasks)} tasks:",
    ]
    for task in tasks:
        lines += [
            f"- {task.name} [{task.type}] splits {', '.join(task.splits)}; subsets "
            f"{', '.join(task.subsets)} ({task.subsets_origin}); main score {task.main_score}",
            f"    query prompt: {task.instruction.query_prompt!r}",
            f"    document prompt: {task.instruction.document_prompt!r}",
        ]
    return lines


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    if getattr(args, "dry_run", False):
        print("\n".join(plan_lines(config)))
        return
    layout = config.layout
    model_dir, eval_dir, card_dir = layout.model_dir, layout.eval_dir, stage.folder
    repo_id = config.hub.repo_id("model")
    record = training_record(model_dir)
    trained = load_trained(model_dir, repo_id, config.evaluation, config.hub.token_env)
    skip_eval = getattr(args, "skip_eval", False)
    run: list[EvalTask] = []
    if skip_eval:
        results, reason = None, "Evaluation was skipped when this card was written."
    else:
        results, reason, run = run_evaluation(
            config, trained, record, eval_dir, getattr(args, "fresh", False)
        )
    evaluated = results is not None and bool(results.tasks)
    tasks = results.tasks if results is not None and evaluated else []
    by_name = {task.name: task.task for task in run}
    stage.begin()
    stage_results(eval_dir, card_dir,
                  {name: by_name[t.name] for t in tasks for name in result_files(t)})  # fmt: skip
    verification = card_dir / VERIFICATION_FILE
    if results is not None and results.gguf:
        write_verification(card_dir, results.gguf)
    else:
        verification.unlink(missing_ok=True)
    plot_path = card_dir / PLOT_FILE
    if results is not None and evaluated:
        plot_results(results, plot_path)
    else:
        plot_path.unlink(missing_ok=True)
    card = build_card(
        repo_id=repo_id,
        model=trained.model,
        training_record=record,
        results=results,
        staged=staged_scores(card_dir),
        license_id=config.evaluation.model_license,
        dataset_id=(record.dataset_repo_id if record else None) or config.hub.repo_id("dataset"),
        languages=record.languages if record else [],
        not_evaluated_reason=reason,
        data_caveat=data_caveat(record),
        safetensors_bytes=sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
    )
    atomic_write_text(card_dir / "README.md", str(card))
    write_eval_results(card_dir, results if evaluated else None, staged_scores(card_dir))
    # A card written without evaluating is not the card of this config: the next run redoes it.
    stage.publish(facts={"tasks": [t.name for t in tasks]}, finished=not skip_eval)
    log.info("model card written to %s", card_dir / "README.md")
