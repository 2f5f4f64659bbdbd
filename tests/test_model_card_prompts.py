"""Which prompt a task runs with, the shipped instruction table, and base-model wrapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import StageError
from model_card.encoders import build_base, check_eos_appended
from model_card.tasks import choose_prompt, instruction_table, registry_eval_task


def test_instruction_table_names_real_mteb_tasks_and_types() -> None:
    from typing import get_args

    from mteb.abstasks.task_metadata import TaskType
    from mteb.get_tasks import _TASKS_REGISTRY

    table = instruction_table()
    assert set(table["by_task"]) <= set(_TASKS_REGISTRY)
    assert set(table["by_type"]) <= set(get_args(TaskType))
    assert all(text and "\n" not in text for text in table["by_task"].values())


def test_prompt_priority_config_then_model_then_table() -> None:
    import mteb

    meta = mteb.get_task("SciFact").metadata
    table_prompt = f"Instruct: {instruction_table()['by_task']['SciFact']}\nQuery: "
    assert choose_prompt("SciFact", "Retrieval", meta, "", {}) == (table_prompt, "kit table")
    model_prompts = {"Retrieval-query": "Instruct: model says\nQuery: ", "query": "generic"}
    assert choose_prompt("SciFact", "Retrieval", meta, "", model_prompts) == (
        "Instruct: model says\nQuery: ",
        "model prompt 'Retrieval-query'",
    )
    assert choose_prompt("SciFact", "Retrieval", meta, "mine", model_prompts) == (
        "Instruct: mine\nQuery: ",
        "config",
    )
    # the generic "query" prompt is not task-specific: the table wins over it
    assert choose_prompt("SciFact", "Retrieval", meta, "", {"query": "generic"})[1] == "kit table"


def test_registry_task_gets_prompts_under_its_own_name() -> None:
    task = registry_eval_task("SciFact", {})
    assert task.prompts()["SciFact-document"] == ""
    assert task.prompts()["SciFact-query"].startswith("Instruct: Given a scientific claim")
    sts = registry_eval_task("STS17", {})
    assert sts.prompts()["STS17-document"] == sts.prompts()["STS17-query"]


def test_unknown_registry_task_is_one_clear_error() -> None:
    with pytest.raises(StageError, match=r"evaluation\.mteb_tasks: .*'SciFakt' not found"):
        registry_eval_task("SciFakt", {})


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
        check_eos_appended(model, "m")
