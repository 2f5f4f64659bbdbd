"""Which prompt a task runs with, the shipped instruction table, and base-model wrapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import StageError
from kit.embedder import check_model_appends_eos
from kit.evalsets import LocalTask, RegistryTask
from kit.instructions import (
    SYMMETRIC_TASK_DEFINITIONS,
    instruct,
    registry_instruction,
    release_prompts,
    task_of,
    type_instruction,
)
from kit.registry_tasks import resolve_task
from model_card.encoders import build_base
from model_card.tasks import local_instruction, registry_eval_task


def _mteb_prompt(name: str, task_type: str, prompt_type: str) -> str | None:
    """The prompt mteb itself picks from the release's prompts, with no model entry of ours."""
    import mteb
    from mteb.models.abs_encoder import AbsEncoder, get_prompt_name
    from mteb.types import PromptType

    prompts = release_prompts()
    valid, invalid = AbsEncoder.validate_task_to_prompt_name(prompts, raise_for_invalid_keys=False)
    assert not invalid, invalid
    try:
        metadata = mteb.get_task(name).metadata
    except KeyError:
        metadata = type("Meta", (), {"name": name, "type": task_type})()
    key = get_prompt_name(valid, metadata, PromptType(prompt_type))
    return None if key is None else valid[key]


@pytest.mark.parametrize(
    ("name", "task_type", "query", "document"),
    [
        # registry tasks with their own E5-mistral instruction
        ("SciFact", "Retrieval", registry_instruction("SciFact").query_prompt, ""),
        ("ArguAna", "Retrieval", registry_instruction("ArguAna").query_prompt, ""),
        (
            "Banking77Classification",
            "Classification",
            registry_instruction("Banking77Classification").query_prompt,
            registry_instruction("Banking77Classification").query_prompt,
        ),
        # registry tasks that take their type's default (the mteb abstask prompt)
        ("STS17", "STS", instruct("Retrieve semantically similar text."), None),
        ("XQuADRetrieval", "Retrieval", instruct("Retrieve text based on user query."), ""),
        ("Tatoeba", "BitextMining", instruct("Retrieve parallel sentences."), None),
        # a local task name mteb does not know falls through to its type
        ("MyLocalSTS", "STS", instruct("Retrieve semantically similar text."), None),
    ],
)
def test_mteb_picks_the_kit_instruction_from_the_release_prompts(
    name: str, task_type: str, query: str, document: str | None
) -> None:
    assert _mteb_prompt(name, task_type, "query") == query
    expected_document = query if document is None else document
    assert _mteb_prompt(name, task_type, "document") == expected_document


def test_registry_instructions_are_e5_mistral_s_as_mteb_ships_them() -> None:
    import mteb

    scifact = registry_instruction("SciFact")
    assert scifact.task == mteb.get_task("SciFact").metadata.prompt["query"]
    assert "task metadata of SciFact" in scifact.source and not scifact.symmetric
    sts = registry_instruction("STS17")
    assert sts.task == type(mteb.get_task("STS17")).abstask_prompt and sts.symmetric
    assert "default for STS tasks" in sts.source
    # The paper's two fixed synthetic task definitions are mteb's defaults for those types.
    assert type_instruction("STS").task == SYMMETRIC_TASK_DEFINITIONS["sts"]
    assert type_instruction("BitextMining").task == SYMMETRIC_TASK_DEFINITIONS["bitext"]
    assert release_prompts()["query"] == registry_instruction("MSMARCO").query_prompt


def test_formatter_round_trips() -> None:
    for task in ("Given a claim, find documents", "multi\nline task", " padded "):
        assert task_of(instruct(task)) == task.strip()
    assert task_of("no instruction here") is None
    assert task_of("") is None


def test_local_task_instruction_priority_config_then_registry_then_type() -> None:
    configured = LocalTask(name="L", type="retrieval", path="p", instruction="mine",
                           registry_task="SciFact")  # fmt: skip
    assert local_instruction(configured).query_prompt == "Instruct: mine\nQuery: "
    assert local_instruction(configured).source == "config"
    inherited = LocalTask(name="L", type="retrieval", path="p", registry_task="SciFact")
    assert local_instruction(inherited).task == registry_instruction("SciFact").task
    assert "this set is part of SciFact" in local_instruction(inherited).source
    default = LocalTask(name="L", type="bitext", path="p")
    assert local_instruction(default) == type_instruction("BitextMining")
    assert local_instruction(default).document_prompt == local_instruction(default).query_prompt


def test_registry_task_gets_prompts_under_its_own_name() -> None:
    task = registry_eval_task(resolve_task(RegistryTask("SciFact")))
    assert task.prompts()["SciFact-document"] == ""
    assert task.prompts()["SciFact-query"].startswith("Instruct: Given a scientific claim")
    sts = registry_eval_task(resolve_task(RegistryTask("STS17")))
    assert sts.prompts()["STS17-document"] == sts.prompts()["STS17-query"]
    assert (sts.subsets, sts.splits, sts.languages) == (["en-en"], ["test"], ["eng-Latn"])


def test_unknown_registry_task_is_one_clear_error() -> None:
    with pytest.raises(StageError, match=r"mteb_tasks 'SciFakt': .*'SciFakt' not found"):
        resolve_task(RegistryTask("SciFakt"))
    task = LocalTask(name="L", type="sts", path="p", registry_task="STS9000")
    with pytest.raises(StageError, match=r"registry_task: .*'STS9000' not found"):
        local_instruction(task)


@pytest.mark.parametrize("family", ["gemma3", "qwen2", "mistral"])
def test_base_is_wrapped_with_eos_and_keeps_bos(tiny_model_dirs: dict, family: str) -> None:
    from transformers import AutoTokenizer

    base = build_base(str(tiny_model_dirs[family]), max_seq_length=32)
    plain = AutoTokenizer.from_pretrained(tiny_model_dirs[family])
    ids = base.model.preprocess(["the query"])["input_ids"][0].tolist()
    assert ids[-1] == plain.eos_token_id
    assert ids[:-1] == plain("the query").input_ids
    assert base.model.max_seq_length == 32
    assert base.cache_name == f"local/{Path(tiny_model_dirs[family]).name}"


def test_model_without_eos_is_refused(tiny_model_dirs: dict) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(str(tiny_model_dirs["gemma3"]), max_seq_length=16)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    model = SentenceTransformer(modules=[transformer, pooling])
    with pytest.raises(StageError, match="does not append EOS"):
        check_model_appends_eos(model, "m")
