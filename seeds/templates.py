"""Prompt templates are versioned data files; a record names the template and its hash so a
dataset row can be traced to the exact words that produced it.

A template also says how long each field was asked to be (``asked_words``): a number, or the
name of a placeholder whose values each carry the fewest words they ask for (``"at least 10
words": 10``), so the content gate measures a text against what its prompt asked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kit.instructions import SYMMETRIC_TASK_DEFINITIONS
from kit.schema import GROUNDED_TYPES, TASK_TABLE

TEMPLATE_DIR = Path(__file__).parent / "templates"
CORPUS_TEMPLATE_DIR = TEMPLATE_DIR / "corpus"
CORPUS_LANE_PREFIX = "corpus_"
# The key under which a corpus template asks the generator for the row's task definition.
TASK_DEFINITION_KEY = "task_definition"


class TemplateError(ValueError):
    """A template file is malformed."""


@dataclass(frozen=True)
class Template:
    """One task type's prompts, placeholder value sets and required output keys."""

    task_type: str
    template_id: str
    sha256: str
    brainstorm: str | None
    task_definition: str | None
    placeholders: dict[str, list[str]]
    output_keys: tuple[str, ...]
    prompt: str
    # field -> the fewest words it is asked for: a number, or a placeholder in ``words``
    asked: dict[str, int | str] = field(default_factory=dict)
    # placeholder -> its value -> the fewest words that value asks for
    words: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def asymmetric(self) -> bool:
        return self.brainstorm is not None

    def render_brainstorm(self, num_tasks: int) -> str:
        if self.brainstorm is None:
            raise TemplateError(f"{self.template_id} has no brainstorm prompt")
        return self.brainstorm.format(num_tasks=num_tasks)

    def render(self, values: dict[str, str]) -> str:
        return self.prompt.format(**values)

    def asked_words(self, placeholders: dict[str, str]) -> dict[str, int]:
        """The fewest words each field was asked for with these placeholder values (1 for a
        field the template puts no length on)."""
        asked = {}
        for key in self.output_keys:
            rule = self.asked.get(key, 1)
            if isinstance(rule, str):
                rule = self.words[rule].get(placeholders.get(rule, ""), 1)
            asked[key] = rule
        return asked

    def output_schema(self) -> dict[str, Any]:
        """A strict JSON schema: every key a non-empty string, nothing else."""
        return {
            "type": "object",
            "properties": {key: {"type": "string", "minLength": 1} for key in self.output_keys},
            "required": list(self.output_keys),
            "additionalProperties": False,
        }


def brainstorm_schema(num_tasks: int) -> dict[str, Any]:
    """A list of exactly ``num_tasks`` non-empty strings (small models return [] otherwise)."""
    item = {"type": "string", "minLength": 1}
    tasks = {"type": "array", "items": item, "minItems": num_tasks, "maxItems": num_tasks}
    return {
        "type": "object",
        "properties": {"tasks": tasks},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def load_template(path: Path) -> Template:
    template = _parse_template(path)
    _check_against_schema(path, template)
    return template


def _parse_template(path: Path) -> Template:
    raw_bytes = path.read_bytes()
    try:
        raw = json.loads(raw_bytes)
        placeholders = raw["placeholders"]
        template = Template(
            task_type=raw["task_type"],
            template_id=f"{raw['template_id']}-v{int(raw['version'])}",
            sha256=hashlib.sha256(raw_bytes).hexdigest(),
            brainstorm=raw.get("brainstorm"),
            task_definition=raw["task_definition"],
            placeholders={k: [str(v) for v in vs] for k, vs in placeholders.items()},
            output_keys=tuple(raw["output_keys"]),
            prompt=raw["prompt"],
            asked=dict(raw["asked_words"]),
            words={
                k: {str(v): int(n) for v, n in vs.items()}
                for k, vs in placeholders.items()
                if isinstance(vs, dict)
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"{path}: malformed template ({exc})") from None
    for key, rule in template.asked.items():
        if key not in template.output_keys or not (
            isinstance(rule, int) or rule in template.words
        ):
            raise TemplateError(
                f"{path}: asked_words.{key} must name an output key and give a number or a "
                "placeholder whose values give numbers"
            )
    return template


def _check_against_schema(path: Path, template: Template) -> None:
    """A template states the keys it asks for; the shared schema decides what they must be."""
    task_type = template.task_type
    task = TASK_TABLE.get(task_type)
    if task is None:
        raise TemplateError(f"{path}: unknown task_type {task_type!r}")
    if template.output_keys != task.field_names:
        raise TemplateError(
            f"{path}: output_keys {list(template.output_keys)} differ from the schema's "
            f"{list(task.field_names)}"
        )
    symmetric = task.symmetric
    if symmetric and template.task_definition != SYMMETRIC_TASK_DEFINITIONS[task_type]:
        raise TemplateError(
            f"{path}: a {task_type} template takes the fixed task definition "
            f"{SYMMETRIC_TASK_DEFINITIONS[task_type]!r}"
        )
    if symmetric == (template.brainstorm is not None) or (
        not symmetric and template.task_definition is not None
    ):
        raise TemplateError(
            f"{path}: {'symmetric' if symmetric else 'asymmetric'} task types "
            f"{'have no' if symmetric else 'need a'} brainstorm prompt"
        )


def restrict_placeholders(
    templates: dict[str, Template], subsets: dict[str, list[str]]
) -> dict[str, Template]:
    """Templates asking for only the given placeholder values (``task_type.name`` keys)."""
    narrowed = {task_type: dict(t.placeholders) for task_type, t in templates.items()}
    for key, values in subsets.items():
        task_type, _, name = key.partition(".")
        allowed = narrowed.get(task_type, {}).get(name)
        if allowed is None:
            raise TemplateError(f"generation.placeholder_subsets: no placeholder {key!r}")
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise TemplateError(
                f"generation.placeholder_subsets.{key}: {unknown[0] if unknown else 'nothing'!r}"
                f" is not one of the template's values ({', '.join(allowed)})"
            )
        narrowed[task_type][name] = [v for v in allowed if v in values]
    return {t: replace(template, placeholders=narrowed[t]) for t, template in templates.items()}


def corpus_lane(task_type: str) -> str:
    """The name under which a grounded type's corpus rows are planned, counted and gated."""
    return f"{CORPUS_LANE_PREFIX}{task_type}"


def load_corpus_templates(
    negatives: str, directory: Path = CORPUS_TEMPLATE_DIR
) -> dict[str, Template]:
    """The corpus-grounded templates by lane; ``negatives = "neighbour"`` takes the retrieval
    template that leaves the negative to the corpus."""
    templates = {}
    for task_type in GROUNDED_TYPES:
        neighbour = directory / f"{task_type}_neighbour.json"
        path = neighbour if negatives == "neighbour" and neighbour.is_file() else (
            directory / f"{task_type}.json"
        )
        if not path.is_file():
            raise TemplateError(f"{directory}: no corpus template for {task_type}")
        template = _parse_template(path)
        _check_corpus_template(path, template, from_neighbour=path == neighbour)
        templates[corpus_lane(task_type)] = template
    return templates


def _check_corpus_template(path: Path, template: Template, from_neighbour: bool) -> None:
    """A corpus template asks for every field of its type except the document's (and, when
    the corpus gives the negative, the negative's), plus the task definition when the type
    has no fixed one."""
    task = TASK_TABLE.get(template.task_type)
    if task is None or task.document_field is None:
        raise TemplateError(f"{path}: {template.task_type!r} is not a grounded task type")
    fixed = SYMMETRIC_TASK_DEFINITIONS.get(task.name)
    if template.task_definition != fixed:
        raise TemplateError(f"{path}: task_definition must be {fixed!r}")
    given = {task.document_field}
    if from_neighbour:
        given.add(task.field_for("negative") or "")
    wanted = [f for f in task.field_names if f not in given]
    if fixed is None:
        wanted.insert(0, TASK_DEFINITION_KEY)
    if sorted(template.output_keys) != sorted(wanted):
        raise TemplateError(
            f"{path}: output_keys {list(template.output_keys)} must be {wanted} (the corpus "
            f"gives {', '.join(sorted(given))})"
        )


def load_templates(directory: Path = TEMPLATE_DIR) -> dict[str, Template]:
    """Every task type's template, keyed by task type."""
    templates = {t.task_type: t for t in map(load_template, sorted(directory.glob("*.json")))}
    missing = [t for t in TASK_TABLE if t not in templates]
    if missing:
        raise TemplateError(f"{directory}: no template for {', '.join(missing)}")
    return templates
