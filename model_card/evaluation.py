"""Run the tasks with ``mteb.evaluate`` and keep the results with mteb's ``ResultCache``.

``results.json`` (next to the cache) is the summary the card is written from: for each task
and model the main score, the cache file it came from, and the prompt it was run with. A
cached result is reused only when the model, the data, the caps and the prompt are all the
same as when it was computed. The trained model's compression variants (smaller and coarser
vectors, ``model_card.compression``) are scored right after each task's own run, from the
embeddings that run computed, and summarized under that task's result.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from kit.files import atomic_write_json, read_json_object
from model_card.compression import EmbeddingMemo, MemoEncoder, Variant
from model_card.encoders import Embedder, mteb_encoder
from model_card.tasks import EvalTask

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1


def run_fingerprint(embedder: Embedder, task: EvalTask) -> str:
    parts = [embedder.cache_name, embedder.revision, task.fingerprint, json.dumps(task.prompts())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def load_results(eval_dir: Path) -> dict[str, Any] | None:
    """The previous summary; a missing or torn one means evaluating from scratch."""
    return read_json_object(eval_dir / RESULTS_FILE)


def previous_fingerprints(previous: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    """(task, role) and (task, "role/variant") -> the fingerprint each result was made with."""
    if not previous:
        return {}
    found = {}
    for task in previous.get("tasks", []):
        for role, result in task.get("results", {}).items():
            found[(task["name"], role)] = result["fingerprint"]
            for name, variant in (result.get("compression") or {}).items():
                found[(task["name"], f"{role}/{name}")] = variant["fingerprint"]
    return found


def _run_task(
    encoder: Any, task: EvalTask, cache: Any, eval_dir: Path, batch_size: int, reuse: bool
) -> dict[str, Any]:
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
    return {
        "main_score": float(task_result.get_score()),
        "scores_file": cache_file.relative_to(eval_dir).as_posix(),
        "evaluation_time_s": task_result.evaluation_time,
        "reused": reuse,
    }


def evaluate_model(
    embedder: Embedder,
    tasks: list[EvalTask],
    eval_dir: Path,
    batch_size: int,
    previous: dict[tuple[str, str], str],
    fresh: bool = False,
    instructed: bool = True,
    variants: list[Variant] | tuple[Variant, ...] = (),
) -> dict[str, dict[str, Any]]:
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
    out: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    for task in tasks:
        fingerprint = run_fingerprint(embedder, task)
        runs = [(v, MemoEncoder(inner, memo, v), v.fingerprint(fingerprint)) for v in variants]
        checks = [(embedder.role, fingerprint, encoder)]
        checks += [(f"{embedder.role}/{v.name}", p, e) for v, e, p in runs]
        reuse = not fresh and all(
            previous.get((task.name, role)) == expected
            and cache.get_task_result_path(task.name, e.mteb_model_meta).is_file()
            for role, expected, e in checks
        )
        log.info(
            "%s model on %s: %s", embedder.role, task.name, "cached" if reuse else "evaluating"
        )
        out[task.name] = _run_task(encoder, task, cache, eval_dir, batch_size, reuse)
        out[task.name]["fingerprint"] = fingerprint
        if variants:
            variants_started = time.monotonic()
            out[task.name]["compression"] = {
                v.name: {
                    **_run_task(e, task, cache, eval_dir, batch_size, reuse),
                    "fingerprint": p,
                }
                for v, e, p in runs
            }
            out[task.name]["compression_time_s"] = round(time.monotonic() - variants_started, 2)
            memo.clear()
    log.info("%s model: %d task(s) in %.1f s wall time", embedder.role, len(tasks),
             time.monotonic() - started)  # fmt: skip
    return out


def build_results(
    embedders: list[Embedder],
    tasks: list[EvalTask],
    per_model: dict[str, dict[str, dict[str, Any]]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    import mteb

    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mteb_version": mteb.__version__,
        "models": {
            e.role: {"name": e.cache_name, "revision": e.revision, "source": e.source}
            for e in embedders
        },
        "tasks": [
            {
                "name": t.name,
                "source": t.source,
                "type": t.type,
                "dataset": t.dataset,
                "revision": t.task.metadata.dataset["revision"],
                "languages": t.languages,
                "main_score": t.main_score,
                "query_prompt": t.instruction.query_prompt,
                "document_prompt": t.instruction.document_prompt,
                "prompt_source": t.instruction.source,
                "size": t.size,
                "results": {role: per_model[role][t.name] for role in per_model},
            }
            for t in tasks
        ],
        "skipped": skipped,
    }


def write_results(eval_dir: Path, results: dict[str, Any]) -> Path:
    return atomic_write_json(eval_dir / RESULTS_FILE, results)
