"""Extra hard negatives, mined with sentence-transformers' ``mine_hard_negatives``.

Only the task types with a query and a positive (``kit.schema.MINED_TYPES``) are mined; STS
and bitext rows are left as they are. Each task type and split is one pool: its positives
and generated negatives are the candidates, so a validation row never gets a training text.
The miner is a trained embedder (an untrained base model's neighbours are noise), loaded as
it is published (``SentenceTransformer(path_or_id)``, no wrapping) on the device and in the
precision ``kit.devices`` picks. Each query carries its row's instruction in the kit's
format (it replaces the miner's generic query prompt); documents get the miner's own
document prompt. Candidates scoring above ``positive - |positive| * relative_margin`` are
skipped (NV-Retriever's TopK-PercPos): they are likely unlabelled positives.

One search per pool ranks the nearest candidates (the window the library itself searches
when a margin is set, ``10 * (num_negatives + 1)``); the margin is then applied to that
ranking, which also counts how many of the nearest candidates it skipped. The search runs
in faiss when it is installed (on every GPU faiss sees), and the embedding runs on every
GPU (sentence-transformers' multi-process pool). Embeddings are kept across builds
(``dataset_builder.embedding_cache``): a rebuild embeds only texts the miner has not seen.

A row gets exactly ``num_negatives`` mined negatives (one by default, as the paper trained
with one hard negative), never its positive nor its own generated negative, or none when
fewer candidates pass the margin (as the library's ``n-tuple`` format drops such rows): it
then keeps only its generated negative, so training sees a few fixed shapes, not one per
count.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataset_builder.embedding_cache import CachedMiner, EmbeddingStore, miner_key
from dataset_builder.raw_run import RunScan
from dataset_builder.rows import project_table
from dataset_builder.splits import validation_keys
from kit.bundled import resolve_model
from kit.cli import StageError
from kit.config import HardNegativesSection
from kit.devices import EncodePlan, choose_device, encode_pool, model_config, plan_encoding
from kit.instructions import instruct
from kit.provenance import public_name
from kit.schema import MINED_TYPES, UNIFIED_CONFIG, mined_negative_columns
from kit.staleness import reference_identity

LOG = logging.getLogger("dataset_builder")
# Query x corpus scores held at once by the similarity search (256 MB of float32).
SIMILARITY_CELLS = 1 << 26
# Candidates ranked per row for each negative asked (the library's own window with a margin).
WINDOW_PER_NEGATIVE = 10
LOADED_AS = "a sentence-transformers model, loaded as it is published"


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
    # Texts this build embedded (the rest came from the embedding cache).
    embedded: int = 0

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
            "loaded_as": LOADED_AS,
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
    miner: Any, pool: Pool, settings: HardNegativesSection
) -> dict[tuple[str, str], list]:
    """The nearest candidates of each row, ranked, from one search of the pool."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    corpus = [text for text in pool.negatives if text]
    mined = mine_hard_negatives(
        dataset=Dataset.from_dict({"anchor": pool.anchors, "positive": pool.positives}),
        model=miner,
        anchor_column_name="anchor",
        positive_column_name="positive",
        corpus=corpus,
        num_negatives=WINDOW_PER_NEGATIVE * (settings.num_negatives + 1),
        sampling_strategy="top",
        output_format="labeled-list",
        output_scores=True,
        query_prompt="",  # the anchors carry their own instruction
        batch_size=settings.batch_size,
        faiss_batch_size=max(1, SIMILARITY_CELLS // (len(corpus) + len(pool.positives))),
        use_faiss=importlib.util.find_spec("faiss") is not None,
        verbose=False,
    )
    return _candidates(mined)


def _add_pool(
    pool: Pool,
    ranked_by_row: dict[tuple[str, str], list],
    settings: HardNegativesSection,
    by_id: dict[str, tuple[str, ...]],
    stats: TypeStats,
) -> None:
    """Each row's negatives (all ``num_negatives`` or none), the nearest candidates that
    pass the margin, and its share of the stats."""
    wanted = settings.num_negatives
    for row_id, anchor, positive, own in zip(
        pool.ids, pool.anchors, pool.positives, pool.negatives, strict=True
    ):
        stats.rows += 1
        ranked = ranked_by_row.get((anchor, positive))
        if ranked is None:  # the pool holds no other text
            continue
        score = ranked[0][1]
        stats.positive_scores.append(score)
        threshold = score - abs(score) * settings.relative_margin
        others = [(text, s) for text, s in ranked[1:] if text != own]
        closest = [s for _, s in others[:wanted]]
        stats.nearest += len(closest)
        stats.skipped += sum(s > threshold for s in closest)
        passed = [(text, s) for text, s in others if s <= threshold]
        if len(passed) >= wanted:
            by_id[row_id] = tuple(text for text, _ in passed[:wanted])
            stats.negative_scores.extend(s for _, s in passed[:wanted])
            stats.mined += 1


@dataclass
class Miner:
    """The loaded miner, how it encodes, and the key of its embeddings in the cache."""

    model: Any
    plan: EncodePlan
    key: str


def load_miner(settings: HardNegativesSection) -> Miner:
    """The configured trained embedder, as it is published, on the hardware at hand."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import is_sentence_transformer_model

    path = resolve_model(settings.embedder)
    if not is_sentence_transformer_model(path):
        raise StageError(
            f"dataset.hard_negatives.embedder: {public_name(settings.embedder)} is not a "
            "sentence-transformers model (no modules.json): mining needs a trained embedder"
        )
    config = model_config(path)
    device = choose_device("auto", "dataset.hard_negatives")
    plan = plan_encoding(device, "auto", settings.batch_size, config)
    model = SentenceTransformer(
        path, device=plan.device, model_kwargs={"dtype": plan.torch_dtype}
    )
    model.max_seq_length = min(model.max_seq_length or settings.max_length, settings.max_length)
    commit = getattr(config, "_commit_hash", None) or ""
    identity = f"{reference_identity(settings.embedder)}@{commit}"
    key = miner_key(identity, plan.dtype, model.max_seq_length, dict(model.prompts))
    return Miner(model, plan, key)


def mine(
    settings: HardNegativesSection, scan: RunScan, fraction: float, cache_dir: Path
) -> MinedNegatives:
    """Mine every pool of the run with the configured embedder, one search per pool."""
    pools = _pools(scan, fraction)
    LOG.info(
        "mining %d hard negatives per row for %d rows with %s",
        settings.num_negatives,
        sum(len(pool.ids) for pool in pools.values()),
        public_name(settings.embedder),
    )
    miner = load_miner(settings)
    search = "faiss" if importlib.util.find_spec("faiss") is not None else "torch, on the CPU"
    LOG.info("miner encodes on %s; similarity search: %s", miner.plan.describe(), search)
    store = EmbeddingStore(cache_dir / miner.key)
    by_id: dict[str, tuple[str, ...]] = {}
    by_type = {task_type: TypeStats() for task_type in MINED_TYPES}
    with encode_pool(miner.model, miner.plan) as pool:  # one pool for every pool of rows
        cached = CachedMiner(miner.model, store, pool)
        for (task_type, split), pool in sorted(pools.items()):
            LOG.info("mining %s/%s: %d rows", task_type, split, len(pool.ids))
            ranked = _mine_pool(cached, pool, settings)
            _add_pool(pool, ranked, settings, by_id, by_type[task_type])
    embedded = store.embedded
    store.save()
    LOG.info("miner embedded %d texts, and read %d from the embedding cache", embedded,
             store.reused)  # fmt: skip
    return MinedNegatives(
        count=settings.num_negatives,
        embedder=public_name(settings.embedder),
        relative_margin=settings.relative_margin,
        max_length=miner.model.max_seq_length,
        by_id=by_id,
        by_type=by_type,
        embedded=embedded,
    )
