"""Raw seeds runs synthesized to the artifact contract (seeds is written in parallel, so the
dataset_builder tests and benchmark do not depend on it)."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kit.config import QualitySection
from kit.schema import RAW_SCHEMA_VERSION, gates_on

SYMMETRIC_DEFINITIONS = {
    "sts": "Retrieve semantically similar text.",
    "bitext": "Retrieve parallel sentences.",
}
LANGUAGES = ("en", "en", "en", "de", "ja", "pl", "zh", "ar", "sw")
UNVERIFIED = "sw"
WORDS = (
    "alpha beta gamma delta river mountain ledger harbor quantum lattice saffron violet "
    "engine orbit glacier meadow cipher lantern archive summit tundra ember prism"
).split()
TEMPLATE_SHA = {
    t: hashlib.sha256(t.encode()).hexdigest()
    for t in ("short_long", "long_short", "short_short", "long_long", "sts", "bitext")
}


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def native_example(task_type: str, rng: random.Random, scale: int = 1) -> dict[str, str]:
    if task_type == "short_long":
        return {
            "user_query": _text(rng, 8),
            "positive_document": _text(rng, 60 * scale),
            "hard_negative_document": _text(rng, 60 * scale),
        }
    if task_type == "long_short":
        return {
            "input_text": _text(rng, 50 * scale),
            "label": _text(rng, 2),
            "misleading_label": _text(rng, 2),
        }
    if task_type in ("short_short", "long_long"):
        length = 6 if task_type == "short_short" else 80 * scale
        return {"input": _text(rng, length), "positive_document": _text(rng, length)}
    return {"S1": _text(rng, 12), "S2": _text(rng, 12), "S3": _text(rng, 12)}


def make_record(index: int, task_type: str, rng: random.Random, scale: int = 1) -> dict[str, Any]:
    """One accepted example as seeds writes it; ``index`` keeps ids unique and deterministic."""
    language = rng.choice(LANGUAGES)
    definition = (
        SYMMETRIC_DEFINITIONS.get(task_type)
        or f"Task {index // 3} for {task_type}: {_text(rng, 5)}"
    )
    target = None
    if task_type == "bitext":
        target = "fr" if language != "fr" else "en"
    return {
        "schema_version": RAW_SCHEMA_VERSION,
        "id": f"{task_type}-{index:08d}",
        "task_type": task_type,
        "task_definition": definition,
        "language": language,
        "target_language": target,
        "placeholders": {"difficulty": "college"},
        "template_id": task_type,
        "template_sha256": TEMPLATE_SHA[task_type],
        "generator_model": "SmolLM2-135M-Instruct",
        "generator_backend": "local",
        "usage": {"prompt_tokens": 200, "completion_tokens": 150},
        "example": native_example(task_type, rng, scale),
        # As seeds' language gate marks them; Swahili rows stand for an unverifiable language.
        "quality": {"language_verified": language != UNVERIFIED}
        | ({"target_language_verified": True} if task_type == "bitext" else {}),
        "seeds_extra_key": "tolerated",
    }


MIX = (
    ("short_long",) * 5
    + ("long_short",) * 4
    + ("sts",) * 3
    + ("bitext",) * 3
    + (
        "long_long",
        "short_short",
    )
)


def synthesize(count: int, seed: int = 0, scale: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for index in range(count):
        yield make_record(index, MIX[index % len(MIX)], rng, scale)


def write_run(
    run_dir: Path,
    records: Iterable[dict[str, Any] | str],
    shards: int = 2,
    bundled: bool = True,
    extra_lines: dict[int, list[str]] | None = None,
    gates: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Write raw shards (records round-robin by position; a ``str`` is written verbatim as a line),
    a ledger and run.json (its ``gates`` as seeds' defaults unless given). Returns run.json's
    content."""
    raw = run_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    handles = [open(raw / f"shard-{i:05d}.jsonl", "w", encoding="utf-8") for i in range(shards)]  # noqa: SIM115
    accepted: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    try:
        for position, record in enumerate(records):
            handle = handles[position % shards]
            if isinstance(record, str):
                handle.write(record + "\n")
                continue
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            accepted[str(record.get("task_type"))] += 1
            languages[str(record.get("language"))] += 1
        for shard, lines in (extra_lines or {}).items():
            for line in lines:
                handles[shard].write(line)
    finally:
        for handle in handles:
            handle.close()
    requests = sum(accepted.values())
    with open(run_dir / "ledger.jsonl", "w", encoding="utf-8") as ledger:
        for i in range(requests):
            ledger.write(
                json.dumps(
                    {
                        "kind": "generate",
                        "outcome": "accepted",
                        "prompt_tokens": 200,
                        "completion_tokens": 150,
                        "cost_usd": 0.0,
                        "latency_s": 1.5,
                        "request": i,
                    }
                )
                + "\n"
            )
    summary = {
        "run_name": run_dir.name,
        "complete": True,
        "stopped_reason": "targets reached",
        "generator": {
            "model": "SmolLM2-135M-Instruct",
            "backend": "local",
            "bundled_small_model": bundled,
        },
        "templates": dict(TEMPLATE_SHA),
        "gates": gates if gates is not None else gates_on(QualitySection()),
        "accepted": dict(accepted),
        "rejected": {"invalid_json": 3},
        "requests": requests,
        "prompt_tokens": 200 * requests,
        "completion_tokens": 150 * requests,
        "cost_usd": 0.0,
        "acceptance_rate": 0.9,
        "started_at": "2026-11-25T10:00:00Z",
        "finished_at": "2026-11-25T11:00:00Z",
        "languages": dict(languages),
    }
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
