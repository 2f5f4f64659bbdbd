"""Retrieval demo for an instruction-following text embedder (Gradio Space): the page and
the entry point.

Self-contained on purpose: a Hugging Face CPU Space runs ``python app.py`` with only the
pinned requirements, so this folder imports nothing from the kit that staged it; its modules
import each other as top-level modules. Documents are user input and always travel as plain
strings into a "str" table column: they are never rendered as HTML or Markdown, and no
message shown to the user quotes them.
"""

from __future__ import annotations

import html
import logging
import re
import sys
from typing import Any

import gradio as gr
import pandas as pd

# The Space's own modules, which sit beside app.py in the Space repo:
# isort: split
from corpus import SOURCE_DATASET, SOURCE_PASTE, SOURCE_UPLOAD, UPLOAD_TYPES, max_upload_bytes
from errors import InputError
from instructions import instruction_choices
from search import (
    MAX_TOP_K,
    ModelLoadError,
    Retriever,
    SearchResult,
    backend_label,
    load_embedder,
)
from settings import Settings, SettingsError, load_settings

log = logging.getLogger("space")

EXIT_UNUSABLE = 2
MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!][^<>]*>")
# How many users may each have a search waiting at once; see serve().
SERVED_USERS = 32
# Uploaded files are read once; gradio deletes its copies after an hour.
UPLOAD_KEEP_S = 3600

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


def header_markdown(settings: Settings, backend: str) -> str:
    """Title, provenance, backend and limits; built from settings and the loaded model only,
    never from user input."""
    provenance = f"Model `{settings.model_id}` · embeddings by {backend}"
    if settings.dataset_id:
        provenance += f" · sample corpus from dataset `{settings.dataset_id}`"
    return (
        f"# {html.escape(settings.space_title)}\n{provenance}\n\n"
        "Pick a task instruction, give a corpus, type a query: documents are ranked by the "
        "cosine similarity of their embeddings. Queries carry the instruction; documents are "
        "embedded as they are.\n\n"
        f"Limits: {settings.max_documents:,} documents, "
        f"{settings.max_chars_per_document:,} characters per document, "
        f"{settings.max_total_chars:,} characters in all."
    )


def render(result: SearchResult) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The results table, the score chart data and the status line of one search."""
    table = pd.DataFrame(result.ranked, columns=["rank", "score", "document"])
    width = len(str(len(result.ranked)))
    chart = pd.DataFrame(
        {"result": [f"#{rank:0{width}d}" for rank, _, _ in result.ranked], "score": table["score"]}
    )
    status = (
        f"Top {len(result.ranked)} of {len(result.documents):,} documents · corpus embeddings "
        f"{'reused from cache' if result.cached else 'computed'} · {result.elapsed_ms:,.0f} ms"
    )
    with_markup = sum(1 for document in result.documents if MARKUP.search(document))
    if with_markup:
        status += (
            f"\n\nNote: {with_markup:,} document(s) contain HTML or script markup; "
            "it is shown as plain text and never run."
        )
    return table, chart, status


def build_demo(model: Any, settings: Settings) -> gr.Blocks:
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
            result = retriever.search(
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
        return render(result)

    sources = [("Paste documents", SOURCE_PASTE), ("Upload a file", SOURCE_UPLOAD)]
    if retriever.sources.has_dataset:
        sources.insert(0, ("Sample of the training dataset", SOURCE_DATASET))
    choices = instruction_choices(model.prompts)
    names = [name for _, name in choices]
    default_instruction = "query" if "query" in names else names[0]

    with gr.Blocks(title=settings.space_title, delete_cache=(UPLOAD_KEEP_S, UPLOAD_KEEP_S)) as demo:
        gr.Markdown(header_markdown(settings, backend_label(model)))
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


def serve(demo: gr.Blocks, settings: Settings, **launch_options: object) -> None:
    """Queue the searches and start the server.

    A free CPU Space has 2 vCPUs and embedding is CPU-bound, so ``concurrency_limit``
    searches (default 2, one per vCPU, each with one torch thread: see ``share_cores``) run
    at once; more would only share the same cores and make each search slower, and one at a
    time leaves a core idle while the other parses, hashes and renders. The others wait in
    the queue, which holds ``SERVED_USERS`` waiting searches: each of the users we promise to
    serve at once can have one waiting, and past that a search is refused at once ("Queue is
    full") instead of waiting for minutes. Gradio runs each search, with its pre- and
    post-processing, in a worker thread; ``max_threads`` leaves room for those and no more.
    """
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=SERVED_USERS)
    demo.launch(
        max_threads=4 * settings.concurrency_limit,
        max_file_size=max_upload_bytes(settings),
        **launch_options,
    )


def main() -> int:
    """Start the Space; a setting or model it cannot use is one line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        model = load_embedder(settings)
    except (SettingsError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    serve(build_demo(model, settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
