"""The model card: YAML metadata with a model-index, and a body a user can act on.

The model-index is read from the mteb result files staged with the model (``results/``);
the body's table shows the same numbers for the trained model beside its base, with the
benchmark, the splits and subsets each task ran, the means over tasks as mteb's leaderboard
takes them, and where and how each model encoded. The same scores go to
``.eval_results/mteb.yaml`` (huggingface_hub's ``EvalResultEntry``) for the registry tasks,
whose datasets are on the Hub. With no results the card says the model was not evaluated
and carries no model-index. Evaluation sets are named by their public name, origin and
licence, never by a path of the build machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.artifacts import EvaluationResults, TaskSummary, TrainingRecord
from kit.files import atomic_write_text
from model_card.encoders import base_model_hub_id, base_model_table

EVAL_RESULTS_FILE = Path(".eval_results") / "mteb.yaml"
MTEB_URL = "https://github.com/embeddings-benchmark/mteb"

TEMPLATE = Path(__file__).with_name("card_template.md")
TAGS = [
    "sentence-transformers",
    "sentence-similarity",
    "feature-extraction",
    "text-embeddings",
    "mteb",
    "synthetic-data",
    "e5-mistral-recipe",
]
def _cell(value: Any) -> str:
    """Table cells are rendered as text: no pipes or newlines from the data break the table."""
    if isinstance(value, float):
        value = f"{value:.6g}"
    elif isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    elif value is None or value == "":
        value = "—"
    return str(value).replace("|", "\\|").replace("\n", "\\n")


def _prompt_cell(prompt: str) -> str:
    return f"`{prompt}`".replace("\n", "\\n").replace("|", "\\|") if prompt else "(none)"


def _size_text(task: TaskSummary) -> str:
    size = task.size or {}
    if "pairs" in size:
        return f"{size['pairs']} of {size['pairs_total']} pairs"
    if "queries" in size:
        return (
            f"{size['queries']} of {size['queries_total']} queries against "
            f"{size['corpus']} of {size['corpus_total']} documents"
        )
    return "full task from the mteb registry"


def _source_name(task: TaskSummary, mteb_version: str) -> str:
    """Which mteb and which benchmark a score comes from, as the model-index shows it."""
    where = f"benchmark {task.benchmark}" if task.benchmark else task.subsets_origin
    local = " (local task)" if task.source == "local" else ""
    return f"mteb {mteb_version}{local}; {where}" if where else f"mteb {mteb_version}{local}"


def eval_results(results: EvaluationResults, staged: dict[str, Any]) -> list[Any]:
    """model-index entries, one per staged mteb result file: its main score ×100 over the
    splits and subsets the task ran (the file holds no others)."""
    from huggingface_hub import EvalResult

    entries = []
    for task in results.tasks:
        result = staged.get(task.name)
        if result is None:
            continue
        entries.append(
            EvalResult(
                task_type=task.type,
                task_name=task.type,
                dataset_type=task.name,
                dataset_name=task.dataset["name"],
                dataset_config=",".join(task.subsets) or "default",
                dataset_split=",".join(task.splits) or "test",
                dataset_revision=result.dataset_revision,
                metric_type=task.main_score,
                metric_name=task.main_score,
                metric_value=round(float(result.get_score()) * 100, 4),
                source_name=_source_name(task, result.mteb_version),
                source_url=MTEB_URL,
            )
        )
    return entries


def eval_result_entries(results: EvaluationResults, staged: dict[str, Any]) -> list[Any]:
    """``.eval_results`` entries for the registry tasks (their datasets are on the Hub):
    the task's dataset, the task, its score ×100, and in the notes the benchmark, splits and
    subsets it ran."""
    from huggingface_hub import EvalResultEntry

    entries = []
    for task in results.tasks:
        result = staged.get(task.name)
        if result is None or task.source != "registry":
            continue
        notes = (
            f"{_source_name(task, result.mteb_version)}; splits {', '.join(task.splits)}; "
            f"subsets {', '.join(task.subsets)}; main score {task.main_score}"
        )
        entries.append(
            EvalResultEntry(
                dataset_id=task.dataset["path"],
                task_id=task.name,
                value=round(float(result.get_score()) * 100, 4),
                dataset_revision=result.dataset_revision,
                source_url=MTEB_URL,
                source_name=f"mteb {result.mteb_version}",
                notes=notes,
            )
        )
    return entries


def write_eval_results(
    card_dir: Path, results: EvaluationResults | None, staged: dict[str, Any]
) -> Path | None:
    """``.eval_results/mteb.yaml`` beside the card, or none when no registry task was run."""
    from huggingface_hub import eval_result_entries_to_yaml
    from huggingface_hub.utils import yaml_dump

    path = card_dir / EVAL_RESULTS_FILE
    entries = eval_result_entries(results, staged) if results is not None else []
    if not entries:
        path.unlink(missing_ok=True)
        return None
    return atomic_write_text(path, yaml_dump(eval_result_entries_to_yaml(entries), sort_keys=False))


def _rows(results: EvaluationResults) -> list[dict[str, Any]]:
    rows = []
    for task in results.tasks:
        trained = task.results["trained"].main_score * 100
        base = task.results.get("base")
        base_score = base.main_score * 100 if base else None
        rows.append(
            {
                "name": task.name,
                "type": task.type,
                "languages": ", ".join(task.languages),
                "metric": task.main_score,
                "trained": f"{trained:.2f}",
                "base": "—" if base_score is None else f"{base_score:.2f}",
                "delta": "—" if base_score is None else f"{trained - base_score:+.2f}",
                "source": "local copy" if task.source == "local" else "mteb registry",
                "dataset": task.dataset,
                "size": _size_text(task),
                "prompt": _prompt_cell(task.query_prompt),
                "prompt_source": task.prompt_source,
                "symmetric": task.document_prompt != "",
                "splits": ", ".join(task.splits) or "test",
                "subsets": ", ".join(task.subsets) or "default",
                "subsets_origin": task.subsets_origin,
            }
        )
    return rows


def _mean(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}"


def mean_rows(results: EvaluationResults) -> list[dict[str, str]]:
    """The means over tasks and over task types, per model, with the change."""
    rows = []
    labels = {"Mean(Task)": "mean over tasks", "Mean(TaskType)": "mean over task types"}
    for key, label in labels.items():
        trained = (results.means.get("trained") or {}).get(key)
        base = (results.means.get("base") or {}).get(key)
        delta = "—" if trained is None or base is None else f"{(trained - base) * 100:+.2f}"
        rows.append({"name": label, "trained": _mean(trained), "base": _mean(base), "delta": delta})
    return rows


def compression_table(results: EvaluationResults) -> dict[str, Any] | None:
    """Each stored form of the vectors, its bytes per vector and its score on every task,
    with the share of the full-width fp32 score it keeps (``None``: not measured)."""
    ladder = results.compression
    if not ladder:
        return None
    tasks = [t for t in results.tasks if t.results["trained"].compression]
    width = ladder["width"]
    rows = [{"name": f"{width} dims, fp32 (full)", "bytes": 4 * width,
             "scores": [f"{t.results['trained'].main_score * 100:.2f}" for t in tasks],
             "kept": "100%"}]  # fmt: skip
    for variant in ladder["variants"]:
        scores, kept = [], []
        for task in tasks:
            trained = task.results["trained"]
            assert trained.compression is not None
            score = trained.compression[variant["name"]].main_score
            scores.append(f"{score * 100:.2f}")
            if trained.main_score > 0:
                kept.append(score / trained.main_score)
        name = variant["name"] + (", fp32" if variant["truncate_dim"] else f", {width} dims")
        rows.append(
            {
                "name": name,
                "bytes": f"{variant['bytes_per_vector']:g}",
                "scores": scores,
                "kept": f"{100 * sum(kept) / len(kept):.1f}%" if kept else "—",
            }
        )
    return {
        "tasks": [t.name for t in tasks],
        "rows": rows,
        "matryoshka_dims": ladder["matryoshka_dims"],
        "example_dim": next(
            (v["truncate_dim"] for v in ladder["variants"] if v["truncate_dim"]), None
        ),
    }


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:,.0f} MiB"


def gguf_rows(results: EvaluationResults | None) -> list[dict[str, Any]]:
    """One row per GGUF file checked against the safetensors model."""
    rows = []
    for check in results.gguf if results else []:
        rows.append(
            {
                "file": check.file,
                "size": _size(check.bytes),
                "min_cosine": f"{check.min_cosine:.5f}",
                "mean_cosine": f"{check.mean_cosine:.5f}",
                "task_scores": [
                    f"{check.scores[t.name]:.2f}" if t.name in check.scores else "—"
                    for t in results.tasks
                ],
                "speed": f"{check.speedup_vs_torch:g}×" if check.speedup_vs_torch else "—",
                "verdict": ("passed" if check.passed else "**failed**") + f": {check.rule}",
            }
        )
    return rows


def build_card(
    *,
    repo_id: str,
    model: Any,
    training_record: TrainingRecord | None,
    results: EvaluationResults | None,
    staged: dict[str, Any],
    license_id: str,
    dataset_id: str | None,
    languages: list[str],
    not_evaluated_reason: str,
    data_caveat: str = "",
    safetensors_bytes: int = 0,
) -> Any:
    """Render the card; ``results`` is ``None`` (or has no tasks) for an unevaluated model."""
    from huggingface_hub import ModelCard, ModelCardData

    record = training_record
    base_ref = record.base_model if record else ""
    evaluated = results is not None and bool(results.tasks)
    card_data = ModelCardData(
        model_name=repo_id,
        base_model=base_model_hub_id(base_ref) if base_ref else None,
        datasets=[dataset_id] if dataset_id else None,
        language=languages or None,
        license=license_id,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=TAGS,
        eval_results=eval_results(results, staged) if evaluated else None,
    )
    base_info = base_model_table().get(base_ref, {})
    base_description = base_info.get("description") or (
        f"`{base_ref}`" if base_ref else "a decoder"
    )
    prompts = sorted((model.prompts or {}).items())
    training = [(label, _cell(value)) for label, value in record.card_rows()] if record else []
    hyper = sorted((k, _cell(v)) for k, v in (record.hyperparameters if record else {}).items())
    query_prompt = (model.prompts or {}).get("query", "")
    gguf = gguf_rows(results if evaluated else None)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=repo_id.split("/")[-1],
        repo_id=repo_id,
        dimension=model.get_embedding_dimension(),
        max_seq_length=model.max_seq_length,
        similarity=f"{model.similarity_fn_name or 'cosine'} similarity",
        base_description=base_description,
        base_label=f"`{base_ref}`" if base_ref else "the base decoder",
        dataset_id=dataset_id,
        prompts=[(name, _prompt_cell(text)) for name, text in prompts],
        query_prompt_literal=json.dumps(query_prompt, ensure_ascii=False),
        training=training,
        hyperparameters=hyper,
        evaluated=evaluated,
        has_base=evaluated and any("base" in t.results for t in results.tasks),
        rows=_rows(results) if evaluated else [],
        means=mean_rows(results) if evaluated and results.means else [],
        means_scope=results.means_scope if results else "",
        benchmark=results.benchmark if results else "",
        encodings=[(role, facts) for role, facts in results.models.items()] if evaluated else [],
        compression=compression_table(results) if evaluated else None,
        mteb_version=results.mteb_version if results else "",
        skipped=results.skipped if results else [],
        not_evaluated_reason=not_evaluated_reason,
        data_caveat=data_caveat,
        gguf_files=list(record.gguf_files) if record else [],
        gguf=gguf,
        gguf_tasks=[t.name for t in results.tasks] if gguf else [],
        gguf_reference=[f"{t.results['trained'].main_score * 100:.2f}" for t in results.tasks]
        if gguf
        else [],
        safetensors_size=_size(safetensors_bytes) if safetensors_bytes else "—",
    )
