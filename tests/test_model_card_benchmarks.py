"""Registry tasks as benchmarks run them: MTEB(eng, v2) offline, from mteb's own metadata."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kit.cli import StageError, run_command, run_stage
from kit.config import load_config
from kit.evalsets import RegistryTask
from kit.instructions import registry_instruction, release_prompts
from kit.registry_tasks import ALL_SUBSETS, benchmark_tasks, resolve, resolve_task

ENG_V2 = "MTEB(eng, v2)"
V2_CLUSTERING = (
    "BiorxivClusteringP2P.v2",
    "MedrxivClusteringP2P.v2",
    "MedrxivClusteringS2S.v2",
    "StackExchangeClustering.v2",
    "StackExchangeClusteringP2P.v2",
    "TwentyNewsgroupsClustering.v2",
)


def test_mteb_eng_v2_resolves_to_its_41_tasks_with_english_subsets_only() -> None:
    import mteb

    reference = {t.metadata.name: t for t in mteb.get_benchmark(ENG_V2).tasks}
    tasks = benchmark_tasks(ENG_V2)
    assert len(tasks) == 41 == len(reference)
    for task in tasks:
        expected = reference[task.name]
        assert task.subsets == list(expected.hf_subsets), task.name
        assert task.splits == list(expected.eval_splits), task.name
        assert task.languages and all(code.startswith("eng-") for code in task.languages)
        assert task.benchmark == ENG_V2 and task.origin == f"as {ENG_V2} runs it"
        # a fresh instance: evaluating it leaves mteb's benchmark object as it is
        assert task.task is not expected
    by_name = {task.name: task for task in tasks}
    assert by_name["STS17"].subsets == ["en-en"]
    assert by_name["MassiveIntentClassification"].subsets == ["en"]
    assert len(mteb.get_task("MassiveIntentClassification").hf_subsets) > 50


@pytest.mark.parametrize(
    ("spec", "subsets", "origin"),
    [
        (RegistryTask("STS17"), ["en-en"], f"as {ENG_V2} runs it"),
        (RegistryTask("MassiveIntentClassification"), ["en"], f"as {ENG_V2} runs it"),
        (RegistryTask("SciFact"), ["default"], "as MTEB(eng, v1) runs it"),
        (RegistryTask("STS17", subsets=["en-de", "es-es"]), ["en-de", "es-es"],
         "named in the config (subsets en-de, es-es)"),
        (RegistryTask("MassiveIntentClassification", languages=["deu"]), ["de"],
         "named in the config (languages deu)"),
    ],
)  # fmt: skip
def test_a_task_named_alone_takes_its_main_benchmark_s_subsets(
    spec: RegistryTask, subsets: list[str], origin: str
) -> None:
    task = resolve_task(spec)
    assert (task.subsets, task.origin) == (subsets, origin)


def test_a_task_no_main_benchmark_holds_runs_all_its_subsets() -> None:
    import mteb

    task = resolve_task(RegistryTask("XQuADRetrieval"))
    assert task.subsets == list(mteb.get_task("XQuADRetrieval").metadata.hf_subsets)
    assert task.origin == ALL_SUBSETS


def test_the_configured_benchmark_sets_a_named_task_s_subsets() -> None:
    """STS17 named alone beside MTEB(Multilingual, v2) runs that benchmark's 11 pairs."""
    import mteb

    task = resolve_task(RegistryTask("STS17"), "MTEB(Multilingual, v2)")
    multilingual = {t.metadata.name: t for t in mteb.get_benchmark("MTEB(Multilingual, v2)")}
    assert task.subsets == list(multilingual["STS17"].hf_subsets)
    assert len(task.subsets) == 11 and task.origin == "as MTEB(Multilingual, v2) runs it"


@pytest.mark.parametrize(
    ("benchmark", "specs", "message"),
    [
        ("MTEB(eng, v9)", [], "evaluation.benchmark: 'MTEB(eng, v9)' not found. Did you mean: "),
        ("", [RegistryTask("SciFakt")], "evaluation.mteb_tasks 'SciFakt': 'SciFakt' not found. "
         "Did you mean: 'SciFact'?"),
        ("", [RegistryTask("STS17", subsets=["en-xx"])], "evaluation.mteb_tasks 'STS17'.subsets: "
         "'en-xx' is not a subset of STS17 (it has: ko-ko, ar-ar, en-ar, en-de, en-en, en-tr, "
         "es-en, es-es, fr-en, it-en, nl-en)"),
        ("", [RegistryTask("SciFact", languages=["deu"])], "evaluation.mteb_tasks 'SciFact'"
         ".languages: SciFact has no subset in deu (it has: default)"),
        (ENG_V2, [RegistryTask("STS17")], "evaluation.mteb_tasks: 'STS17' is listed twice (also "
         f"in {ENG_V2})"),
    ],
)  # fmt: skip
def test_a_bad_registry_entry_is_one_clear_error(
    benchmark: str, specs: list[RegistryTask], message: str
) -> None:
    with pytest.raises(StageError) as raised:
        resolve(benchmark, specs)
    assert str(raised.value).startswith(message)


def _mteb_prompt(name: str, prompt_type: str, prompts: dict[str, str]) -> str | None:
    """The prompt mteb itself picks for a registry task from the released prompts."""
    import mteb
    from mteb.models.abs_encoder import AbsEncoder, get_prompt_name
    from mteb.types import PromptType

    valid, invalid = AbsEncoder.validate_task_to_prompt_name(prompts, raise_for_invalid_keys=False)
    assert not invalid, invalid
    key = get_prompt_name(valid, mteb.get_task(name).metadata, PromptType(prompt_type))
    return None if key is None else valid[key]


def _wrong_prompts(benchmark: str, prompts: dict[str, str]) -> list[str]:
    """The tasks of ``benchmark`` for which mteb would not pick E5-mistral's instruction."""
    wrong = []
    for task in benchmark_tasks(benchmark):
        instruction = registry_instruction(task.name)
        picked = (_mteb_prompt(task.name, "query", prompts),
                  _mteb_prompt(task.name, "document", prompts))  # fmt: skip
        if picked != (instruction.query_prompt, instruction.document_prompt):
            wrong.append(task.name)
    return wrong


def test_every_mteb_eng_v2_task_gets_its_own_instruction_from_the_release() -> None:
    """Running mteb on the released model gives each of the 41 tasks the instruction
    E5-mistral was evaluated with, including the six .v2 clustering tasks."""
    assert _wrong_prompts(ENG_V2, release_prompts()) == []
    for name in V2_CLUSTERING:
        assert release_prompts()[name] == registry_instruction(name).query_prompt


def test_a_configured_benchmark_adds_its_tasks_prompts() -> None:
    other = "MTEB(Europe, v1)"
    assert _wrong_prompts(other, release_prompts()), "the benchmark has tasks of its own"
    assert _wrong_prompts(other, release_prompts(other)) == []


def _stage(config: Path, *extra: str) -> int:
    from model_card.__main__ import add_arguments, runs_anyway

    argv = ["--config", str(config), *extra]
    return run_stage("model_card", "model_card.stage:main", argv, add_arguments, runs_anyway)


def test_dry_run_plans_the_benchmark_offline_and_writes_nothing(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        evaluation={"benchmark": ENG_V2, "mteb_tasks": [{"name": "STS22", "subsets": ["de"]}]}
    )
    assert _stage(config, "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"benchmark: {ENG_V2}"
    assert out[1].startswith("device: cpu (auto: no CUDA device, so cpu); precision auto")
    assert out[2] == "42 tasks:"
    tasks = [line for line in out if line.startswith("- ")]
    assert len(tasks) == 42
    assert (
        "- STS17 [STS] splits test; subsets en-en (as MTEB(eng, v2) runs it); main score "
        "cosine_spearman" in tasks
    )
    assert (
        "- STS22 [STS] splits test; subsets de (named in the config (subsets de)); main score "
        "cosine_spearman" in tasks
    )
    at = out.index(next(line for line in tasks if line.startswith("- ArguAna ")))
    query = registry_instruction("ArguAna").query_prompt
    assert out[at + 1 : at + 3] == [f"    query prompt: {query!r}", "    document prompt: ''"]
    assert not (tmp_path / "build").exists()


def test_mteb_tasks_take_names_or_tables_and_the_check_resolves_them(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.__main__ import add_arguments, main

    entries = ["STS17", {"name": "MassiveIntentClassification", "languages": ["fra"]}]
    path = write_config(evaluation={"benchmark": "", "mteb_tasks": entries})
    config = load_config(path)
    assert config.evaluation.mteb_tasks == [
        RegistryTask("STS17"), RegistryTask("MassiveIntentClassification", languages=["fra"])
    ]
    assert config.held_out.registry_tasks == tuple(config.evaluation.mteb_tasks)
    assert run_command("kit", main, ["--config", str(path)], add_arguments) == 0
    assert capsys.readouterr().out.startswith("evaluation: 2 registry tasks (benchmark: none)\n")
    bad = write_config("bad.toml", evaluation={"benchmark": "MTEB(eng, v9)"})
    assert run_command("kit", main, ["--config", str(bad)], add_arguments) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluation.benchmark: 'MTEB(eng, v9)' not found.")


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"device": "gpu"}, "evaluation.device: 'gpu' is not 'auto', 'cpu', 'mps', 'cuda', "
         "'cuda:N' or a list of GPUs such as 'cuda:0,cuda:1'"),
        ({"precision": "int8"}, "evaluation.precision: 'int8' is not one of 'auto', 'fp32', "
         "'bf16', 'fp16'"),
        ({"mteb_tasks": [{"subsets": ["en"]}]}, "evaluation.mteb_tasks[0]: missing required key "
         "'name'"),
        ({"mteb_tasks": [{"name": "STS17", "pairs": ["en"]}]}, "evaluation.mteb_tasks[0]: unknown "
         "key pairs (allowed: name, subsets, languages)"),
    ],
)  # fmt: skip
def test_a_bad_evaluation_setting_is_one_line_and_exit_2(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str], evaluation: dict,
    message: str,
) -> None:  # fmt: skip
    path = write_config(evaluation=evaluation)
    assert _stage(path) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}: {message}"]
