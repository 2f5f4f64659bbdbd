"""Where a corpus comes from, and the limits it must fit.

A corpus is a fixed sample of the release dataset, lines pasted into the page, or an
uploaded .txt/.jsonl/.csv. Uploads are read as strict UTF-8 and capped before parsing;
every corpus is checked against the public limits, with numbers the user can act on.
Documents are user input: they are returned as plain strings and no message quotes them.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from errors import InputError
from settings import Settings

log = logging.getLogger("space")

UPLOAD_TYPES = (".txt", ".jsonl", ".csv")
TEXT_FIELDS = ("text", "document", "positive", "passage", "content")
# Where the sample comes from: the release dataset's config of real documents, else the
# positives of its unified training view (config, column).
CORPUS_SAMPLE = ("corpus", "text")
DEFAULT_SAMPLE = ("default", "positive")
SOURCE_DATASET, SOURCE_PASTE, SOURCE_UPLOAD = "dataset", "paste", "upload"


def documents_from_lines(text: str) -> list[str]:
    """One document per non-blank line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _text_field(record: Mapping[str, Any]) -> str | None:
    lowered = {str(k).lower(): k for k in record}
    for name in TEXT_FIELDS:
        if name in lowered:
            return lowered[name]
    return None


def documents_from_jsonl(text: str) -> list[str]:
    """Each line is a JSON string or an object with a text, document, positive... field."""
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"Line {number} of the .jsonl file is not valid JSON.") from None
        if isinstance(record, dict):
            field = _text_field(record)
            if field is None:
                raise InputError(
                    f"Line {number} of the .jsonl file has no text field "
                    f"(expected one of: {', '.join(TEXT_FIELDS)})."
                )
            record = record[field]
        if not isinstance(record, str):
            raise InputError(f"Line {number} of the .jsonl file: the document must be a string.")
        if record.strip():
            documents.append(record.strip())
    return documents


def documents_from_csv(text: str) -> list[str]:
    """A header row, then documents in the text column (or the only column)."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"The .csv file could not be parsed: {exc}.") from None
    if not rows or not rows[0]:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if len(header) == 1:
        column = 0
    else:
        names = [name for name in TEXT_FIELDS if name in header]
        if not names:
            raise InputError(
                "The .csv file needs a header row with a column named one of: "
                f"{', '.join(TEXT_FIELDS)}."
            )
        column = header.index(names[0])
    documents = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if column >= len(row):
            raise InputError(f"Row {number} of the .csv file has no value in the text column.")
        if row[column].strip():
            documents.append(row[column].strip())
    return documents


def max_upload_bytes(settings: Settings) -> int:
    """Uploads are capped before they reach the parser (UTF-8 uses at most 4 bytes a char)."""
    return 4 * settings.max_total_chars + 4 * settings.max_documents


def documents_from_upload(path: str | Path, settings: Settings) -> list[str]:
    """Read an uploaded .txt/.jsonl/.csv as strict UTF-8 (a BOM is allowed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise InputError(
            f"Unsupported file type {html.escape(suffix) or '(none)'}: "
            f"upload a {', '.join(UPLOAD_TYPES)} file."
        )
    max_bytes = max_upload_bytes(settings)
    if path.stat().st_size > max_bytes:
        raise InputError(
            f"The file is larger than this Space accepts ({max_bytes:,} bytes at most)."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"The file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start}). "
            "Save it as UTF-8 and upload it again."
        ) from None
    if "\x00" in text:
        raise InputError("The file contains NUL bytes; it does not look like a text file.")
    if suffix == ".jsonl":
        return documents_from_jsonl(text)
    if suffix == ".csv":
        return documents_from_csv(text)
    return documents_from_lines(text)


def check_corpus(documents: Sequence[str], settings: Settings) -> None:
    """Reject an empty corpus or one past the public limits, with numbers the user can act on."""
    if not documents:
        raise InputError("The corpus is empty: paste documents (one per line) or upload a file.")
    if len(documents) > settings.max_documents:
        raise InputError(
            f"The corpus has {len(documents):,} documents; this Space accepts at most "
            f"{settings.max_documents:,}."
        )
    for number, document in enumerate(documents, start=1):
        if len(document) > settings.max_chars_per_document:
            raise InputError(
                f"Document {number} has {len(document):,} characters; the limit is "
                f"{settings.max_chars_per_document:,} per document."
            )
    total = sum(len(document) for document in documents)
    if total > settings.max_total_chars:
        raise InputError(
            f"The corpus has {total:,} characters in all; the limit is "
            f"{settings.max_total_chars:,}."
        )


def sample_dataset_documents(settings: Settings) -> list[str]:
    """A fixed random sample of real documents that fits the corpus limits: the dataset's
    ``corpus`` config (the documents its corpus-grounded rows were written about) when it
    has one, else the distinct ``positive`` texts of its rows."""
    local = Path(settings.dataset_id).expanduser()
    if local.is_dir():
        # datasets keys the cache of a local folder by its name, not its content: a rebuilt
        # folder would come back stale, so a local folder gets a cache of its own.
        with tempfile.TemporaryDirectory(prefix="space-dataset-") as cache_dir:
            return _sample_positives(str(local), settings, cache_dir)
    return _sample_positives(settings.dataset_id, settings, None)


def _sample_positives(dataset_id: str, settings: Settings, cache_dir: str | None) -> list[str]:
    from datasets import get_dataset_config_names, load_dataset

    config, column = DEFAULT_SAMPLE
    if CORPUS_SAMPLE[0] in get_dataset_config_names(dataset_id):
        config, column = CORPUS_SAMPLE
    dataset = load_dataset(dataset_id, config, split="train", cache_dir=cache_dir)
    dataset = dataset.shuffle(seed=0)
    dataset = dataset.select(range(min(len(dataset), 4 * settings.sample_documents)))
    wanted = min(settings.sample_documents, settings.max_documents)
    documents: list[str] = []
    total = 0
    for text in dict.fromkeys(dataset[column]):
        if not isinstance(text, str) or not text.strip():
            continue
        document = text.strip()[: settings.max_chars_per_document]
        if total + len(document) > settings.max_total_chars:
            break
        documents.append(document)
        total += len(document)
        if len(documents) == wanted:
            break
    return documents


class CorpusSources:
    """Turns the page's corpus inputs into a checked list of documents.

    The dataset sample is loaded on first use, once, and shared by every user.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dataset_documents: list[str] | None = None
        self._dataset_lock = threading.Lock()

    @property
    def has_dataset(self) -> bool:
        return bool(self.settings.dataset_id and self.settings.sample_documents)

    def dataset_documents(self) -> list[str]:
        if not self.has_dataset:
            raise InputError("No dataset is configured for this Space: paste or upload a corpus.")
        with self._dataset_lock:
            if self._dataset_documents is None:
                try:
                    self._dataset_documents = sample_dataset_documents(self.settings)
                except Exception as exc:  # any loader failure becomes one readable line
                    log.exception("loading the dataset sample failed")
                    raise InputError(
                        f"The dataset sample could not be loaded ({type(exc).__name__}); "
                        "paste or upload a corpus instead."
                    ) from None
        return self._dataset_documents

    def documents(self, source: str, pasted: str | None, upload: str | None) -> list[str]:
        """The corpus the user chose, within the limits."""
        documents = self._read(source, pasted, upload)
        check_corpus(documents, self.settings)
        return documents

    def _read(self, source: str, pasted: str | None, upload: str | None) -> list[str]:
        if source == SOURCE_DATASET:
            return self.dataset_documents()
        if source == SOURCE_PASTE:
            text = pasted or ""
            # Capped before it is split; one line break per document does not count.
            if len(text) > self.settings.max_total_chars + self.settings.max_documents:
                raise InputError(
                    f"The pasted text has {len(text):,} characters; the limit is "
                    f"{self.settings.max_total_chars:,}."
                )
            return documents_from_lines(text)
        if source == SOURCE_UPLOAD:
            if not upload:
                raise InputError("Upload a .txt, .jsonl or .csv file first.")
            return documents_from_upload(upload, self.settings)
        raise InputError("Unknown corpus source: choose dataset sample, paste or upload.")
