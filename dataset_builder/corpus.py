"""The ``corpus`` config: the documents corpus-grounded rows were written about.

Published beside the rows so a row's ``document_id`` resolves on the Hub, and so the Space
can search the real documents. The documents go through the same decontamination as the
rows: one sharing a word n-gram with an evaluation set is left out, and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_builder.card import CITATION, DESCRIPTION, HOMEPAGE
from kit.artifacts import ArtifactError, RunSummary
from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask
from kit.schema import CORPUS_COLUMNS, CORPUS_CONFIG, UNIFIED_CONFIG

CORPUS_SPLIT = "train"


@dataclass
class CorpusExport:
    """What the card says about the corpus: where it came from, what was published, what
    decontamination left out, and how many published rows are grounded in it, per type."""

    source: dict[str, Any]
    info: datasets.DatasetInfo
    documents: int
    contaminated: Counter[str] = field(default_factory=Counter)
    grounded: Counter[str] = field(default_factory=Counter)


def corpus_features() -> datasets.Features:
    return datasets.Features({name: datasets.Value("string") for name in CORPUS_COLUMNS})


def write_corpus(
    run_dir: Path, run: RunSummary, repo_dir: Path, ngrams: EvaluationNgrams | None
) -> CorpusExport | None:
    """Write ``data/corpus/train-00000-of-00001.parquet`` from the run's snapshot."""
    if run.corpus is None:
        return None
    snapshot = run_dir / run.corpus["file"]
    if not snapshot.is_file():
        raise ArtifactError(f"{snapshot}: the run names a corpus but its snapshot is missing")
    table = pq.read_table(snapshot).select(list(CORPUS_COLUMNS)).combine_chunks()
    found = Contamination()
    if ngrams is not None:
        texts = table["text"].chunk(0) if table["text"].num_chunks else pa.array([], pa.string())
        probe = pa.table({"id": table["document_id"],
                          "example": pa.StructArray.from_arrays([texts], ["text"])})
        flagged = contaminated_mask(probe, ngrams, found)
        table = table.filter(pc.invert(flagged))
    table = table.cast(corpus_features().arrow_schema)
    folder = repo_dir / "data" / CORPUS_CONFIG
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CORPUS_SPLIT}-00000-of-00001.parquet"
    pq.write_table(table, path)
    info = datasets.DatasetInfo(
        description=DESCRIPTION, features=corpus_features(), citation=CITATION,
        homepage=HOMEPAGE, config_name=CORPUS_CONFIG,
    )  # fmt: skip
    info.splits = datasets.SplitDict()
    info.splits.add(datasets.SplitInfo(name=CORPUS_SPLIT, num_bytes=table.nbytes,
                                       num_examples=table.num_rows))  # fmt: skip
    info.download_size = path.stat().st_size
    info.dataset_size = table.nbytes
    return CorpusExport(run.corpus, info, table.num_rows, found.rows,
                        grounded_rows(repo_dir))  # fmt: skip


def grounded_rows(repo_dir: Path) -> Counter[str]:
    """Published rows with a ``document_id``, per task type (both splits)."""
    counts: Counter[str] = Counter()
    for path in sorted((repo_dir / "data" / UNIFIED_CONFIG).glob("*.parquet")):
        table = pq.read_table(path, columns=["task_type", "document_id"])
        grounded = table.filter(pc.is_valid(table["document_id"]))
        counts.update(grounded["task_type"].to_pylist())
    return counts
