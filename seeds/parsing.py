"""LLM output is untrusted text: find the JSON in it (``json.loads`` only), check it against
the task type's rules (``kit.schema.TASK_TABLE``), and say why when it is rejected."""

from __future__ import annotations

import json
import re
from typing import Any

from kit.schema import TASK_TABLE, TaskType
from seeds.templates import Template

FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
NUMBERED_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$", re.MULTILINE)
LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
QUOTED = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'")


class Rejection(ValueError):
    """An output that cannot become a record; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def normalize(text: str) -> str:
    """Whitespace-insensitive form used for exact-match dedup."""
    return " ".join(text.split())


def _candidates(text: str) -> list[str]:
    found = [m.group(1) for m in FENCE.finditer(text)]
    found.append(text)
    return found


def _decode_first(text: str, opener: str) -> Any | None:
    """The first JSON value starting at an ``opener`` character that decodes cleanly."""
    decoder = json.JSONDecoder()
    start = text.find(opener)
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except json.JSONDecodeError:
            start = text.find(opener, start + 1)
    return None


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object inside ``text``, which may be fenced or wrapped in prose."""
    for candidate in _candidates(text):
        value = _decode_first(candidate, "{")
        if isinstance(value, dict):
            return value
    raise Rejection("invalid_json", text[:80])


def clean_task(text: str) -> str | None:
    """A usable task definition: list markers stripped, at least three words, no JSON debris."""
    task = LIST_MARKER.sub("", text.strip()).strip(" \"'")
    if any(c in task for c in "{}[]") or len(task.split()) < 3 or len(task) > 300:
        return None
    return task


def parse_task_list(text: str) -> list[str]:
    """Task definitions from a brainstorm: a JSON object or list, a Python-style list, or
    numbered/bulleted lines; fragments that are not a task are dropped."""
    tasks = [t for t in map(clean_task, _raw_task_list(text)) if t]
    if not tasks:
        raise Rejection("no_tasks", text[:80])
    return tasks


def _raw_task_list(text: str) -> list[str]:
    for candidate in _candidates(text):
        value = _decode_first(candidate, "{")
        if isinstance(value, dict):
            value = next((v for v in value.values() if isinstance(v, list)), None)
        if value is None:
            value = _decode_first(candidate, "[")
        if isinstance(value, list):
            tasks = [v.strip() for v in value if isinstance(v, str) and v.strip()]
            if tasks:
                return tasks
    bracket = text.find("[")
    if bracket != -1 and "]" in text[bracket:]:
        inner = text[bracket : text.rindex("]")]
        tasks = [(a or b).strip() for a, b in QUOTED.findall(inner) if (a or b).strip()]
        if tasks:
            return tasks
    return NUMBERED_LINE.findall(text)


def validate_example(
    template: Template, value: dict[str, Any], min_chars: int, max_chars: int
) -> dict[str, str]:
    """The example's native fields, or a ``Rejection`` naming the first broken rule."""
    example: dict[str, str] = {}
    for key in template.output_keys:
        if key not in value:
            raise Rejection("missing_key", key)
        field_value = value[key]
        if not isinstance(field_value, str):
            raise Rejection("not_a_string", key)
        field_value = field_value.strip()
        if not field_value:
            raise Rejection("empty_field", key)
        if len(field_value) < min_chars:
            raise Rejection("too_short", key)
        if len(field_value) > max_chars:
            raise Rejection("too_long", key)
        example[key] = field_value
    check_repeats(TASK_TABLE[template.task_type], example, gated=False)
    return example


def check_repeats(task: TaskType, example: dict[str, str], gated: bool) -> None:
    """The task type's rules against texts repeating each other: those checked as an answer is
    parsed, or (``gated``) those of the content gate. Both read the one table."""
    same = {key: normalize(value).casefold() for key, value in example.items()}
    for rule in task.rules:
        if rule.gated != gated or rule.field not in same:
            continue  # a corpus answer holds only what the generator wrote
        text = same[rule.field]
        for other in (o for o in rule.others if o in same):
            if rule.inside:
                repeated = len(text.split()) >= rule.inside and text in same[other]
            else:
                repeated = text == same[other]
            if repeated:
                raise Rejection(rule.reason)


def dedup_key(example: dict[str, str]) -> str:
    """Same fields with the same text (up to whitespace) are one example, whatever the type."""
    return json.dumps(sorted((k, normalize(v)) for k, v in example.items()), ensure_ascii=False)
