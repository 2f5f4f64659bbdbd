"""The tasks the card reports, each with the instruction it is run with and where that came from.

Registry tasks (a configured benchmark's, and those named alone) run the splits and subsets
``kit.registry_tasks`` resolves, with the instruction E5-mistral was evaluated with (the
kit's instruction table, read from mteb). A local task uses its configured ``instruction``,
else that of the registry task it is a subset of (``registry_task``), else its type's default.
mteb drops prompt keys named after tasks it does not know, so every task carries its own
prompts and the evaluation hands them to mteb's wrapper under the task's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.cli import StageError
from kit.evalsets import LocalTask
from kit.instructions import Instruction, is_symmetric, registry_instruction, type_instruction
from kit.registry_tasks import ResolvedTask, TaskView
from model_card.local_tasks import MTEB_TYPES, local_mteb_task

LOCAL_SUBSETS = "the local set"


@dataclass
class EvalTask(TaskView):
    """An mteb task plus what the card needs to say about how it was run."""

    task: Any
    source: str
    type: str
    languages: list[str]
    instruction: Instruction
    dataset: dict[str, str]
    size: dict[str, int] = field(default_factory=dict)
    # Where its subsets come from ("as MTEB(eng, v2) runs it", ...), and its benchmark.
    subsets_origin: str = LOCAL_SUBSETS
    benchmark: str = ""

    @property
    def main_score(self) -> str:
        return self.task.metadata.main_score

    def prompts(self) -> dict[str, str]:
        """Prompt keys in mteb's lookup order: ``{Task}-query``, ``{Task}-document``, ``{Task}``."""
        query = self.instruction.query_prompt
        return {
            f"{self.name}-query": query,
            f"{self.name}-document": self.instruction.document_prompt,
            self.name: query,
        }


def _registry_instruction(name: str, where: str) -> Instruction:
    try:
        return registry_instruction(name)
    except KeyError as exc:
        raise StageError(f"{where}: {exc.args[0]}") from None


def local_instruction(task: LocalTask) -> Instruction:
    mteb_type = MTEB_TYPES[task.type]
    if task.instruction:
        return Instruction(task.instruction, is_symmetric(mteb_type), "config")
    if task.registry_task:
        where = f"evaluation.local_tasks '{task.name}' registry_task"
        inherited = _registry_instruction(task.registry_task, where)
        source = f"{inherited.source}; this set is part of {task.registry_task}"
        return Instruction(inherited.task, inherited.symmetric, source)
    return type_instruction(mteb_type)


def local_eval_task(task: LocalTask) -> EvalTask:
    """Load, check and cap a local task, then wrap it as an mteb task."""
    instruction = local_instruction(task)
    prompts = f"{instruction.query_prompt}\n{instruction.document_prompt}"
    mteb_task, size, source = local_mteb_task(task, prompts)
    return EvalTask(
        task=mteb_task,
        source="local",
        type=MTEB_TYPES[task.type],
        languages=task.language_codes,
        instruction=instruction,
        dataset={"name": source.get("name", task.name), **source},
        size=size,
    )


def registry_eval_task(resolved: ResolvedTask) -> EvalTask:
    """A registry task with the splits and subsets it runs; its data comes from the Hub when
    evaluated."""
    meta = resolved.task.metadata
    return EvalTask(
        task=resolved.task,
        source="registry",
        type=meta.type,
        languages=resolved.languages,
        instruction=_registry_instruction(resolved.name, "evaluation.mteb_tasks"),
        dataset={
            "name": f"MTEB {resolved.name}",
            "url": str(meta.reference or f"https://huggingface.co/datasets/{meta.dataset['path']}"),
            "license": str(meta.license or "see the dataset"),
            "origin": f"{meta.dataset['path']} @ {meta.dataset['revision']}",
            "path": str(meta.dataset["path"]),
        },
        subsets_origin=resolved.origin,
        benchmark=resolved.benchmark,
    )
