"""Local evaluation sets on disk: their config entry, a quick shape check and full readers.

Three layouts: a BEIR retrieval folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``), an STS TSV (``sentence1, sentence2, score``) and a bitext TSV (a header,
then one pair a line, line i of one column translating line i of the other). The shape check
reads only the first lines, so that a config naming a missing or malformed set fails in
seconds, before any generation or training; the readers check every line and name the file
and line that is wrong. Caps take a seeded sample, so a capped task repeats exactly.

The evaluation stage builds mteb tasks from these readers, and the quality gates read the
same texts to keep evaluation data out of the training set.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kit.errors import StageError

LOCAL_TASK_TYPES = ("retrieval", "sts", "bitext")
SAMPLE_SEED = 0
STS_COLUMNS = ("sentence1", "sentence2", "score")
QRELS_COLUMNS = ("query-id", "corpus-id", "score")
SOURCE_FILE = "source.json"


class EvalSetError(StageError):
    """A local evaluation file is missing or malformed; the message names file and line."""


@dataclass(frozen=True)
class LocalTask:
    """One ``evaluation.local_tasks`` entry (paths as written, taken from the repo root)."""

    name: str = field(metadata={"required": True})
    type: str = field(default="retrieval", metadata={"choices": LOCAL_TASK_TYPES, "required": True})
    path: str = field(default="", metadata={"required": True})
    instruction: str = ""
    registry_task: str = ""
    languages: str = ""
    corpus_path: str = ""
    max_queries: int = field(default=0, metadata={"range": (0, None)})
    max_corpus: int = field(default=0, metadata={"range": (0, None)})
    max_pairs: int = field(default=0, metadata={"range": (0, None)})

    @property
    def files(self) -> list[Path]:
        path = resolve_path(self.path)
        if self.type != "retrieval":
            return [path]
        corpus_dir = resolve_path(self.corpus_path) if self.corpus_path else path
        return [corpus_file(corpus_dir), path / "queries.jsonl", path / "qrels" / "test.tsv"]

    @property
    def language_codes(self) -> list[str]:
        codes = [code.strip() for code in self.languages.split(",") if code.strip()]
        return codes or ["und-Zyyy"]


@dataclass(frozen=True)
class RegistryTask:
    """One ``evaluation.mteb_tasks`` entry: an mteb registry task, written as its name alone
    (it then runs the subsets of its main benchmark) or as a table naming the ``subsets``
    (mteb's ``hf_subsets``, e.g. ``en-en``) or ``languages`` (ISO 639-3, e.g. ``eng``) to run."""

    name: str = field(default="", metadata={"required": True})
    subsets: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)

    # The config may write the entry as its name alone.
    BARE_NAME: ClassVar[str] = "name"


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
class BitextData:
    pairs: list[dict[str, str]]
    total_pairs: int
    columns: tuple[str, str]


def resolve_path(value: str | Path) -> Path:
    """Relative paths are taken from the working directory (the repo root under make)."""
    return Path(value).expanduser().resolve()


def corpus_file(path: Path) -> Path:
    return path if path.suffix == ".jsonl" else path / "corpus.jsonl"


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise EvalSetError(f"{path}: file not found ({what})")


# ---- quick shape check (config validation) -------------------------------------------------
def check_shape(task: LocalTask) -> None:
    """Files exist and their first lines have the expected shape; reads a few lines only."""
    path = resolve_path(task.path)
    if task.type == "retrieval":
        if not path.is_dir():
            raise EvalSetError(
                f"{path}: not a folder (a BEIR folder holds corpus.jsonl, queries.jsonl and "
                "qrels/test.tsv)"
            )
        corpus, queries, qrels = task.files
        _first_jsonl_record(corpus, "corpus.jsonl")
        _first_jsonl_record(queries, "queries.jsonl")
        _require_file(qrels, "a BEIR folder needs qrels/test.tsv")
        _first_row(qrels, 3, "query-id, corpus-id, score")
    elif task.type == "sts":
        _require_file(path, "an STS task reads a TSV with columns sentence1, sentence2, score")
        _sts_header(path, next(csv.reader(_lines(path, 1), delimiter="\t"), None))
    else:
        _require_file(path, "a bitext task reads a TSV with two columns and a header row")
        _first_row(path, 2, "two tab-separated columns")


def _lines(path: Path, count: int) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [line for _, line in zip(range(count), handle, strict=False)]


def _first_jsonl_record(path: Path, kind: str) -> None:
    _require_file(path, f"a BEIR folder needs {kind}")
    for line_no, line in enumerate(_lines(path, 5), start=1):
        if line.strip():
            _parse_record(path, line_no, line, kind)
            return
    raise EvalSetError(f"{path}: no records")


def _first_row(path: Path, width: int, what: str) -> None:
    rows = [row for row in csv.reader(_lines(path, 2), delimiter="\t") if row]
    if not rows or any(len(row) != width for row in rows):
        found = len(rows[0]) if rows else 0
        raise EvalSetError(f"{path}:1: expected {what}, found {found} column(s)")


# ---- full readers (evaluation, decontamination) ---------------------------------------------
def _parse_record(path: Path, line_no: int, line: str, kind: str) -> dict[str, str]:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise EvalSetError(f"{path}:{line_no}: expected a JSON object")
    for key in ("_id", "text"):
        if not isinstance(raw.get(key), str | int) or raw.get(key) == "":
            raise EvalSetError(f"{path}:{line_no}: missing or empty '{key}'")
    record = {"id": str(raw["_id"]), "text": str(raw["text"])}
    if kind == "corpus.jsonl":
        title = raw.get("title") or ""
        if not isinstance(title, str):
            raise EvalSetError(f"{path}:{line_no}: 'title' must be a string")
        record["title"] = title
    return record


def _read_jsonl(path: Path, kind: str) -> list[dict[str, str]]:
    """Records with string ``_id`` and ``text`` (``title`` optional), as mteb wants them."""
    _require_file(path, f"a BEIR folder needs {kind}")
    records: list[dict[str, str]] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = _parse_record(path, line_no, line, kind)
            if record["id"] in first_line:
                raise EvalSetError(
                    f"{path}:{line_no}: duplicate _id '{record['id']}' (first on line "
                    f"{first_line[record['id']]})"
                )
            first_line[record["id"]] = line_no
            records.append(record)
    if not records:
        raise EvalSetError(f"{path}: no records")
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
                raise EvalSetError(
                    f"{path}:{line_no}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), found {len(row)}"
                )
            query_id, doc_id, score = row
            try:
                relevance = int(float(score))
            except ValueError:
                raise EvalSetError(f"{path}:{line_no}: score {score!r} is not a number") from None
            if query_id not in query_ids:
                raise EvalSetError(f"{path}:{line_no}: query-id '{query_id}' is not a query")
            if doc_id not in corpus_ids:
                raise EvalSetError(f"{path}:{line_no}: corpus-id '{doc_id}' is not in the corpus")
            qrels.setdefault(query_id, {})[doc_id] = relevance
    if not any(rel > 0 for docs in qrels.values() for rel in docs.values()):
        raise EvalSetError(f"{path}: no relevant (score > 0) query-document pairs")
    return qrels


def seeded_subset(items: list[Any], limit: int) -> list[Any]:
    """A repeatable sample of ``limit`` items in their original order (all when no limit)."""
    if limit <= 0 or limit >= len(items):
        return items
    keep = set(random.Random(SAMPLE_SEED).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def load_retrieval(task: LocalTask) -> RetrievalData:
    """Read and check a BEIR folder, then cap the corpus first and the queries second.

    Capping the corpus keeps only queries that still have a relevant document in it, so a
    capped task is a smaller version of the same task rather than one with unanswerable queries.
    """
    path = resolve_path(task.path)
    corpus_path, queries_path, qrels_path = task.files
    if not path.is_dir():
        raise EvalSetError(
            f"{path}: not a folder (a BEIR folder holds queries.jsonl and qrels/test.tsv)"
        )
    corpus = _read_jsonl(corpus_path, "corpus.jsonl")
    queries = _read_jsonl(queries_path, "queries.jsonl")
    qrels = _read_qrels(qrels_path, {q["id"] for q in queries}, {d["id"] for d in corpus})

    corpus_kept = seeded_subset(corpus, task.max_corpus)
    kept_ids = {d["id"] for d in corpus_kept}
    kept_qrels = {
        qid: {did: rel for did, rel in docs.items() if did in kept_ids}
        for qid, docs in qrels.items()
    }
    kept_qrels = {qid: docs for qid, docs in kept_qrels.items() if any(docs.values())}
    answerable = [q for q in queries if q["id"] in kept_qrels]
    queries_kept = seeded_subset(answerable, task.max_queries)
    if not queries_kept:
        raise EvalSetError(
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


def _sts_header(path: Path, header: list[str] | None) -> dict[str, int]:
    if header is None or sorted(header) != sorted(STS_COLUMNS):
        raise EvalSetError(
            f"{path}:1: the header must name the columns sentence1, sentence2, score "
            f"(tab-separated), found {header!r}"
        )
    return {name: header.index(name) for name in STS_COLUMNS}


def load_sts(task: LocalTask) -> STSData:
    """Read and check a TSV with a ``sentence1, sentence2, score`` header (CSV quoting)."""
    path = resolve_path(task.path)
    _require_file(path, "an STS task reads a TSV with columns sentence1, sentence2, score")
    pairs: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        index = _sts_header(path, next(reader, None))
        for row in reader:
            line_no = reader.line_num
            if not row:
                continue
            if len(row) != 3:
                raise EvalSetError(
                    f"{path}:{line_no}: expected 3 tab-separated fields, found {len(row)}"
                )
            pair = {name: row[i] for name, i in index.items()}
            for name in ("sentence1", "sentence2"):
                if not pair[name].strip():
                    raise EvalSetError(f"{path}:{line_no}: empty {name}")
            try:
                pair["score"] = float(pair["score"])
            except ValueError:
                raise EvalSetError(
                    f"{path}:{line_no}: score {pair['score']!r} is not a number"
                ) from None
            pairs.append(pair)
    if len(pairs) < 2:
        raise EvalSetError(f"{path}: an STS task needs at least 2 scored pairs")
    if len({p["score"] for p in pairs}) < 2:
        raise EvalSetError(f"{path}: all scores are equal, so no correlation can be computed")
    return STSData(pairs=seeded_subset(pairs, task.max_pairs), total_pairs=len(pairs))


def load_bitext(task: LocalTask) -> BitextData:
    """Read a two-column TSV with a header; every line is one translation pair."""
    path = resolve_path(task.path)
    _require_file(path, "a bitext task reads a TSV with two columns and a header row")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or len(header) != 2:
            raise EvalSetError(f"{path}:1: expected a header with two tab-separated columns")
        pairs = []
        for row in reader:
            line_no = reader.line_num
            if not row:
                continue
            if len(row) != 2:
                raise EvalSetError(
                    f"{path}:{line_no}: expected 2 tab-separated fields, found {len(row)}"
                )
            if not row[0].strip() or not row[1].strip():
                raise EvalSetError(f"{path}:{line_no}: empty sentence")
            pairs.append({"sentence1": row[0], "sentence2": row[1]})
    if len(pairs) < 2:
        raise EvalSetError(f"{path}: a bitext task needs at least 2 pairs")
    return BitextData(
        pairs=seeded_subset(pairs, task.max_pairs),
        total_pairs=len(pairs),
        columns=(header[0], header[1]),
    )


def task_texts(task: LocalTask) -> list[str]:
    """Every text of the task (uncapped), for the decontamination gate."""
    full = LocalTask(task.name, task.type, task.path, corpus_path=task.corpus_path)
    if task.type == "retrieval":
        data = load_retrieval(full)
        return [d["text"] for d in data.corpus] + [q["text"] for q in data.queries]
    pairs = load_sts(full).pairs if task.type == "sts" else load_bitext(full).pairs
    return [text for pair in pairs for text in (pair["sentence1"], pair["sentence2"])]


def data_fingerprint(task: LocalTask) -> str:
    """Content hash of the task's files and caps: a changed file or cap means new results."""
    digest = hashlib.sha256()
    for path in task.files:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    caps = (task.type, task.max_queries, task.max_corpus, task.max_pairs, SAMPLE_SEED)
    digest.update(json.dumps(caps).encode())
    return digest.hexdigest()[:16]


def source_of(task: LocalTask) -> dict[str, str]:
    """The public name, origin and licence of a set, from the ``source.json`` that ships
    beside it (the nearest one in the task's folder or its two parents)."""
    start = resolve_path(task.path)
    for folder in [start, *start.parents][:4]:
        candidate = folder / SOURCE_FILE
        if candidate.is_file():
            loaded = json.loads(candidate.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in loaded.items()}
    return {}
