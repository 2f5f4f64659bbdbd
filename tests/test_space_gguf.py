"""The Space on its GGUF backend: the staged app, run as the Space runs it, embeds with the
model's verified GGUF file through llama.cpp, says so on the page, and ranks as
sentence-transformers does; staged for that backend, its requirements hold no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.serving_models import VERIFY_TEXTS, build_verified_gguf_repo
from tests.space_helpers import loopback_client, serve_staged_app, stage_test_space

CORPUS = "\n".join(VERIFY_TEXTS)


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_verified_gguf_repo(tmp_path_factory.mktemp("gguf-space"))


def test_the_gguf_backend_ranks_as_sentence_transformers(gguf_model, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    space_dir = stage_test_space(tmp_path / "space")
    env = {"MODEL_ID": str(gguf_model), "DATASET_ID": "", "BACKEND": "gguf"}
    with serve_staged_app(space_dir, env, tmp_path / "app.log") as app:
        client = loopback_client(app.url)
        table, _, status = client.predict("river city", "query", "", 3, "paste", CORPUS, None,
                                          api_name="/search")  # fmt: skip
        log = (tmp_path / "app.log").read_text(encoding="utf-8")
    assert "embedding with llama.cpp, GGUF Q8_0 (`gguf/tiny-q8_0.gguf`)" in log
    assert "Top 3 of 6 documents" in status
    ranked = [row[2] for row in table["data"]]
    model = SentenceTransformer(str(gguf_model), device="cpu")
    documents = CORPUS.splitlines()
    scores = model.similarity(model.encode_query(["river city"]), model.encode_document(documents))
    expected = [documents[i] for i in np.argsort(-scores[0].numpy())[:3]]
    assert ranked == expected


def test_documents_longer_than_the_model_reads_are_cut_as_sentence_transformers_cuts(
    gguf_model, tmp_path
) -> None:
    """A document of exactly max_seq_length tokens and one far longer: the backend embeds
    both as sentence-transformers does (cut to 64 tokens, EOS last)."""
    from sentence_transformers import SentenceTransformer

    from tests.space_helpers import imported_space

    model = SentenceTransformer(str(gguf_model), device="cpu")
    long_text = " ".join(VERIFY_TEXTS * 20)
    ids = model.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    exact = model.tokenizer.decode(ids[:62])
    assert len(model.tokenizer(exact)["input_ids"]) == 64
    texts = [exact, long_text]
    with imported_space(stage_test_space(tmp_path / "space")) as space:
        backend = space.llama_backend.LlamaCppEmbedder(str(gguf_model), 2)
        found = backend.encode_document(texts)
    expected = model.encode_document(texts, normalize_embeddings=True)
    assert ((found * expected).sum(axis=1)).min() >= 0.99


def test_the_page_names_the_backend(gguf_model, tmp_path) -> None:
    import urllib.request

    space_dir = stage_test_space(tmp_path / "space")
    # auto: the verified GGUF the model repo lists (the staged default here is
    # sentence-transformers, since this test's build has no model card).
    env = {"MODEL_ID": str(gguf_model), "DATASET_ID": "", "BACKEND": "auto"}
    with serve_staged_app(space_dir, env, tmp_path / "app.log") as app:
        with urllib.request.urlopen(f"{app.url}/config", timeout=30) as response:
            config: dict[str, Any] = json.load(response)
    texts = json.dumps(config)
    assert "embeddings by llama.cpp, GGUF Q8_0" in texts


def test_gguf_backend_without_a_verified_file_is_one_line(tmp_path, tiny_st_model_dir) -> None:
    import subprocess
    import sys

    from tests.space_helpers import space_environment

    space_dir = stage_test_space(tmp_path / "space")
    env = space_environment({"MODEL_ID": str(tiny_st_model_dir), "BACKEND": "gguf"})
    done = subprocess.run([sys.executable, "app.py"], cwd=space_dir, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: Could not embed with a GGUF of '{tiny_st_model_dir}': "
        f"{tiny_st_model_dir} has no gguf/verification.json"
    )


def _verdict(build: Path, passed: bool) -> None:
    verification = build / "card" / "gguf" / "verification.json"
    verification.parent.mkdir(parents=True, exist_ok=True)
    verification.write_text(json.dumps([{"file": "gguf/m-q8_0.gguf", "type": "q8_0",
                                         "passed": passed}]), encoding="utf-8")  # fmt: skip


def test_staged_for_a_verified_gguf_the_space_installs_no_torch(tmp_path) -> None:
    from importlib import metadata

    folder = tmp_path / "staged"
    _verdict(folder / "build", passed=True)
    space_dir = stage_test_space(folder)
    pins = dict(line.split("==") for line in (space_dir / "requirements.txt").read_text().split())
    assert set(pins) == {"xllamacpp", "huggingface_hub", "datasets", "pandas", "numpy"}
    assert pins["xllamacpp"] == metadata.version("xllamacpp")
    assert json.loads((space_dir / "settings.json").read_text())["backend"] == "gguf"
    assert "served by llama.cpp (xllamacpp), with no PyTorch installed" in (
        space_dir / "README.md"
    ).read_text(encoding="utf-8")


def test_a_failed_or_missing_gguf_stages_sentence_transformers(tmp_path) -> None:
    folder = tmp_path / "staged"
    _verdict(folder / "build", passed=False)
    space_dir = stage_test_space(folder)
    pins = dict(line.split("==") for line in (space_dir / "requirements.txt").read_text().split())
    assert {"torch", "sentence-transformers"} <= set(pins) and "xllamacpp" not in pins
    assert json.loads((space_dir / "settings.json").read_text())["backend"] == (
        "sentence-transformers"
    )


def test_space_backend_gguf_without_a_verified_file_stops_the_staging(tmp_path) -> None:
    from kit.cli import StageError

    folder = tmp_path / "staged"
    _verdict(folder / "build", passed=False)
    with pytest.raises(StageError, match=r"^space\.backend is gguf but the model has no GGUF "
                       r"file that passed its check \(.*card/gguf/verification\.json; run "
                       r"`make evaluate` with evaluation\.gguf_check = true\)$"):  # fmt: skip
        stage_test_space(folder, backend="gguf")
    assert not (folder / "build" / "space" / "app.py").exists()
