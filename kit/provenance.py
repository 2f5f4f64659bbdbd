"""``provenance.json``: what an artifact was made from, written last into the folder a stage
publishes.

It holds the digest of every file of code the stage ran (its own package, its data files and
the kit modules it imports), the versions of the libraries it imports, the digests of the
config sections it read, the content digests of its inputs and of what it published, and a
few facts for the next stage. Because it is written last and removed before a stage changes
its folder, a folder whose provenance matches what the stage would record now is finished
and current (``kit.staleness`` decides that). Paths of the build machine never go in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import PROVENANCE_FILE, from_dict
from kit.files import TEMP_PREFIX, atomic_write_json, digest_files, read_json_object

FORMAT_VERSION = 2
# The parts that decide whether an artifact is current; ``output`` and ``facts`` describe it.
DECIDING = ("format_version", "stage", "code", "libraries", "sections", "inputs")


@dataclass(frozen=True)
class Provenance:
    stage: str
    code: dict[str, str]
    libraries: dict[str, str]
    sections: dict[str, str]
    inputs: dict[str, Any]
    format_version: int = FORMAT_VERSION
    kit_version: str = ""
    finished: bool = True
    output: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def read_provenance(folder: Path) -> Provenance | None:
    """The provenance of ``folder``; ``None`` when it is missing, torn or of another format."""
    found = read_json_object(folder / PROVENANCE_FILE)
    if found is None or found.get("format_version") != FORMAT_VERSION:
        return None
    try:
        return from_dict(Provenance, found)
    except ValueError:
        return None


def write_provenance(folder: Path, provenance: Provenance) -> Path:
    return atomic_write_json(folder / PROVENANCE_FILE, dataclasses.asdict(provenance))


def remove_provenance(folder: Path) -> None:
    """Called before a stage changes its folder: until the new provenance lands, the folder
    is unfinished, whatever a kill leaves in it."""
    (folder / PROVENANCE_FILE).unlink(missing_ok=True)


def content_digest(folder: Path, leave_out: tuple[str, ...] = ()) -> str:
    """SHA-256 over the names and bytes of the files a stage published in ``folder``
    (not its provenance, temporaries, or the top-level entries named in ``leave_out``)."""
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if (
            path.is_file()
            and relative.as_posix() != PROVENANCE_FILE
            and not path.name.startswith(TEMP_PREFIX)
            and relative.parts[0] not in leave_out
        ):
            files.append(path)
    return digest_files(folder, files)


def output_of(folder: Path) -> str:
    """The published content digest of a finished artifact; empty when it has none."""
    found = read_provenance(folder)
    return found.output if found is not None and found.finished else ""


def public_name(reference: str) -> str:
    """A model or dataset reference fit to publish: a Hub id or ``bundled:`` name as it is,
    a local path by its folder name only (no path of the build machine leaves it)."""
    if not reference:
        return reference
    path = Path(reference).expanduser()
    if reference.startswith((".", "/", "~")) or path.exists():
        return f"local:{path.resolve().name}"
    return reference
