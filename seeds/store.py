"""The run folder: append-only shards of accepted records, a ledger of every request, the
brainstormed task pools and ``run.json``. Everything a resumed run needs is read back from
these files; a line torn by a kill is cut off before anything is appended."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kit.artifacts import RUN_SUMMARY_FILE, RunSummary, write_run_summary
from seeds.plan import lane_of

log = logging.getLogger("seeds")
SHARD_ROWS = 50_000
# Accepted rows per call that rebuilds the near-duplicate index on resume: small enough that
# its arrays stay small (500k rows: 2.4 GB peak instead of 2.8 GB at 10,000), no slower.
REBUILD_BATCH = 2_000


def _digest(key: str) -> bytes:
    """16 bytes stand for a dedup key (a collision is as likely as guessing a UUID)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cut_torn_tail(path: Path) -> bool:
    """Drop a last line that has no newline (a write interrupted by a kill)."""
    if not path.exists():
        return False
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)
    return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only; a torn last line is skipped."""
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            rows.append(json.loads(line))
    return rows


class ShardWriter:
    """Append-only ``shard-NNNNN.jsonl`` files of at most ``SHARD_ROWS`` lines, one line per
    write, flushed before the caller goes on."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: TextIO | None = None
        self._rows = 0

    def paths(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.jsonl"))

    def write(self, row: dict[str, Any]) -> None:
        if self._handle is None or self._rows >= SHARD_ROWS:
            self._next_shard()
        assert self._handle is not None
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        self._rows += 1

    def _next_shard(self) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        index = max((int(p.stem.split("-")[1]) for p in self.paths()), default=-1) + 1
        self._handle = (self.folder / f"shard-{index:05d}.jsonl").open("a", encoding="utf-8")
        self._rows = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class RunTotals:
    """Running sums over the whole run, resumed sessions included."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    accepted: Counter[str] = field(default_factory=Counter)
    # Accepted rows per lane (a task type, or ``corpus_<type>`` for corpus-grounded rows).
    lanes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def acceptance_rate(self) -> float:
        """Accepted examples over judged generation requests (brainstorms excluded)."""
        rejected = sum(n for k, n in self.rejected.items() if not k.startswith("brainstorm:"))
        accepted = sum(self.accepted.values())
        return accepted / (accepted + rejected) if accepted + rejected else 0.0


class RunStore:
    """Owns the files of one run; single writer (the event loop), line-at-a-time writes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.raw_dir = run_dir / "raw"
        self.ledger_path = run_dir / "ledger.jsonl"
        self.brainstorm_path = run_dir / "brainstorm.jsonl"
        self.batches_path = run_dir / "batches.jsonl"
        self.run_json_path = run_dir / RUN_SUMMARY_FILE
        self.totals = RunTotals()
        self.finished_ids: set[str] = set()
        self.dedup_keys: set[bytes] = set()  # digests: a run's texts need not stay in memory
        self.task_pools: dict[str, list[str]] = {}
        self._pool_keys: dict[str, set[str]] = {}  # each pool's tasks, as compared
        self.brainstorm_done: set[str] = set()
        self.unledgered: list[dict[str, Any]] = []
        self.started_at = utc_now()
        self.accepted = ShardWriter(self.raw_dir)
        self.rejected = ShardWriter(run_dir / "rejected")
        self._ledger: TextIO | None = None
        self._brainstorm: TextIO | None = None
        self._judging: TextIO | None = None
        self.judging_path = run_dir / "judging.jsonl"
        self.held: dict[str, dict[str, Any]] = {}
        self.held_keys: dict[str, str] = {}

    def open(
        self, dedup_key: Any, on_records: Callable[[list[dict[str, Any]]], None] | None = None
    ) -> None:
        """Repair torn tails, then rebuild the run's state from its files; ``on_records``
        sees the accepted records in batches (the near-duplicate index is rebuilt from them)."""
        started, cpu = time.monotonic(), time.process_time()
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        for path in [*self.shard_paths(), *self.rejected.paths(), self.ledger_path,
                     self.brainstorm_path, self.judging_path]:  # fmt: skip
            cut_torn_tail(path)
        previous = self._previous_run_json()
        if previous.get("started_at"):
            self.started_at = previous["started_at"]
        ledgered = set()
        for entry in read_jsonl(self.ledger_path):
            self._add_to_totals(entry)
            if entry["kind"] == "generate" and entry["outcome"] == "rejected":
                self.finished_ids.add(entry["item_id"])
            if entry["kind"] == "generate" and entry["outcome"] == "accepted":
                ledgered.add(entry["item_id"])
        batch: list[dict[str, Any]] = []
        for path in self.shard_paths():
            for record in read_jsonl(path):
                self.finished_ids.add(record["id"])
                self.dedup_keys.add(_digest(dedup_key(record["example"])))
                self.totals.accepted[record["task_type"]] += 1
                self.totals.lanes[lane_of(record["id"])] += 1
                self.totals.languages[record["language"]] += 1
                if record["id"] not in ledgered:
                    # A kill between the record and its ledger line: it carries its usage.
                    self.unledgered.append(record)
                batch.append(record)
                if len(batch) == REBUILD_BATCH:
                    self._hand_over(batch, on_records)
                    batch = []
        self._hand_over(batch, on_records)
        self._reload_held(set(self.finished_ids))
        for entry in read_jsonl(self.brainstorm_path):
            self.brainstorm_done.add(entry["item_id"])
            self._extend_pool(entry["task_type"], entry["tasks"])
        if self.totals.requests:
            log.info(
                "read back %s: %d answers settled, %d requests in %.1f s (%.1f s of CPU)",
                self.run_dir, len(self.finished_ids), self.totals.requests,
                time.monotonic() - started, time.process_time() - cpu,
            )  # fmt: skip
        self._ledger = self.ledger_path.open("a", encoding="utf-8")
        self._brainstorm = self.brainstorm_path.open("a", encoding="utf-8")
        self._judging = self.judging_path.open("a", encoding="utf-8")

    @staticmethod
    def _hand_over(
        batch: list[dict[str, Any]], on_records: Callable[[list[dict[str, Any]]], None] | None
    ) -> None:
        if batch and on_records is not None:
            on_records(batch)

    def _previous_run_json(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def shard_paths(self) -> list[Path]:
        return self.accepted.paths()

    def _add_to_totals(self, entry: dict[str, Any]) -> None:
        self.totals.requests += 1
        self.totals.prompt_tokens += entry["prompt_tokens"]
        self.totals.completion_tokens += entry["completion_tokens"]
        self.totals.cost_usd += entry["cost_usd"]
        if entry["outcome"] == "rejected":
            prefix = "brainstorm:" if entry["kind"] == "brainstorm" else ""
            self.totals.rejected[prefix + entry["reason"]] += 1
        elif entry["outcome"] == "failed":
            self.totals.rejected[f"{entry['kind']}_request_failed"] += 1

    def _extend_pool(self, task_type: str, tasks: list[str]) -> list[str]:
        pool = self.task_pools.setdefault(task_type, [])
        seen = self._pool_keys.setdefault(task_type, set())
        added = []
        for task in tasks:
            key = " ".join(task.split()).casefold()
            if key not in seen:
                seen.add(key)
                pool.append(task)
                added.append(task)
        return added

    def add_tasks(self, item_id: str, task_type: str, tasks: list[str]) -> list[str]:
        """Cache a brainstorm's new (deduplicated) task definitions."""
        added = self._extend_pool(task_type, tasks)
        line = {"item_id": item_id, "task_type": task_type, "tasks": added, "at": utc_now()}
        self._write_line(self._brainstorm, line)
        self.brainstorm_done.add(item_id)
        return added

    def hold(self, record: dict[str, Any], key: str) -> None:
        """Keep a row that waits for the judge: a resumed run asks the judge, not the
        generator, again."""
        self._write_line(self._judging, {"state": "held", "record": record, "key": key})
        self.held[record["id"]] = record
        self.held_keys[record["id"]] = key
        self.finished_ids.add(record["id"])
        self.dedup_keys.add(_digest(key))

    def release(self, record_id: str) -> None:
        """The held row is settled (accepted or rejected, both written before this line)."""
        self._write_line(self._judging, {"state": "settled", "id": record_id})
        self.held.pop(record_id, None)
        self.held_keys.pop(record_id, None)

    def _reload_held(self, settled: set[str]) -> None:
        for line in read_jsonl(self.judging_path):
            if line["state"] == "held" and line["record"]["id"] not in settled:
                record = line["record"]
                self.held[record["id"]], self.held_keys[record["id"]] = record, line["key"]
                self.finished_ids.add(record["id"])
                self.dedup_keys.add(_digest(line["key"]))
            elif line["state"] == "settled":
                self.held.pop(line["id"], None)
                self.held_keys.pop(line["id"], None)

    def is_duplicate(self, key: str) -> bool:
        return _digest(key) in self.dedup_keys

    def accept(self, record: dict[str, Any], key: str) -> None:
        """Append the record to the current shard before anything else learns of it."""
        self.accepted.write(record)
        self.finished_ids.add(record["id"])
        self.dedup_keys.add(_digest(key))
        self.totals.accepted[record["task_type"]] += 1
        self.totals.lanes[lane_of(record["id"])] += 1
        self.totals.languages[record["language"]] += 1

    def reject(self, record: dict[str, Any], reason: str) -> None:
        """Keep a row a quality gate refused, with its reason, for re-examination."""
        self.rejected.write({**record, "rejected_because": reason})

    def log_request(self, entry: dict[str, Any]) -> None:
        """One ledger line per request attempt; totals follow the ledger exactly."""
        self._write_line(self._ledger, entry)
        self._add_to_totals(entry)
        if entry["kind"] == "generate" and entry["outcome"] == "rejected":
            self.finished_ids.add(entry["item_id"])

    @staticmethod
    def _write_line(handle: TextIO | None, row: dict[str, Any]) -> None:
        assert handle is not None, "RunStore.open() was not called"
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()

    def write_run_json(self, summary: RunSummary) -> None:
        """Atomic rewrite, so a reader never sees half a file."""
        write_run_summary(self.run_dir, summary)

    def close(self) -> None:
        self.accepted.close()
        self.rejected.close()
        for handle in (self._ledger, self._brainstorm, self._judging):
            if handle is not None:
                handle.close()
        self._ledger = self._brainstorm = self._judging = None
