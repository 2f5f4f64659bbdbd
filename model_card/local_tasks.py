"""Offline mteb tasks from files on disk: a BEIR retrieval folder or an STS TSV.

The files are checked line by line before any model runs, so a malformed folder stops the
stage with the file and line to fix instead of a traceback from deep inside mteb. Caps
(``max_corpus``, ``max_queries``, ``max_pairs``) take a seeded sample so that a capped run is
repeatable and its results can be compared across models.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.cli import StageError
from kit.config import resolve_path

SAMPLE_SEED = 0
RETRIEVAL_MAIN_SCORE = "ndcg_at_10"
STS_MAIN_SCORE = "cosine_spearman"
STS_COLUMNS = ("sentence1", "sentence2", "score")
QRELS_COLUMNS = ("query-id", "corpus-id", "score")


class LocalTaskError(StageError):
    """A local evaluation file is missing or malformed; the message names file and line."""


@dataclass(frozen=True)
class RetrievalData:
    corpus: list[dict[str, str]]
    queries: list[dict[str, str]]
    qrels: dict[str, dict[str, int]]
    total_corpus: int
    total_queries: int


@dataclass(frozen=True)
class STSData:
    pairs: list[dict[str, Any]]
    total_pairs: int


@dataclass(frozen=True)
class LocalTaskSpec:
    """One ``evaluation.local_tasks`` entry with its paths resolved."""

    name: str
    type: str
    path: Path
    display_path: str = ""
    instruction: str = ""
    languages: list[str] = field(default_factory=lambda: ["und-Zyyy"])
    corpus_path: Path | None = None
    max_queries: int = 0
    max_corpus: int = 0
    max_pairs: int = 0

    @property
    def files(self) -> list[Path]:
        if self.type == "sts":
            return [self.path]
        corpus_dir = self.corpus_path or self.path
        return [
            corpus_file(corpus_dir),
            self.path / "queries.jsonl",
            self.path / "qrels" / "test.tsv",
        ]


def corpus_file(path: Path) -> Path:
    return path if path.suffix == ".jsonl" else path / "corpus.jsonl"


def spec_from_config(entry: dict[str, Any], default_max_corpus: int) -> LocalTaskSpec:
    """Turn a validated config entry into a spec; paths are taken from the repo root."""
    where = f"evaluation.local_tasks '{entry['name']}'"
    if entry["type"] == "sts" and ("max_queries" in entry or "max_corpus" in entry):
        raise StageError(f"{where}: max_queries/max_corpus apply to retrieval; use max_pairs")
    if entry["type"] == "retrieval" and "max_pairs" in entry:
        raise StageError(f"{where}: max_pairs applies to sts; use max_queries/max_corpus")
    for key in ("max_queries", "max_corpus", "max_pairs"):
        if entry.get(key, 0) < 0:
            raise StageError(f"{where}: {key} must be >= 0")
    languages = [c.strip() for c in entry.get("languages", "").split(",") if c.strip()]
    corpus_path = entry.get("corpus_path")
    return LocalTaskSpec(
        name=entry["name"],
        type=entry["type"],
        path=resolve_path(entry["path"]),
        display_path=entry["path"],
        instruction=entry.get("instruction", ""),
        languages=languages or ["und-Zyyy"],
        corpus_path=resolve_path(corpus_path) if corpus_path else None,
        max_queries=entry.get("max_queries", 0),
        max_corpus=entry.get("max_corpus", default_max_corpus),
        max_pairs=entry.get("max_pairs", 0),
    )


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise LocalTaskError(f"{path}: file not found ({what})")


def _read_jsonl(path: Path, kind: str) -> list[dict[str, str]]:
    """Records with string ``_id`` and ``text`` (``title`` optional), as mteb wants them."""
    _require_file(path, f"a BEIR folder needs {kind}")
    records: list[dict[str, str]] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LocalTaskError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise LocalTaskError(f"{path}:{line_no}: expected a JSON object")
            for key in ("_id", "text"):
                if not isinstance(raw.get(key), str | int) or raw.get(key) == "":
                    raise LocalTaskError(f"{path}:{line_no}: missing or empty '{key}'")
            doc_id = str(raw["_id"])
            if doc_id in first_line:
                raise LocalTaskError(
                    f"{path}:{line_no}: duplicate _id '{doc_id}' (first on line "
                    f"{first_line[doc_id]})"
                )
            first_line[doc_id] = line_no
            record = {"id": doc_id, "text": str(raw["text"])}
            if kind == "corpus.jsonl":
                title = raw.get("title") or ""
                if not isinstance(title, str):
                    raise LocalTaskError(f"{path}:{line_no}: 'title' must be a string")
                record["title"] = title
            records.append(record)
    if not records:
        raise LocalTaskError(f"{path}: no records")
    return records


def _read_qrels(path: Path, query_ids: set[str], corpus_ids: set[str]) -> dict[str, dict[str, int]]:
    _require_file(path, "a BEIR folder needs qrels/test.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            line_no = reader.line_num
            if line_no == 1 and tuple(row) == QRELS_COLUMNS:
                continue
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise LocalTaskError(
                    f"{path}:{line_no}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), found {len(row)}"
                )
            query_id, doc_id, score = row
            try:
                relevance = int(float(score))
            except ValueError:
                raise LocalTaskError(f"{path}:{line_no}: score {score!r} is not a number") from None
            if query_id not in query_ids:
                raise LocalTaskError(f"{path}:{line_no}: query-id '{query_id}' is not a query")
            if doc_id not in corpus_ids:
                raise LocalTaskError(f"{path}:{line_no}: corpus-id '{doc_id}' is not in the corpus")
            qrels.setdefault(query_id, {})[doc_id] = relevance
    if not any(rel > 0 for docs in qrels.values() for rel in docs.values()):
        raise LocalTaskError(f"{path}: no relevant (score > 0) query-document pairs")
    return qrels


def _seeded_subset(items: list[Any], limit: int) -> list[Any]:
    """A repeatable sample of ``limit`` items in their original order (all when no limit)."""
    if limit <= 0 or limit >= len(items):
        return items
    keep = set(random.Random(SAMPLE_SEED).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def load_retrieval(spec: LocalTaskSpec) -> RetrievalData:
    """Read and check a BEIR folder, then cap the corpus first and the queries second.

    Capping the corpus keeps only queries that still have a relevant document in it, so a
    capped task is a smaller version of the same task rather than one with unanswerable queries.
    """
    corpus_path, queries_path, qrels_path = spec.files
    if not spec.path.is_dir():
        raise LocalTaskError(
            f"{spec.path}: not a folder (a BEIR folder holds queries.jsonl and qrels/test.tsv)"
        )
    corpus = _read_jsonl(corpus_path, "corpus.jsonl")
    queries = _read_jsonl(queries_path, "queries.jsonl")
    qrels = _read_qrels(qrels_path, {q["id"] for q in queries}, {d["id"] for d in corpus})

    corpus_kept = _seeded_subset(corpus, spec.max_corpus)
    kept_ids = {d["id"] for d in corpus_kept}
    kept_qrels = {
        qid: {did: rel for did, rel in docs.items() if did in kept_ids}
        for qid, docs in qrels.items()
    }
    kept_qrels = {qid: docs for qid, docs in kept_qrels.items() if any(docs.values())}
    answerable = [q for q in queries if q["id"] in kept_qrels]
    queries_kept = _seeded_subset(answerable, spec.max_queries)
    if not queries_kept:
        raise LocalTaskError(
            f"{qrels_path}: no query has a relevant document among the {len(corpus_kept)} "
            "documents kept; raise max_corpus"
        )
    return RetrievalData(
        corpus=corpus_kept,
        queries=queries_kept,
        qrels={q["id"]: kept_qrels[q["id"]] for q in queries_kept},
        total_corpus=len(corpus),
        total_queries=len(queries),
    )


def load_sts(spec: LocalTaskSpec) -> STSData:
    """Read and check a TSV with a ``sentence1, sentence2, score`` header (CSV quoting)."""
    path = spec.path
    _require_file(path, "an STS task reads a TSV with columns sentence1, sentence2, score")
    pairs: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or sorted(header) != sorted(STS_COLUMNS):
            raise LocalTaskError(
                f"{path}:1: the header must name the columns sentence1, sentence2, score "
                f"(tab-separated), found {header!r}"
            )
        index = {name: header.index(name) for name in STS_COLUMNS}
        for row in reader:
            line_no = reader.line_num
            if not row:
                continue
            if len(row) != 3:
                raise LocalTaskError(
                    f"{path}:{line_no}: expected 3 tab-separated fields, found {len(row)}"
                )
            pair = {name: row[i] for name, i in index.items()}
            for name in ("sentence1", "sentence2"):
                if not pair[name].strip():
                    raise LocalTaskError(f"{path}:{line_no}: empty {name}")
            try:
                pair["score"] = float(pair["score"])
            except ValueError:
                raise LocalTaskError(
                    f"{path}:{line_no}: score {pair['score']!r} is not a number"
                ) from None
            pairs.append(pair)
    if len(pairs) < 2:
        raise LocalTaskError(f"{path}: an STS task needs at least 2 scored pairs")
    if len({p["score"] for p in pairs}) < 2:
        raise LocalTaskError(f"{path}: all scores are equal, so no correlation can be computed")
    return STSData(pairs=_seeded_subset(pairs, spec.max_pairs), total_pairs=len(pairs))


def data_fingerprint(spec: LocalTaskSpec) -> str:
    """Content hash of the task's files and caps: a changed file or cap means new results."""
    digest = hashlib.sha256()
    for path in spec.files:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    caps = (spec.type, spec.max_queries, spec.max_corpus, spec.max_pairs, SAMPLE_SEED)
    digest.update(json.dumps(caps).encode())
    return digest.hexdigest()[:16]
