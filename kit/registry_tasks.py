"""mteb registry tasks as a benchmark runs them: its tasks, splits and language subsets.

A task from ``mteb.get_task`` runs every subset it has (STS17 has 11 language pairs,
MassiveIntentClassification 51 languages), while a benchmark fixes its own: MTEB(eng, v2)
runs STS17 on en-en and MassiveIntent on English only. A benchmark named in the config
brings exactly its tasks, splits and subsets (``mteb.get_benchmark``). A task named on its
own runs the subsets or languages its entry names, else those of its main benchmark (the
configured benchmark, else the first of ``MAIN_BENCHMARKS`` that holds it), else all of its
subsets; each resolved task says which. The evaluation runs these tasks and the
decontamination reads their texts, so what training leaves out is what is evaluated on.

Only mteb's metadata is read here (it ships in the package): resolving needs no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kit.errors import StageError
from kit.evalsets import RegistryTask

# The benchmarks whose subsets a task named alone takes, in this order: the English
# benchmarks first (the paper's evaluation), then the multilingual one.
MAIN_BENCHMARKS = ("MTEB(eng, v2)", "MTEB(eng, v1)", "MTEB(Multilingual, v2)")
ALL_SUBSETS = "all of its subsets (no main benchmark holds this task)"


class TaskView:
    """The name, subsets and splits of the (filtered) mteb task a record holds."""

    task: Any

    @property
    def name(self) -> str:
        return self.task.metadata.name

    @property
    def subsets(self) -> list[str]:
        return list(self.task.hf_subsets)

    @property
    def splits(self) -> list[str]:
        return list(self.task.eval_splits)


@dataclass
class ResolvedTask(TaskView):
    """An mteb task filtered to the splits and subsets it runs, and where they come from."""

    task: Any
    origin: str
    benchmark: str = ""

    @property
    def languages(self) -> list[str]:
        """The BCP-47 codes of the subsets it runs (``eng-Latn``), each once."""
        by_subset = self.task.metadata.hf_subsets_to_langscripts
        codes = [code for subset in self.subsets for code in by_subset.get(subset, [])]
        return list(dict.fromkeys(codes)) or list(self.task.metadata.bcp47_codes)


def get_benchmark(name: str, where: str = "evaluation.benchmark") -> Any:
    import mteb

    try:
        return mteb.get_benchmark(name)
    except KeyError as exc:
        raise StageError(f"{where}: {exc.args[0]}") from None


def _get_task(name: str, where: str, **filters: Any) -> Any:
    import mteb

    try:
        return mteb.get_task(name, **filters)
    except KeyError as exc:
        raise StageError(f"{where}: {str(exc.args[0]).removeprefix('KeyError: ')}") from None


def _listed(values: Sequence[str], limit: int = 12) -> str:
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _as_in(name: str, benchmark: Any) -> Any | None:
    """The task as ``benchmark`` runs it (a fresh instance, filtered the same way)."""
    for task in benchmark.tasks:
        if task.metadata.name == name:
            return _get_task(name, "evaluation", eval_splits=list(task.eval_splits),
                             hf_subsets=list(task.hf_subsets))  # fmt: skip
    return None


def _named(spec: RegistryTask, where: str) -> ResolvedTask:
    """The subsets and languages the entry names; each must exist in the task."""
    every = list(_get_task(spec.name, where).metadata.hf_subsets)
    unknown = [subset for subset in spec.subsets if subset not in every]
    if unknown:
        raise StageError(
            f"{where}.subsets: {unknown[0]!r} is not a subset of {spec.name} "
            f"(it has: {_listed(every)})"
        )
    try:
        task = _get_task(spec.name, where, hf_subsets=spec.subsets or None,
                         languages=spec.languages or None)  # fmt: skip
    except ValueError:  # mteb: no subset left after the filters
        task = None
    if task is None or not task.hf_subsets:
        raise StageError(
            f"{where}.languages: {spec.name} has no subset in {', '.join(spec.languages)} "
            f"(it has: {_listed(every)})"
        )
    asked = [f"subsets {', '.join(spec.subsets)}"] if spec.subsets else []
    asked += [f"languages {', '.join(spec.languages)}"] if spec.languages else []
    return ResolvedTask(task, f"named in the config ({'; '.join(asked)})")


def resolve_task(spec: RegistryTask, benchmark: str = "", where: str = "") -> ResolvedTask:
    """One ``mteb_tasks`` entry with the subsets it runs."""
    where = where or f"evaluation.mteb_tasks '{spec.name}'"
    if spec.subsets or spec.languages:
        return _named(spec, where)
    _get_task(spec.name, where)  # an unknown name fails here, with mteb's suggestion
    for name in dict.fromkeys([benchmark, *MAIN_BENCHMARKS] if benchmark else MAIN_BENCHMARKS):
        task = _as_in(spec.name, get_benchmark(name))
        if task is not None:
            return ResolvedTask(task, f"as {name} runs it")
    return ResolvedTask(_get_task(spec.name, where), ALL_SUBSETS)


def benchmark_tasks(name: str) -> list[ResolvedTask]:
    """Every task of a benchmark with exactly its splits and subsets."""
    benchmark = get_benchmark(name)
    return [
        ResolvedTask(_as_in(task.metadata.name, benchmark), f"as {benchmark.name} runs it",
                     benchmark.name)  # fmt: skip
        for task in benchmark.tasks
    ]


def resolve(benchmark: str, specs: Sequence[RegistryTask]) -> list[ResolvedTask]:
    """The benchmark's tasks, then the tasks named alone; a task is listed once."""
    tasks = benchmark_tasks(benchmark) if benchmark else []
    seen = {task.name: task for task in tasks}
    for spec in specs:
        if spec.name in seen:
            where = seen[spec.name].benchmark or "evaluation.mteb_tasks"
            raise StageError(
                f"evaluation.mteb_tasks: {spec.name!r} is listed twice (also in {where})"
            )
        resolved = resolve_task(spec, benchmark)
        seen[spec.name] = resolved
        tasks.append(resolved)
    return tasks
