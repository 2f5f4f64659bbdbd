"""The tasks the card reports, as mteb tasks, each with the query prompt it is run with.

Local tasks subclass mteb's ``AbsTaskRetrieval`` / ``AbsTaskSTS`` with their own
``TaskMetadata``; registry tasks come from ``mteb.get_task``. mteb drops prompt keys named
after tasks it does not know, so a local task's instruction cannot travel in the model's
prompts: every task here carries its prompt and the evaluation hands it to mteb's wrapper
under the task's own name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kit.cli import StageError
from model_card.local_tasks import (
    RETRIEVAL_MAIN_SCORE,
    STS_MAIN_SCORE,
    LocalTaskSpec,
    RetrievalData,
    STSData,
    data_fingerprint,
    load_retrieval,
    load_sts,
)

INSTRUCTIONS_FILE = Path(__file__).with_name("instructions.json")
RETRIEVAL_TYPES = ("Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking")


def query_prompt(instruction: str) -> str:
    """The E5-mistral query template; documents are encoded without one."""
    return f"Instruct: {instruction}\nQuery: "


@cache
def instruction_table() -> dict[str, dict[str, str]]:
    return json.loads(INSTRUCTIONS_FILE.read_text(encoding="utf-8"))


@dataclass
class EvalTask:
    """An mteb task plus what the card needs to say about how it was run."""

    task: Any
    source: str
    type: str
    languages: list[str]
    query_prompt: str
    prompt_source: str
    fingerprint: str
    size: dict[str, int] = field(default_factory=dict)
    path: str = ""

    @property
    def name(self) -> str:
        return self.task.metadata.name

    @property
    def main_score(self) -> str:
        return self.task.metadata.main_score

    @property
    def symmetric(self) -> bool:
        """Whether both sides are 'queries' (and so both get the instruction)."""
        return self.type not in RETRIEVAL_TYPES

    def prompts(self) -> dict[str, str]:
        """Prompt keys in mteb's lookup order: ``{Task}-query``, ``{Task}-document``, ``{Task}``."""
        return {
            f"{self.name}-query": self.query_prompt,
            f"{self.name}-document": self.query_prompt if self.symmetric else "",
            self.name: self.query_prompt,
        }


def _metadata(spec: LocalTaskSpec, fingerprint: str) -> Any:
    from mteb import TaskMetadata

    is_sts = spec.type == "sts"
    return TaskMetadata(
        name=spec.name,
        description=f"Local {'STS' if is_sts else 'retrieval'} task read from {spec.path}.",
        type="STS" if is_sts else "Retrieval",
        category="t2t",
        eval_splits=["test"],
        eval_langs=spec.languages,
        main_score=STS_MAIN_SCORE if is_sts else RETRIEVAL_MAIN_SCORE,
        dataset={"path": str(spec.path), "revision": fingerprint},
    )


def _retrieval_task_class(name: str, metadata: Any, data: RetrievalData) -> type:
    from datasets import Dataset
    from mteb.abstasks import AbsTaskRetrieval

    class LocalRetrievalTask(AbsTaskRetrieval):
        """A BEIR folder held in memory; reloaded for each model after mteb unloads it."""

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            split = {
                "corpus": Dataset.from_list(data.corpus),
                "queries": Dataset.from_list(data.queries),
                "relevant_docs": data.qrels,
                "top_ranked": None,
            }
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return type(f"LocalRetrieval_{name}", (LocalRetrievalTask,), {"metadata": metadata})


def _sts_task_class(name: str, metadata: Any, data: STSData) -> type:
    from datasets import Dataset, DatasetDict
    from mteb.abstasks import AbsTaskSTS

    class LocalSTSTask(AbsTaskSTS):
        """An STS TSV held in memory; scores keep their own scale (correlations ignore it)."""

        min_score = min(p["score"] for p in data.pairs)
        max_score = max(p["score"] for p in data.pairs)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            self.dataset = {"default": DatasetDict({"test": Dataset.from_list(data.pairs)})}
            self.data_loaded = True

    return type(f"LocalSTS_{name}", (LocalSTSTask,), {"metadata": metadata})


def choose_prompt(
    task_name: str, task_type: str, metadata: Any, instruction: str, model_prompts: dict
) -> tuple[str, str]:
    """Pick the query prompt: the config's instruction, else the model's own prompt as mteb
    would look it up, else the kit's table by task name, else by task type."""
    from mteb.models.abs_encoder import AbsEncoder, get_prompt_name
    from mteb.types import PromptType

    if instruction:
        return query_prompt(instruction), "config"
    valid, _ = AbsEncoder.validate_task_to_prompt_name(model_prompts, raise_for_invalid_keys=False)
    if valid:
        key = get_prompt_name(valid, metadata, PromptType.query)
        if key and key not in ("query", "document") and valid[key]:
            return valid[key], f"model prompt '{key}'"
    table = instruction_table()
    if task_name in table["by_task"]:
        return query_prompt(table["by_task"][task_name]), "kit table"
    if task_type in table["by_type"]:
        return query_prompt(table["by_type"][task_type]), f"kit table ({task_type})"
    raise StageError(f"no instruction for task {task_name} of type {task_type}: set one")


def local_eval_task(spec: LocalTaskSpec, model_prompts: dict) -> EvalTask:
    """Load, check and cap a local task, then wrap it as an mteb task."""
    if spec.type == "sts":
        data: RetrievalData | STSData = load_sts(spec)
        size = {"pairs": len(data.pairs), "pairs_total": data.total_pairs}
    else:
        data = load_retrieval(spec)
        size = {
            "queries": len(data.queries),
            "queries_total": data.total_queries,
            "corpus": len(data.corpus),
            "corpus_total": data.total_corpus,
        }
    fingerprint = data_fingerprint(spec)
    task_type = "STS" if spec.type == "sts" else "Retrieval"
    metadata = _metadata(spec, fingerprint)
    prompt, source = choose_prompt(spec.name, task_type, metadata, spec.instruction, model_prompts)
    if spec.type == "sts":
        cls = _sts_task_class(spec.name, metadata, data)
    else:
        cls = _retrieval_task_class(spec.name, metadata, data)
    return EvalTask(
        task=cls(),
        source="local",
        type=task_type,
        languages=spec.languages,
        query_prompt=prompt,
        prompt_source=source,
        fingerprint=fingerprint,
        size=size,
        path=spec.display_path or str(spec.path),
    )


def registry_eval_task(name: str, model_prompts: dict) -> EvalTask:
    """A task from mteb's registry by name; its data comes from the Hub when evaluated."""
    import mteb

    try:
        task = mteb.get_task(name)
    except KeyError as exc:
        raise StageError(f"evaluation.mteb_tasks: {exc.args[0]}") from None
    meta = task.metadata
    prompt, source = choose_prompt(name, meta.type, meta, "", model_prompts)
    return EvalTask(
        task=task,
        source="registry",
        type=meta.type,
        languages=list(meta.bcp47_codes),
        query_prompt=prompt,
        prompt_source=source,
        fingerprint=f"{meta.dataset['path']}@{meta.dataset['revision']}",
        path=meta.dataset["path"],
    )
