"""Training pairs from the published dataset, read the way a user reads it from the Hub.

Rows are grouped by how many hard negatives they have (none, the generated one, or that
one plus mined ``negative_2..n``), one dataset per group, so every batch has one shape
(``anchor, positive, negative_1..k``): a list column of negatives would be encoded as one
concatenated text, and a missing negative cannot be mixed into a batch that has them. The
instruction is written into the anchor text; the documents carry none.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import PROVENANCE_FILE, DatasetFacts, from_dict
from kit.cli import StageError
from kit.config import ExtraDataset
from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask
from kit.instructions import instruct
from kit.provenance import public_name, read_provenance
from kit.schema import MINED_NEGATIVE_PREFIX, UNIFIED_CONFIG
from kit.staleness import dataset_identity

REQUIRED_COLUMNS = ("task_definition", "query", "positive", "negative")


@dataclass(frozen=True)
class TrainingData:
    """Train and validation datasets keyed by shape, plus where they came from."""

    train: dict[str, Any]
    validation: dict[str, Any]
    source: str
    revision: str
    decontaminated: Contamination = field(default_factory=Contamination)


def anchor_text(task_definition: str, query: str) -> str:
    return f"{instruct(task_definition)}{query}"


def _check_columns(split: Any, required: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in split.column_names]
    if missing:
        raise StageError(
            f"{where} is missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(split.column_names)})"
        )


def shape_name(negatives: int) -> str:
    if negatives == 0:
        return "without_negative"
    return "with_negative" if negatives == 1 else f"with_{negatives}_negatives"


def _negative_columns(split: Any, first: str) -> list[str]:
    """The hard negative, then any mined ``negative_2..n`` columns, in order."""
    mined = sorted(
        (c for c in split.column_names if c.startswith(MINED_NEGATIVE_PREFIX)),
        key=lambda c: int(c.removeprefix(MINED_NEGATIVE_PREFIX)),
    )
    return ([first] if first and first in split.column_names else []) + mined


def pairs(
    split: Any,
    task_definition: str | None = None,
    query: str = "query",
    positive: str = "positive",
    negative: str = "negative",
) -> dict[str, Any]:
    """Split one source by how many negatives a row has, as anchor/positive/negative_1..k."""
    from datasets import Dataset

    negative_columns = _negative_columns(split, negative)
    groups: dict[int, dict[str, list[str]]] = {}
    for row in split:
        negatives = [row[c] for c in negative_columns if row[c]]
        group = groups.setdefault(len(negatives), {"anchor": [], "positive": []})
        group["anchor"].append(anchor_text(task_definition or row["task_definition"], row[query]))
        group["positive"].append(row[positive])
        for index, text in enumerate(negatives, start=1):
            group.setdefault(f"negative_{index}", []).append(text)
    return {shape_name(k): Dataset.from_dict(groups[k]) for k in sorted(groups)}


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    from datasets import concatenate_datasets

    for key, dataset in more.items():
        into[key] = concatenate_datasets([into[key], dataset]) if key in into else dataset


def dataset_revision(source: str) -> str:
    """A local folder by content (``kit.staleness``), a Hub id by its commit when known."""
    if Path(source).is_dir():
        return f"sha256:{dataset_identity(source)}"
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source).sha or "unknown"
    except Exception:  # noqa: BLE001 - offline or private: the record says so instead
        return "unknown"


def read_dataset_facts(source: str) -> DatasetFacts | None:
    """The facts in the dataset's own ``provenance.json`` (local folder or Hub repo); ``None``
    for a dataset made elsewhere, or one that cannot be reached."""
    folder = Path(source)
    if folder.is_dir():
        provenance = read_provenance(folder)
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(source, PROVENANCE_FILE, repo_type="dataset")
        except Exception:  # noqa: BLE001 - offline, private or absent: the facts stay unknown
            return None
        provenance = read_provenance(Path(path).parent)
    if provenance is None or provenance.stage != "dataset_builder":
        return None
    try:
        return from_dict(DatasetFacts, provenance.facts)
    except ValueError:
        return None


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


NO_SYNTHETIC = "none"


def load_training_data(
    source: str, extra_datasets: list[ExtraDataset], ngrams: EvaluationNgrams | None
) -> TrainingData:
    """Read ``default`` (train and validation) of the synthetic dataset, unless ``source`` is
    ``none``, and the extra labelled sets, decontaminated when ``ngrams`` is given."""
    train: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    if source != NO_SYNTHETIC:
        corpus = _load(source, UNIFIED_CONFIG)
        if "train" not in corpus:
            raise StageError(f"dataset {source!r} has no 'train' split")
        for name, split in corpus.items():
            _check_columns(split, REQUIRED_COLUMNS, f"dataset {source!r} split {name!r}")
        train = pairs(corpus["train"])
        validation = pairs(corpus["validation"]) if "validation" in corpus else {}
    removed: Contamination = Contamination()
    for extra in extra_datasets:
        loaded = _load(extra.path, extra.config)
        for split_name, into in ((extra.split, train), (extra.validation_split, validation)):
            if not split_name:
                continue
            if split_name not in loaded:
                raise StageError(f"extra dataset {extra.path!r} has no split {split_name!r}")
            split = _checked_extra(loaded[split_name], extra)
            if ngrams is not None:
                split = _decontaminated(split, extra, ngrams, removed)
            _merge(
                into,
                pairs(
                    split, extra.task_definition, extra.query_column, extra.positive_column,
                    extra.negative_column,
                ),
            )  # fmt: skip
    if not train:
        raise StageError(f"dataset {source!r} has no training rows")
    revision = dataset_revision(source) if source != NO_SYNTHETIC else NO_SYNTHETIC
    return TrainingData(train, validation, source, revision, removed)


def _checked_extra(split: Any, extra: ExtraDataset) -> Any:
    columns = (extra.query_column, extra.positive_column)
    columns += (extra.negative_column,) if extra.negative_column else ()
    _check_columns(split, columns, f"extra dataset {extra.path!r}")
    return split


def _decontaminated(
    split: Any, extra: ExtraDataset, ngrams: EvaluationNgrams, removed: Contamination
) -> Any:
    """The rows of a public set that share no text with an evaluation set."""
    import pyarrow as pa

    columns = [c for c in (extra.query_column, extra.positive_column, extra.negative_column) if c]
    texts = {column: pa.array(split[column], pa.string()) for column in columns}
    example = pa.StructArray.from_arrays(list(texts.values()), names=columns)
    ids = [f"{public_name(extra.path)}#{i}" for i in range(split.num_rows)]
    table = pa.table({"id": ids, "example": example})
    flagged = contaminated_mask(table, ngrams, removed).to_numpy(zero_copy_only=False)
    return split.select([i for i, bad in enumerate(flagged) if not bad])
