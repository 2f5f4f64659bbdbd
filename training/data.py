"""Training pairs from the published dataset, read the way a user reads it from the Hub.

Rows with a hard negative and rows without become two datasets in a dict, so every batch
has one shape (``anchor, positive, negative_1`` or ``anchor, positive``): a list column of
negatives would be encoded as one concatenated text, and a missing negative cannot be
mixed into a batch that has them. The instruction is written into the anchor text; the
documents carry none.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.cli import StageError
from training.prompts import instruct

REQUIRED_COLUMNS = ("task_definition", "query", "positive", "negative")
EXTRA_REQUIRED_COLUMNS = ("query", "positive")
EXTRA_KEYS = ("path", "task_definition", "config", "split")


@dataclass(frozen=True)
class TrainingData:
    """Train and validation datasets keyed by shape, plus where they came from."""

    train: dict[str, Any]
    validation: dict[str, Any]
    source: str
    revision: str


def anchor_text(task_definition: str, query: str) -> str:
    return f"{instruct(task_definition)}{query}"


def _check_columns(split: Any, required: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in split.column_names]
    if missing:
        raise StageError(
            f"{where} is missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(split.column_names)})"
        )


def _pairs(split: Any, task_definition: str | None = None) -> dict[str, Any]:
    """Split one source into with/without-negative datasets of anchor/positive[/negative_1]."""
    from datasets import Dataset

    with_negative: dict[str, list[str]] = {"anchor": [], "positive": [], "negative_1": []}
    without_negative: dict[str, list[str]] = {"anchor": [], "positive": []}
    has_negative = "negative" in split.column_names
    for row in split:
        anchor = anchor_text(task_definition or row["task_definition"], row["query"])
        negative = row["negative"] if has_negative else None
        target = with_negative if negative else without_negative
        target["anchor"].append(anchor)
        target["positive"].append(row["positive"])
        if negative:
            target["negative_1"].append(negative)
    out = {}
    if with_negative["anchor"]:
        out["with_negative"] = Dataset.from_dict(with_negative)
    if without_negative["anchor"]:
        out["without_negative"] = Dataset.from_dict(without_negative)
    return out


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    from datasets import concatenate_datasets

    for key, dataset in more.items():
        into[key] = concatenate_datasets([into[key], dataset]) if key in into else dataset


def dataset_revision(source: str) -> str:
    """A content hash of a local dataset folder's data files, or the Hub id's commit if known."""
    folder = Path(source)
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".parquet", ".json", ".jsonl", ".csv"):
                digest.update(str(path.relative_to(folder)).encode())
                digest.update(path.read_bytes())
        return f"sha256:{digest.hexdigest()}"
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source).sha or "unknown"
    except Exception:  # noqa: BLE001 - offline or private: the record says so instead
        return "unknown"


def _load(source: str, config_name: str) -> Any:
    from datasets import load_dataset

    try:
        if not Path(source).is_dir():
            return load_dataset(source, config_name)
        # The dataset stage rebuilds a local folder in place, and the datasets cache can hand
        # back the previous build of the same paths: read it through a throwaway cache.
        with tempfile.TemporaryDirectory(prefix="synthembed-data-") as cache_dir:
            return load_dataset(source, config_name, cache_dir=cache_dir, keep_in_memory=True)
    except (FileNotFoundError, ValueError) as exc:
        raise StageError(f"cannot load dataset {source!r} config {config_name!r}: {exc}") from None


def load_training_data(source: str, extra_datasets: list[Mapping[str, str]]) -> TrainingData:
    """Read ``default`` (train and validation) and any extra labelled sets; check columns."""
    corpus = _load(source, "default")
    if "train" not in corpus:
        raise StageError(f"dataset {source!r} has no 'train' split")
    for name, split in corpus.items():
        _check_columns(split, REQUIRED_COLUMNS, f"dataset {source!r} split {name!r}")
    extras = []
    for i, extra in enumerate(extra_datasets):
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise StageError(
                f"training.extra_datasets[{i}]: unknown key {unknown[0]} "
                f"(allowed: {', '.join(EXTRA_KEYS)})"
            )
        loaded = _load(extra["path"], extra.get("config", "default"))
        split_name = extra.get("split", "train")
        if split_name not in loaded:
            raise StageError(f"extra dataset {extra['path']!r} has no split {split_name!r}")
        _check_columns(
            loaded[split_name], EXTRA_REQUIRED_COLUMNS, f"extra dataset {extra['path']!r}"
        )
        extras.append((loaded[split_name], extra["task_definition"]))

    train = _pairs(corpus["train"])
    for split, task_definition in extras:
        _merge(train, _pairs(split, task_definition))
    if not train:
        raise StageError(f"dataset {source!r} has no training rows")
    validation = _pairs(corpus["validation"]) if "validation" in corpus else {}
    return TrainingData(train, validation, source, dataset_revision(source))
