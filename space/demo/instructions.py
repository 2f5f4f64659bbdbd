"""Query instructions: the Space's copy of the kit's formatter and the choices it offers.

``instruct`` and ``task_of`` copy ``kit/instructions.py``: a Space installs only its pinned
requirements, so it cannot import the kit, and a test checks the copy against the original.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from errors import InputError

QUERY_TEMPLATE = "Instruct: {task}\nQuery: "
_PARSE = re.compile(r"\s*Instruct:\s*(.*?)\s*\n\s*Query:\s*", re.DOTALL)

NO_INSTRUCTION = "__none__"
MAX_INSTRUCTION_CHARS = 1000
# Prompts the model applies to documents, which make no sense as a query instruction.
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def instruct(task: str) -> str:
    """The text put in front of a query for ``task``."""
    return QUERY_TEMPLATE.format(task=task)


def task_of(prompt: str) -> str | None:
    """The task inside a prompt made by :func:`instruct`, or ``None`` for any other prompt."""
    match = _PARSE.fullmatch(prompt)
    return match.group(1) if match else None


def instruction_choices(prompts: Mapping[str, str]) -> list[tuple[str, str]]:
    """Dropdown entries (label, prompt name) for the model's distinct query prompts."""
    choices: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, prompt in prompts.items():
        if name in DOCUMENT_PROMPT_NAMES or not prompt.strip() or prompt in seen:
            continue
        seen.add(prompt)
        choices.append((f"{name}: {task_of(prompt) or prompt.strip()}", name))
    choices.append(("No instruction (embed the query as is)", NO_INSTRUCTION))
    return choices


def query_prompt(prompts: Mapping[str, str], instruction: str | None, custom: str | None) -> str:
    """The text put before the query: a free-text task wins over the chosen prompt."""
    custom = (custom or "").strip()
    if custom:
        if len(custom) > MAX_INSTRUCTION_CHARS:
            raise InputError(
                f"The custom instruction has {len(custom):,} characters; "
                f"the limit is {MAX_INSTRUCTION_CHARS:,}."
            )
        return instruct(custom)
    if not instruction or instruction == NO_INSTRUCTION:
        return ""
    if instruction not in prompts:
        raise InputError("Unknown instruction: pick one from the list or write your own.")
    return prompts[instruction]
