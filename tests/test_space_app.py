"""The staged Space app served on 127.0.0.1 with the tiny model, queried through gradio_client.

The model has random weights, so the corpora make the answer known another way: the query
is an exact copy of one document and is sent with no instruction, so that document scores a
cosine of 1.0 and must rank first whatever the weights are.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from sentence_transformers import SentenceTransformer

from kit.processes import stop
from tests.space_helpers import (
    free_port,
    imported_space,
    loopback_client,
    space_environment,
    stage_test_space,
    wait_until_serving,
    write_local_dataset,
)

DOCUMENTS = [
    "the river runs to the ocean past the city",
    "Die Zugspitze ist der höchste Berg",
    "la ville est au bord de la rivière",
    "東京 質問 回答 検索",
    "это вопрос о городе и реке",
    "el río y la montaña",
]
DATASET_DOCUMENTS = [
    f"dataset passage {i} on {topic}"
    for i, topic in enumerate("science history music sport weather city".split())
]
LIMITS = dict(max_documents=8, max_chars_per_document=60, max_total_chars=300, sample_documents=10)


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with imported_space(stage_test_space(tmp_path_factory.mktemp("staged"))) as modules:
        yield modules


@pytest.fixture(scope="module")
def model(tiny_st_model_dir: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_st_model_dir))


@pytest.fixture(scope="module")
def served(
    space: SimpleNamespace,
    model: SentenceTransformer,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_st_model_dir: Path,
) -> Iterator[str]:
    """The app as its entry point builds and launches it, in this process."""
    dataset_dir = write_local_dataset(tmp_path_factory.mktemp("space-data"), DATASET_DOCUMENTS)
    settings = space.settings.Settings(
        model_id=str(tiny_st_model_dir), dataset_id=str(dataset_dir), space_title="Test", **LIMITS
    )
    demo = space.app.build_demo(model, settings)
    space.app.serve(
        demo, settings, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True
    )
    try:
        yield demo.local_url.rstrip("/")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(served: str) -> Client:
    return loopback_client(served)


def search(
    client: Client,
    query: str,
    *,
    source: str = "paste",
    pasted: str = "\n".join(DOCUMENTS),
    upload: str | None = None,
    instruction: str = "__none__",
    custom: str = "",
    top_k: int = 3,
) -> tuple[list[list], str]:
    table, _chart, status = client.predict(
        query,
        instruction,
        custom,
        top_k,
        source,
        pasted,
        handle_file(upload) if upload else None,
        api_name="/search",
    )
    return table["data"], status


def test_the_exact_copy_of_the_query_ranks_first(client: Client) -> None:
    rows, status = search(client, DOCUMENTS[3], top_k=4)
    assert [row[0] for row in rows] == [1, 2, 3, 4]
    assert rows[0][2] == DOCUMENTS[3]
    assert rows[0][1] == pytest.approx(1.0, abs=1e-3)
    scores = [row[1] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert status.startswith("Top 4 of 6 documents")


def test_scores_match_the_model_with_the_chosen_instruction(
    client: Client, model: SentenceTransformer
) -> None:
    rows, _ = search(client, "Berg", instruction="query", top_k=6)
    documents = model.encode_document(DOCUMENTS, convert_to_tensor=True)
    query = model.encode_query(["Berg"], prompt=model.prompts["query"], convert_to_tensor=True)
    expected = model.similarity(query, documents)[0]
    order = torch.argsort(expected, descending=True).tolist()
    assert [row[2] for row in rows] == [DOCUMENTS[i] for i in order]
    assert [row[1] for row in rows] == pytest.approx(expected[order].tolist(), abs=1e-3)
    custom_rows, _ = search(client, "Berg", custom="Find mountains", top_k=6)
    prompted = model.encode_query(
        ["Berg"], prompt="Instruct: Find mountains\nQuery: ", convert_to_tensor=True
    )
    custom_expected = model.similarity(prompted, documents)[0]
    assert sorted(row[1] for row in custom_rows) == pytest.approx(
        sorted(custom_expected.tolist()), abs=1e-3
    )


def test_a_second_query_on_the_same_corpus_uses_the_cache(client: Client) -> None:
    pasted = "\n".join(DOCUMENTS[:5])
    _, first = search(client, DOCUMENTS[0], pasted=pasted)
    _, second = search(client, DOCUMENTS[1], pasted=pasted)
    assert "corpus embeddings computed" in first
    assert "corpus embeddings reused from cache" in second


def test_the_dataset_sample_is_searchable(client: Client) -> None:
    rows, status = search(client, DATASET_DOCUMENTS[4], source="dataset")
    assert rows[0][2] == DATASET_DOCUMENTS[4]
    assert status.startswith("Top 3 of 6 documents")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("docs.txt", "\n".join(DOCUMENTS)),
        ("docs.jsonl", "\n".join(f'{{"text": "{d}"}}' for d in DOCUMENTS)),
        ("docs.csv", "id,text\n" + "\n".join(f"{i},{d}" for i, d in enumerate(DOCUMENTS))),
    ],
)
def test_uploaded_corpora_are_searchable(
    client: Client, tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    rows, _ = search(client, DOCUMENTS[4], source="upload", upload=str(path))
    assert rows[0][2] == DOCUMENTS[4]


def test_markup_documents_come_back_as_the_same_plain_text(client: Client) -> None:
    script = '<script>window.pwned = 1</script><b onclick="x()">bold</b>'
    rows, status = search(client, script, pasted="\n".join([*DOCUMENTS[:3], script]))
    assert rows[0][2] == script
    assert status.endswith(
        "Note: 1 document(s) contain HTML or script markup; "
        "it is shown as plain text and never run."
    )


def expect_error(client: Client, message: str, **kwargs) -> None:
    query = kwargs.pop("query", DOCUMENTS[0])
    with pytest.raises(AppError) as caught:
        search(client, query, **kwargs)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "   "}, "Type a query first."),
        (
            {"pasted": "\n \n"},
            "The corpus is empty: paste documents (one per line) or upload a file.",
        ),
        (
            {"pasted": "\n".join(f"doc {i}" for i in range(9))},
            "The corpus has 9 documents; this Space accepts at most 8.",
        ),
        (
            {"pasted": "short\n" + "y" * 61},
            "Document 2 has 61 characters; the limit is 60 per document.",
        ),
        (
            {"pasted": "\n".join(["z" * 60] * 5 + ["ab"])},
            "The corpus has 302 characters in all; the limit is 300.",
        ),
        (
            {"pasted": "\n".join(["w" * 59] * 7)},
            "The pasted text has 419 characters; the limit is 300.",
        ),
        ({"query": "q" * 61}, "The query has 61 characters; the limit is 60."),
        ({"source": "upload"}, "Upload a .txt, .jsonl or .csv file first."),
    ],
)
def test_bad_input_gets_a_clear_message_and_the_app_keeps_working(
    client: Client, kwargs: dict, message: str
) -> None:
    expect_error(client, message, **kwargs)
    rows, _ = search(client, DOCUMENTS[2])
    assert rows[0][2] == DOCUMENTS[2]


def test_bad_uploads_get_a_clear_message(client: Client, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("résumé\n".encode("latin-1"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": ', encoding="utf-8")
    expect_error(
        client,
        "The file is not UTF-8 text (byte 0xe9 at position 1). "
        "Save it as UTF-8 and upload it again.",
        source="upload",
        upload=str(latin1),
    )
    expect_error(
        client,
        "Line 2 of the .jsonl file is not valid JSON.",
        source="upload",
        upload=str(broken),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "Value 0 is less than minimum value 1."),  # gradio's slider check
        ({"top_k": 51}, "Value 51 is greater than maximum value 50."),
        (
            {"custom": "x" * 1001},
            "The custom instruction has 1,001 characters; the limit is 1,000.",
        ),
        (
            {"source": "web"},
            "Value: 'web' (type: <class 'str'>) is not in the list of choices: "
            "['dataset', 'paste', 'upload']",
        ),
    ],
)
def test_inputs_the_page_cannot_send_are_refused_by_gradio_before_the_app(
    client: Client, kwargs: dict, message: str
) -> None:
    expect_error(client, message, **kwargs)


@pytest.mark.slow
def test_the_entry_point_exits_2_with_one_line_when_run_as_the_space_runs_it(
    space: SimpleNamespace,
) -> None:
    space_dir = Path(space.app.__file__).parent
    env = space_environment({"MODEL_ID": "org/model", "MAX_DOCUMENTS": "many"})
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=space_dir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: MAX_DOCUMENTS must be a whole number, got 'many'"
    assert "Traceback" not in done.stderr


def test_make_demo_serves_the_staged_app_on_this_builds_model(
    tiny_st_model_dir: Path, tmp_path: Path
) -> None:
    """``python -m space --serve`` (``make demo``) stages the Space and runs it on the build's
    own model and dataset folders, offline and on loopback, whatever the config's Hub ids."""
    import shutil

    from tests.toml_writer import dump_toml

    build = tmp_path / "build"
    shutil.copytree(tiny_st_model_dir, build / "model")
    write_local_dataset(build / "dataset", DATASET_DOCUMENTS)
    config = tmp_path / "config.toml"
    sections = {"project": {"build_dir": str(build), "runs_dir": str(tmp_path / "runs")},
                "hub": {"namespace": "nobody", "model_repo": "absent"}}  # fmt: skip
    config.write_text(dump_toml(sections), encoding="utf-8")
    port = free_port()
    env = space_environment({}, port) | {"PYTHONPATH": str(Path(__file__).parents[1])}
    log_path = tmp_path / "demo.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "space", "--config", str(config), "--serve"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, log_path, 120)
        client = loopback_client(f"http://127.0.0.1:{port}")
        rows, status = search(client, DATASET_DOCUMENTS[2], source="dataset", top_k=1)
        assert rows[0][2] == DATASET_DOCUMENTS[2]
        assert status.startswith("Top 1 of")
    finally:
        stop(process, grace_s=30)
    assert (build / "space" / "app.py").is_file()
    assert f"open http://127.0.0.1:{port} (Ctrl-C stops it)" in log_path.read_text()
    with pytest.raises(OSError):  # stopping the demo stopped the server: nothing left behind
        urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=2)
