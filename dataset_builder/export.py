"""Build the Hub dataset folder from a seeds run: Parquet per config and split, plots, card.

Builds go to a staging folder next to the output and only files whose bytes changed are moved
over, so a rebuild of the same rows touches nothing and a push makes no new commit. Whether
to build at all is the staleness check's call (``kit.staleness``): the run's published
content digest, the held-out sets, the miner and ``[dataset]`` are this stage's inputs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_builder.card import CardInputs, render_card
from dataset_builder.corpus import write_corpus
from dataset_builder.hard_negatives import MinedNegatives, mine
from dataset_builder.parquet import write_parquet
from dataset_builder.plots import write_plots
from dataset_builder.provenance import check_run_schema, read_ledger
from dataset_builder.raw_run import SHARD_GLOB, RunScan, scan_run
from kit.artifacts import PROVENANCE_FILE, DatasetFacts, RunSummary, read_run_summary
from kit.cli import StageError, unwritable
from kit.config import Config, config_notes
from kit.decontamination import EvaluationNgrams
from kit.files import digest_files, sha256_file
from kit.staleness import StageRun

LOG = logging.getLogger("dataset_builder")
STAGING_PREFIX = ".dataset-build-"


@dataclass(frozen=True)
class BuildResult:
    """What a build did, for the log and the tests."""

    output_dir: Path
    written: list[str]
    removed: list[str]
    files: int
    scan: RunScan
    facts: DatasetFacts


def run_digest(run_dir: Path) -> str:
    """SHA-256 over the run's raw shards (names and bytes): the card shows it as the data's
    source. The run's summary and ledger carry times, so they are left out of it."""
    return digest_files(run_dir, list(run_dir.glob(SHARD_GLOB)))


def main(config: Config, args: Any, stage: StageRun) -> None:
    """The stage: build the dataset repo from the run, log what happened, publish."""
    for note in config_notes(config):
        LOG.warning(note)
    result = build(config, config.layout.run_dir, stage.folder, before_change=stage.begin)
    scan = result.scan
    LOG.info("%d raw lines -> %d rows, %d dropped", scan.lines_read, scan.accepted,
             sum(scan.dropped.values()))  # fmt: skip
    for reason, count in sorted(scan.dropped.items()):
        LOG.warning("%d dropped: %s", count, reason)
    LOG.info("%s: %d file(s) written, %d removed, %d unchanged", result.output_dir,
             len(result.written), len(result.removed),
             result.files - len(result.written))  # fmt: skip
    stage.publish(facts=dataclasses.asdict(result.facts))


def build(
    config: Config,
    run_dir: Path,
    output_dir: Path,
    before_change: Callable[[], None] = lambda: None,
) -> BuildResult:
    """Build ``output_dir`` from ``run_dir``, writing only the files whose bytes change;
    ``before_change`` runs once the new repo is ready, before ``output_dir`` is touched, so
    a failed build leaves the previous dataset as it was."""
    run = read_run_summary(run_dir)
    check_run_schema(run_dir)
    source = run_digest(run_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for leftover in output_dir.parent.glob(f"{STAGING_PREFIX}*"):  # from a killed build
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=output_dir.parent) as tmp:
        staging = Path(tmp)
        (staging / "spool").mkdir()
        held_out = config.held_out
        ngrams = (
            EvaluationNgrams.build(
                config.dataset.decontamination_ngram,
                held_out.local_tasks,
                held_out.registry_tasks,
                held_out.benchmark,
            )
            if config.dataset.decontaminate
            else None
        )
        try:
            scan = scan_run(run_dir, staging / "spool", ngrams)
            files, facts = _write_repo(config, run_dir, run, source, scan, staging, ngrams)
            before_change()
            written, removed = _sync(staging / "repo", output_dir, files)
        except OSError as exc:
            line = unwritable(exc, output_dir.parent)
            if line is None:
                raise
            raise StageError(line) from None
    return BuildResult(output_dir, written, removed, len(files), scan, facts)


def _sync(repo_dir: Path, output_dir: Path, files: dict[str, str]) -> tuple[list[str], list[str]]:
    """Move in files whose bytes differ (the staging folder is on the same file system);
    remove files of an earlier build that this one did not write."""
    written = []
    for name, sha in files.items():
        destination = output_dir / name
        if destination.is_file() and sha256_file(destination) == sha:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(repo_dir / name, destination)
        written.append(name)
    removed = []
    for stale in sorted(p for p in output_dir.rglob("*") if p.is_file()):
        name = stale.relative_to(output_dir).as_posix()
        if name not in files and name != PROVENANCE_FILE:
            stale.unlink()
            removed.append(name)
    return written, removed


def _facts(
    config: Config, run: RunSummary, repo_dir: Path, languages: list[str],
    mined: MinedNegatives | None,
) -> DatasetFacts:
    """What training and the model card learn about this dataset, from the dataset itself."""
    data_files = sorted((repo_dir / "data").rglob("*.parquet"))
    return DatasetFacts(
        repo_id=config.hub.repo_id("dataset"),
        data_sha256=digest_files(repo_dir, data_files),
        generator=run.generator,
        license=config.dataset.license,
        languages=languages,
        hard_negatives=mined.facts() if mined else None,
    )


def _write_repo(
    config: Config,
    run_dir: Path,
    run: RunSummary,
    source: str,
    scan: RunScan,
    staging: Path,
    ngrams: EvaluationNgrams | None,
) -> tuple[dict[str, str], DatasetFacts]:
    """Write the whole repo into ``staging``; return each file's SHA-256 and the facts."""
    repo_dir = staging / "repo"
    fraction, mining = config.dataset.validation_fraction, config.dataset.hard_negatives
    mined = mine(mining, scan, fraction, config.layout.mining_cache_dir) if mining.active else None
    infos = write_parquet(scan, repo_dir, fraction, config.dataset.max_shard_rows, mined)
    corpus = write_corpus(run_dir, run, repo_dir, ngrams)
    plots = write_plots(scan.stats, repo_dir)
    inputs = CardInputs(
        repo_id=config.hub.repo_id("dataset"),
        pretty_name=config.dataset.pretty_name,
        license=config.dataset.license,
        validation_fraction=config.dataset.validation_fraction,
        scan=scan,
        run=run,
        ledger=read_ledger(run_dir),
        infos=infos,
        source_digest=source,
        plots=plots,
        ngrams=ngrams,
        mined=mined,
        corpus=corpus,
    )
    render_card(inputs).save(repo_dir / "README.md")
    files = {
        p.relative_to(repo_dir).as_posix(): sha256_file(p)
        for p in sorted(repo_dir.rglob("*"))
        if p.is_file()
    }
    return files, _facts(config, run, repo_dir, scan.stats.verified(), mined)
