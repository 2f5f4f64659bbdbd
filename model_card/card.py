"""The model card: YAML metadata with a model-index, and a body a user can act on.

Every number in the card comes from ``results.json``, which points at mteb's cached result
files; with no results the card says the model was not evaluated and carries no model-index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_card.encoders import base_model_hub_id, base_model_table

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
TRAINING_FIELDS = (
    ("base_model", "base model"),
    ("dataset", "dataset"),
    ("dataset_revision", "dataset revision"),
    ("steps", "optimizer steps"),
    ("final_loss", "final training loss"),
    ("train_runtime_s", "training time (s)"),
    ("max_length", "max length (tokens)"),
    ("precision", "precision"),
    ("deepspeed", "DeepSpeed"),
    ("seed", "seed"),
    ("kit_version", "kit version"),
    ("finished_at", "finished at"),
)


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


def _size_text(task: dict[str, Any]) -> str:
    size = task.get("size") or {}
    if "pairs" in size:
        return f"{size['pairs']} of {size['pairs_total']} pairs"
    if "queries" in size:
        return (
            f"{size['queries']} of {size['queries_total']} queries against "
            f"{size['corpus']} of {size['corpus_total']} documents"
        )
    return "full task from the mteb registry"


def eval_results(results: dict[str, Any]) -> list[Any]:
    """model-index entries for the trained model: one per task, main score ×100."""
    from huggingface_hub import EvalResult

    entries = []
    for task in results["tasks"]:
        trained = task["results"].get("trained")
        if trained is None:
            continue
        local = task["source"] == "local"
        entries.append(
            EvalResult(
                task_type=task["type"],
                task_name=task["type"],
                dataset_type=task["name"] if local else task["path"],
                dataset_name=f"{'' if local else 'MTEB '}{task['name']}",
                dataset_config="default",
                dataset_split="test",
                dataset_revision=task["revision"],
                metric_type=task["main_score"],
                metric_name=task["main_score"],
                metric_value=round(trained["main_score"] * 100, 4),
                source_name=f"mteb {results['mteb_version']}" + (" (local task)" if local else ""),
                source_url="https://github.com/embeddings-benchmark/mteb",
            )
        )
    return entries


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task in results["tasks"]:
        trained = task["results"]["trained"]["main_score"] * 100
        base = task["results"].get("base")
        base_score = base["main_score"] * 100 if base else None
        rows.append(
            {
                "name": task["name"],
                "type": task["type"],
                "languages": ", ".join(task["languages"]),
                "metric": task["main_score"],
                "trained": f"{trained:.2f}",
                "base": "—" if base_score is None else f"{base_score:.2f}",
                "delta": "—" if base_score is None else f"{trained - base_score:+.2f}",
                "source": "local files" if task["source"] == "local" else "mteb registry",
                "path": task["path"] if task["source"] == "local" else "",
                "size": _size_text(task),
                "prompt": _prompt_cell(task["query_prompt"]),
                "prompt_source": task["prompt_source"],
                "symmetric": task["document_prompt"] != "",
            }
        )
    return rows


def build_card(
    *,
    repo_id: str,
    model: Any,
    training_record: dict[str, Any] | None,
    results: dict[str, Any] | None,
    license_id: str,
    dataset_id: str | None,
    languages: list[str],
    not_evaluated_reason: str,
    data_caveat: str = "",
) -> Any:
    """Render the card; ``results`` is ``None`` (or has no tasks) for an unevaluated model."""
    from huggingface_hub import ModelCard, ModelCardData

    record = training_record or {}
    base_ref = record.get("base_model", "")
    evaluated = bool(results and results.get("tasks"))
    card_data = ModelCardData(
        model_name=repo_id,
        base_model=base_model_hub_id(base_ref) if base_ref else None,
        datasets=[dataset_id] if dataset_id else None,
        language=languages or None,
        license=license_id,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=TAGS,
        eval_results=eval_results(results) if evaluated else None,
    )
    base_info = base_model_table().get(base_ref, {})
    base_description = base_info.get("description") or (
        f"`{base_ref}`" if base_ref else "a decoder"
    )
    prompts = sorted((model.prompts or {}).items())
    training = [(label, _cell(record[key])) for key, label in TRAINING_FIELDS if key in record]
    hyper = sorted((k, _cell(v)) for k, v in (record.get("hyperparameters") or {}).items())
    query_prompt = (model.prompts or {}).get("query", "")
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
        has_base=evaluated and any("base" in t["results"] for t in results["tasks"]),
        rows=_rows(results) if evaluated else [],
        mteb_version=(results or {}).get("mteb_version", ""),
        skipped=(results or {}).get("skipped", []),
        not_evaluated_reason=not_evaluated_reason,
        data_caveat=data_caveat,
    )
