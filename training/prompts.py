"""Instruction prompts stored in ``config_sentence_transformers.json``.

mteb picks a plain model's prompt by key, in this order: ``{Task}-query``, ``{Task}``,
``{TaskType}-query``, ``{TaskType}``, then ``query``/``document``. Asymmetric task types
(retrieval, reranking) instruct only the query side, so they get a ``-query`` key and the
documents fall through to the empty ``document`` prompt; symmetric types instruct both
sides, so they get the bare type key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

GENERAL_QUERY_INSTRUCTION = "Given a query, retrieve documents that answer it"

ASYMMETRIC_TYPE_INSTRUCTIONS = {
    "Retrieval": "Given a web search query, retrieve relevant passages that answer the query",
    "Reranking": "Given a query, retrieve the documents that best answer it",
    "InstructionRetrieval": "Given a query and an instruction, retrieve passages meeting both",
}

SYMMETRIC_TYPE_INSTRUCTIONS = {
    "STS": "Retrieve semantically similar text.",
    "BitextMining": "Retrieve parallel sentences.",
    "Classification": "Classify the given text into its category",
    "MultilabelClassification": "Classify the given text into all of its categories",
    "Clustering": "Identify the main topic of the given text",
    "PairClassification": "Retrieve text that has the same meaning as the given text",
    "Summarization": "Given a summary, retrieve other summaries with the same meaning",
}


def instruct(task_definition: str) -> str:
    """The paper's query prefix; the query text follows directly."""
    return f"Instruct: {task_definition}\nQuery: "


def build_prompts(named_tasks: Iterable[Mapping[str, str]] = ()) -> dict[str, str]:
    """All prompts for the release; ``named_tasks`` adds per-task keys (name, type, instruction).

    A task of type ``sts`` is symmetric (bare ``{Task}`` key); anything else instructs queries.
    """
    prompts = {"query": instruct(GENERAL_QUERY_INSTRUCTION), "document": ""}
    for task_type, definition in ASYMMETRIC_TYPE_INSTRUCTIONS.items():
        prompts[f"{task_type}-query"] = instruct(definition)
    for task_type, definition in SYMMETRIC_TYPE_INSTRUCTIONS.items():
        prompts[task_type] = instruct(definition)
    for task in named_tasks:
        instruction = task.get("instruction")
        if not instruction:
            continue
        key = task["name"] if task.get("type") == "sts" else f"{task['name']}-query"
        prompts[key] = instruct(instruction)
    return prompts
