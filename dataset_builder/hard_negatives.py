"""Extra hard negatives, mined with sentence-transformers' ``mine_hard_negatives``.

Only the task types with a query and a positive (``kit.schema.MINED_TYPES``) are mined; STS
and bitext rows are left as they are. Each task type and split is one pool: its positives
and generated negatives are the candidates, so a validation row never gets a training text.
The embedder is the training recipe (``kit.embedder``) on the configured model, and each
query carries its instruction as in training, so the scores are the ones training starts
from. Candidates scoring above ``positive - |positive| * relative_margin`` are skipped
(NV-Retriever's TopK-PercPos): they are likely unlabelled positives.

A row gets exactly ``num_negatives`` mined negatives, never its positive nor its own
generated negative, or none when fewer candidates pass the margin (as the library's
``n-tuple`` format drops such rows): it then keeps only its generated negative, so training
sees a few fixed shapes, not one per count.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import kit.embedder
from dataset_builder.raw_run import RunScan
from dataset_builder.rows import project_table
from dataset_builder.splits import validation_keys
from kit.bundled import resolve_model
from kit.config import HardNegativesSection
from kit.instructions import instruct
from kit.provenance import public_name
from kit.schema import MINED_TYPES, UNIFIED_CONFIG, mined_negative_columns

LOG = logging.getLogger("dataset_builder")
# Query x corpus scores held at once by the similarity search (256 MB of float32).
SIMILARITY_CELLS = 1 << 26


@dataclass
class Pool:
    """The rows of one task type and split, as the embedder reads them."""

    ids: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    positives: list[str] = field(default_factory=list)
    negatives: list[str | None] = field(default_factory=list)


@dataclass
class TypeStats:
    """What the card reports per task type; scores are cosine similarities to the query."""

    rows: int = 0
    mined: int = 0
    positive_scores: list[float] = field(default_factory=list)
    negative_scores: list[float] = field(default_factory=list)
    # The nearest candidates of each row without the margin (up to num_negatives per row),
    # and how many of them the margin skips.
    nearest: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class MinedNegatives:
    """The mined negatives of each row by id, and how they were mined."""

    count: int
    embedder: str
    relative_margin: float
    max_length: int
    by_id: dict[str, tuple[str, ...]]
    by_type: dict[str, TypeStats]

    def columns(self, ids: pa.Array) -> dict[str, pa.Array]:
        """``negative_2..`` for these rows, null where a row got none."""
        found = [self.by_id.get(row_id) for row_id in ids.to_pylist()]
        return {
            name: pa.array([mined[k] if mined else None for mined in found], pa.string())
            for k, name in enumerate(mined_negative_columns(self.count))
        }

    def total(self) -> TypeStats:
        """The stats of every task type together."""
        parts = self.by_type.values()
        return TypeStats(
            rows=sum(stats.rows for stats in parts),
            mined=sum(stats.mined for stats in parts),
            positive_scores=[score for stats in parts for score in stats.positive_scores],
            negative_scores=[score for stats in parts for score in stats.negative_scores],
            nearest=sum(stats.nearest for stats in parts),
            skipped=sum(stats.skipped for stats in parts),
        )

    def facts(self) -> dict[str, Any]:
        """For provenance.json: what a reader of the dataset learns about the mining."""
        return {
            "embedder": self.embedder,
            "recipe": kit.embedder.RECIPE,
            "num_negatives": self.count,
            "relative_margin": self.relative_margin,
            "max_length": self.max_length,
            "rows_mined": self.total().mined,
        }


def _pools(scan: RunScan, fraction: float) -> dict[tuple[str, str], Pool]:
    """The mineable rows by (task type, split), in raw order."""
    keys = validation_keys(scan, fraction)
    pools: dict[tuple[str, str], Pool] = {}
    for batch in scan.batches():
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.is_in(table["task_type"], value_set=pa.array(MINED_TYPES)))
        held_out = pc.is_in(table["group_key"], value_set=keys).to_pylist()
        rows = project_table(UNIFIED_CONFIG, table).to_pylist()
        for row, validation in zip(rows, held_out, strict=True):
            split = "validation" if validation else "train"
            pool = pools.setdefault((row["task_type"], split), Pool())
            pool.ids.append(row["id"])
            pool.anchors.append(instruct(row["task_definition"]) + row["query"])
            pool.positives.append(row["positive"])
            pool.negatives.append(row["negative"])
    return pools


def _candidates(mined: Any) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """``labeled-list`` output with scores as (anchor, positive) -> ranked candidates, the
    positive's own score first."""
    return {
        (anchor, texts[0]): list(zip(texts, scores, strict=True))
        for anchor, texts, scores in zip(
            mined["anchor"], mined["positive"], mined["scores"], strict=True
        )
    }


def _mine_pool(
    model: Any, pool: Pool, settings: HardNegativesSection, cache: str
) -> tuple[dict[tuple[str, str], list], dict[tuple[str, str], list]]:
    """The candidates that pass the margin, and the nearest ones without it (for the count
    of skipped candidates; the second call reads the embeddings from ``cache``)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    corpus = [text for text in pool.negatives if text]
    options = {
        "dataset": Dataset.from_dict({"anchor": pool.anchors, "positive": pool.positives}),
        "model": model,
        "anchor_column_name": "anchor",
        "positive_column_name": "positive",
        "corpus": corpus,
        # One more than asked, so dropping the row's own negative still leaves enough.
        "num_negatives": settings.num_negatives + 1,
        "sampling_strategy": "top",
        "output_format": "labeled-list",
        "output_scores": True,
        "batch_size": settings.batch_size,
        "faiss_batch_size": max(1, SIMILARITY_CELLS // (len(corpus) + len(pool.positives))),
        "cache_folder": cache,
        "verbose": False,
    }
    kept = mine_hard_negatives(relative_margin=settings.relative_margin, **options)
    nearest = mine_hard_negatives(**options)
    return _candidates(kept), _candidates(nearest)


def _add_pool(
    pool: Pool,
    kept: dict[tuple[str, str], list],
    nearest: dict[tuple[str, str], list],
    settings: HardNegativesSection,
    by_id: dict[str, tuple[str, ...]],
    stats: TypeStats,
) -> None:
    """Each row's negatives (all ``num_negatives`` or none) and its share of the stats."""
    wanted = settings.num_negatives
    for row_id, anchor, positive, own in zip(
        pool.ids, pool.anchors, pool.positives, pool.negatives, strict=True
    ):
        stats.rows += 1
        ranked = nearest.get((anchor, positive)) or kept.get((anchor, positive))
        if ranked is None:  # the pool holds no other text
            continue
        score = ranked[0][1]
        stats.positive_scores.append(score)
        threshold = score - abs(score) * settings.relative_margin
        closest = [s for text, s in ranked[1:] if text != own][:wanted]
        stats.nearest += len(closest)
        stats.skipped += sum(s > threshold for s in closest)
        passed = [(text, s) for text, s in kept.get((anchor, positive), [])[1:] if text != own]
        if len(passed) >= wanted:
            by_id[row_id] = tuple(text for text, _ in passed[:wanted])
            stats.negative_scores.extend(s for _, s in passed[:wanted])
            stats.mined += 1


def mine(settings: HardNegativesSection, scan: RunScan, fraction: float) -> MinedNegatives:
    """Mine every pool of the run with the configured embedder."""
    pools = _pools(scan, fraction)
    LOG.info(
        "mining %d hard negatives per row for %d rows with %s",
        settings.num_negatives,
        sum(len(pool.ids) for pool in pools.values()),
        public_name(settings.embedder),
    )
    model = kit.embedder.build_embedder(resolve_model(settings.embedder), settings.max_length)
    by_id: dict[str, tuple[str, ...]] = {}
    by_type = {task_type: TypeStats() for task_type in MINED_TYPES}
    with tempfile.TemporaryDirectory(prefix="synthembed-mining-") as cache:
        for (task_type, split), pool in sorted(pools.items()):
            LOG.info("mining %s/%s: %d rows", task_type, split, len(pool.ids))
            kept, nearest = _mine_pool(model, pool, settings, cache)
            _add_pool(pool, kept, nearest, settings, by_id, by_type[task_type])
    return MinedNegatives(
        count=settings.num_negatives,
        embedder=public_name(settings.embedder),
        relative_margin=settings.relative_margin,
        max_length=settings.max_length,
        by_id=by_id,
        by_type=by_type,
    )
