"""What the card says about how the data was made: the run's schema and its request ledger."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import PROVENANCE_FILE
from kit.cli import StageError
from kit.files import read_json_object
from kit.schema import RAW_SCHEMA_VERSION


def check_run_schema(run_dir: Path) -> None:
    """A run of another raw schema stops here rather than deep inside the scan (a run
    written before provenance existed has none and is read as this schema). Read as plain
    JSON: the provenance of an older kit has another format but the same fact."""
    provenance = read_json_object(run_dir / PROVENANCE_FILE) or {}
    version = (provenance.get("facts") or {}).get("schema_version", RAW_SCHEMA_VERSION)
    if version != RAW_SCHEMA_VERSION:
        raise StageError(
            f"{run_dir / PROVENANCE_FILE}: the run was written with raw schema {version}, "
            f"this kit reads schema {RAW_SCHEMA_VERSION}; regenerate it with this kit's seeds"
        )


@dataclass
class LedgerSummary:
    """Totals over every request attempt, successful or not (failed attempts cost money too)."""

    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unreadable_lines: int = 0
    present: bool = False


def _number(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def read_ledger(run_dir: Path) -> LedgerSummary:
    """Sum the ledger line by line; lines that do not parse are counted, not fatal."""
    summary = LedgerSummary()
    path = run_dir / "ledger.jsonl"
    if not path.is_file():
        return summary
    summary.present = True
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                summary.unreadable_lines += 1
                continue
            if not isinstance(entry, dict):
                summary.unreadable_lines += 1
                continue
            summary.attempts[str(entry.get("kind", "?")), str(entry.get("outcome", "?"))] += 1
            usage = entry.get("usage") if isinstance(entry.get("usage"), dict) else entry
            summary.prompt_tokens += int(_number(usage.get("prompt_tokens")))
            summary.completion_tokens += int(_number(usage.get("completion_tokens")))
            summary.cost_usd += _number(entry.get("cost_usd"))
    return summary
