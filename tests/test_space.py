"""Space: corpus parsing, limits, settings, instruction prompts, the embedding cache, staging."""

from __future__ import annotations

import ast
import json
from importlib import metadata
from pathlib import Path

import gradio
import pytest
from huggingface_hub import SpaceCard
from sentence_transformers import SentenceTransformer

from kit.cli import run_stage
from space import app
from space.__main__ import main as stage_main
from tests.space_helpers import write_local_dataset

SMALL = app.Settings(max_documents=3, max_chars_per_document=10, max_total_chars=25)


def test_pasted_lines_become_documents_and_blank_lines_are_dropped() -> None:
    assert app.documents_from_lines("  first \n\n second\r\n   \nthird") == [
        "first",
        "second",
        "third",
    ]


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([], "The corpus is empty: paste documents (one per line) or upload a file."),
        (["a", "b", "c", "d"], "The corpus has 4 documents; this Space accepts at most 3."),
        (
            ["short", "x" * 11],
            "Document 2 has 11 characters; the limit is 10 per document.",
        ),
        (["x" * 10, "y" * 10, "z" * 10], "The corpus has 30 characters in all; the limit is 25."),
    ],
)
def test_corpus_limits_name_the_numbers(documents: list[str], message: str) -> None:
    with pytest.raises(app.InputError) as caught:
        app.check_corpus(documents, SMALL)
    assert str(caught.value) == message


def test_a_corpus_at_the_limits_passes() -> None:
    app.check_corpus(["x" * 10, "y" * 10, "z" * 5], SMALL)


def test_jsonl_reads_strings_and_text_fields(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = ['{"text": "alpha"}', '"beta"', "", '{"Positive": "gamma", "id": 3}']
    path.write_text("\n".join(lines), encoding="utf-8")
    assert app.documents_from_upload(path, app.Settings()) == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{"text": "broken"', "Line 2 of the .jsonl file is not valid JSON."),
        (
            '{"title": "no text"}',
            "Line 1 of the .jsonl file has no text field "
            "(expected one of: text, document, positive, passage, content).",
        ),
        ('{"text": 12}', "Line 1 of the .jsonl file: the document must be a string."),
    ],
)
def test_malformed_jsonl_is_reported_by_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(app.InputError) as caught:
        app.documents_from_upload(path, app.Settings())
    assert str(caught.value) == message


def test_csv_uses_the_text_column_or_the_only_column(tmp_path: Path) -> None:
    two = tmp_path / "two.csv"
    two.write_text('id,document\n1,"first, with comma"\n2,second\n', encoding="utf-8")
    one = tmp_path / "one.csv"
    one.write_text("passages\nonly column\n", encoding="utf-8")
    assert app.documents_from_upload(two, app.Settings()) == ["first, with comma", "second"]
    assert app.documents_from_upload(one, app.Settings()) == ["only column"]


def test_csv_without_a_text_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text("id,title\n1,x\n", encoding="utf-8")
    with pytest.raises(app.InputError) as caught:
        app.documents_from_upload(path, app.Settings())
    assert str(caught.value) == (
        "The .csv file needs a header row with a column named one of: "
        "text, document, positive, passage, content."
    )


def test_non_utf8_upload_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(app.InputError) as caught:
        app.documents_from_upload(path, app.Settings())
    assert str(caught.value) == (
        "The file is not UTF-8 text (byte 0xe9 at position 3). "
        "Save it as UTF-8 and upload it again."
    )


def test_binary_and_unknown_uploads_are_rejected(tmp_path: Path) -> None:
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"text\x00more")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    with pytest.raises(app.InputError, match="NUL bytes"):
        app.documents_from_upload(binary, app.Settings())
    with pytest.raises(app.InputError) as caught:
        app.documents_from_upload(pdf, app.Settings())
    assert str(caught.value) == "Unsupported file type .pdf: upload a .txt, .jsonl, .csv file."


def test_oversized_upload_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 200, encoding="utf-8")
    with pytest.raises(app.InputError) as caught:
        app.documents_from_upload(path, SMALL)
    assert str(caught.value) == "The file is larger than this Space accepts (112 bytes at most)."


def test_settings_come_from_env_then_file_then_defaults(tmp_path: Path) -> None:
    staged = tmp_path / "settings.json"
    staged.write_text(json.dumps({"model_id": "org/m", "max_documents": 7}), encoding="utf-8")
    settings = app.load_settings({"MAX_DOCUMENTS": "9", "DATASET_ID": "org/d"}, staged)
    assert (settings.model_id, settings.dataset_id, settings.max_documents) == ("org/m", "org/d", 9)
    assert settings.max_total_chars == app.Settings().max_total_chars
    with pytest.raises(SystemExit, match="MAX_DOCUMENTS must be a whole number, got 'many'"):
        app.load_settings({"MAX_DOCUMENTS": "many"}, staged)
    with pytest.raises(SystemExit, match="MAX_TOTAL_CHARS must be positive, got 0"):
        app.load_settings({"MAX_TOTAL_CHARS": "0"}, staged)


def test_instruction_choices_come_from_the_model_prompts() -> None:
    prompts = {
        "query": "Instruct: Find passages\nQuery: ",
        "Retrieval-query": "Instruct: Find passages\nQuery: ",
        "STS": "Instruct: Retrieve semantically similar text.\nQuery: ",
        "document": "",
    }
    assert app.instruction_choices(prompts) == [
        ("query: Find passages", "query"),
        ("STS: Retrieve semantically similar text.", "STS"),
        ("No instruction (embed the query as is)", app.NO_INSTRUCTION),
    ]
    assert app.query_prompt(prompts, "STS", "") == prompts["STS"]
    assert app.query_prompt(prompts, "STS", " Match titles ") == "Instruct: Match titles\nQuery: "
    assert app.query_prompt(prompts, app.NO_INSTRUCTION, None) == ""
    with pytest.raises(app.InputError, match="Unknown instruction"):
        app.query_prompt(prompts, "Nope", "")


def test_the_dataset_sample_is_distinct_positives_within_the_limits(tmp_path: Path) -> None:
    positives = [f"passage number {i:02d}" for i in range(30)] + ["passage number 03", "  "]
    dataset_dir = write_local_dataset(tmp_path / "data", positives)
    by_count = app.Settings(dataset_id=str(dataset_dir), sample_documents=12, max_documents=40)
    sample = app.sample_dataset_documents(by_count)
    assert len(sample) == 12 and len(set(sample)) == 12 and set(sample) <= set(positives)
    assert sample == app.sample_dataset_documents(by_count)
    by_chars = app.Settings(dataset_id=str(dataset_dir), sample_documents=12, max_total_chars=100)
    assert len(app.sample_dataset_documents(by_chars)) == 5
    write_local_dataset(dataset_dir, ["rebuilt in place"])
    assert app.sample_dataset_documents(by_count) == ["rebuilt in place"]


def test_an_unloadable_dataset_gets_a_clear_message(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    retriever = app.Retriever(object(), app.Settings(dataset_id=str(empty)))
    with pytest.raises(app.InputError) as caught:
        retriever.dataset_documents()
    assert str(caught.value).startswith("The dataset sample could not be loaded (")
    assert str(caught.value).endswith("); paste or upload a corpus instead.")
    no_dataset = app.Retriever(object(), app.Settings(dataset_id=""))
    with pytest.raises(app.InputError, match="No dataset is configured for this Space"):
        no_dataset.dataset_documents()


def test_corpus_hash_separates_document_borders() -> None:
    assert app.corpus_key(["ab", "c"]) != app.corpus_key(["a", "bc"])
    assert app.corpus_key(["ab", "c"]) == app.corpus_key(["ab", "c"])


class CountingModel:
    """Wraps a real model to count how often the corpus is embedded."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.document_calls = 0

    def encode_document(self, *args, **kwargs):
        self.document_calls += 1
        return self.model.encode_document(*args, **kwargs)


def test_a_second_query_on_the_same_corpus_reuses_its_embeddings(tiny_st_model_dir: Path) -> None:
    counting = CountingModel(SentenceTransformer(str(tiny_st_model_dir)))
    cache = app.CorpusEmbeddings(counting, max_entries=2)
    first, hit_first = cache.get(["river", "mountain"])
    again, hit_again = cache.get(["river", "mountain"])
    assert (hit_first, hit_again, counting.document_calls) == (False, True, 1)
    assert again is first
    cache.get(["a"])
    cache.get(["b"])
    _, hit_evicted = cache.get(["river", "mountain"])
    assert (hit_evicted, counting.document_calls) == (False, 4)


def test_staging_writes_a_space_repo_that_points_at_the_release(
    write_config, tmp_path: Path
) -> None:
    config = write_config(
        hub={"namespace": "acme", "model_repo": "emb", "dataset_repo": "data"},
        space={"title": "Acme demo", "max_documents": 50, "sample_documents": 10},
    )
    assert run_stage("space", stage_main, ["--config", str(config)]) == 0
    space_dir = tmp_path / "build" / "space"
    assert sorted(p.name for p in space_dir.iterdir()) == [
        "README.md",
        "app.py",
        "requirements.txt",
        "settings.json",
    ]
    card = SpaceCard.load(space_dir / "README.md")
    assert card.data.sdk == "gradio"
    assert card.data.sdk_version == gradio.__version__
    assert card.data.app_file == "app.py"
    assert card.data.models == ["acme/emb"]
    assert card.data.datasets == ["acme/data"]
    assert card.data.license == "apache-2.0"
    assert card.data.title == "Acme demo"
    assert card.data.emoji
    settings = app.load_settings({}, space_dir / "settings.json")
    assert (settings.model_id, settings.dataset_id) == ("acme/emb", "acme/data")
    assert (settings.max_documents, settings.sample_documents) == (50, 10)
    pins = dict(line.split("==") for line in (space_dir / "requirements.txt").read_text().split())
    assert pins["sentence-transformers"] == metadata.version("sentence-transformers")
    assert pins["torch"] == metadata.version("torch").split("+")[0]
    assert (space_dir / "app.py").read_bytes() == Path(app.__file__).read_bytes()


def test_the_app_imports_no_stage_and_nothing_outside_its_requirements() -> None:
    tree = ast.parse(Path(app.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = {"gradio", "pandas", "torch", "sentence_transformers", "datasets"}
    assert imported - third_party <= set(__import__("sys").stdlib_module_names)
    assert "kit" not in imported and "space" not in imported


def test_staging_rejects_a_description_the_hub_would_refuse(write_config, capsys) -> None:
    config = write_config(space={"short_description": "x" * 61})
    assert run_stage("space", stage_main, ["--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: space.short_description has 61 characters; the Hub allows 60"
    )
