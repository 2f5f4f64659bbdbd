"""``provenance.json``: what each artifact was made from, written beside the artifact.

Every stage writes one into the folder it publishes (the raw run, the dataset, the model, the
evaluation results, the Space): the fingerprints of its inputs, the digest of the config
section it used, and a few facts the next stage needs about it. The next stage reads that
file, never another stage's config section, so a folder under ``build/`` and the same repo
on the Hub tell the same story. Paths of the build machine never go in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kit
from kit.config import Config, section_digest
from kit.files import atomic_write_json, read_json_object

PROVENANCE_FILE = "provenance.json"
FORMAT_VERSION = 1


class ProvenanceError(RuntimeError):
    """An artifact has no readable provenance: it was not made by a finished stage."""


def build_provenance(
    stage: str,
    config: Config,
    sections: tuple[str, ...],
    inputs: dict[str, Any],
    facts: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "kit_version": kit.__version__,
        "config_sections": {name: section_digest(config, name) for name in sections},
        "inputs": inputs,
        "facts": facts,
    }


def write_provenance(folder: Path, provenance: dict[str, Any]) -> Path:
    return atomic_write_json(folder / PROVENANCE_FILE, provenance)


def read_provenance(folder: Path, what: str) -> dict[str, Any]:
    """The provenance of a finished artifact, or a ``ProvenanceError`` that says what to run."""
    provenance = read_json_object(folder / PROVENANCE_FILE)
    if provenance is None or provenance.get("format_version") != FORMAT_VERSION:
        raise ProvenanceError(
            f"{folder / PROVENANCE_FILE} is missing or unreadable: {what} did not finish there"
        )
    return provenance


def is_current(folder: Path, expected: dict[str, Any]) -> bool:
    """Whether the artifact in ``folder`` was made from exactly these inputs and settings."""
    found = read_json_object(folder / PROVENANCE_FILE)
    if found is None:
        return False
    keys = ("stage", "config_sections", "inputs", "kit_version")
    return all(found.get(key) == expected.get(key) for key in keys)


def public_name(reference: str) -> str:
    """A model or dataset reference fit to publish: a Hub id or ``bundled:`` name as it is,
    a local path by its folder name only (no path of the build machine leaves it)."""
    if not reference:
        return reference
    path = Path(reference).expanduser()
    if reference.startswith((".", "/", "~")) or path.exists():
        return f"local:{path.resolve().name}"
    return reference
