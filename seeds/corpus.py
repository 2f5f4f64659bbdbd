"""The documents of corpus-grounded synthesis: read, checked and fixed before anything is asked.

Every problem with the documents (an empty file, bytes that are not UTF-8, no text column,
a document too long for the generator's context, two documents with one id) stops the stage
with one line naming the file, before the run folder is touched, so nothing is paid for and
nothing is written. A document's language comes from its language column or, without one,
from py3langid; the prompt asks for rows in that language.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kit.config import CORPUS_SUFFIXES, CorpusSection
from kit.evalsets import resolve_path

# The same generous count the run's budget uses: a token per 3 bytes of UTF-8.
BYTES_PER_TOKEN = 3
SNAPSHOT_FILE = "corpus.parquet"
SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")
STS_SENTENCE_WORDS = (6, 40)


class CorpusError(ValueError):
    """The corpus cannot be used as configured; the message is one line for the terminal."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    language: str


@dataclass
class Corpus:
    """The documents in a fixed order, with the digest that names this exact content."""

    documents: list[Document]
    source: str
    license: str = ""
    attribution: str = ""
    _orders: dict[str, list[int]] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)

    def index_of(self, document_id: str) -> int:
        if not self._positions:
            self._positions.update((d.id, i) for i, d in enumerate(self.documents))
        return self._positions[document_id]

    def by_id(self, document_id: str) -> Document:
        return self.documents[self.index_of(document_id)]

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for doc in self.documents:
            line = json.dumps([doc.id, doc.title, doc.text, doc.language], ensure_ascii=False)
            digest.update(line.encode("utf-8") + b"\n")
        return digest.hexdigest()

    def document_for(self, lane: str, slot: int, seed: int) -> int:
        """The document slot ``slot`` of a lane is about: a seeded permutation per lane, so
        a lane covers every document before it repeats one."""
        order = self._orders.get(lane)
        if order is None:
            order = list(range(len(self.documents)))
            random.Random(f"{seed}/corpus/{lane}").shuffle(order)
            self._orders[lane] = order
        return order[slot % len(order)]

    def summary(self) -> dict[str, Any]:
        """What the run publishes about its corpus (for the dataset card)."""
        languages: dict[str, int] = {}
        for doc in self.documents:
            languages[doc.language] = languages.get(doc.language, 0) + 1
        return {
            "source": self.source,
            "documents": len(self.documents),
            "sha256": self.sha256,
            "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1])),
            "license": self.license,
            "attribution": self.attribution,
            "file": SNAPSHOT_FILE,
        }

    def write_snapshot(self, run_dir: Path) -> Path:
        """The documents as the dataset stage reads them (rewritten only when they change)."""
        path = run_dir / SNAPSHOT_FILE
        digest = self.sha256
        if path.is_file() and pq.read_metadata(path).metadata.get(b"sha256") == digest.encode():
            return path
        table = pa.table({
            "document_id": [d.id for d in self.documents],
            "title": [d.title for d in self.documents],
            "text": [d.text for d in self.documents],
            "language": [d.language for d in self.documents],
        }).replace_schema_metadata({"sha256": digest})  # fmt: skip
        temporary = path.with_suffix(".tmp")
        pq.write_table(table, temporary)
        temporary.replace(path)
        return path


def sts_sentence(text: str, slot: int, seed: int) -> str:
    """A sentence of the document for an STS row: one of 6 to 40 words when it has one."""
    sentences = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
    low, high = STS_SENTENCE_WORDS
    fitting = [s for s in sentences if low <= len(s.split()) <= high] or sentences
    return random.Random(f"{seed}/sts-sentence/{slot}").choice(fitting)


def public_source(section: CorpusSection) -> str:
    """The corpus named for the card: a Hub id, or the configured path without any part of
    the build machine's own folders."""
    if section.hub_dataset:
        return f"{section.hub_dataset} (split {section.hub_split})"
    path = Path(section.path)
    return path.name if path.is_absolute() or section.path.startswith("~") else path.as_posix()


def load_corpus(section: CorpusSection) -> Corpus:
    """Every document, checked; raises ``CorpusError`` at the first problem."""
    rows = list(_hub_rows(section) if section.hub_dataset else _local_rows(section))
    documents: list[Document] = []
    seen: dict[str, str] = {}
    untagged: list[int] = []
    for where, row in rows:
        text = row.get(section.text_column)
        if not isinstance(text, str):
            raise CorpusError(
                f"{where}: {section.text_column!r} is {type(text).__name__}, not text "
                "(generation.corpus.text_column)"
            )
        text = text.strip()
        if not text:
            continue
        doc_id = str(row.get(section.id_column) or where)
        if doc_id in seen:
            raise CorpusError(f"{where}: id {doc_id!r} is used again (first at {seen[doc_id]})")
        seen[doc_id] = where
        tokens = math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
        if tokens > section.max_document_tokens:
            raise CorpusError(
                f"{where}: document {doc_id!r} is about {tokens:,} tokens, more than "
                f"generation.corpus.max_document_tokens = {section.max_document_tokens:,}; split "
                "long documents into passages, or raise the limit within the generator's context"
            )
        language = row.get(section.language_column)
        if not isinstance(language, str) or not language.strip():
            untagged.append(len(documents))
            language = ""
        title = row.get(section.title_column)
        documents.append(Document(doc_id, title if isinstance(title, str) else "", text,
                                  language.strip()))  # fmt: skip
    if not documents:
        raise CorpusError(f"{_shown(section)}: no documents in it (every text is empty)")
    if untagged:
        documents = _with_languages(documents, untagged)
    return Corpus(documents, public_source(section), section.license, section.attribution)


def _with_languages(documents: list[Document], untagged: list[int]) -> list[Document]:
    import py3langid

    found = list(documents)
    for index in untagged:
        doc = documents[index]
        language, _ = py3langid.classify(doc.text)
        found[index] = Document(doc.id, doc.title, doc.text, str(language))
    return found


def _shown(section: CorpusSection) -> str:
    return section.hub_dataset or public_source(section)


def _files(section: CorpusSection) -> list[Path]:
    root = resolve_path(section.path)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CORPUS_SUFFIXES))
    if not files:
        raise CorpusError(
            f"{section.path}: no .txt, .jsonl, .jsonl.gz or .parquet files in this folder"
        )
    return files


def _local_rows(section: CorpusSection) -> Iterator[tuple[str, dict[str, Any]]]:
    root = resolve_path(section.path)
    for path in _files(section):
        name = path.name if path == root else path.relative_to(root).as_posix()
        count = 0
        if path.name.endswith(".parquet"):
            rows = _parquet_rows(path, name, section)
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            rows = _jsonl_rows(path, name, section)
        elif path.name.endswith(".txt"):  # the whole file is one document
            text = _utf8(path.read_bytes(), name)
            rows = iter([(name, {section.text_column: text, section.title_column: path.stem})]
                        if text.strip() else [])  # fmt: skip
        else:
            raise CorpusError(f"{name}: not a .txt, .jsonl, .jsonl.gz or .parquet file")
        for row in rows:
            count += 1
            yield row
        if count == 0:
            raise CorpusError(f"{name}: the file is empty")


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{where}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); convert "
            "the file to UTF-8"
        ) from None


def _jsonl_rows(
    path: Path, name: str, section: CorpusSection
) -> Iterator[tuple[str, dict[str, Any]]]:
    data = path.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    text = _utf8(data, name)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise CorpusError(f"{name} line {number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise CorpusError(f"{name} line {number}: not a JSON object")
        if section.text_column not in row:
            raise CorpusError(
                f"{name} line {number}: no {section.text_column!r} field (it has "
                f"{', '.join(sorted(row)) or 'none'}; generation.corpus.text_column names it)"
            )
        yield f"{name}:{number}", row


def _parquet_rows(
    path: Path, name: str, section: CorpusSection
) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"{name}: not a readable Parquet file ({exc})") from None
    _check_column(name, table.column_names, section)
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{name}:{number}", row


def _check_column(name: str, columns: list[str], section: CorpusSection) -> None:
    if section.text_column not in columns:
        raise CorpusError(
            f"{name}: no column {section.text_column!r} (it has {', '.join(columns) or 'none'}; "
            "generation.corpus.text_column names it)"
        )


def _hub_rows(section: CorpusSection) -> Iterator[tuple[str, dict[str, Any]]]:
    from datasets import load_dataset

    dataset = load_dataset(section.hub_dataset, split=section.hub_split)
    _check_column(section.hub_dataset, dataset.column_names, section)
    for number, row in enumerate(dataset, start=1):
        yield f"{section.hub_dataset}:{number}", row
