"""The release folder as embedding servers read it, and its GGUF files served by llama.cpp.

Each server's requirement is quoted from its own source, with the file it is in:
text-embeddings-inference (TEI) ``router/src/lib.rs`` and
``backends/candle/src/models/gemma3.rs``; vLLM ``vllm/transformers_utils/config.py``;
llama.cpp's converter ``conversion/base.py`` (pinned in ``training/gguf.py``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.serving_models import build_spm_gemma3
from tests.tiny_models import WORDS, build_tiny_sentence_transformer


@pytest.fixture(scope="module")
def served_folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny Gemma 3 embedder saved as the release saves it, keys and GGUF files included."""
    from sentence_transformers import SentenceTransformer

    from training.gguf import export_gguf
    from training.serving import check_reload, reference_embeddings, write_serving_keys

    root = tmp_path_factory.mktemp("served")
    folder = build_tiny_sentence_transformer(build_spm_gemma3(root / "decoder"), root / "model")
    model = SentenceTransformer(str(folder), device="cpu")
    before = reference_embeddings(SentenceTransformer(str(folder), device="cpu"))
    changed = write_serving_keys(folder, model)
    difference = check_reload(folder, before)
    files = export_gguf(folder, ["f16", "q8_0"], "tiny")
    return {"folder": folder, "changed": changed, "difference": difference, "files": files,
            "model": model}  # fmt: skip


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_tei_reads_max_seq_length_and_the_legacy_pooling_keys(served_folder) -> None:
    folder = served_folder["folder"]
    # TEI router/src/lib.rs:
    #   pub struct STConfig { pub max_seq_length: usize, }
    st_config = _json(folder / "sentence_bert_config.json")
    assert st_config["max_seq_length"] == 64 and isinstance(st_config["max_seq_length"], int)
    # TEI router/src/lib.rs:
    #   pub struct PoolConfig { pooling_mode_cls_token: bool, pooling_mode_mean_tokens: bool,
    #       #[serde(default)] pooling_mode_lasttoken: bool, }
    #   ... if config.pooling_mode_lasttoken { return Ok(Pool::LastToken); }
    pooling = _json(folder / "1_Pooling" / "config.json")
    assert pooling["pooling_mode_cls_token"] is False
    assert pooling["pooling_mode_mean_tokens"] is False
    assert pooling["pooling_mode_lasttoken"] is True
    assert pooling["pooling_mode"] == "lasttoken"


def test_tei_reads_gemma3_flat_rope_keys(served_folder) -> None:
    # TEI backends/candle/src/models/gemma3.rs, struct Gemma3Config:
    #   pub rope_local_base_freq: f32,
    #   pub rope_theta: f32,
    config = _json(served_folder["folder"] / "config.json")
    nested = config["rope_parameters"]
    assert config["rope_theta"] == nested["full_attention"]["rope_theta"]
    assert config["rope_local_base_freq"] == nested["sliding_attention"]["rope_theta"]


def _vllm_pooling_type(pooling: dict[str, Any]) -> str | None:
    """vllm/transformers_utils/config.py, get_pooling_config and get_pooling_config_name:
    pooling_type_name = next((item for item, val in pooling_dict.items() if val is True), None)
    if "pooling_mode_" in pooling_name: pooling_name = pooling_name.replace("pooling_mode_", "")
    if "_" in pooling_name: pooling_name = pooling_name.split("_")[0]
    if "lasttoken" in pooling_name: pooling_name = "last"
    """
    name = next((item for item, val in pooling.items() if val is True), None)
    if name is None:
        return None
    name = name.replace("pooling_mode_", "")
    name = name.split("_")[0] if "_" in name else name
    return "LAST" if "lasttoken" in name else name.upper()


def test_vllm_finds_last_token_pooling(served_folder) -> None:
    folder = served_folder["folder"]
    modules = _json(folder / "modules.json")
    assert any(m["type"].endswith("Normalize") for m in modules)
    assert _vllm_pooling_type(_json(folder / "1_Pooling" / "config.json")) == "LAST"
    # What sentence-transformers 6.2 writes by itself: vLLM would read "include_prompt".
    assert _vllm_pooling_type({"pooling_mode": "lasttoken", "include_prompt": True}) == "INCLUDE"


def test_transformers_4_finds_add_eos_token(served_folder) -> None:
    # transformers 4 (LlamaTokenizerFast.update_post_processor, GemmaTokenizerFast) rebuilds
    # the post-processor from tokenizer_config.json's add_bos_token / add_eos_token.
    config = _json(served_folder["folder"] / "tokenizer_config.json")
    assert config["add_eos_token"] is True and config["add_bos_token"] is True


def test_the_folder_with_the_keys_reloads_with_identical_embeddings(served_folder) -> None:
    assert served_folder["difference"] == 0.0
    assert sorted(served_folder["changed"]) == [
        "1_Pooling/config.json", "config.json", "sentence_bert_config.json",
        "tokenizer_config.json",
    ]  # fmt: skip


def test_a_changed_folder_is_refused_with_its_difference(served_folder, tmp_path) -> None:
    import shutil

    from sentence_transformers import SentenceTransformer

    from training.serving import ServingKeysError, check_reload, reference_embeddings

    copy = Path(shutil.copytree(served_folder["folder"], tmp_path / "copy",
                                ignore=shutil.ignore_patterns("gguf")))  # fmt: skip
    before = reference_embeddings(SentenceTransformer(str(copy), device="cpu"))
    pooling_file = copy / "1_Pooling" / "config.json"
    pooling = _json(pooling_file) | {"pooling_mode": "mean"}
    pooling_file.write_text(json.dumps(pooling), encoding="utf-8")
    with pytest.raises(ServingKeysError, match=r"copy: the folder with the serving keys embeds "
                       r"differently \(largest difference [0-9.e-]+\)"):  # fmt: skip
        check_reload(copy, before)


def _metadata(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()
            if not name.startswith("tokenizer.ggml.t") and "token_type" not in name}  # fmt: skip


def test_gguf_files_say_causal_gemma3_last_token_pooling_and_eos(served_folder) -> None:
    # conversion/base.py _try_set_pooling_type: "lasttoken": gguf.PoolingType.LAST (3)
    for path in served_folder["files"]:
        meta = _metadata(path)
        assert meta["general.architecture"] == "gemma3"  # not gemma-embedding (bidirectional)
        assert meta["gemma3.pooling_type"] == 3
        assert meta["tokenizer.ggml.add_bos_token"] is True
        assert meta["tokenizer.ggml.add_eos_token"] is True


def _texts(count: int = 40) -> list[str]:
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(count)]
    texts += ["  two  spaces\tand a tab", "ü ß 東京 🙂", " ".join(WORDS) * 2]  # the last: cut
    return texts


@pytest.mark.parametrize(("kind", "floor"), [("f16", 0.999), ("q8_0", 0.99)])
def test_llama_cpp_server_embeds_as_sentence_transformers(served_folder, kind, floor) -> None:
    from kit.llama_embed import _post, embed, embedding_server

    model, texts = served_folder["model"], _texts()
    (path,) = [p for p in served_folder["files"] if p.name.endswith(f"-{kind}.gguf")]
    expected = model.encode(texts, normalize_embeddings=True)
    with embedding_server(path, max_tokens=64, threads=1) as url:
        for text in texts[:-1]:
            served = _post(f"{url}/tokenize", {"content": text, "add_special": True})["tokens"]
            assert served == model.tokenizer(text)["input_ids"]
        found = np.asarray(embed(url, texts, max_tokens=64, batch_size=8))
    cosines = (found * expected).sum(axis=1) / np.linalg.norm(found, axis=1)
    assert cosines.min() >= floor, (kind, cosines.min())


def test_a_gemma3_llama_cpp_would_scale_differently_is_refused(tmp_path) -> None:
    from training.gguf import GgufExportError, convert, converter_dir

    decoder = build_spm_gemma3(tmp_path / "decoder", match_attention_scale=False)
    folder = build_tiny_sentence_transformer(decoder, tmp_path / "model")
    target = folder / "gguf" / "tiny-f16.gguf"
    with pytest.raises(GgufExportError, match=r"^llama\.cpp's converter failed \(f16\): "
                       r"query_pre_attn_scalar \(256\) differs from head_dim \(16\)"):  # fmt: skip
        convert(folder, "f16", target, converter_dir())
    assert not target.exists() and not list(target.parent.glob("*"))


def test_the_cards_llama_cpp_snippet_runs_against_the_served_gguf(served_folder) -> None:
    """The card's "Serve it" commands and client, run as written: the server is llama.cpp's
    own (xllamacpp) started as the card's `llama-server -m FILE --embeddings` starts it."""
    import shlex

    from kit.artifacts import TrainingRecord
    from kit.llama_embed import embedding_server
    from model_card.card import build_card

    folder, model = served_folder["folder"], served_folder["model"]
    files = [p.relative_to(folder).as_posix() for p in served_folder["files"]]
    record = TrainingRecord(base_model="bundled:gemma-3-270m", dataset="d", dataset_revision="r",
                            steps=1, max_length=64, precision="fp32", seed=0,
                            gguf_files=files)  # fmt: skip
    card = str(build_card(repo_id="acme/tiny-embedder", model=model, training_record=record,
                          results=None, staged={}, license_id="apache-2.0", dataset_id=None,
                          languages=[], not_evaluated_reason="Not run in this test."))  # fmt: skip
    bash = "\n".join(re.findall(r"```bash\n(.*?)```", card, flags=re.DOTALL))
    (server_line,) = [line for line in bash.splitlines() if line.startswith("llama-server")]
    argv = shlex.split(server_line)
    assert argv[argv.index("-m") + 1] == "gguf/tiny-q8_0.gguf" and "--embeddings" in argv
    assert not any(arg.startswith("--pooling") for arg in argv)
    assert "vllm serve acme/tiny-embedder --task embed" in bash
    assert "--model-id acme/tiny-embedder" in bash
    (client,) = [b for b in re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
                 if "client.embeddings.create" in b]  # fmt: skip
    port = argv[argv.index("--port") + 1]
    with embedding_server(folder / argv[argv.index("-m") + 1], 512, threads=1) as url:
        code = client.replace(f"http://127.0.0.1:{port}/v1", f"{url}/v1")
        namespace: dict[str, Any] = {}
        exec(compile(code, "<card snippet>", "exec"), namespace)  # noqa: S102 - our own card
    # The snippet sends inputs whole, as the card says (its prompt alone is over this tiny
    # model's 64 tokens): compare with sentence-transformers reading them whole too.
    from sentence_transformers import SentenceTransformer

    whole = SentenceTransformer(str(folder), device="cpu")
    whole.max_seq_length = 512
    expected = np.vstack([whole.encode_query(namespace["queries"], normalize_embeddings=True),
                          whole.encode_document(namespace["documents"],
                                                normalize_embeddings=True)])  # fmt: skip
    found = np.asarray(namespace["query_embeddings"] + namespace["document_embeddings"])
    assert ((found * expected).sum(axis=1)).min() >= 0.99


def test_an_unknown_gguf_type_is_refused_before_any_work(write_config) -> None:
    from kit.config import ConfigError, load_config

    path = write_config(training={"gguf": ["f16", "q4_k"]})
    with pytest.raises(ConfigError, match=r"training\.gguf\[1\]: 'q4_k' is not a GGUF type "
                       r"llama\.cpp's converter writes \(f32, f16, bf16, q8_0\)$"):  # fmt: skip
        load_config(path)


def test_the_serving_bench_and_the_gguf_check_run_on_a_tiny_model(served_folder, write_config,
                                                                   tmp_path) -> None:  # fmt: skip
    """Every phase of ``make bench``'s serving section, and the model card's GGUF check it
    calls, on the tiny model and small slices of two default tasks: throughput of torch and
    each GGUF, the mteb scores through llama.cpp's ``/v1/embeddings``, and the section."""
    from bench import serving_bench

    config = write_config(evaluation={"local_tasks": [
        {"name": "STS17-en-en", "type": "sts", "path": "model_card/evaldata/sts17/en-en.tsv",
         "registry_task": "STS17", "languages": "eng-Latn", "max_pairs": 24},
        {"name": "XQuADRetrieval-de", "type": "retrieval", "path": "model_card/evaldata/xquad/de",
         "registry_task": "XQuADRetrieval", "languages": "deu-Latn", "max_queries": 12,
         "max_corpus": 16},
    ]})  # fmt: skip
    folder = served_folder["folder"]
    files = dict(zip(serving_bench.TYPES, served_folder["files"], strict=True))
    rates = serving_bench.throughput(folder, files)
    assert set(rates) == {"torch fp32", "GGUF f16", "GGUF q8_0"}
    assert all(r.wall > 0 and r.cpu > 0 for kinds in rates.values() for r in kinds.values())
    scores, checks = serving_bench.quality(str(config), folder, files, tmp_path / "work")
    assert set(scores) == {"STS17-en-en", "XQuADRetrieval-de"}
    by_type = {check.type: check for check in checks}
    assert set(by_type) == {"f16", "q8_0"}
    for check in checks:
        assert set(check.scores) == set(scores) and check.texts_compared > 0
        for name, score in check.scores.items():
            assert check.score_drops[name] == round(scores[name] - score, 2)
    # f16 is judged on its cosine, the quantized file on its scores.
    assert by_type["f16"].min_cosine >= 0.999 and by_type["f16"].passed
    assert by_type["q8_0"].passed == all(d <= 1.0 for d in by_type["q8_0"].score_drops.values())
    text = serving_bench.section("tiny", rates, scores, checks, 1.0)
    assert "| GGUF q8_0 |" in text and "| GGUF f16 |" in text and "STS17-en-en" in text
    assert re.search(r"Instruction sets: torch \S+ runs its \w+ kernels; xllamacpp \S+'s "
                     r"llama\.cpp was built with \w+", text)  # fmt: skip
    q8 = {kind: rates["GGUF q8_0"][kind].cpu / rates["torch fp32"][kind].cpu
          for kind in ("queries", "documents")}  # fmt: skip
    met = min(q8.values()) >= 2 and max(by_type["q8_0"].score_drops.values()) <= 1
    assert text.rstrip().endswith(
        f"**{'met' if met else 'not met'}**: {q8['queries']:.2f}x on queries, "
        f"{q8['documents']:.2f}x on documents, largest score drop "
        f"{max(by_type['q8_0'].score_drops.values()):+.2f}."
    )


def test_the_model_card_stage_checks_each_gguf_and_reports_it(served_folder, tmp_path) -> None:
    """``evaluation.gguf_check = true`` on the tiny model with its two files: each is served,
    run through every task and judged; the verdicts land beside the files and in the card."""
    import shutil

    from huggingface_hub import ModelCard

    from kit.cli import run_stage
    from model_card.__main__ import add_arguments
    from tests.model_card_fixtures import write_beir, write_model_folder, write_sts
    from tests.toml_writer import dump_toml

    model_dir = tmp_path / "build" / "model"
    write_model_folder(served_folder["folder"], model_dir, None)
    shutil.rmtree(model_dir / "gguf")
    shutil.copytree(served_folder["folder"] / "gguf", model_dir / "gguf")
    record = _json(model_dir / "training_record.json")
    record["gguf_files"] = [p.relative_to(served_folder["folder"]).as_posix()
                            for p in served_folder["files"]]  # fmt: skip
    (model_dir / "training_record.json").write_text(json.dumps(record), encoding="utf-8")
    beir, sts = write_beir(tmp_path / "beir"), write_sts(tmp_path / "sts.tsv")
    config = tmp_path / "config.toml"
    config.write_text(dump_toml({
        "project": {"build_dir": str(tmp_path / "build"), "runs_dir": str(tmp_path / "runs")},
        "hub": {"namespace": "acme", "model_repo": "tiny-embedder", "dataset_repo": "tiny-data"},
        "evaluation": {"gguf_check": True, "evaluate_base": False, "model_license": "apache-2.0",
                       "local_tasks": [
            {"name": "TinyRetrieval", "type": "retrieval", "path": str(beir),
             "languages": "eng-Latn"},
            {"name": "TinySTS", "type": "sts", "path": str(sts),
             "languages": "eng-Latn"},
        ]},
    }), encoding="utf-8")  # fmt: skip
    assert run_stage("model_card", "model_card.stage:main", ["--config", str(config)],
                     add_arguments) == 0  # fmt: skip
    card_dir = tmp_path / "build" / "card"
    verdicts = json.loads((card_dir / "gguf" / "verification.json").read_text(encoding="utf-8"))
    assert [v["file"] for v in verdicts] == record["gguf_files"]
    assert [v["type"] for v in verdicts] == ["f16", "q8_0"]
    for verdict in verdicts:
        assert set(verdict["scores"]) == {"TinyRetrieval", "TinySTS"} and verdict["threads"] >= 1
    assert verdicts[0]["passed"] and verdicts[0]["min_cosine"] >= 0.999
    card = ModelCard.load(card_dir / "README.md").text
    for verdict in verdicts:
        (row,) = [line for line in card.splitlines() if line.startswith(f"| `{verdict['file']}`")]
        assert f"{verdict['min_cosine']:.5f}" in row
