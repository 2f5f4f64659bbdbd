"""The task schema every stage shares: one table of task types, the raw record seeds writes,
the dataset's configs and columns, and the quality gates whose rejections a run counts.

``TASK_TABLE`` is the one place a task type is described: its fields in column order, the
role each field plays in the unified training view, the language each is written in, and
the rules a row must keep. seeds prompts, parses, gates and judges by it, dataset_builder
reads raw runs and publishes configs by it, training reads the unified view back; the other
names here are views of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

RAW_SCHEMA_VERSION = 2

ROLES = ("query", "positive", "negative")
# Which language a text is written in -> the raw record's field that names that language.
SIDES = {"source": "language", "target": "target_language"}


@dataclass(frozen=True)
class TextField:
    """One text of a row: the unified-view ``role`` it plays (one of ``ROLES``) and the
    ``side`` whose language it is written in (``None``: a class label, in no checked
    language)."""

    name: str
    role: str
    side: str | None = "source"


@dataclass(frozen=True)
class Repeat:
    """A row whose ``field`` repeats one of ``others`` (case and spacing aside) is rejected with
    ``reason``; with ``inside``, whose ``field`` of that many words or more stands inside one.
    ``gated`` rules belong to the content gate (switchable, the row kept in ``rejected/``);
    the others reject an answer as it is parsed, like a missing key."""

    field: str
    others: tuple[str, ...]
    reason: str
    gated: bool = False
    inside: int = 0


@dataclass(frozen=True)
class TaskType:
    """A task type: its dataset config, its fields in column order and its row rules.
    Symmetric types have one fixed task definition and no brainstorm step."""

    name: str
    config: str
    symmetric: bool
    fields: tuple[TextField, ...]
    rules: tuple[Repeat, ...] = ()
    # The field a corpus document fills in a corpus-grounded row (``None``: the type is
    # only written from scratch): the positive of a retrieval row, the first sentence of STS.
    document_field: str | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field_for(self, role: str) -> str | None:
        """The field playing ``role``, or ``None`` (short-short and long-long have no negative)."""
        return next((f.name for f in self.fields if f.role == role), None)

    def side_of(self, field: str) -> str | None:
        return next((f.side for f in self.fields if f.name == field), None)

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides whose language the texts are written in, source first."""
        return tuple(side for side in SIDES if any(f.side == side for f in self.fields))

    @property
    def cross_lingual(self) -> bool:
        """Rows carry a ``target_language``, different from their ``language``."""
        return "target" in self.sides

    @property
    def judged(self) -> tuple[str, str, str] | None:
        """(text, positive, negative) fields: the judge asks whether the positive fits the text
        better than the negative, so a type without a negative is not judged."""
        query, positive, negative = (self.field_for(role) for role in ROLES)
        if query is None or positive is None or negative is None:
            return None
        return query, positive, negative


_SENTENCES = (TextField("S1", "query"), TextField("S2", "positive"), TextField("S3", "negative"))
_SENTENCES_DIFFER = (
    Repeat("S1", ("S2", "S3"), "sentences_not_distinct"),
    Repeat("S2", ("S3",), "sentences_not_distinct"),
)
_MATCHING = (TextField("input", "query"), TextField("positive_document", "positive"))
_MATCHING_DIFFER = (Repeat("input", ("positive_document",), "query_equals_positive"),)
TASK_TABLE: dict[str, TaskType] = {
    task.name: task
    for task in (
        TaskType(
            "short_long", "retrieval", False,
            (
                TextField("user_query", "query"),
                TextField("positive_document", "positive"),
                TextField("hard_negative_document", "negative"),
            ),
            (
                Repeat("user_query", ("positive_document",), "query_equals_positive"),
                Repeat(
                    "positive_document", ("hard_negative_document",), "positive_equals_negative"
                ),
                Repeat("user_query", ("positive_document",), "query_in_positive",
                       gated=True, inside=4),
            ),
            "positive_document",
        ),
        TaskType(
            "long_short", "classification", False,
            (
                TextField("input_text", "query"),
                TextField("label", "positive", None),
                TextField("misleading_label", "negative", None),
            ),
            (
                Repeat("label", ("misleading_label",), "label_equals_misleading_label"),
                Repeat("input_text", ("label", "misleading_label"), "label_equals_input",
                       gated=True),
            ),
        ),
        TaskType("short_short", "short_short", False, _MATCHING, _MATCHING_DIFFER),
        TaskType("long_long", "long_long", False, _MATCHING, _MATCHING_DIFFER,
                 "positive_document"),
        TaskType("sts", "sts", True, _SENTENCES, _SENTENCES_DIFFER, "S1"),
        TaskType(
            "bitext", "bitext", True,
            (
                TextField("S1", "query"),
                TextField("S2", "positive", "target"),
                TextField("S3", "negative", "target"),
            ),
            _SENTENCES_DIFFER,
        ),
    )
}  # fmt: skip

TASK_TYPES = tuple(TASK_TABLE)
ASYMMETRIC_TYPES = tuple(t.name for t in TASK_TABLE.values() if not t.symmetric)
# Types a corpus document can ground (``[generation.corpus] targets``).
GROUNDED_TYPES = tuple(t.name for t in TASK_TABLE.values() if t.document_field is not None)


def cross_lingual_types() -> list[str]:
    """Types whose rows carry a ``target_language`` besides their ``language`` (bitext)."""
    return [t.name for t in TASK_TABLE.values() if t.cross_lingual]


def example_fields() -> tuple[str, ...]:
    """Every field name of every task type, once each: the keys a raw ``example`` may hold."""
    return tuple(dict.fromkeys(f.name for t in TASK_TABLE.values() for f in t.fields))


# The raw record: one JSON object per line of a seeds shard, its fields in the order seeds
# writes them, with their kind. "text" is a non-empty string; "optional_text" a string or
# null; "seeds" fields (usage, placeholders) are seeds' own and the dataset does not read them;
# "example" holds the task type's fields and "quality" the gates' verdicts; "document_id"
# names the corpus document a corpus-grounded row was written about (null: from scratch).
RAW_RECORD: dict[str, str] = {
    "schema_version": "int",
    "id": "text",
    "task_type": "text",
    "task_definition": "text",
    "language": "text",
    "target_language": "optional_text",
    "placeholders": "seeds",
    "template_id": "text",
    "template_sha256": "text",
    "generator_model": "text",
    "generator_backend": "seeds",
    "usage": "seeds",
    "example": "example",
    "quality": "quality",
    "document_id": "optional_text",
}


def verified_flag(side: str) -> str:
    """The raw record's ``quality`` flag saying a side's language was confirmed."""
    return f"{SIDES[side]}_verified"


def raw_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """A raw record of this schema version from the values of every other field, in order."""
    fields = [name for name in RAW_RECORD if name != "schema_version"]
    if set(values) != set(fields):
        raise KeyError(f"a raw record has the fields {fields}, not {sorted(values)}")
    return {"schema_version": RAW_SCHEMA_VERSION, **{name: values[name] for name in fields}}


# Dataset configs: one per task type with its native fields, plus the unified ``default``.
TYPE_CONFIGS: dict[str, str] = {t.config: t.name for t in TASK_TABLE.values()}
UNIFIED_CONFIG = "default"
CONFIG_NAMES = (*TYPE_CONFIGS, UNIFIED_CONFIG)
SPLITS = ("train", "validation")
# The column naming the corpus document a row was written about (null: from scratch).
DOCUMENT_ID_COLUMN = "document_id"
PROVENANCE_COLUMNS = (
    "target_language", "generator_model", "template_id", "template_sha256", DOCUMENT_ID_COLUMN,
)  # fmt: skip
# The dataset config holding the documents corpus-grounded rows were written about.
CORPUS_CONFIG = "corpus"
CORPUS_COLUMNS = (DOCUMENT_ID_COLUMN, "title", "text", "language")
# Extra negatives mined by the dataset stage; training reads every negative_* column.
MINED_NEGATIVE_PREFIX = "negative_"
# Task types with a query and a positive document, so negatives can be mined for them.
MINED_TYPES = ASYMMETRIC_TYPES


def mined_negative_columns(count: int) -> tuple[str, ...]:
    """``negative_2..negative_{count+1}``: beside the generated ``negative`` of the unified
    config, which stays the generator's own."""
    return tuple(f"{MINED_NEGATIVE_PREFIX}{i}" for i in range(2, 2 + count))


def config_columns(config_name: str, mined_negatives: int = 0) -> tuple[str, ...]:
    """The published columns of one dataset config, in order; only the unified config
    carries mined negatives."""
    if config_name == UNIFIED_CONFIG:
        mined = mined_negative_columns(mined_negatives)
        return (
            "id", "task_type", "task_definition", "language", *ROLES, *mined,
            *PROVENANCE_COLUMNS,
        )  # fmt: skip
    task = next(t for t in TASK_TABLE.values() if t.config == config_name)
    languages = tuple(SIDES[side] for side in task.sides)
    grounded = (DOCUMENT_ID_COLUMN,) if task.document_field is not None else ()
    return ("id", "task_definition", *languages, *task.field_names, *grounded)


def features_for(config_name: str, mined_negatives: int = 0) -> datasets.Features:
    """The ``datasets`` features of one config; every value is a (nullable) string."""
    import datasets

    columns = config_columns(config_name, mined_negatives)
    return datasets.Features({name: datasets.Value("string") for name in columns})


@dataclass(frozen=True)
class Gate:
    """A quality gate of seeds: the ``[quality]`` key that turns it on, and the reasons a
    row it rejects is counted under (one ending in ``:`` is followed by the field caught)."""

    key: str
    name: str
    reasons: tuple[str, ...]

    def claims(self, reason: str) -> bool:
        return any(reason.startswith(r) if r.endswith(":") else reason == r for r in self.reasons)


GATES = (
    Gate(
        "content_rules", "content rules",
        ("too_short:", "markup:", "placeholder:", "prompt_echo:",
         *dict.fromkeys(r.reason for t in TASK_TABLE.values() for r in t.rules if r.gated)),
    ),
    Gate("language_check", "language ID",
         ("wrong_language:", *(f"unverified_{language}" for language in SIDES.values()))),
    Gate("near_duplicates", "near-duplicates (MinHash)", ("near_duplicate",)),
    Gate("consistency_check", "corpus consistency (document in the top k)",
         ("not_in_top_k", "no_neighbour")),
    Gate("judge", "LLM judge", ("judge_rejected",)),
)  # fmt: skip


def gates_on(quality: Any) -> dict[str, bool]:
    """Which gates a run used, by key, from its ``kit.config.QualitySection`` (not imported:
    the config imports this module): the run summary publishes it for the dataset card."""
    return {gate.key: bool(getattr(quality, gate.key)) for gate in GATES}
