"""The one instruction table and the one query formatter of the kit.

A query is encoded as ``Instruct: {task}\\nQuery: {text}``; documents of asymmetric tasks
carry no instruction, and both sides of a symmetric task carry it. Training writes the
release's prompts from this table, evaluation looks instructions up here, and the Space
carries a copy of the formatter that a test compares with this one.

For tasks of the mteb registry the instruction is the one E5-mistral was evaluated with, as
mteb ships it: the task's own ``metadata.prompt``, else the default of its task type (the
abstract task's ``abstask_prompt``, e.g. "Retrieve semantically similar text." for STS). The
release carries a per-task prompt for every task of the paper's benchmark, MTEB(eng, v1), of
its successor MTEB(eng, v2) and of a configured benchmark, and one prompt per task type, so
``mteb.evaluate`` on the released model picks these prompts with no model entry of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

QUERY_TEMPLATE = "Instruct: {task}\nQuery: "
_PARSE = re.compile(r"\s*Instruct:\s*(.*?)\s*\n\s*Query:\s*", re.DOTALL)

# The paper's fixed task definitions of its two symmetric synthetic task types; mteb's own
# defaults for STS and bitext mining are the same sentences (a test checks that).
SYMMETRIC_TASK_DEFINITIONS = {
    "sts": "Retrieve semantically similar text.",
    "bitext": "Retrieve parallel sentences.",
}

PAPER_BENCHMARK = "MTEB(eng, v1)"
# The benchmarks whose every task the released prompts name: the paper's, and the English
# benchmark users run today (whose .v2 clustering tasks have instructions of their own).
PROMPT_BENCHMARKS = (PAPER_BENCHMARK, "MTEB(eng, v2)")
DEFAULT_QUERY_TASK = "MSMARCO"  # the ``query`` prompt: E5-mistral's web-search instruction
ASYMMETRIC_TYPES = ("Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking")
TEXT_TYPES = (
    *ASYMMETRIC_TYPES,
    "STS",
    "BitextMining",
    "Classification",
    "MultilabelClassification",
    "Clustering",
    "PairClassification",
    "Summarization",
)


def instruct(task: str) -> str:
    """The text put in front of a query for ``task``."""
    return QUERY_TEMPLATE.format(task=task)


def task_of(prompt: str) -> str | None:
    """The task inside a prompt made by :func:`instruct`, or ``None`` for any other prompt."""
    match = _PARSE.fullmatch(prompt)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Instruction:
    """An instruction, whether it goes on both sides, and where it came from (for the card)."""

    task: str
    symmetric: bool
    source: str

    @property
    def query_prompt(self) -> str:
        return instruct(self.task)

    @property
    def document_prompt(self) -> str:
        return self.query_prompt if self.symmetric else ""


def is_symmetric(task_type: str) -> bool:
    return task_type not in ASYMMETRIC_TYPES


def _mteb_version() -> str:
    import mteb

    return mteb.__version__


@cache
def _type_defaults() -> dict[str, str]:
    """Each text task type's default instruction, read from its abstract task class."""
    import mteb

    defaults: dict[str, str] = {}
    for task in mteb.get_tasks(task_types=list(TEXT_TYPES)):
        kind = task.metadata.type
        prompt = getattr(type(task), "abstask_prompt", "")
        if kind not in defaults and prompt:
            defaults[kind] = prompt
    return defaults


def type_instruction(task_type: str) -> Instruction:
    """The default instruction of an mteb task type."""
    task = _type_defaults().get(task_type)
    if task is None:
        raise KeyError(f"no instruction for task type {task_type!r}")
    source = f"mteb {_mteb_version()} default for {task_type} tasks"
    return Instruction(task, is_symmetric(task_type), source)


def registry_instruction(task_name: str) -> Instruction:
    """The instruction E5-mistral was evaluated with on an mteb registry task."""
    import mteb

    metadata = mteb.get_task(task_name).metadata
    prompt = metadata.prompt
    if isinstance(prompt, dict):
        prompt = prompt.get("query")
    if not prompt:
        default = type_instruction(metadata.type)
        return Instruction(default.task, default.symmetric, default.source)
    source = f"mteb {_mteb_version()} task metadata of {task_name} (E5-mistral's instruction)"
    return Instruction(prompt, is_symmetric(metadata.type), source)


@cache
def release_prompts(benchmark: str = "") -> dict[str, str]:
    """The prompts of a released model, keyed the way mteb looks them up.

    ``{TaskType}-query`` for asymmetric types (documents fall through to the empty
    ``document`` prompt), bare ``{TaskType}`` for symmetric ones, then the same per task of
    ``PROMPT_BENCHMARKS`` and of ``benchmark`` where its instruction differs from its type's
    default.
    """
    import mteb

    prompts = {"query": registry_instruction(DEFAULT_QUERY_TASK).query_prompt, "document": ""}
    for task_type, task in _type_defaults().items():
        prompts[_key(task_type, is_symmetric(task_type))] = instruct(task)
    names = [*PROMPT_BENCHMARKS, benchmark] if benchmark else list(PROMPT_BENCHMARKS)
    tasks = {t.metadata.name: t for name in names for t in mteb.get_benchmark(name).tasks}
    for task in tasks.values():
        name, kind = task.metadata.name, task.metadata.type
        instruction = registry_instruction(name)
        if instruction.task != _type_defaults().get(kind):
            prompts[_key(name, instruction.symmetric)] = instruction.query_prompt
    return prompts


def _key(name: str, symmetric: bool) -> str:
    return name if symmetric else f"{name}-query"
