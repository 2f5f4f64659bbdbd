"""The request plan: every request is a pure function of (seed, task type, slot), so a re-run
knows exactly which items exist, which are done, and what each one asks for."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from kit.schema import TASK_TABLE
from seeds.corpus import Corpus, Document, sts_sentence
from seeds.languages import XLMR_LANGUAGES, LanguageSampler, language_name
from seeds.templates import Template, brainstorm_schema, corpus_lane


@dataclass(frozen=True)
class WorkItem:
    """One planned request: a brainstorm for task definitions or one example."""

    item_id: str
    kind: str
    task_type: str
    prompt: str
    schema: dict[str, Any]
    task_definition: str | None = None
    language: str | None = None
    target_language: str | None = None
    placeholders: dict[str, str] = field(default_factory=dict)
    # The corpus document a corpus-grounded item is about (``None``: written from scratch).
    document_id: str | None = None


def brainstorms_needed(target: int, examples_per_task: float, tasks_per_brainstorm: int) -> int:
    """How many brainstorm requests give enough task definitions for ``target`` examples."""
    if target <= 0:
        return 0
    tasks = math.ceil(target / examples_per_task)
    return math.ceil(tasks / tasks_per_brainstorm)


def brainstorm_item(template: Template, index: int, tasks_per_brainstorm: int) -> WorkItem:
    return WorkItem(
        item_id=f"brainstorm-{template.task_type}-{index:05d}",
        kind="brainstorm",
        task_type=template.task_type,
        prompt=template.render_brainstorm(tasks_per_brainstorm),
        schema=brainstorm_schema(tasks_per_brainstorm),
    )


def generation_item_id(task_type: str, slot: int) -> str:
    return f"{task_type}-{slot:07d}"


def lane_of(item_id: str) -> str:
    """The lane a generation item id names: a task type, or ``corpus_<type>``."""
    return item_id.rsplit("-", 1)[0]


def slot_of(item_id: str) -> int:
    """The slot a generation item id names (``generation_item_id`` backwards)."""
    return int(item_id.rsplit("-", 1)[1])


def generation_item(
    template: Template,
    slot: int,
    seed: int,
    sampler: LanguageSampler,
    task_pool: list[str],
    examples_per_task: float,
) -> WorkItem:
    """Slot ``slot`` of a task type; its placeholders and languages depend on nothing else."""
    rng = random.Random(f"{seed}/{template.task_type}/{slot}")
    placeholders = {name: rng.choice(values) for name, values in template.placeholders.items()}
    target_language = None
    if TASK_TABLE[template.task_type].cross_lingual:
        language, target_language = sampler.pair(rng)
        placeholders["src_lang"] = language_name(language)
        placeholders["tgt_lang"] = language_name(target_language)
    else:
        language = sampler.language(rng)
        placeholders["language"] = language_name(language)
    if template.task_definition is not None:
        task = template.task_definition
    else:
        if not task_pool:
            raise ValueError(f"no task definitions for {template.task_type}")
        task = task_pool[int(slot / examples_per_task) % len(task_pool)]
    return WorkItem(
        item_id=generation_item_id(template.task_type, slot),
        kind="generate",
        task_type=template.task_type,
        prompt=template.render({**placeholders, "task": task}),
        schema=template.output_schema(),
        task_definition=task,
        language=language,
        target_language=target_language,
        placeholders=placeholders,
    )


def grounded_text(task_type: str, document: Document, slot: int, seed: int) -> str:
    """What the corpus gives a grounded row: the document, or for STS one of its sentences."""
    if TASK_TABLE[task_type].document_field == "S1":
        return sts_sentence(document.text, slot, seed)
    return document.text


def corpus_item(template: Template, slot: int, seed: int, corpus: Corpus) -> WorkItem:
    """Slot ``slot`` of a corpus lane: its document and placeholders depend on nothing else."""
    lane = corpus_lane(template.task_type)
    document = corpus.documents[corpus.document_for(lane, slot, seed)]
    rng = random.Random(f"{seed}/{lane}/{slot}")
    placeholders = {name: rng.choice(values) for name, values in template.placeholders.items()}
    placeholders["language"] = XLMR_LANGUAGES.get(document.language, document.language)
    given = grounded_text(template.task_type, document, slot, seed)
    return WorkItem(
        item_id=generation_item_id(lane, slot),
        kind="generate",
        task_type=template.task_type,
        prompt=template.render({**placeholders, "document": given, "sentence": given}),
        schema=template.output_schema(),
        task_definition=template.task_definition,
        language=document.language,
        placeholders=placeholders,
        document_id=document.id,
    )
