"""Shared helpers for the seeds tests: a config against a fake server, reading a run back,
and checking every record against the raw-run contract."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.cli import run_stage
from kit.config import TASK_TYPES
from kit.schema import RAW_SCHEMA_VERSION, TASK_TABLE
from seeds.__main__ import add_arguments
from seeds.parsing import dedup_key
from seeds.store import read_jsonl
from seeds.templates import load_corpus_templates, load_templates

API_KEY_ENV = "SEEDS_TEST_API_KEY"
API_KEY = "sk-test-do-not-leak-7f3a"
RECORD_KEYS = {
    "schema_version", "id", "task_type", "task_definition", "language", "target_language",
    "placeholders", "template_id", "template_sha256", "generator_model", "generator_backend",
    "usage", "example", "quality", "document_id",
}  # fmt: skip
SMALL_TARGETS = {
    "short_long": 6, "long_short": 5, "short_short": 3, "long_long": 3, "sts": 5, "bitext": 5,
}  # fmt: skip


def seeds_config(
    write_config: Callable[..., Path],
    url: str,
    name: str = "config.toml",
    generator: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    quality: dict[str, Any] | None = None,
) -> Path:
    """A fast config against the fake server: short timeouts and backoff."""
    gen = {
        "backend": "openai", "base_url": url, "model": "fake-model", "api_key_env": API_KEY_ENV,
        "concurrency": 8, "timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
        "max_retries": 8, "batch_poll_s": 0.05, "price_prompt_per_1k": 0.5,
        "price_completion_per_1k": 1.5,
    }  # fmt: skip
    gen.update(generator or {})
    work = {"run_name": "t", "seed": 3, "targets": dict(SMALL_TARGETS), "tasks_per_brainstorm": 4,
            "examples_per_task": 2.0}  # fmt: skip
    work.update(generation or {})
    # The fake server writes English whatever language is asked: the language gate has tests
    # of its own, and is off here so that these count the other faults exactly.
    checks = {"language_check": False, **(quality or {})}
    return write_config(name, generator=gen, generation=work, quality=checks)


def run_dir(config_path: Path) -> Path:
    return config_path.parent / "runs" / "t"


def records(run: Path) -> list[dict[str, Any]]:
    return [r for path in sorted((run / "raw").glob("shard-*.jsonl")) for r in read_jsonl(path)]


def ledger(run: Path) -> list[dict[str, Any]]:
    return read_jsonl(run / "ledger.jsonl")


def run_json(run: Path) -> dict[str, Any]:
    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def check_records(rows: list[dict[str, Any]], backend: str = "openai") -> None:
    """Every record follows the contract; ids and contents are unique."""
    templates = load_templates()
    grounded_templates = {
        t.template_id: t for mode in ("written", "neighbour")
        for t in load_corpus_templates(mode).values()
    }  # fmt: skip
    for row in rows:
        assert set(row) == RECORD_KEYS, row
        if row["document_id"] is None:
            template = templates[row["task_type"]]
        else:
            template = grounded_templates[row["template_id"]]
            assert template.task_type == row["task_type"]
        assert row["schema_version"] == RAW_SCHEMA_VERSION
        assert row["task_type"] in TASK_TYPES
        assert set(row["example"]) == set(TASK_TABLE[row["task_type"]].field_names)
        assert all(isinstance(v, str) and v.strip() for v in row["example"].values())
        assert row["template_id"] == template.template_id
        assert row["template_sha256"] == template.sha256
        assert row["generator_backend"] == backend
        assert re.fullmatch(r"[a-z]{2}", row["language"])
        if row["task_type"] == "bitext":
            assert row["target_language"] not in (None, row["language"])
        else:
            assert row["target_language"] is None
        if template.task_definition:
            assert row["task_definition"] == template.task_definition
        else:
            assert row["task_definition"]
        assert set(row["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert len({r["id"] for r in rows}) == len(rows)
    keys = [dedup_key(r["example"]) for r in rows]
    assert len(set(keys)) == len(keys)


def check_ledger_adds_up(run: Path) -> None:
    """run.json totals are the ledger's sums; accepted ledger lines are the records."""
    lines, summary, rows = ledger(run), run_json(run), records(run)
    assert summary["requests"] == len(lines)
    assert summary["prompt_tokens"] == sum(x["prompt_tokens"] for x in lines)
    assert summary["completion_tokens"] == sum(x["completion_tokens"] for x in lines)
    assert summary["cost_usd"] == round(sum(x["cost_usd"] for x in lines), 6)
    accepted = [x for x in lines if x["kind"] == "generate" and x["outcome"] == "accepted"]
    assert sorted(x["item_id"] for x in accepted) == sorted(r["id"] for r in rows)
    usage = {r["id"]: r["usage"] for r in rows}
    for line in accepted:
        assert usage[line["item_id"]]["prompt_tokens"] == line["prompt_tokens"]
        assert usage[line["item_id"]]["completion_tokens"] == line["completion_tokens"]
    per_type = dict.fromkeys(TASK_TYPES, 0)
    per_type.update(Counter(r["task_type"] for r in rows))
    assert summary["accepted"] == per_type
    assert summary["languages"] == dict(Counter(r["language"] for r in rows))
    judged = [x for x in lines if x["kind"] == "generate" and x["outcome"] == "rejected"]
    content_rejections = {
        k: v
        for k, v in summary["rejected"].items()
        if not k.startswith("brainstorm:") and not k.endswith("_request_failed")
    }
    assert content_rejections == dict(Counter(x["reason"] for x in judged))


def read_jsonl_dir(folder: Path) -> list[dict[str, Any]]:
    return [r for path in sorted(folder.glob("shard-*.jsonl")) for r in read_jsonl(path)]


def seeds(config: Path) -> int:
    """The seeds stage as ``python -m seeds --config CONFIG --no-progress`` runs it."""
    return run_stage(
        "seeds", "seeds.main:main", ["--config", str(config), "--no-progress"], add_arguments
    )
