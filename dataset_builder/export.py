"""Build the Hub dataset folder from a seeds run: Parquet per config and split, plots, card.

One pass over the scanned rows feeds every config and split at once; rows are written in raw
order in fixed-size row groups, so the same run gives the same bytes. Builds go to a staging
folder next to the output and only files whose bytes changed are copied over, so an unchanged
rebuild touches nothing and a push makes no new commit. A manifest holds the fingerprint of
the input; when it matches, the build is skipped without reading the rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import ParquetWriter
from tqdm.auto import tqdm

from dataset_builder.builder import CONFIG_NAMES, SPLITS, TYPE_CONFIGS, SynthEmbed, select_rows
from dataset_builder.card import CardInputs, render_card
from dataset_builder.plots import write_plots
from dataset_builder.provenance import read_ledger, read_run_summary
from dataset_builder.raw_run import SHARD_GLOB, RunScan, scan_run
from dataset_builder.splits import in_validation, validation_keys
from kit.config import TASK_TYPES, Config

CODE_DIR = Path(__file__).parent
VERSIONED_PACKAGES = ("datasets", "pyarrow", "matplotlib", "huggingface_hub")
ROW_GROUP_ROWS = datasets.config.DEFAULT_MAX_BATCH_SIZE


@dataclass(frozen=True)
class BuildResult:
    """What a build did, for the log and the tests."""

    output_dir: Path
    skipped: bool
    fingerprint: str
    written: list[str]
    removed: list[str]
    files: int
    scan: RunScan | None


def repo_id(config: Config) -> str:
    return f"{config.hub.namespace}/{config.hub.dataset_repo}"


def manifest_path(output_dir: Path) -> Path:
    """Kept beside the repo folder, not in it, so it is never pushed."""
    return output_dir.parent / f".{output_dir.name}-manifest.json"


def run_digest(run_dir: Path) -> str:
    """SHA-256 over the run's files (names and bytes): the card shows it as the data's source."""
    digest = hashlib.sha256()
    for path in [*sorted(run_dir.glob(SHARD_GLOB)), run_dir / "run.json", run_dir / "ledger.jsonl"]:
        digest.update(f"\0file {path.relative_to(run_dir)}\0".encode())
        if path.is_file():
            digest.update(_sha256(path).encode())
    return digest.hexdigest()


def fingerprint(config: Config, source: str) -> str:
    """The run digest plus the settings the output depends on and this code."""
    digest = hashlib.sha256(source.encode())
    settings = {
        "dataset": vars(config.dataset),
        "repo_id": repo_id(config),
        "versions": {name: metadata.version(name) for name in VERSIONED_PACKAGES},
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for source in sorted(CODE_DIR.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(output_dir: Path) -> dict:
    try:
        manifest = json.loads(manifest_path(output_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _is_current(output_dir: Path, manifest: dict, expected: str) -> bool:
    files = manifest.get("files")
    if manifest.get("fingerprint") != expected or not isinstance(files, dict):
        return False
    return all(
        (output_dir / name).is_file() and _sha256(output_dir / name) == sha
        for name, sha in files.items()
    )


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
        examples, size = self.writer.finalize()
        self.writer.close()
        self.num_examples += examples
        self.num_bytes += size
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
        counts["default", split] = int(of_split.sum())
        for name, (task_type, _) in TYPE_CONFIGS.items():
            of_type = scan.type_codes == TASK_TYPES.index(task_type)
            counts[name, split] = int(np.logical_and(of_split, of_type).sum())
    return counts


def write_parquet(
    config: Config, scan: RunScan, repo_dir: Path, cache_dir: Path
) -> dict[str, datasets.DatasetInfo]:
    """Write every config and split in one pass; return each config's ``DatasetInfo``."""
    fraction = config.dataset.validation_fraction
    counts = split_row_counts(scan, fraction)
    infos: dict[str, datasets.DatasetInfo] = {}
    writers: dict[tuple[str, str], SplitWriter] = {}
    for name in CONFIG_NAMES:
        builder = SynthEmbed(
            config_name=name,
            run_dir=str(scan.run_dir),
            validation_fraction=fraction,
            scan=scan,
            cache_dir=str(cache_dir),
        )
        infos[name] = builder.info
        folder = repo_dir / "data" / name
        for split in SPLITS:
            writers[name, split] = SplitWriter(
                folder,
                split,
                builder.info.features,
                counts[name, split],
                config.dataset.max_shard_rows,
            )
    keys = validation_keys(scan, fraction)
    with tqdm(total=scan.accepted, unit=" rows", desc="Writing Parquet") as progress:
        for batch in scan.batches():
            table = pa.Table.from_batches([batch])
            held_out = pc.is_in(table["group_key"], value_set=keys)
            for (name, split), writer in writers.items():
                writer.add(select_rows(name, table, held_out, split))
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


def _sync(
    repo_dir: Path, output_dir: Path, files: dict[str, str], old_files: dict
) -> tuple[list[str], list[str]]:
    """Move in files whose bytes differ (the staging folder is on the same file system); remove
    files the previous build wrote and this one did not."""
    written = []
    for name, sha in files.items():
        destination = output_dir / name
        if destination.is_file() and _sha256(destination) == sha:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(repo_dir / name, destination)
        written.append(name)
    removed = []
    for name in sorted(set(old_files) - set(files)):
        stale = output_dir / name
        if stale.is_file():
            stale.unlink()
            removed.append(name)
    return written, removed


def build(config: Config, run_dir: Path, output_dir: Path, force: bool = False) -> BuildResult:
    """Build ``output_dir`` from ``run_dir``; skip when the manifest says nothing changed."""
    run = read_run_summary(run_dir)
    source = run_digest(run_dir)
    expected = fingerprint(config, source)
    manifest = _read_manifest(output_dir)
    if not force and _is_current(output_dir, manifest, expected):
        return BuildResult(output_dir, True, expected, [], [], len(manifest["files"]), None)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dataset-build-", dir=output_dir.parent) as tmp:
        staging = Path(tmp)
        (staging / "spool").mkdir()
        scan = scan_run(run_dir, staging / "spool")
        repo_dir = staging / "repo"
        infos = write_parquet(config, scan, repo_dir, staging / "cache")
        plots = write_plots(scan.stats, repo_dir)
        inputs = CardInputs(
            repo_id=repo_id(config),
            pretty_name=config.dataset.pretty_name,
            license=config.dataset.license,
            validation_fraction=config.dataset.validation_fraction,
            scan=scan,
            run=run,
            ledger=read_ledger(run_dir),
            infos=infos,
            source_digest=source,
            plots=plots,
        )
        render_card(inputs).save(repo_dir / "README.md")
        files = {
            p.relative_to(repo_dir).as_posix(): _sha256(p)
            for p in sorted(repo_dir.rglob("*"))
            if p.is_file()
        }
        written, removed = _sync(repo_dir, output_dir, files, manifest.get("files") or {})
    manifest_path(output_dir).write_text(
        json.dumps({"fingerprint": expected, "files": files}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return BuildResult(output_dir, False, expected, written, removed, len(files), scan)
