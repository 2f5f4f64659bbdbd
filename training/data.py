"""Training pairs from the published dataset, read the way a user reads it from the Hub.

Rows are grouped by how many hard negatives they have (none, the generated one, or that
one plus mined ``negative_2..n``), one dataset per group, so every batch has one shape
(``anchor, positive, negative_1..k``): a list column of negatives would be encoded as one
concatenated text, and a missing negative cannot be mixed into a batch that has them. The
instruction is written into the anchor text; the documents carry none.

Host memory does not grow with the data or the ranks: the groups are built with batched
Arrow operations (``Dataset.map`` on Arrow tables, then index selections), saved once under
the training folder, and every rank memory-maps the same saved files.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import PROVENANCE_FILE, DatasetFacts, from_dict
from kit.cli import StageError
from kit.config import ExtraDataset
from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask
from kit.files import atomic_write_json, read_json_object
from kit.instructions import QUERY_TEMPLATE
from kit.provenance import public_name, read_provenance
from kit.schema import DOCUMENT_ID_COLUMN, MINED_NEGATIVE_PREFIX, UNIFIED_CONFIG
from kit.staleness import dataset_identity

REQUIRED_COLUMNS = ("task_definition", "query", "positive", "negative")
NO_SYNTHETIC = "none"
# Rows per Arrow batch: large enough that the work is columnar, small enough to stay MBs.
BATCH_ROWS = 10_000
COUNT_COLUMN = "__negatives"
FACTS_FILE = "facts.json"
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class TrainingData:
    """Train and validation datasets keyed by shape, plus where they came from."""

    train: dict[str, Any]
    validation: dict[str, Any]
    source: str
    revision: str
    decontaminated: Contamination = field(default_factory=Contamination)


def _check_columns(split: Any, required: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in split.column_names]
    if missing:
        raise StageError(
            f"{where} is missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(split.column_names)})"
        )


def synthetic_rows_of(split: Any, which: str, where: str) -> Any:
    """The rows of one split that ``training.synthetic_rows`` asks for: a corpus-grounded row
    names its document, a row written from scratch names none."""
    if which == "all":
        return split
    import numpy as np
    import pyarrow.compute as pc

    if DOCUMENT_ID_COLUMN not in split.column_names:
        raise StageError(
            f"{where} has no {DOCUMENT_ID_COLUMN} column, so training.synthetic_rows="
            f"{which!r} cannot tell corpus-grounded rows from the others; set it to 'all'"
        )
    grounded = pc.is_valid(split.data.column(DOCUMENT_ID_COLUMN))
    keep = grounded if which == "corpus" else pc.invert(grounded)
    return split.select(np.flatnonzero(keep.to_numpy(zero_copy_only=False)))


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


def _pairs_batch(
    batch: Any, task_definition: str | None, query: str, positive: str, negatives: list[str]
) -> Any:
    """One Arrow batch as anchor, positive, negative_1..k (present negatives moved to the
    front, in column order) and the count of negatives each row has."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = batch.num_rows
    head, tail = QUERY_TEMPLATE.split("{task}")
    task = pa.array([task_definition] * rows, pa.string()) if task_definition else None
    anchor = pc.binary_join_element_wise(
        head, task if task is not None else batch["task_definition"], tail, batch[query], ""
    )
    present = [
        pc.and_(pc.is_valid(batch[c]), pc.greater(pc.utf8_length(batch[c]), 0)).fill_null(False)
        for c in negatives
    ]
    ones = [pc.cast(mask, pa.int8()) for mask in present]
    count = ones[0] if ones else pa.array([0] * rows, pa.int8())
    for more in ones[1:]:
        count = pc.add(count, more)
    columns = {"anchor": anchor, "positive": batch[positive]}
    ranks: list[Any] = []
    seen = pa.array([0] * rows, pa.int8())
    for one in ones:
        seen = pc.add(seen, one)
        ranks.append(seen)
    for slot in range(1, len(negatives) + 1):
        picks = [
            pc.if_else(pc.and_(mask, pc.equal(rank, slot)), batch[c], pa.scalar(None, pa.string()))
            for c, mask, rank in zip(negatives, present, ranks, strict=True)
        ]
        columns[f"negative_{slot}"] = pc.coalesce(*picks)
    columns[COUNT_COLUMN] = count
    return pa.table(columns)


def pairs(
    split: Any,
    task_definition: str | None = None,
    query: str = "query",
    positive: str = "positive",
    negative: str = "negative",
) -> dict[str, Any]:
    """Split one source by how many negatives a row has, as anchor/positive/negative_1..k,
    keeping the rows' order within each group."""
    import numpy as np

    if split.num_rows == 0:
        return {}
    negatives = _negative_columns(split, negative)
    mapped = split.with_format("arrow").map(
        _pairs_batch,
        batched=True,
        batch_size=BATCH_ROWS,
        remove_columns=split.column_names,
        fn_kwargs={"task_definition": task_definition or None, "query": query,
                   "positive": positive, "negatives": negatives},
        desc="training pairs",
    ).with_format(None)  # fmt: skip
    counts = mapped.data.column(COUNT_COLUMN).to_numpy()
    groups = {}
    for negatives_count in sorted(int(k) for k in np.unique(counts)):
        keep = ["anchor", "positive", *(f"negative_{i}" for i in range(1, negatives_count + 1))]
        rows = np.flatnonzero(counts == negatives_count)
        groups[shape_name(negatives_count)] = mapped.select(rows).select_columns(keep)
    return groups


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


def _load(source: str, config_name: str, cache_dir: Path | None) -> Any:
    """A Hub dataset through the datasets cache; a local folder into ``cache_dir`` (Arrow,
    memory-mapped), or into memory when there is none."""
    from datasets import load_dataset

    try:
        if not Path(source).is_dir():
            return load_dataset(source, config_name)
        if cache_dir is not None:
            return load_dataset(source, config_name, cache_dir=str(cache_dir))
        # The dataset stage rebuilds a local folder in place, and the datasets cache can hand
        # back the previous build of the same paths: read it through a throwaway cache.
        with tempfile.TemporaryDirectory(prefix="synthembed-data-") as throwaway:
            return load_dataset(source, config_name, cache_dir=throwaway, keep_in_memory=True)
    except (FileNotFoundError, ValueError) as exc:
        raise StageError(f"cannot load dataset {source!r} config {config_name!r}: {exc}") from None


def load_training_data(
    source: str,
    extra_datasets: list[ExtraDataset],
    ngrams: EvaluationNgrams | None,
    cache_dir: Path | None = None,
    synthetic_rows: str = "all",
) -> TrainingData:
    """Read ``default`` (train and validation) of the synthetic dataset, unless ``source`` is
    ``none``, keeping the ``synthetic_rows`` asked for, and the extra labelled sets,
    decontaminated when ``ngrams`` is given. Local folders are read into ``cache_dir`` when
    one is given (a fresh, empty folder)."""
    train: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    if source != NO_SYNTHETIC:
        corpus = _load(source, UNIFIED_CONFIG, cache_dir)
        if "train" not in corpus:
            raise StageError(f"dataset {source!r} has no 'train' split")
        kept = {}
        for name, split in corpus.items():
            where = f"dataset {source!r} split {name!r}"
            _check_columns(split, REQUIRED_COLUMNS, where)
            kept[name] = synthetic_rows_of(split, synthetic_rows, where)
        train = pairs(kept["train"])
        validation = pairs(kept["validation"]) if "validation" in kept else {}
    removed: Contamination = Contamination()
    for extra in extra_datasets:
        loaded = _load(extra.path, extra.config, cache_dir)
        for split_name, into in ((extra.split, train), (extra.validation_split, validation)):
            if not split_name:
                continue
            if split_name not in loaded:
                raise StageError(f"extra dataset {extra.path!r} has no split {split_name!r}")
            split = _checked_extra(loaded[split_name], extra)
            if ngrams is not None:
                split = _decontaminated(split, extra, ngrams, removed)
            if into is train:
                split = _capped(split, extra.max_rows)
            _merge(
                into,
                pairs(
                    split, extra.task_definition, extra.query_column, extra.positive_column,
                    extra.negative_column,
                ),
            )  # fmt: skip
    if not train:
        chosen = f" ({synthetic_rows} rows)" if synthetic_rows != "all" else ""
        raise StageError(f"dataset {source!r} has no training rows{chosen}")
    revision = dataset_revision(source) if source != NO_SYNTHETIC else NO_SYNTHETIC
    return TrainingData(train, validation, source, revision, removed)


def _checked_extra(split: Any, extra: ExtraDataset) -> Any:
    columns = (extra.query_column, extra.positive_column)
    columns += (extra.negative_column,) if extra.negative_column else ()
    _check_columns(split, columns, f"extra dataset {extra.path!r}")
    return split


def _capped(split: Any, max_rows: int) -> Any:
    """At most ``max_rows`` rows, drawn with a fixed seed so that a seed sweep varies the
    training and not the data."""
    if not max_rows or split.num_rows <= max_rows:
        return split
    return split.shuffle(seed=0).select(range(max_rows))


def _decontaminated(
    split: Any, extra: ExtraDataset, ngrams: EvaluationNgrams, removed: Contamination
) -> Any:
    """The rows of a public set that share no text with an evaluation set, checked one Arrow
    batch at a time."""
    import numpy as np
    import pyarrow as pa

    columns = [c for c in (extra.query_column, extra.positive_column, extra.negative_column) if c]
    name = public_name(extra.path)
    flagged = []
    start = 0
    for batch in split.select_columns(columns).with_format("arrow").iter(batch_size=BATCH_ROWS):
        texts = [batch[column].combine_chunks().cast(pa.string()) for column in columns]
        example = pa.StructArray.from_arrays(texts, names=columns)
        ids = pa.array([f"{name}#{i}" for i in range(start, start + batch.num_rows)])
        table = pa.table({"id": ids, "example": example})
        flagged.append(contaminated_mask(table, ngrams, removed).to_numpy(zero_copy_only=False))
        start += batch.num_rows
    bad = np.concatenate(flagged) if flagged else np.zeros(0, dtype=bool)
    return split.select(np.flatnonzero(~bad))


def check_a_batch_fits(groups: dict[str, Any], batch_size: int) -> None:
    """Each step draws one whole batch from one group of rows of the same shape, so at least
    one group must hold a batch; otherwise the trainer would find no batch at all."""
    sizes = {name: len(rows) for name, rows in sorted(groups.items())}
    if max(sizes.values(), default=0) < batch_size:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise StageError(
            f"training.batch_size={batch_size} is larger than every group of training rows "
            f"of one shape ({listed}); lower it or add rows"
        )


# ---- the groups on disk: built once, memory-mapped by every rank ----------------------------


def save_groups(data: TrainingData, folder: Path) -> None:
    """Each group as Arrow files, then the facts file that marks the folder complete."""
    for split in SPLITS:
        for shape, dataset in getattr(data, split).items():
            dataset.save_to_disk(str(folder / split / shape))
    atomic_write_json(folder / FACTS_FILE, {
        "source": data.source,
        "revision": data.revision,
        "decontaminated": {"rows": dict(data.decontaminated.rows),
                           "examples": data.decontaminated.examples},
        **{split: sorted(getattr(data, split)) for split in SPLITS},
    })  # fmt: skip


def read_groups(folder: Path) -> TrainingData | None:
    """The saved groups, memory-mapped; ``None`` when ``folder`` holds no complete set."""
    from datasets import load_from_disk

    facts = read_json_object(folder / FACTS_FILE)
    if facts is None:
        return None
    splits = {
        split: {shape: load_from_disk(str(folder / split / shape)) for shape in facts[split]}
        for split in SPLITS
    }
    removed = facts["decontaminated"]
    return TrainingData(
        train=splits["train"],
        validation=splits["validation"],
        source=facts["source"],
        revision=facts["revision"],
        decontaminated=Contamination(Counter(removed["rows"]), dict(removed["examples"])),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def build_groups(
    target: Path,
    scratch: Path,
    source: str,
    synthetic_rows: str,
    extra_datasets: list[ExtraDataset],
    ngrams: EvaluationNgrams | None,
    batch_size: int,
    make_room: Callable[[], None],
) -> None:
    """Build the groups in a folder of ``scratch`` (named after this host and process), call
    ``make_room`` and rename the groups to ``target``.

    A failure or a kill leaves nothing at ``target``; when two nodes that share the file
    system build at once, the first rename wins and the other build is dropped (the groups
    are the same). The Arrow copies of the sources read on the way are deleted.
    """
    own = f".training-data-{socket.gethostname()}-"
    for leftover in scratch.glob(f"{own}*"):
        if not _alive(int(leftover.name.removeprefix(own))):  # a build that was killed
            shutil.rmtree(leftover, ignore_errors=True)
    build = scratch / f"{own}{os.getpid()}"
    build.mkdir(parents=True)
    try:
        data = load_training_data(
            source, extra_datasets, ngrams, cache_dir=build / "cache", synthetic_rows=synthetic_rows
        )
        check_a_batch_fits(data.train, batch_size)
        save_groups(data, build / "groups")
        del data
        make_room()
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            (build / "groups").rename(target)
        except OSError:  # another node finished first: its groups are the same
            if read_groups(target) is None:
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
