"""A round of Batch API requests as local input files, each within the API's limits (at most
``max_requests`` lines and ``max_bytes``), written one line at a time so a round of any size
takes no more memory than a line. Beside each input file, a manifest lists its items, so the
answers can be matched to them after a kill. The journal (``batches.jsonl``) names a file
only once it is complete."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from kit.errors import StageError
from seeds.plan import WorkItem

MANIFEST_FIELDS = tuple(f.name for f in fields(WorkItem) if f.name not in ("prompt", "schema"))


class Splitter:
    """Where one input file ends and the next begins, line by line."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def starts_new_file(self, line_bytes: int) -> bool:
        """Take a line of ``line_bytes``; True when it must open a new file."""
        if line_bytes > self.max_bytes:
            raise StageError(
                f"generator.batch_max_bytes = {self.max_bytes:,} is less than one request "
                f"({line_bytes:,} bytes)"
            )
        full = self.requests == self.max_requests or self.bytes + line_bytes > self.max_bytes
        new = self.requests == 0 or full
        if new:
            self.requests = self.bytes = 0
        self.requests += 1
        self.bytes += line_bytes
        return new


@dataclass
class InputFile:
    """One input file of a round, as the journal records it."""

    name: str
    kind: str
    requests: int
    bytes: int
    tokens: int  # prompt tokens the API may count for it (generously: a token per 3 bytes)
    response_format: str


def manifest_row(item: WorkItem) -> dict[str, Any]:
    """The item without its prompt and schema (``dataclasses.asdict`` would deep-copy them)."""
    return {name: getattr(item, name) for name in MANIFEST_FIELDS}


def write_round(
    folder: Path,
    stem: str,
    items: Iterable[WorkItem],
    line_of: Callable[[WorkItem], bytes],
    splitter: Splitter,
    response_format: str,
) -> list[InputFile]:
    """Write ``items`` as ``<stem>-NNN.jsonl`` input files and ``.items.jsonl`` manifests."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[InputFile] = []
    handles: tuple[Any, TextIO] | None = None
    try:
        for item in items:
            line = line_of(item)
            if splitter.starts_new_file(len(line)):
                _close(handles)
                name = f"{stem}-{len(files):03d}"
                files.append(InputFile(name, item.kind, 0, 0, 0, response_format))
                handles = (
                    (folder / f"{name}.jsonl").open("wb"),
                    (folder / f"{name}.items.jsonl").open("w", encoding="utf-8"),
                )
            assert handles is not None
            handles[0].write(line)
            handles[1].write(json.dumps(manifest_row(item), ensure_ascii=False) + "\n")
            current = files[-1]
            current.requests += 1
            current.bytes += len(line)
            current.tokens += math.ceil(len(line) / 3)
    finally:
        _close(handles)
    return files


def _close(handles: tuple[Any, TextIO] | None) -> None:
    if handles is not None:
        for handle in handles:
            handle.close()


def read_manifest(path: Path) -> dict[str, WorkItem]:
    """Item id -> the item (without its prompt, which the answer does not need)."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {row["item_id"]: WorkItem(prompt="", schema={}, **row) for row in rows}
