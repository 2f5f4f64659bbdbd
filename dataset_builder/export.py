"""Build the Hub dataset folder from a seeds run: Parquet per config and split, plots, card.

Builds go to a staging folder next to the output and only files whose bytes changed are moved
over, so an unchanged rebuild touches nothing and a push makes no new commit. A manifest
beside the output holds the fingerprint of the input and the hash of every file; when both
match, the build is skipped without reading the rows, and a file that was truncated or
changed since (a killed copy, a full disk) fails the check and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from dataset_builder.card import CardInputs, render_card
from dataset_builder.hard_negatives import MinedNegatives, embedder_identity, mine
from dataset_builder.parquet import write_parquet
from dataset_builder.plots import write_plots
from dataset_builder.provenance import read_ledger, read_run_provenance, read_run_summary
from dataset_builder.raw_run import SHARD_GLOB, RunScan, scan_run
from kit.cli import StageError, unwritable
from kit.config import Config
from kit.decontamination import EvaluationNgrams
from kit.evalsets import data_fingerprint
from kit.files import atomic_write_json, digest_files, read_json_object, sha256_file
from kit.provenance import build_provenance, write_provenance

CODE_DIR = Path(__file__).parent
VERSIONED_PACKAGES = ("datasets", "pyarrow", "matplotlib", "huggingface_hub")
STAGE = "dataset_builder"
STAGING_PREFIX = ".dataset-build-"


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


def manifest_path(output_dir: Path) -> Path:
    """Kept beside the repo folder, not in it, so it is never pushed."""
    return output_dir.parent / f".{output_dir.name}-manifest.json"


def run_digest(run_dir: Path) -> str:
    """SHA-256 over the run's raw shards (names and bytes): the card shows it as the data's
    source. The run's summary and ledger carry times, so they are left out of it."""
    return digest_files(run_dir, list(run_dir.glob(SHARD_GLOB)))


def fingerprint(config: Config, run_dir: Path, source: str) -> str:
    """The raw rows, the run's summary and ledger, the settings the output depends on and
    this code: a change to any of them is a new build."""
    summary = [run_dir / "run.json", run_dir / "ledger.jsonl"]
    digest = hashlib.sha256((source + digest_files(run_dir, summary)).encode())
    mining = config.dataset.hard_negatives
    settings = {
        "dataset": asdict(config.dataset),
        "evaluation_sets": [data_fingerprint(t) for t in config.dataset.decontamination_sets],
        "hard_negatives_embedder": embedder_identity(mining) if mining.enabled else None,
        "repo_id": config.hub.repo_id("dataset"),
        "versions": {name: metadata.version(name) for name in VERSIONED_PACKAGES},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for code in sorted(CODE_DIR.glob("*.py")):
        digest.update(code.read_bytes())
    return digest.hexdigest()


def _is_current(output_dir: Path, manifest: dict[str, Any], expected: str) -> bool:
    files = manifest.get("files")
    if manifest.get("fingerprint") != expected or not isinstance(files, dict):
        return False
    return all(
        (output_dir / name).is_file() and sha256_file(output_dir / name) == sha
        for name, sha in files.items()
    )


def _sync(
    repo_dir: Path, output_dir: Path, files: dict[str, str], old_files: dict
) -> tuple[list[str], list[str]]:
    """Move in files whose bytes differ (the staging folder is on the same file system); remove
    files the previous build wrote and this one did not."""
    written = []
    for name, sha in files.items():
        destination = output_dir / name
        if destination.is_file() and sha256_file(destination) == sha:
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


def _provenance(
    config: Config,
    run_dir: Path,
    source: str,
    run: dict[str, Any],
    repo_dir: Path,
    languages: list[str],
    mined: MinedNegatives | None,
) -> dict:
    """What training and the model card learn about this dataset, from the dataset itself."""
    data_files = sorted((repo_dir / "data").rglob("*.parquet"))
    generator = run.get("generator") if isinstance(run.get("generator"), dict) else {}
    facts = {
        "repo_id": config.hub.repo_id("dataset"),
        "data_sha256": digest_files(repo_dir, data_files),
        "generator": {
            key: generator.get(key) for key in ("model", "backend", "bundled_small_model")
        },
        "license": config.dataset.license,
        "languages": languages,
        "hard_negatives": mined.facts() if mined else None,
    }
    seeds = read_run_provenance(run_dir).get("config_sections", {})
    inputs = {"raw_run": source, "seeds_config_sections": seeds}
    return build_provenance(STAGE, config, ("dataset",), inputs, facts)


def build(config: Config, run_dir: Path, output_dir: Path, force: bool = False) -> BuildResult:
    """Build ``output_dir`` from ``run_dir``; skip when the manifest says nothing changed."""
    run = read_run_summary(run_dir)
    read_run_provenance(run_dir)
    source = run_digest(run_dir)
    expected = fingerprint(config, run_dir, source)
    manifest = read_json_object(manifest_path(output_dir)) or {}
    if not force and _is_current(output_dir, manifest, expected):
        return BuildResult(output_dir, True, expected, [], [], len(manifest["files"]), None)
    output_dir.mkdir(parents=True, exist_ok=True)
    for leftover in output_dir.parent.glob(f"{STAGING_PREFIX}*"):  # from a killed build
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=output_dir.parent) as tmp:
        staging = Path(tmp)
        (staging / "spool").mkdir()
        ngrams = (
            EvaluationNgrams.build(
                config.dataset.decontamination_ngram,
                config.dataset.decontamination_sets,
                config.dataset.decontamination_registry,
            )
            if config.dataset.decontaminate
            else None
        )
        try:
            scan = scan_run(run_dir, staging / "spool", ngrams)
            files = _write_repo(config, run_dir, run, source, scan, staging, ngrams)
            written, removed = _sync(
                staging / "repo", output_dir, files, manifest.get("files") or {}
            )
        except OSError as exc:
            line = unwritable(exc, output_dir.parent)
            if line is None:
                raise
            raise StageError(line) from None
    atomic_write_json(manifest_path(output_dir), {"fingerprint": expected, "files": files})
    return BuildResult(output_dir, False, expected, written, removed, len(files), scan)


def _write_repo(
    config: Config,
    run_dir: Path,
    run: dict[str, Any],
    source: str,
    scan: RunScan,
    staging: Path,
    ngrams: EvaluationNgrams | None,
) -> dict[str, str]:
    """Write the whole repo into ``staging``; return each file's SHA-256."""
    repo_dir = staging / "repo"
    fraction, mining = config.dataset.validation_fraction, config.dataset.hard_negatives
    mined = mine(mining, scan, fraction) if mining.enabled else None
    infos = write_parquet(scan, repo_dir, fraction, config.dataset.max_shard_rows, mined)
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
    )
    render_card(inputs).save(repo_dir / "README.md")
    provenance = _provenance(config, run_dir, source, run, repo_dir, scan.stats.verified(), mined)
    write_provenance(repo_dir, provenance)
    return {
        p.relative_to(repo_dir).as_posix(): sha256_file(p)
        for p in sorted(repo_dir.rglob("*"))
        if p.is_file()
    }
