"""Run the tasks with ``mteb.evaluate`` and keep the results with mteb's ``ResultCache``.

A model's results are cached under its name and a revision a reader can look up (the model
repo's Hub commit holding the trained files, else the folder's published digest; the base
model's identity and wrapping), so a cached result is reused exactly when mteb's own check
accepts it: the same model revision, and a result file that covers the task's splits and
subsets at its dataset revision (a local task's revision is its data fingerprint). Each
task's score is the mean over the splits and subsets it runs, and the means over tasks are
computed by mteb's benchmark code, as the leaderboard computes them. ``results.json``
(``kit.artifacts.EvaluationResults``) summarizes the run for the card. The trained model's
compression variants (smaller and coarser vectors, ``model_card.compression``) are scored
right after each task's own run, from the embeddings that run computed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from kit.artifacts import EvaluationResults, ModelRun, TaskSummary
from kit.devices import encode_kwargs, encode_pool
from model_card.compression import EmbeddingMemo, MemoEncoder, Variant
from model_card.encoders import Embedder, mteb_encoder
from model_card.tasks import EvalTask

log = logging.getLogger(__name__)
MEANS = ("Mean(Task)", "Mean(TaskType)")


def _cached(cache: Any, task: EvalTask, encoder: Any) -> bool:
    """Whether mteb's cache holds a complete result of this task for this model revision,
    computed on the task's current data (mteb's own mergeability check)."""
    found = cache.load_task_result(task.name, encoder.mteb_model_meta)
    return (
        found is not None
        and found.is_mergeable(task.task)
        and not found.get_missing_evaluations(task.task)
    )


def task_score(result: Any, task: EvalTask) -> float:
    """The task's score as the leaderboard takes it: its result filtered to the splits and
    subsets the task runs (a cached file may hold more), averaged."""
    return float(result.validate_and_filter_scores(task.task).get_score())


def _run_task(
    encoder: Any, task: EvalTask, cache: Any, eval_dir: Path, kwargs: dict, reuse: bool
) -> ModelRun:
    """One mteb run of one task (or its cached result): score, result file, timing."""
    import mteb

    cache_file = cache.get_task_result_path(task.name, encoder.mteb_model_meta)
    result = mteb.evaluate(
        encoder,
        task.task,
        cache=cache,
        overwrite_strategy="only-missing" if reuse else "always",
        encode_kwargs=kwargs,
        co2_tracker=False,
    )
    (task_result,) = result.task_results
    # The score as the result file stores it (rounded by mteb), whether fresh or cached.
    stored = type(task_result).from_disk(cache_file)
    return ModelRun(
        main_score=task_score(stored, task),
        scores_file=cache_file.relative_to(eval_dir).as_posix(),
        evaluation_time_s=task_result.evaluation_time,
        reused=reuse,
    )


def leaderboard_means(
    runs: dict[str, ModelRun], tasks: list[EvalTask], eval_dir: Path, benchmark: str
) -> tuple[dict[str, float | None], str]:
    """Mean over tasks and mean over task types of one model's result files, by mteb's own
    aggregations, as the leaderboard takes them: those of the configured benchmark when every
    one of its tasks was run, else both over the tasks run."""
    import mteb
    from mteb import TaskResult
    from mteb.benchmarks.benchmark import BenchmarkAggregation

    run = [task for task in tasks if task.name in runs]
    results = []
    for task in run:
        result = TaskResult.from_disk(eval_dir / runs[task.name].scores_file)
        result = result.validate_and_filter_scores(task.task)
        # mteb looks a result's task up in its registry, where a local task is not.
        result.__dict__["task"] = task.task
        results.append(result)
    aggregations = [BenchmarkAggregation.MEAN_TASK, BenchmarkAggregation.MEAN_TASK_TYPE]
    named = {task.name for task in run if task.benchmark == benchmark}
    scope = f"the {len(run)} task{'s' * (len(run) != 1)} run here (not a benchmark score)"
    if benchmark and len(named) == len(mteb.get_benchmark(benchmark).tasks):
        scope = f"{benchmark}, as its leaderboard computes it"
        aggregations = [a for a in mteb.get_benchmark(benchmark).aggregations if a in aggregations]
    scores: dict[str, float | None] = {}
    for aggregation in aggregations:
        scores.update(aggregation.aggregate(results))
    return {key: scores.get(key) for key in MEANS}, scope


def evaluate_model(
    embedder: Embedder,
    tasks: list[EvalTask],
    eval_dir: Path,
    batch_size: int,
    fresh: bool = False,
    instructed: bool = True,
    variants: list[Variant] | tuple[Variant, ...] = (),
) -> dict[str, ModelRun]:
    """Evaluate one model on every task; return per task its score, cache file and timing,
    and under ``compression`` those of each variant.

    ``instructed=False`` runs a model as it is meant to be used when it takes no instruction
    (a peer such as all-MiniLM-L6-v2): no prompt on either side. A task's own result is
    reused only when its variants' are too, since they are derived from its embeddings."""
    import mteb

    cache = mteb.ResultCache(eval_dir)
    prompts: dict[str, str] = {}
    for task in tasks if instructed else ():
        prompts.update(task.prompts())
    inner = mteb_encoder(embedder, prompts)
    memo = EmbeddingMemo()
    encoder = MemoEncoder(inner, memo) if variants else inner
    out: dict[str, ModelRun] = {}
    started = time.monotonic()
    with encode_pool(embedder.model, embedder.plan) as pool:
        kwargs = encode_kwargs(embedder.plan, pool) if embedder.plan else {"batch_size": batch_size}
        for task in tasks:
            runs = [(v, MemoEncoder(inner, memo, v)) for v in variants]
            reuse = not fresh and all(
                _cached(cache, task, e) for e in [encoder, *(e for _, e in runs)]
            )
            log.info(
                "%s model on %s: %s", embedder.role, task.name, "cached" if reuse else "evaluating"
            )
            own = _run_task(encoder, task, cache, eval_dir, kwargs, reuse)
            if variants:
                variants_started = time.monotonic()
                compression = {
                    v.name: _run_task(e, task, cache, eval_dir, kwargs, reuse) for v, e in runs
                }
                own = dataclasses.replace(
                    own,
                    compression=compression,
                    compression_time_s=round(time.monotonic() - variants_started, 2),
                )
                memo.clear()
            out[task.name] = own
    log.info("%s model: %d task(s) in %.1f s wall time", embedder.role, len(tasks),
             time.monotonic() - started)  # fmt: skip
    return out


def _model_facts(embedder: Embedder) -> dict[str, str]:
    facts = {"name": embedder.cache_name, "revision": embedder.revision,
             "revision_source": embedder.revision_source, "source": embedder.source}  # fmt: skip
    if embedder.plan is not None:
        facts["encoding"] = embedder.plan.describe()
    return facts


def build_results(
    embedders: list[Embedder],
    tasks: list[EvalTask],
    per_model: dict[str, dict[str, ModelRun]],
    skipped: list[dict[str, str]],
    eval_dir: Path,
    benchmark: str = "",
) -> EvaluationResults:
    import mteb

    means, scope = {}, ""
    for role, runs in per_model.items():
        means[role], scope = leaderboard_means(runs, tasks, eval_dir, benchmark)
    return EvaluationResults(
        mteb_version=mteb.__version__,
        models={e.role: _model_facts(e) for e in embedders},
        tasks=[
            TaskSummary(
                name=t.name,
                source=t.source,
                type=t.type,
                dataset=t.dataset,
                revision=t.task.metadata.dataset["revision"],
                languages=t.languages,
                main_score=t.main_score,
                query_prompt=t.instruction.query_prompt,
                document_prompt=t.instruction.document_prompt,
                prompt_source=t.instruction.source,
                size=t.size,
                results={role: per_model[role][t.name] for role in per_model},
                splits=t.splits,
                subsets=t.subsets,
                subsets_origin=t.subsets_origin,
                benchmark=t.benchmark,
            )
            for t in tasks
        ],
        skipped=skipped,
        benchmark=benchmark,
        means=means,
        means_scope=scope,
    )
