"""Run the tasks with ``mteb.evaluate`` and keep the results with mteb's ``ResultCache``.

A model's results are cached under its name and a revision that stands for its content (the
trained folder's published digest; the base model's identity, wrapping and prompts), so a
cached result is reused exactly when mteb's own check accepts it: the same model revision,
and a result file that covers the task at its dataset revision (a local task's revision is
its data fingerprint). ``results.json`` (``kit.artifacts.EvaluationResults``) summarizes the
run for the card. The trained model's compression variants (smaller and coarser vectors,
``model_card.compression``) are scored right after each task's own run, from the embeddings
that run computed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from kit.artifacts import EvaluationResults, ModelRun, TaskSummary
from model_card.compression import EmbeddingMemo, MemoEncoder, Variant
from model_card.encoders import Embedder, mteb_encoder
from model_card.tasks import EvalTask

log = logging.getLogger(__name__)


def _cached(cache: Any, task: EvalTask, encoder: Any) -> bool:
    """Whether mteb's cache holds a complete result of this task for this model revision,
    computed on the task's current data (mteb's own mergeability check)."""
    found = cache.load_task_result(task.name, encoder.mteb_model_meta)
    return (
        found is not None
        and found.is_mergeable(task.task)
        and not found.get_missing_evaluations(task.task)
    )


def _run_task(
    encoder: Any, task: EvalTask, cache: Any, eval_dir: Path, batch_size: int, reuse: bool
) -> ModelRun:
    """One mteb run of one task (or its cached result): score, result file, timing."""
    import mteb

    cache_file = cache.get_task_result_path(task.name, encoder.mteb_model_meta)
    result = mteb.evaluate(
        encoder,
        task.task,
        cache=cache,
        overwrite_strategy="only-missing" if reuse else "always",
        encode_kwargs={"batch_size": batch_size},
        co2_tracker=False,
    )
    (task_result,) = result.task_results
    return ModelRun(
        main_score=float(task_result.get_score()),
        scores_file=cache_file.relative_to(eval_dir).as_posix(),
        evaluation_time_s=task_result.evaluation_time,
        reused=reuse,
    )


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
    for task in tasks:
        runs = [(v, MemoEncoder(inner, memo, v)) for v in variants]
        reuse = not fresh and all(
            _cached(cache, task, e) for e in [encoder, *(e for _, e in runs)]
        )
        log.info(
            "%s model on %s: %s", embedder.role, task.name, "cached" if reuse else "evaluating"
        )
        own = _run_task(encoder, task, cache, eval_dir, batch_size, reuse)
        if variants:
            variants_started = time.monotonic()
            compression = {
                v.name: _run_task(e, task, cache, eval_dir, batch_size, reuse) for v, e in runs
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


def build_results(
    embedders: list[Embedder],
    tasks: list[EvalTask],
    per_model: dict[str, dict[str, ModelRun]],
    skipped: list[dict[str, str]],
) -> EvaluationResults:
    import mteb

    return EvaluationResults(
        mteb_version=mteb.__version__,
        models={
            e.role: {"name": e.cache_name, "revision": e.revision, "source": e.source}
            for e in embedders
        },
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
            )
            for t in tasks
        ],
        skipped=skipped,
    )
