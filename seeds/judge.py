"""The LLM judge: does the positive fit its text better than the negative?

The judged fields come from the task table (``TaskType.judged``): types without a negative
are not judged.

Through the same endpoint, ledger and budget as generation, the generator is shown the text
(query, input or first sentence) and the two candidates in an order drawn per item, so a
judge that always says "A" agrees only half the time. A row whose negative wins is dropped
(``judge_rejected``) or, with ``judge_action = "swap"``, kept with the two exchanged. The
prompt is a versioned data file, like the generation templates.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.schema import TASK_TABLE
from seeds.parsing import Rejection, extract_json_object
from seeds.plan import WorkItem

PROMPT_FILE = Path(__file__).parent / "prompts" / "judge.json"


@dataclass(frozen=True)
class JudgePrompt:
    prompt_id: str
    sha256: str
    text: str
    schema: dict[str, Any]


def load_judge_prompt(path: Path = PROMPT_FILE) -> JudgePrompt:
    raw = path.read_bytes()
    data = json.loads(raw)
    return JudgePrompt(
        f"{data['prompt_id']}-v{int(data['version'])}",
        hashlib.sha256(raw).hexdigest(),
        data["prompt"],
        data["schema"],
    )


def positive_first(item_id: str, seed: int) -> bool:
    """Which candidate is shown as A: a pure function of the item, so a retry asks the same."""
    return random.Random(f"{seed}/judge/{item_id}").random() < 0.5


def judge_item(
    prompt: JudgePrompt, item: WorkItem, example: dict[str, str], seed: int
) -> WorkItem | None:
    fields = TASK_TABLE[item.task_type].judged
    if fields is None:
        return None
    anchor, positive, negative = (example[name] for name in fields)
    first, second = (positive, negative)
    if not positive_first(item.item_id, seed):
        first, second = second, first
    text = prompt.text.format(
        task=item.task_definition or "", anchor=anchor, first=first, second=second
    )
    return WorkItem(
        item_id=f"judge-{item.item_id}",
        kind="judge",
        task_type=item.task_type,
        prompt=text,
        schema=prompt.schema,
    )


def positive_wins(answer: str, item_id: str, seed: int) -> bool:
    """Read the judge's answer (untrusted: ``json`` only); ``Rejection`` if unreadable."""
    better = extract_json_object(answer).get("better")
    if better not in ("A", "B"):
        raise Rejection("judge_unreadable", str(better)[:20])
    return (better == "A") == positive_first(item_id, seed)


def swapped(task_type: str, example: dict[str, str]) -> dict[str, str]:
    """The example with its positive and negative exchanged."""
    _, positive, negative = TASK_TABLE[task_type].judged  # only judged rows are swapped
    return {**example, positive: example[negative], negative: example[positive]}
