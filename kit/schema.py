"""The task schema every stage shares: task types, their fields and roles, and the dataset's
configs and columns. seeds writes raw records in this shape, dataset_builder publishes it,
training reads the unified view back; nothing else declares these facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

RAW_SCHEMA_VERSION = 2

TASK_TYPES = ("short_long", "long_short", "short_short", "long_long", "sts", "bitext")
# Symmetric types have one fixed task definition and no brainstorm step.
SYMMETRIC_TYPES = ("sts", "bitext")
ASYMMETRIC_TYPES = tuple(t for t in TASK_TYPES if t not in SYMMETRIC_TYPES)

# task type -> the fields the generator writes, in column order.
NATIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "short_long": ("user_query", "positive_document", "hard_negative_document"),
    "long_short": ("input_text", "label", "misleading_label"),
    "short_short": ("input", "positive_document"),
    "long_long": ("input", "positive_document"),
    "sts": ("S1", "S2", "S3"),
    "bitext": ("S1", "S2", "S3"),
}
EXAMPLE_FIELDS = tuple(dict.fromkeys(name for names in NATIVE_FIELDS.values() for name in names))

ROLES = ("query", "positive", "negative")
# task type -> the native field that plays each role in the unified training view.
UNIFIED_MAPPING: dict[str, tuple[str, str, str | None]] = {
    task_type: (fields[0], fields[1], fields[2] if len(fields) > 2 else None)
    for task_type, fields in NATIVE_FIELDS.items()
}

# Dataset configs: one per task type with its native fields, plus the unified ``default``.
TYPE_CONFIGS: dict[str, str] = {
    "retrieval": "short_long",
    "classification": "long_short",
    "short_short": "short_short",
    "long_long": "long_long",
    "sts": "sts",
    "bitext": "bitext",
}
UNIFIED_CONFIG = "default"
CONFIG_NAMES = (*TYPE_CONFIGS, UNIFIED_CONFIG)
SPLITS = ("train", "validation")
PROVENANCE_COLUMNS = ("target_language", "generator_model", "template_id", "template_sha256")
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
    task_type = TYPE_CONFIGS[config_name]
    languages = ("language", "target_language") if task_type == "bitext" else ("language",)
    return ("id", "task_definition", *languages, *NATIVE_FIELDS[task_type])


def features_for(config_name: str, mined_negatives: int = 0) -> datasets.Features:
    """The ``datasets`` features of one config; every value is a (nullable) string."""
    import datasets

    columns = config_columns(config_name, mined_negatives)
    return datasets.Features({name: datasets.Value("string") for name in columns})
