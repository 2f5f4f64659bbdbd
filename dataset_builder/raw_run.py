"""Read and validate a seeds run's raw shards, columnar, in one streaming pass.

Shards are parsed by Arrow's JSON reader against the fields the dataset needs (extra keys are
ignored) and checked with vectorized compute. A shard the reader cannot parse (a torn line, a
number where text belongs) is re-read line by line: the lines that fail are counted under
their reason and the rest go through the same vectorized checks, so both paths agree. Accepted
rows are spooled to an Arrow IPC file per shard, so memory stays flat and the raw JSON is parsed
once; only small per-row arrays (task type, split key) and the id set stay in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from dataset_builder.stats import CorpusStats
from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask
from kit.schema import (
    RAW_RECORD,
    RAW_SCHEMA_VERSION,
    SIDES,
    TASK_TABLE,
    example_fields,
    verified_flag,
)

SHARD_GLOB = "raw/shard-*.jsonl"
# task_type is checked first on its own: it decides which example fields a row needs.
REQUIRED_STRINGS = tuple(n for n, k in RAW_RECORD.items() if k == "text" and n != "task_type")
OPTIONAL_STRINGS = tuple(n for n, k in RAW_RECORD.items() if k == "optional_text")
TOP_LEVEL_STRINGS = ("task_type", *REQUIRED_STRINGS, *OPTIONAL_STRINGS)
LANGUAGE_CODE = r"^[a-z]{2,3}$"
BLOCK_BYTES = 4 << 20
READ_OPTIONS = pajson.ReadOptions(block_size=BLOCK_BYTES, use_threads=True)
MALFORMED = "torn or malformed JSON line"


def raw_schema() -> pa.Schema:
    """The Arrow schema of the raw fields the dataset reads, derived from ``kit.schema``: the
    record's fields in order (seeds' own ones left out), the example's fields of every task
    type, and the language gate's verdict per side (rows from elsewhere have none)."""
    kinds = {
        "int": pa.int64(),
        "text": pa.string(),
        "optional_text": pa.string(),
        "example": pa.struct([(name, pa.string()) for name in example_fields()]),
        "quality": pa.struct([(verified_flag(side), pa.bool_()) for side in SIDES]),
    }
    return pa.schema([(name, kinds[kind]) for name, kind in RAW_RECORD.items() if kind in kinds])


def parse_options() -> pajson.ParseOptions:
    """Fields outside the schema (seeds' own) are ignored."""
    return pajson.ParseOptions(explicit_schema=raw_schema(), unexpected_field_behavior="ignore")


def unsupported_version(value: Any) -> str:
    return f"unsupported schema_version {json.dumps(value)[:40]}"


def unknown_task_type(value: Any) -> str:
    return f"unknown task type {json.dumps(value, ensure_ascii=False)[:40]}"


def group_key(text: str) -> int:
    """A 64-bit split key; callers pass definitions already lowercased and space-collapsed."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass
class RunScan:
    """The accepted rows (spooled), their task type and split key, and what was dropped."""

    run_dir: Path
    shards: list[Path]
    spool_dir: Path
    spools: list[Path] = field(default_factory=list)
    type_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    group_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    dropped: Counter[str] = field(default_factory=Counter)
    lines_read: int = 0
    stats: CorpusStats = field(default_factory=CorpusStats)
    validation_keys: dict[float, pa.Array] = field(default_factory=dict)
    contamination: Contamination = field(default_factory=Contamination)

    @property
    def accepted(self) -> int:
        return len(self.type_codes)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The accepted rows in raw order (shard name, then line), with a ``group_key`` column."""
        for spool in self.spools:
            with pa.OSFile(str(spool), "rb") as source:
                yield from pa.ipc.open_stream(source)


def _fails(mask: pa.Array) -> pa.Array:
    return pc.fill_null(mask, True)


def _both(left: pa.Array, right: pa.Array) -> pa.Array:
    return pc.and_kleene(left, pc.fill_null(right, False))


def _empty(column: pa.Array) -> pa.Array:
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)


def _bad_code(column: pa.Array) -> pa.Array:
    return pc.invert(pc.match_substring_regex(column, LANGUAGE_CODE))


class _Checker:
    """Applies checks in order; a row is counted under the first check it fails."""

    def __init__(self, table: pa.Table, dropped: Counter[str]) -> None:
        self.table = table
        self.alive = pa.array(np.ones(table.num_rows, dtype=bool))
        self.dropped = dropped

    def reject(self, fails: pa.Array, reason: str, scope: pa.Array | None = None) -> pa.Array:
        bad = _both(self.alive, _fails(fails))
        if scope is not None:
            bad = _both(bad, scope)
        count = pc.sum(bad).as_py() or 0
        if count:
            self.dropped[reason] += count
            self.alive = _both(self.alive, pc.invert(bad))
        return bad

    def reject_values(self, fails: pa.Array, column: pa.Array, reason: Any) -> None:
        bad = _both(self.alive, _fails(fails))
        if pc.sum(bad).as_py():
            for value, count in Counter(pc.filter(column, bad).to_pylist()).items():
                self.dropped[reason(value)] += count
            self.alive = _both(self.alive, pc.invert(bad))

    def required_string(self, column: pa.Array, path: str, scope: pa.Array | None = None) -> None:
        self.reject(pc.is_null(column), f"missing field {path}", scope)
        self.reject(_empty(column), f"field {path} is empty", scope)


def check_table(table: pa.Table, dropped: Counter[str]) -> pa.Array:
    """The mask of rows that pass every check; failures are added to ``dropped``."""
    check = _Checker(table, dropped)
    version = table["schema_version"]
    check.reject(pc.is_null(version), "missing field schema_version")
    check.reject_values(pc.not_equal(version, RAW_SCHEMA_VERSION), version, unsupported_version)
    task_type = table["task_type"]
    check.reject(pc.is_null(task_type), "missing field task_type")
    known = pc.is_in(task_type, value_set=pa.array(list(TASK_TABLE)))
    check.reject_values(pc.invert(known), task_type, unknown_task_type)
    for name in REQUIRED_STRINGS:
        check.required_string(table[name], name)
    check.reject(_bad_code(table["language"]), "language is not an ISO 639 code")
    for task in TASK_TABLE.values():
        if task.cross_lingual:
            of_type = pc.equal(task_type, task.name)
            target = table["target_language"]
            check.required_string(target, "target_language", of_type)
            check.reject(_bad_code(target), "target_language is not an ISO 639 code", of_type)
            same = pc.equal(target, table["language"])
            check.reject(same, f"{task.name} with the same source and target language", of_type)
    example = table["example"]
    check.reject(pc.is_null(example), "missing field example")
    for task in TASK_TABLE.values():
        of_type = pc.equal(task_type, task.name)
        for name in task.field_names:
            check.required_string(pc.struct_field(example, name), f"example.{name}", of_type)
    return check.alive


def _python_check(line: bytes) -> str | None:
    """For shards Arrow cannot parse: the reason a line is unusable, or None to keep it."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return MALFORMED
    if not isinstance(record, dict):
        return "not a JSON object"
    version = record.get("schema_version")
    if version is not None and (type(version) is not int or version != RAW_SCHEMA_VERSION):
        return unsupported_version(version)
    for name in TOP_LEVEL_STRINGS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"field {name} is not a string"
    quality = record.get("quality")
    if quality is not None and not isinstance(quality, dict):
        return "quality is not an object"
    example = record.get("example")
    if example is None:
        return None
    if not isinstance(example, dict):
        return "example is not an object"
    for name in example_fields():
        if example.get(name) is not None and not isinstance(example[name], str):
            return f"field example.{name} is not a string"
    return None


def _fast_tables(shard: Path) -> Iterator[pa.Table]:
    with pajson.open_json(
        shard, read_options=READ_OPTIONS, parse_options=parse_options()
    ) as reader:
        for batch in reader:
            yield pa.Table.from_batches([batch])


def _read_kept(lines: list[bytes], dropped: Counter[str]) -> Iterator[pa.Table]:
    """Lines that passed the Python checks, as one table; if Arrow still refuses the chunk
    (say a value out of its range), line by line so only the offending lines are dropped."""
    data = b"".join(lines)
    options = pajson.ReadOptions(block_size=len(data) + 1)
    parse = parse_options()
    try:
        yield pajson.read_json(io.BytesIO(data), read_options=options, parse_options=parse)
        return
    except pa.ArrowInvalid:
        pass
    for line in lines:
        options = pajson.ReadOptions(block_size=len(line) + 1)
        try:
            yield pajson.read_json(io.BytesIO(line), read_options=options, parse_options=parse)
        except pa.ArrowInvalid:
            dropped["record Arrow cannot read"] += 1


def _line_by_line_tables(shard: Path, dropped: Counter[str]) -> Iterator[pa.Table]:
    kept: list[bytes] = []
    size = 0
    with open(shard, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            reason = _python_check(line)
            if reason:
                dropped[reason] += 1
                continue
            kept.append(line.rstrip(b"\r\n") + b"\n")
            size += len(kept[-1])
            if size >= BLOCK_BYTES:
                yield from _read_kept(kept, dropped)
                kept, size = [], 0
    if kept:
        yield from _read_kept(kept, dropped)


class _ShardScan:
    """The results of one shard, merged into the run only when the whole shard was read."""

    def __init__(self, spool: Path, ngrams: EvaluationNgrams | None) -> None:
        self.spool = spool
        self.ngrams = ngrams
        self.contamination = Contamination()
        self.dropped: Counter[str] = Counter()
        self.stats = CorpusStats()
        self.type_codes: list[np.ndarray] = []
        self.group_keys: list[np.ndarray] = []
        self.ids: set[str] = set()

    def add(self, table: pa.Table, seen_ids: set[str], writer: pa.ipc.RecordBatchWriter) -> None:
        table = table.filter(check_table(table, self.dropped))
        ids = table["id"].to_pylist()
        keep = np.ones(len(ids), dtype=bool)
        for row, record_id in enumerate(ids):
            if record_id in seen_ids or record_id in self.ids:
                keep[row] = False
            else:
                self.ids.add(record_id)
        if not keep.all():
            self.dropped["duplicate id"] += int((~keep).sum())
            table = table.filter(pa.array(keep))
        if self.ngrams is not None:
            table = self._decontaminated(table)
        if not table.num_rows:
            return
        keys = split_keys(table)
        table = table.append_column("group_key", pa.array(keys, pa.uint64()))
        codes = pc.index_in(table["task_type"], value_set=pa.array(list(TASK_TABLE)))
        self.type_codes.append(codes.to_numpy(zero_copy_only=False).astype(np.uint8))
        self.group_keys.append(keys)
        self.stats.add_table(table)
        for batch in table.to_batches():
            writer.write_batch(batch)

    def _decontaminated(self, table: pa.Table) -> pa.Table:
        before = Counter(self.contamination.rows)
        flagged = contaminated_mask(table, self.ngrams, self.contamination)
        for name, count in (self.contamination.rows - before).items():
            self.dropped[f"shares text with evaluation set {name}"] += count
        return table.filter(pc.invert(flagged))


def split_keys(table: pa.Table) -> np.ndarray:
    """Task definition (lowercased, spaces collapsed) for asymmetric types, id for symmetric."""
    definition = pc.utf8_trim_whitespace(
        pc.replace_substring_regex(pc.utf8_lower(table["task_definition"]), r"\s+", " ")
    )
    symmetric_types = [task.name for task in TASK_TABLE.values() if task.symmetric]
    symmetric = pc.is_in(table["task_type"], value_set=pa.array(symmetric_types, pa.string()))
    texts = pc.if_else(symmetric, pc.binary_join_element_wise("id:", table["id"], ""), definition)
    unique = pc.unique(texts)
    hashes = np.array([group_key(text) for text in unique.to_pylist()], dtype=np.uint64)
    return hashes[pc.index_in(texts, value_set=unique).to_numpy(zero_copy_only=False)]


def _scan_shard(
    shard: Path, spool: Path, seen_ids: set[str], fast: bool, ngrams: EvaluationNgrams | None
) -> _ShardScan:
    result = _ShardScan(spool, ngrams)
    tables = _fast_tables(shard) if fast else _line_by_line_tables(shard, result.dropped)
    with pa.OSFile(str(spool), "wb") as sink:
        with pa.ipc.new_stream(sink, raw_schema().append(pa.field("group_key", pa.uint64()))) as w:
            for table in tables:
                result.add(table, seen_ids, w)
    return result


def scan_run(run_dir: Path, spool_dir: Path, ngrams: EvaluationNgrams | None = None) -> RunScan:
    """Validate, deduplicate by id, decontaminate, spool (into ``spool_dir``) and count every
    raw line."""
    scan = RunScan(run_dir=run_dir, shards=sorted(run_dir.glob(SHARD_GLOB)), spool_dir=spool_dir)
    seen_ids: set[str] = set()
    type_codes, group_keys = [], []
    for number, shard in enumerate(scan.shards):
        spool = spool_dir / f"accepted-{number:05d}.arrows"
        try:
            result = _scan_shard(shard, spool, seen_ids, True, ngrams)
        except pa.ArrowInvalid:
            result = _scan_shard(shard, spool, seen_ids, False, ngrams)
        scan.lines_read += sum(len(codes) for codes in result.type_codes) + sum(
            result.dropped.values()
        )
        scan.spools.append(spool)
        scan.dropped.update(result.dropped)
        scan.contamination.rows.update(result.contamination.rows)
        for name, example in result.contamination.examples.items():
            scan.contamination.examples.setdefault(name, example)
        scan.stats.merge(result.stats)
        seen_ids |= result.ids
        type_codes += result.type_codes
        group_keys += result.group_keys
    if type_codes:
        scan.type_codes = np.concatenate(type_codes)
        scan.group_keys = np.concatenate(group_keys)
    return scan
