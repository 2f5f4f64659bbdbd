"""Tiny datasets in the published layout (Parquet + card ``configs:``), for training tests."""

from __future__ import annotations

from pathlib import Path

from tests.tiny_models import WORDS

TOPICS = WORDS[10:34]
CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/default/train-*.parquet
  - split: validation
    path: data/default/validation-*.parquet
---
# tiny training corpus
"""


def unified_row(i: int, query: str, positive: str, negative: str | None) -> dict:
    """One row of the unified ``default`` config, provenance columns included."""
    return {
        "id": f"row-{i}",
        "task_type": "short_long" if negative else "short_short",
        "task_definition": "find the same words",
        "language": "en",
        "query": query,
        "positive": positive,
        "negative": negative,
        "target_language": None,
        "generator_model": "test",
        "template_id": "test",
        "template_sha256": "0" * 64,
    }


def phrase_rows(start: int, count: int, seed: int, with_negatives: bool = True) -> list[dict]:
    """The positive repeats the query's words; the hard negative is another phrase.

    A random model does not know that, because the instruction in front of the query
    changes its last-token state; fine-tuning has to learn to look past it.
    """
    import random

    rng = random.Random(seed)
    rows = []
    for k in range(count):
        words = rng.sample(TOPICS, 3)
        other = rng.sample(TOPICS, 3)
        negative = " ".join(other) if with_negatives and k % 2 == 0 else None
        rows.append(unified_row(start + k, " ".join(words), " ".join(words), negative))
    return rows


def write_dataset(
    folder: Path, train: list[dict], validation: list[dict], drop: tuple[str, ...] = ()
) -> Path:
    """Write Parquet shards and a card so ``load_dataset(folder, "default")`` works."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, rows in (("train", train), ("validation", validation)):
        table = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in drop} for r in rows])
        path = folder / "data" / "default" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    return folder


def write_learnable_dataset(folder: Path, drop: tuple[str, ...] = ()) -> Path:
    """A small learnable task with unseen validation phrases."""
    return write_dataset(folder, phrase_rows(0, 96, seed=1), phrase_rows(1000, 32, 2, False), drop)
