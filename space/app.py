"""Retrieval demo for an instruction-following text embedder (Gradio Space).

Self-contained on purpose: a Hugging Face CPU Space runs this file with only the pinned
requirements, so it imports nothing from the kit that staged it. Settings come from the
environment (``MODEL_ID``, ``DATASET_ID``, limits), falling back to ``settings.json`` beside
this file, which the staging step writes from the release config.

Documents are user input and always travel as plain strings into a "str" table column: they
are never rendered as HTML or Markdown, and no message shown to the user quotes them.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch
from sentence_transformers import SentenceTransformer

log = logging.getLogger("space")

SETTINGS_FILE = Path(__file__).with_name("settings.json")
MAX_TOP_K = 50
MAX_INSTRUCTION_CHARS = 1000
CACHED_CORPORA = 8
UPLOAD_TYPES = (".txt", ".jsonl", ".csv")
TEXT_FIELDS = ("text", "document", "positive", "passage", "content")
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
NO_INSTRUCTION = "__none__"
SOURCE_DATASET, SOURCE_PASTE, SOURCE_UPLOAD = "dataset", "paste", "upload"
MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!][^<>]*>")

EXAMPLE_QUERIES = (
    "What is the longest river in Europe?",
    "Wie hoch ist der höchste Berg Deutschlands?",
    "¿Cuál es la capital de Argentina?",
    "Quelle ville française est connue pour ses canaux ?",
    "東京タワーの高さは？",
    "长城有多长？",
    "Какое самое глубокое озеро в мире?",
)

EXAMPLE_CORPUS = "\n".join(
    (
        "The Volga flows about 3,530 km through Russia and is the longest river in Europe.",
        "Die Zugspitze ist mit 2.962 Metern der höchste Berg Deutschlands.",
        "Buenos Aires es la capital de Argentina y su ciudad más poblada.",
        "Annecy, en Haute-Savoie, est surnommée la Venise des Alpes pour ses canaux.",
        "東京タワーは高さ333メートルの電波塔で、1958年に完成した。",
        "长城的各段加起来总长度超过两万公里。",
        "Байкал — самое глубокое озеро на планете, его глубина достигает 1642 метров.",
        "The Danube passes through ten countries on its way to the Black Sea.",
        "Madrid es la capital de España desde el siglo XVI.",
        "Le mont Blanc culmine à un peu plus de 4 800 mètres.",
    )
)


class InputError(ValueError):
    """Something the user can fix; its message is shown as is."""


@dataclass(frozen=True)
class Settings:
    """Where the model and sample corpus come from, and the limits a public Space needs."""

    model_id: str = ""
    dataset_id: str = ""
    title: str = "Text embedder demo"
    sample_documents: int = 200
    max_documents: int = 2000
    max_chars_per_document: int = 4000
    max_total_chars: int = 2_000_000
    default_top_k: int = 5


ENV_NAMES = {
    "model_id": "MODEL_ID",
    "dataset_id": "DATASET_ID",
    "title": "SPACE_TITLE",
    "sample_documents": "SAMPLE_DOCUMENTS",
    "max_documents": "MAX_DOCUMENTS",
    "max_chars_per_document": "MAX_CHARS_PER_DOCUMENT",
    "max_total_chars": "MAX_TOTAL_CHARS",
    "default_top_k": "DEFAULT_TOP_K",
}


def load_settings(
    environ: Mapping[str, str] = os.environ, settings_file: Path = SETTINGS_FILE
) -> Settings:
    """Environment first, then the staged ``settings.json``, then the built-in defaults.

    A variable set to the empty string counts: ``DATASET_ID=`` turns the dataset sample off.
    """
    values: dict[str, Any] = {}
    if settings_file.is_file():
        staged = json.loads(settings_file.read_text(encoding="utf-8"))
        values.update({k: v for k, v in staged.items() if k in ENV_NAMES})
    for key, env_name in ENV_NAMES.items():
        raw = environ.get(env_name)
        if raw is None:
            continue
        if isinstance(getattr(Settings, key), int):
            try:
                values[key] = int(raw)
            except ValueError:
                raise SystemExit(f"{env_name} must be a whole number, got {raw!r}") from None
        else:
            values[key] = raw
    settings = Settings(**values)
    for key in ENV_NAMES:
        value = getattr(settings, key)
        if isinstance(value, int) and value < (0 if key == "sample_documents" else 1):
            raise SystemExit(f"{ENV_NAMES[key]} must be positive, got {value}")
    return settings


def corpus_key(documents: Sequence[str]) -> str:
    """A content hash of the ordered corpus; length prefixes keep document borders unambiguous."""
    digest = hashlib.sha256()
    for document in documents:
        data = document.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class CorpusEmbeddings:
    """Embeds each distinct corpus once and keeps the most recent ones in memory."""

    def __init__(self, model: SentenceTransformer, max_entries: int = CACHED_CORPORA) -> None:
        self.model = model
        self.max_entries = max_entries
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, documents: Sequence[str]) -> tuple[torch.Tensor, bool]:
        """Return the corpus embeddings and whether they came from the cache."""
        key = corpus_key(documents)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], True
        embeddings = self.model.encode_document(
            list(documents), convert_to_tensor=True, batch_size=16
        )
        with self._lock:
            self._entries[key] = embeddings
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return embeddings, False


def task_of(prompt: str) -> str:
    """The task sentence inside ``Instruct: {task}\\nQuery: `` (the whole prompt otherwise)."""
    match = re.fullmatch(r"\s*Instruct:\s*(.*?)\s*\n\s*Query:\s*", prompt, flags=re.DOTALL)
    return match.group(1) if match else prompt.strip()


def instruction_choices(prompts: Mapping[str, str]) -> list[tuple[str, str]]:
    """Dropdown entries (label, prompt name) for the model's distinct query prompts."""
    choices: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, prompt in prompts.items():
        if name in DOCUMENT_PROMPT_NAMES or not prompt.strip() or prompt in seen:
            continue
        seen.add(prompt)
        choices.append((f"{name}: {task_of(prompt)}", name))
    choices.append(("No instruction (embed the query as is)", NO_INSTRUCTION))
    return choices


def query_prompt(prompts: Mapping[str, str], instruction: str | None, custom: str | None) -> str:
    """The text put before the query: a free-text task wins over the chosen prompt."""
    custom = (custom or "").strip()
    if custom:
        if len(custom) > MAX_INSTRUCTION_CHARS:
            raise InputError(
                f"The custom instruction has {len(custom):,} characters; "
                f"the limit is {MAX_INSTRUCTION_CHARS:,}."
            )
        return f"Instruct: {custom}\nQuery: "
    if not instruction or instruction == NO_INSTRUCTION:
        return ""
    if instruction not in prompts:
        raise InputError("Unknown instruction: pick one from the list or write your own.")
    return prompts[instruction]


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
    """A fixed random sample of distinct ``positive`` texts that fits the corpus limits."""
    local = Path(settings.dataset_id).expanduser()
    if local.is_dir():
        # datasets keys the cache of a local folder by its name, not its content: a rebuilt
        # folder would come back stale, so a local folder gets a cache of its own.
        with tempfile.TemporaryDirectory(prefix="space-dataset-") as cache_dir:
            return _sample_positives(str(local), settings, cache_dir)
    return _sample_positives(settings.dataset_id, settings, None)


def _sample_positives(dataset_id: str, settings: Settings, cache_dir: str | None) -> list[str]:
    from datasets import load_dataset

    dataset = load_dataset(dataset_id, "default", split="train", cache_dir=cache_dir)
    dataset = dataset.shuffle(seed=0)
    dataset = dataset.select(range(min(len(dataset), 4 * settings.sample_documents)))
    wanted = min(settings.sample_documents, settings.max_documents)
    documents: list[str] = []
    total = 0
    for text in dict.fromkeys(dataset["positive"]):
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


class Retriever:
    """Everything a search needs: the model, its prompts, the corpus cache and the limits."""

    def __init__(self, model: SentenceTransformer, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        self.embeddings = CorpusEmbeddings(model)
        self._dataset_documents: list[str] | None = None
        self._dataset_lock = threading.Lock()

    def dataset_documents(self) -> list[str]:
        if not (self.settings.dataset_id and self.settings.sample_documents):
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

    def corpus(self, source: str, pasted: str | None, upload: str | None) -> list[str]:
        if source == SOURCE_DATASET:
            return self.dataset_documents()
        if source == SOURCE_PASTE:
            text = pasted or ""
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

    def search(
        self,
        query: str,
        instruction: str | None,
        custom_instruction: str | None,
        top_k: float,
        source: str,
        pasted: str | None,
        upload: str | None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        started = time.perf_counter()
        query = (query or "").strip()
        if not query:
            raise InputError("Type a query first.")
        if len(query) > self.settings.max_chars_per_document:
            raise InputError(
                f"The query has {len(query):,} characters; the limit is "
                f"{self.settings.max_chars_per_document:,}."
            )
        if top_k is None or not 1 <= int(top_k) <= MAX_TOP_K:
            raise InputError(f"Top k must be between 1 and {MAX_TOP_K}.")
        prompt = query_prompt(self.model.prompts, instruction, custom_instruction)
        documents = self.corpus(source, pasted, upload)
        check_corpus(documents, self.settings)
        corpus_embeddings, cached = self.embeddings.get(documents)
        query_embedding = self.model.encode_query([query], prompt=prompt, convert_to_tensor=True)
        scores = self.model.similarity(query_embedding, corpus_embeddings)[0]
        best = torch.topk(scores, k=min(int(top_k), len(documents)))
        ranked = [
            (rank, round(float(score), 4), documents[index])
            for rank, (score, index) in enumerate(
                zip(best.values.tolist(), best.indices.tolist(), strict=True), start=1
            )
        ]
        table = pd.DataFrame(ranked, columns=["rank", "score", "document"])
        width = len(str(len(ranked)))
        chart = pd.DataFrame(
            {"result": [f"#{r:0{width}d}" for r, _, _ in ranked], "score": table["score"]}
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = (
            f"Top {len(ranked)} of {len(documents):,} documents · corpus embeddings "
            f"{'reused from cache' if cached else 'computed'} · {elapsed_ms:,.0f} ms"
        )
        with_markup = sum(1 for document in documents if MARKUP.search(document))
        if with_markup:
            status += (
                f"\n\nNote: {with_markup:,} document(s) contain HTML or script markup; "
                "it is shown as plain text and never run."
            )
        return table, chart, status


def load_model(model_id: str) -> SentenceTransformer:
    if not model_id:
        raise SystemExit("Set MODEL_ID to a Hub model id or a local sentence-transformers folder.")
    try:
        return SentenceTransformer(model_id)
    except Exception as exc:  # startup: one clear line instead of a traceback
        raise SystemExit(f"Could not load the model {model_id!r}: {exc}") from None


def header_markdown(settings: Settings) -> str:
    """Title, provenance and limits; built from settings only, never from user input."""
    provenance = f"Model `{settings.model_id}`"
    if settings.dataset_id:
        provenance += f" · sample corpus from dataset `{settings.dataset_id}`"
    return (
        f"# {html.escape(settings.title)}\n{provenance}\n\n"
        "Pick a task instruction, give a corpus, type a query: documents are ranked by the "
        "cosine similarity of their embeddings. Queries carry the instruction; documents are "
        "embedded as they are.\n\n"
        f"Limits: {settings.max_documents:,} documents, "
        f"{settings.max_chars_per_document:,} characters per document, "
        f"{settings.max_total_chars:,} characters in all."
    )


def build_demo(model: SentenceTransformer, settings: Settings) -> gr.Blocks:
    """The Blocks app; ``search`` is also the ``/search`` API endpoint for gradio_client."""
    retriever = Retriever(model, settings)

    def search(
        query: str,
        instruction: str | None,
        custom_instruction: str | None,
        top_k: float,
        source: str,
        pasted: str | None,
        upload: str | None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """Rank the corpus for the query; returns (results table, score chart data, status)."""
        try:
            return retriever.search(
                query, instruction, custom_instruction, top_k, source, pasted, upload
            )
        except InputError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # never a stack trace in the page
            log.exception("search failed")
            raise gr.Error(
                f"The search failed unexpectedly ({type(exc).__name__}). "
                "Try a smaller corpus or another query.",
                print_exception=False,
            ) from None

    sources = [("Paste documents", SOURCE_PASTE), ("Upload a file", SOURCE_UPLOAD)]
    if settings.dataset_id and settings.sample_documents:
        sources.insert(0, ("Sample of the training dataset", SOURCE_DATASET))
    choices = instruction_choices(model.prompts)
    names = [name for _, name in choices]
    default_instruction = "query" if "query" in names else names[0]

    with gr.Blocks(title=settings.title) as demo:
        gr.Markdown(header_markdown(settings))
        with gr.Row():
            with gr.Column(scale=2):
                instruction = gr.Dropdown(
                    choices=choices,
                    value=default_instruction,
                    label="Task instruction",
                    elem_id="instruction",
                )
                custom_instruction = gr.Textbox(
                    label="Or write your own task (overrides the list)",
                    placeholder="Given a question, retrieve passages that answer it",
                    max_lines=2,
                )
                query = gr.Textbox(label="Query", lines=2, elem_id="query-box")
                top_k = gr.Slider(
                    1,
                    MAX_TOP_K,
                    value=min(settings.default_top_k, MAX_TOP_K),
                    step=1,
                    label="Top k",
                )
                search_button = gr.Button("Search", variant="primary", elem_id="search-button")
            with gr.Column(scale=3):
                source = gr.Radio(
                    choices=sources, value=sources[0][1], label="Corpus", elem_id="source"
                )
                pasted = gr.Textbox(
                    value=EXAMPLE_CORPUS,
                    lines=8,
                    max_lines=16,
                    label="Documents, one per line",
                    elem_id="pasted-box",
                )
                upload = gr.File(
                    file_types=list(UPLOAD_TYPES),
                    type="filepath",
                    label="Upload .txt (one document per line), .jsonl or .csv",
                )
        status = gr.Markdown(elem_id="status")
        results = gr.Dataframe(
            headers=["rank", "score", "document"],
            datatype=["number", "number", "str"],
            interactive=False,
            wrap=True,
            label="Results",
            elem_id="results",
        )
        chart = gr.BarPlot(x="result", y="score", label="Scores", height=220, elem_id="score-chart")
        gr.Examples(examples=[[q] for q in EXAMPLE_QUERIES], inputs=[query], label="Try")
        inputs = [query, instruction, custom_instruction, top_k, source, pasted, upload]
        outputs = [results, chart, status]
        search_button.click(search, inputs, outputs, api_name="search")
        query.submit(search, inputs, outputs, api_visibility="private")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    demo = build_demo(load_model(settings.model_id), settings)
    demo.queue(max_size=32).launch(max_file_size=max_upload_bytes(settings))


if __name__ == "__main__":
    main()
