"""Space: corpus parsing, limits, settings, instruction prompts, the embedding cache, staging.

Every test uses the staged copy of the Space, imported the way ``python app.py`` imports it
(its modules as top-level modules beside app.py), so what is tested is what the Hub runs.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import gradio
import pytest
import torch
from huggingface_hub import SpaceCard
from sentence_transformers import SentenceTransformer

from kit import instructions as kit_instructions
from kit.cli import run_stage
from space import staging
from space.__main__ import main as STAGE
from tests.space_helpers import (
    DATASET_CARD,
    imported_space,
    stage_test_space,
    write_local_dataset,
)

README_VARIABLES = {
    "MODEL_ID",
    "DATASET_ID",
    "SAMPLE_DOCUMENTS",
    "MAX_DOCUMENTS",
    "MAX_CHARS_PER_DOCUMENT",
    "MAX_TOTAL_CHARS",
    "DEFAULT_TOP_K",
    "SPACE_TITLE",
}


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The staged Space's modules: ``space.corpus``, ``space.settings``, ``space.search``..."""
    with imported_space(stage_test_space(tmp_path_factory.mktemp("staged"))) as modules:
        yield modules


@pytest.fixture(scope="module")
def small(space: SimpleNamespace):
    return space.settings.Settings(max_documents=3, max_chars_per_document=10, max_total_chars=25)


def test_pasted_lines_become_documents_and_blank_lines_are_dropped(space) -> None:
    assert space.corpus.documents_from_lines("  first \n\n second\r\n   \nthird") == [
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
def test_corpus_limits_name_the_numbers(space, small, documents: list[str], message: str) -> None:
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.check_corpus(documents, small)
    assert str(caught.value) == message


def test_a_corpus_at_the_limits_passes(space, small) -> None:
    space.corpus.check_corpus(["x" * 10, "y" * 10, "z" * 5], small)


def test_jsonl_reads_strings_and_text_fields(space, tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = ['{"text": "alpha"}', '"beta"', "", '{"Positive": "gamma", "id": 3}']
    path.write_text("\n".join(lines), encoding="utf-8")
    defaults = space.settings.Settings()
    assert space.corpus.documents_from_upload(path, defaults) == ["alpha", "beta", "gamma"]


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
def test_malformed_jsonl_is_reported_by_line(
    space, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.documents_from_upload(path, space.settings.Settings())
    assert str(caught.value) == message


def test_csv_uses_the_text_column_or_the_only_column(space, tmp_path: Path) -> None:
    two = tmp_path / "two.csv"
    two.write_text('id,document\n1,"first, with comma"\n2,second\n', encoding="utf-8")
    one = tmp_path / "one.csv"
    one.write_text("passages\nonly column\n", encoding="utf-8")
    defaults = space.settings.Settings()
    assert space.corpus.documents_from_upload(two, defaults) == ["first, with comma", "second"]
    assert space.corpus.documents_from_upload(one, defaults) == ["only column"]


def test_csv_without_a_text_column_is_rejected(space, tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text("id,title\n1,x\n", encoding="utf-8")
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.documents_from_upload(path, space.settings.Settings())
    assert str(caught.value) == (
        "The .csv file needs a header row with a column named one of: "
        "text, document, positive, passage, content."
    )


def test_non_utf8_upload_names_the_byte(space, tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.documents_from_upload(path, space.settings.Settings())
    assert str(caught.value) == (
        "The file is not UTF-8 text (byte 0xe9 at position 3). "
        "Save it as UTF-8 and upload it again."
    )


def test_binary_and_unknown_uploads_are_rejected(space, tmp_path: Path) -> None:
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"text\x00more")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    defaults = space.settings.Settings()
    with pytest.raises(space.errors.InputError, match="NUL bytes"):
        space.corpus.documents_from_upload(binary, defaults)
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.documents_from_upload(pdf, defaults)
    assert str(caught.value) == "Unsupported file type .pdf: upload a .txt, .jsonl, .csv file."


def test_oversized_upload_is_refused_before_reading(space, small, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 200, encoding="utf-8")
    with pytest.raises(space.errors.InputError) as caught:
        space.corpus.documents_from_upload(path, small)
    assert str(caught.value) == "The file is larger than this Space accepts (112 bytes at most)."


def test_settings_come_from_env_then_file_then_defaults(space, tmp_path: Path) -> None:
    settings = space.settings
    staged = tmp_path / "settings.json"
    staged.write_text(json.dumps({"model_id": "org/m", "max_documents": 7}), encoding="utf-8")
    loaded = settings.load_settings({"MAX_DOCUMENTS": "9", "DATASET_ID": "org/d"}, staged)
    assert (loaded.model_id, loaded.dataset_id, loaded.max_documents) == ("org/m", "org/d", 9)
    assert loaded.max_total_chars == settings.Settings().max_total_chars
    assert settings.load_settings({}, staged).max_documents == 7
    assert settings.load_settings({"DATASET_ID": ""}, staged).dataset_id == ""
    assert settings.load_settings({}, tmp_path / "missing.json") == settings.Settings()
    with pytest.raises(
        settings.SettingsError, match="^MAX_DOCUMENTS must be a whole number, got 'many'$"
    ):
        settings.load_settings({"MAX_DOCUMENTS": "many"}, staged)
    with pytest.raises(settings.SettingsError, match="^MAX_TOTAL_CHARS must be positive, got 0$"):
        settings.load_settings({"MAX_TOTAL_CHARS": "0"}, staged)
    with pytest.raises(
        settings.SettingsError, match="^SAMPLE_DOCUMENTS must be 0 or more, got -1$"
    ):
        settings.load_settings({"SAMPLE_DOCUMENTS": "-1"}, staged)
    assert settings.load_settings({"SAMPLE_DOCUMENTS": "0"}, staged).sample_documents == 0


def test_every_setting_has_one_variable_named_after_it(space) -> None:
    settings = space.settings
    names = {spec.name: settings.env_name(spec.name) for spec in fields(settings.Settings)}
    assert all(variable == name.upper() for name, variable in names.items())
    assert README_VARIABLES <= set(names.values())
    environ = {"SPACE_TITLE": "From env", "CACHE_CORPORA": "3", "CONCURRENCY_LIMIT": "1"}
    loaded = settings.load_settings(environ, Path("/nonexistent/settings.json"))
    assert (loaded.space_title, loaded.cache_corpora, loaded.concurrency_limit) == (
        "From env",
        3,
        1,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"max_documents": "7"}', "settings.json: max_documents must be a whole number, got '7'"),
        (
            '{"max_documents": true}',
            "settings.json: max_documents must be a whole number, got True",
        ),
        ('{"model_id": 3}', "settings.json: model_id must be text, got 3"),
        ('{"title": "old key"}', "settings.json: unknown setting 'title' (known: model_id, "),
        ("[1, 2]", "settings.json must hold a JSON object of settings"),
        ("{broken", "settings.json is not valid JSON: "),
    ],
)
def test_a_bad_settings_file_names_the_file_and_the_key(
    space, tmp_path: Path, content: str, message: str
) -> None:
    staged = tmp_path / "settings.json"
    staged.write_text(content, encoding="utf-8")
    with pytest.raises(space.settings.SettingsError) as caught:
        space.settings.load_settings({}, staged)
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_settings_made_in_code_are_checked_too(space) -> None:
    with pytest.raises(space.settings.SettingsError, match="^MAX_DOCUMENTS must be positive"):
        space.settings.Settings(max_documents=0)
    with pytest.raises(space.settings.SettingsError, match="^CACHE_MEGABYTES must be a whole"):
        space.settings.Settings(cache_megabytes=1.5)


def test_the_space_copy_of_the_instruction_formatter_agrees_with_the_kit(space) -> None:
    copy = space.instructions
    tasks = [
        "Given a web search query, retrieve relevant passages that answer the query",
        "Retrieve semantically similar text.",
        "a task\nover two lines",
        "  padded task  ",
        "Instruct: nested",
        "",
    ]
    for task in tasks:
        assert copy.instruct(task) == kit_instructions.instruct(task)
    prompts = [kit_instructions.instruct(task) for task in tasks] + [
        "",
        "plain text, no instruction",
        "Query: ",
        "Instruct: no query marker",
        "Instruct: a\nQuery: with text after",
        "  Instruct:  spaced out \n  Query:  ",
        "Instruct: first\nsecond line\nQuery: ",
        "instruct: lower case\nquery: ",
    ]
    for prompt in prompts:
        assert copy.task_of(prompt) == kit_instructions.task_of(prompt), prompt
    assert copy.task_of("plain text, no instruction") is None
    assert copy.task_of(copy.instruct("a task\nover two lines")) == "a task\nover two lines"


def test_instruction_choices_come_from_the_model_prompts(space) -> None:
    instructions = space.instructions
    prompts = {
        "query": "Instruct: Find passages\nQuery: ",
        "Retrieval-query": "Instruct: Find passages\nQuery: ",
        "STS": "Instruct: Retrieve semantically similar text.\nQuery: ",
        "plain": " Represent this sentence: ",
        "document": "",
    }
    assert instructions.instruction_choices(prompts) == [
        ("query: Find passages", "query"),
        ("STS: Retrieve semantically similar text.", "STS"),
        ("plain: Represent this sentence:", "plain"),
        ("No instruction (embed the query as is)", instructions.NO_INSTRUCTION),
    ]
    query_prompt = instructions.query_prompt
    assert query_prompt(prompts, "STS", "") == prompts["STS"]
    assert query_prompt(prompts, "STS", " Match titles ") == "Instruct: Match titles\nQuery: "
    assert query_prompt(prompts, instructions.NO_INSTRUCTION, None) == ""
    with pytest.raises(space.errors.InputError, match="Unknown instruction"):
        query_prompt(prompts, "Nope", "")
    with pytest.raises(space.errors.InputError) as caught:
        query_prompt(prompts, "STS", "x" * 1001)
    assert str(caught.value) == "The custom instruction has 1,001 characters; the limit is 1,000."


def test_the_dataset_sample_is_distinct_positives_within_the_limits(space, tmp_path: Path) -> None:
    positives = [f"passage number {i:02d}" for i in range(30)] + ["passage number 03", "  "]
    dataset_dir = write_local_dataset(tmp_path / "data", positives)
    settings, corpus = space.settings, space.corpus
    by_count = settings.Settings(dataset_id=str(dataset_dir), sample_documents=12, max_documents=40)
    sample = corpus.sample_dataset_documents(by_count)
    assert len(sample) == 12 and len(set(sample)) == 12 and set(sample) <= set(positives)
    assert sample == corpus.sample_dataset_documents(by_count)
    by_chars = settings.Settings(
        dataset_id=str(dataset_dir), sample_documents=12, max_total_chars=100
    )
    assert len(corpus.sample_dataset_documents(by_chars)) == 5
    write_local_dataset(dataset_dir, ["rebuilt in place"])
    assert corpus.sample_dataset_documents(by_count) == ["rebuilt in place"]


def test_the_sample_is_the_corpus_when_the_dataset_publishes_one(space, tmp_path: Path) -> None:
    """A release dataset with a ``corpus`` config (corpus-grounded synthesis): the Space
    searches those real documents, not the rows' positives."""
    from datasets import Dataset

    dataset_dir = write_local_dataset(tmp_path / "data", ["a positive written by the LLM"])
    documents = [f"real document {i:02d} of the corpus" for i in range(8)]
    (dataset_dir / "data" / "corpus").mkdir(parents=True)
    Dataset.from_dict({
        "document_id": [f"d{i}" for i in range(8)], "title": [""] * 8, "text": documents,
        "language": ["en"] * 8,
    }).to_parquet(str(dataset_dir / "data" / "corpus" / "train-00000.parquet"))  # fmt: skip
    card = DATASET_CARD.replace("---\nA tiny", "- config_name: corpus\n  data_files:\n  - split: "
                                "train\n    path: data/corpus/train-*.parquet\n---\nA tiny")
    (dataset_dir / "README.md").write_text(card, encoding="utf-8")
    settings = space.settings.Settings(dataset_id=str(dataset_dir), sample_documents=20)
    assert sorted(space.corpus.sample_dataset_documents(settings)) == documents


def test_an_unloadable_dataset_gets_a_clear_message(space, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    sources = space.corpus.CorpusSources(space.settings.Settings(dataset_id=str(empty)))
    with pytest.raises(space.errors.InputError) as caught:
        sources.dataset_documents()
    assert str(caught.value).startswith("The dataset sample could not be loaded (")
    assert str(caught.value).endswith("); paste or upload a corpus instead.")
    no_dataset = space.corpus.CorpusSources(space.settings.Settings(dataset_id=""))
    with pytest.raises(space.errors.InputError, match="No dataset is configured for this Space"):
        no_dataset.dataset_documents()


@pytest.mark.parametrize("top_k", [None, "many", float("nan"), 0, 51])
def test_top_k_outside_the_slider_is_refused_before_any_work(space, top_k: object) -> None:
    retriever = space.search.Retriever(object(), space.settings.Settings())
    with pytest.raises(space.errors.InputError) as caught:
        retriever.search("a query", None, None, top_k, "paste", "a document", None)
    assert str(caught.value) == "Top k must be between 1 and 50."


def test_an_unknown_corpus_source_is_refused(space) -> None:
    sources = space.corpus.CorpusSources(space.settings.Settings())
    with pytest.raises(space.errors.InputError) as caught:
        sources.documents("web", "a document", None)
    assert str(caught.value) == "Unknown corpus source: choose dataset sample, paste or upload."


def test_corpus_hash_separates_document_borders(space) -> None:
    assert space.search.corpus_key(["ab", "c"]) != space.search.corpus_key(["a", "bc"])
    assert space.search.corpus_key(["ab", "c"]) == space.search.corpus_key(["ab", "c"])


class CountingModel:
    """Wraps a real model to count how often the corpus is embedded."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.document_calls = 0

    def encode_document(self, *args, **kwargs):
        self.document_calls += 1
        return self.model.encode_document(*args, **kwargs)


@pytest.fixture(scope="module")
def counting(tiny_st_model_dir: Path) -> CountingModel:
    return CountingModel(SentenceTransformer(str(tiny_st_model_dir)))


def test_a_second_query_on_the_same_corpus_reuses_its_embeddings(space, counting) -> None:
    counting.document_calls = 0
    cache = space.search.CorpusEmbeddings(counting, max_entries=2, max_bytes=2**20)
    first, hit_first = cache.get(["river", "mountain"])
    again, hit_again = cache.get(["river", "mountain"])
    assert (hit_first, hit_again, counting.document_calls) == (False, True, 1)
    assert again is first
    cache.get(["a"])
    cache.get(["b"])
    _, hit_evicted = cache.get(["river", "mountain"])
    assert (hit_evicted, counting.document_calls) == (False, 4)
    assert cache.stats() == space.search.CacheStats(corpora=2, nbytes=3 * 32 * 4, evictions=2)


def test_the_cache_keeps_within_its_bytes(space, counting) -> None:
    """Each document is a 32-float row (128 bytes); the cache holds at most 3 rows here."""
    counting.document_calls = 0
    cache = space.search.CorpusEmbeddings(counting, max_entries=10, max_bytes=3 * 128)
    cache.get(["one", "two"])
    cache.get(["three"])
    assert cache.stats() == space.search.CacheStats(corpora=2, nbytes=384, evictions=0)
    cache.get(["four"])
    assert cache.stats() == space.search.CacheStats(corpora=2, nbytes=256, evictions=1)
    _, hit = cache.get(["three"])
    assert hit
    too_big = [f"document {i}" for i in range(4)]
    _, hit_first = cache.get(too_big)
    _, hit_again = cache.get(too_big)
    assert (hit_first, hit_again) == (False, False)
    assert cache.stats() == space.search.CacheStats(corpora=2, nbytes=256, evictions=1)
    nothing_kept = space.search.CorpusEmbeddings(counting, max_entries=0, max_bytes=2**20)
    nothing_kept.get(["one"])
    assert nothing_kept.get(["one"])[1] is False
    assert nothing_kept.stats().corpora == 0


def test_the_cores_are_shared_between_the_searches_at_once(
    space, monkeypatch: pytest.MonkeyPatch
) -> None:
    cores = len(os.sched_getaffinity(0))
    previous = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert space.search.share_cores(1) == cores
        assert space.search.share_cores(2) == max(1, cores // 2)
        assert space.search.share_cores(4 * cores) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(3)
        assert space.search.share_cores(2) == 3  # the operator's choice is kept
    finally:
        torch.set_num_threads(previous)


def test_a_model_that_cannot_load_is_one_line(space, tmp_path: Path) -> None:
    with pytest.raises(space.search.ModelLoadError) as caught:
        space.search.load_model(str(tmp_path / "missing-model"))
    assert str(caught.value) == (
        f"Could not load the model '{tmp_path / 'missing-model'}': "
        f"Path {tmp_path / 'missing-model'} not found"
    )
    with pytest.raises(space.search.ModelLoadError, match="^Set MODEL_ID to a Hub model id"):
        space.search.load_model("")


def test_the_entry_point_turns_unusable_settings_into_one_line_and_exit_2(
    space, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MAX_DOCUMENTS", "many")
    assert space.app.main() == 2
    assert capsys.readouterr().err == "error: MAX_DOCUMENTS must be a whole number, got 'many'\n"
    monkeypatch.delenv("MAX_DOCUMENTS")
    gone = tmp_path / "gone"
    monkeypatch.setenv("MODEL_ID", str(gone))
    assert space.app.main() == 2
    assert capsys.readouterr().err == (
        f"error: Could not load the model '{gone}': Path {gone} not found\n"
    )


def test_staging_writes_a_space_repo_that_points_at_the_release(
    write_config, tmp_path: Path, space
) -> None:
    config = write_config(
        hub={"namespace": "acme", "model_repo": "emb", "dataset_repo": "data"},
        space={"title": "Acme demo", "max_documents": 50, "sample_documents": 10},
    )
    assert run_stage("space", STAGE, ["--config", str(config)]) == 0
    space_dir = tmp_path / "build" / "space"
    modules = sorted(path.name for path in staging.DEMO_DIR.glob("*.py"))
    assert {"app.py", "corpus.py", "instructions.py", "search.py", "settings.py"} <= set(modules)
    assert sorted(p.name for p in space_dir.iterdir()) == sorted(
        ["README.md", "provenance.json", "requirements.txt", "settings.json", *modules]
    )
    provenance = json.loads((space_dir / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["stage"] == "space" and list(provenance["sections"]) == ["space"]
    assert provenance["facts"] == {"model_id": "acme/emb", "dataset_id": "acme/data"}
    card = SpaceCard.load(space_dir / "README.md")
    assert card.data.sdk == "gradio"
    assert card.data.sdk_version == gradio.__version__
    assert card.data.app_file == "app.py"
    assert card.data.models == ["acme/emb"]
    assert card.data.datasets == ["acme/data"]
    assert card.data.license == "apache-2.0"
    assert card.data.title == "Acme demo"
    assert card.data.emoji
    for spec in fields(space.settings.Settings):
        assert f"`{space.settings.env_name(spec.name)}`" in card.text
    loaded = space.settings.load_settings({}, space_dir / "settings.json")
    assert (loaded.model_id, loaded.dataset_id) == ("acme/emb", "acme/data")
    assert (loaded.max_documents, loaded.sample_documents) == (50, 10)
    assert loaded.space_title == "Acme demo"
    pins = dict(line.split("==") for line in (space_dir / "requirements.txt").read_text().split())
    assert pins["sentence-transformers"] == metadata.version("sentence-transformers")
    assert pins["torch"] == metadata.version("torch").split("+")[0]
    for name in modules:
        assert (space_dir / name).read_bytes() == (staging.DEMO_DIR / name).read_bytes()


def test_staging_writes_app_py_last_and_leaves_no_temporary_files(
    write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config()
    space_dir = tmp_path / "build" / "space"
    space_dir.mkdir(parents=True)
    (space_dir / "old_module.py").write_text("print('removed from the app')\n")
    order: list[str] = []
    write = staging.atomic_write_bytes

    def interrupted(path: Path, data: bytes) -> None:
        order.append(path.name)
        if path.name == "app.py":
            raise KeyboardInterrupt  # the user stops `make space` at the last file
        write(path, data)

    monkeypatch.setattr(staging, "atomic_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_stage("space", STAGE, ["--config", str(config)])
    assert order[-1] == "app.py" and len(order) == len(set(order))
    assert not (space_dir / "app.py").exists() and not (space_dir / "old_module.py").exists()
    monkeypatch.setattr(staging, "atomic_write_bytes", write)

    def failing_replace(source: str, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        staging.atomic_write_bytes(space_dir / "app.py", b"partial")
    assert sorted(p.name for p in space_dir.iterdir() if p.name.startswith(".")) == []


def test_the_app_imports_no_stage_and_nothing_outside_its_requirements(space) -> None:
    own = {path.stem for path in staging.DEMO_DIR.glob("*.py")}
    third_party = {"gradio", "pandas", "torch", "sentence_transformers", "datasets", "numpy",
                   "xllamacpp", "huggingface_hub"}  # fmt: skip
    for path in staging.DEMO_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: the Space runs its modules as top-level"
                imported.add(node.module.split(".")[0])
        assert imported - third_party - own <= set(sys.stdlib_module_names), path.name
        assert "kit" not in imported and "space" not in imported, path.name
    assert "settings" in own and set(space.settings.__dict__) >= {"Settings", "load_settings"}


def test_the_space_modules_shadow_no_installed_or_standard_module() -> None:
    """In the Space they are top-level modules: one named like a package would hide it."""
    own = {path.stem for path in staging.DEMO_DIR.glob("*.py")}
    site_packages = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    installed = {module.name for module in pkgutil.iter_modules(sorted(site_packages))}
    assert installed and not own & (installed | set(sys.stdlib_module_names))


def test_staging_rejects_a_description_the_hub_would_refuse(write_config, capsys) -> None:
    config = write_config(space={"short_description": "x" * 61})
    assert run_stage("space", STAGE, ["--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: space.short_description has 61 characters; the Hub allows 60"
    )


def test_demo_without_a_trained_model_is_one_line(write_config, tmp_path: Path, capsys) -> None:
    from space.__main__ import add_arguments

    config = write_config()
    assert run_stage("space", STAGE, ["--config", str(config), "--serve"], add_arguments) == 2
    model_dir = tmp_path / "build" / "model"
    assert capsys.readouterr().err == (
        f"error: no trained model in {model_dir}: run `make train` first\n"
    )


def test_a_read_only_output_folder_is_one_line_and_keeps_the_staged_space(
    write_config, tmp_path: Path
) -> None:
    """A read-only file system over build/space (a tmpfs mounted read-only in a private
    mount namespace, since root ignores permission bits): exit 2, one line, the staged
    folder as it was; writable again, the same command finishes."""
    import subprocess

    config = write_config(space={"title": "before"})
    assert run_stage("space", STAGE, ["--config", str(config)]) == 0
    space_dir = tmp_path / "build" / "space"
    before = {p.name: p.read_bytes() for p in space_dir.iterdir()}
    config.write_text(config.read_text().replace('"before"', '"after"'), encoding="utf-8")
    repo = Path(__file__).resolve().parent.parent
    stage = f"{sys.executable} -m space --config {config}"
    script = f"mount -t tmpfs -o ro tmpfs {space_dir} && {stage}"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {space_dir}/"), last
    assert last.endswith(
        ": Read-only file system; make room (or make it writable) and run the same command "
        "again: finished files were kept"
    )
    assert {p.name: p.read_bytes() for p in space_dir.iterdir()} == before
    again = subprocess.run(stage.split(), cwd=repo, env=env, capture_output=True, check=False)
    assert again.returncode == 0
    assert "after" in (space_dir / "README.md").read_text(encoding="utf-8")


def test_a_stage_removes_what_an_interrupted_write_left_in_the_build(
    write_config, tmp_path: Path
) -> None:
    """A kill between an atomic write's temporary file and its rename leaves the temporary
    behind; the next stage run removes it, so no release publishes it."""
    config = write_config()
    leftover = tmp_path / "build" / "model" / ".tmp-training_record.json-abc123"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{", encoding="utf-8")
    kept = leftover.with_name("training_record.json")
    kept.write_text("{}", encoding="utf-8")
    assert run_stage("space", STAGE, ["--config", str(config)]) == 0
    assert not leftover.exists() and kept.read_text(encoding="utf-8") == "{}"
