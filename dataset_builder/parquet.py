"""Parquet shards for every config and split, written in one pass over the scanned rows.

Rows are written in raw order in fixed-size row groups, so the same run gives the same bytes;
the columns and their types come from the shared schema (``kit.schema.features_for``), and
each config's ``DatasetInfo`` is built from the same features for the card's YAML.
"""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter
from tqdm.auto import tqdm

from dataset_builder.card import CITATION, DESCRIPTION, HOMEPAGE
from dataset_builder.hard_negatives import MinedNegatives
from dataset_builder.raw_run import RunScan
from dataset_builder.rows import select_rows
from dataset_builder.splits import in_validation, validation_keys
from kit.schema import CONFIG_NAMES, SPLITS, TASK_TYPES, TYPE_CONFIGS, UNIFIED_CONFIG, features_for

ROW_GROUP_ROWS = datasets.config.DEFAULT_MAX_BATCH_SIZE


class SplitWriter:
    """One config and split as ``<split>-XXXXX-of-NNNNN.parquet`` shards of ``max_rows`` rows.

    An empty split gets no file (``load_dataset`` cannot read a split of zero rows); the card
    leaves it out of ``configs``."""

    def __init__(
        self, folder: Path, split: str, features: datasets.Features, rows: int, max_rows: int
    ) -> None:
        self.folder, self.split, self.features, self.max_rows = folder, split, features, max_rows
        self.total_shards = math.ceil(rows / max_rows)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.shard = 0
        self.in_shard = 0
        self.writer: ParquetWriter | None = None
        self.num_examples = 0
        self.num_bytes = 0
        self.paths: list[Path] = []

    def add(self, table: pa.Table) -> None:
        """Buffer rows and write whole row groups, so batch boundaries never change the bytes."""
        if not table.num_rows:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            merged = pa.concat_tables(self.pending)
            whole = (merged.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
            self._write(merged.slice(0, whole))
            rest = merged.slice(whole)
            self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def _open(self) -> ParquetWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.split}-{self.shard:05d}-of-{self.total_shards:05d}.parquet"
        self.paths.append(self.folder / name)
        return ParquetWriter(
            features=self.features, path=str(self.paths[-1]), writer_batch_size=ROW_GROUP_ROWS
        )

    def _close_shard(self) -> None:
        assert self.writer is not None
        examples, _ = self.writer.finalize()
        self.writer.close()
        self.num_examples += examples
        # The writer's count is of the Arrow buffers it was given, whose validity bitmaps
        # depend on how the raw run was cut into batches; the file read back does not.
        self.num_bytes += pq.read_table(self.paths[-1]).nbytes
        self.writer, self.in_shard, self.shard = None, 0, self.shard + 1

    def _write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                self.writer = self._open()
            part = table.slice(0, self.max_rows - self.in_shard)
            self.writer.write_table(part)
            self.in_shard += part.num_rows
            table = table.slice(part.num_rows)
            if self.in_shard == self.max_rows:
                self._close_shard()

    def close(self) -> datasets.SplitInfo:
        if self.pending:
            self._write(pa.concat_tables(self.pending))
            self.pending = []
        if self.writer is not None:
            self._close_shard()
        assert len(self.paths) == self.total_shards, (self.paths, self.total_shards)
        return datasets.SplitInfo(
            name=self.split, num_bytes=self.num_bytes, num_examples=self.num_examples
        )


def split_row_counts(scan: RunScan, fraction: float) -> dict[tuple[str, str], int]:
    """Rows per (config, split), known before writing so shard names can say ``-of-N``."""
    held_out = in_validation(scan, fraction)
    counts = {}
    for split, flag in zip(SPLITS, (False, True), strict=True):
        of_split = held_out == flag
        counts[UNIFIED_CONFIG, split] = int(of_split.sum())
        for name, task_type in TYPE_CONFIGS.items():
            of_type = scan.type_codes == TASK_TYPES.index(task_type)
            counts[name, split] = int(np.logical_and(of_split, of_type).sum())
    return counts


def dataset_info(config_name: str, mined_negatives: int = 0) -> datasets.DatasetInfo:
    count = mined_negatives if config_name == UNIFIED_CONFIG else 0
    return datasets.DatasetInfo(
        description=DESCRIPTION,
        features=features_for(config_name, count),
        citation=CITATION,
        homepage=HOMEPAGE,
        config_name=config_name,
    )


def write_parquet(
    scan: RunScan,
    repo_dir: Path,
    fraction: float,
    max_shard_rows: int,
    mined: MinedNegatives | None = None,
) -> dict[str, datasets.DatasetInfo]:
    """Write every config and split in one pass; return each config's ``DatasetInfo``."""
    counts = split_row_counts(scan, fraction)
    infos = {name: dataset_info(name, mined.count if mined else 0) for name in CONFIG_NAMES}
    writers = {
        (name, split): SplitWriter(
            repo_dir / "data" / name, split, infos[name].features, counts[name, split],
            max_shard_rows,
        )
        for name in CONFIG_NAMES
        for split in SPLITS
    }  # fmt: skip
    keys = validation_keys(scan, fraction)
    with tqdm(total=scan.accepted, unit=" rows", desc="Writing Parquet") as progress:
        for batch in scan.batches():
            table = pa.Table.from_batches([batch])
            held_out = pc.is_in(table["group_key"], value_set=keys)
            for (name, split), writer in writers.items():
                writer.add(select_rows(name, table, held_out, split, mined))
            progress.update(table.num_rows)
    for name in CONFIG_NAMES:
        info = infos[name]
        info.splits = datasets.SplitDict()
        for split in SPLITS:
            writer = writers[name, split]
            info.splits.add(writer.close())
        info.download_size = sum(
            path.stat().st_size for split in SPLITS for path in writers[name, split].paths
        )
        info.dataset_size = sum(info.splits[split].num_bytes for split in SPLITS)
    return infos
