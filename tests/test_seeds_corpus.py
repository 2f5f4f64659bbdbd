"""Corpus mode: rows written about real documents, live and batch, through the consistency
gate; every bad corpus input stops the stage with its exact error and writes nothing."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kit.config import CorpusSection
from kit.schema import TASK_TABLE
from seeds.consistency import ConsistencyGate
from seeds.corpus import Corpus, CorpusError, Document, load_corpus
from seeds.plan import WorkItem
from seeds.ranking import Bm25Ranker
from tests.seeds_helpers import (
    check_ledger_adds_up,
    check_records,
    records,
    run_dir,
    run_json,
    seeds,
    seeds_config,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS_TARGETS = {"short_long": 6, "long_long": 2, "sts": 3}
TOPICS = (
    "volcanic eruptions release ash lava and gases from the mantle of the earth",
    "the violin is a bowed string instrument with four strings tuned in fifths",
    "photosynthesis lets plants turn sunlight water and carbon dioxide into sugar",
    "the roman aqueducts carried water across valleys on arches of stone",
    "chess openings such as the sicilian defence shape the middle game",
    "honey bees communicate the direction of flowers with a waggle dance",
    "glaciers carve u shaped valleys as they slowly move downhill under ice",
    "the printing press of gutenberg spread books across europe quickly",
)


def small_corpus(folder: Path) -> Path:
    """Eight documents on distinct subjects, one sentence each and then some."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docs.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i, topic in enumerate(TOPICS):
            text = f"{topic.capitalize()}. This passage number {i} explains {topic} in detail."
            handle.write(json.dumps({"id": f"d{i}", "text": text, "language": "en"}) + "\n")
    return path


def corpus_config(write_config, url: str, corpus: dict, **generator) -> Path:
    generation = {"targets": {}, "corpus": {"targets": CORPUS_TARGETS, **corpus},
                  "max_requests_per_target": 4.0}  # fmt: skip
    return seeds_config(write_config, url, generator=generator or None, generation=generation)


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_corpus_rows_carry_their_document_and_pass_the_gate(serve, write_config, tmp_path, mode):
    path = small_corpus(tmp_path / "corpus")
    server = serve(seed=5, faults={"off_topic": 0.25, "500": 0.05})
    config = corpus_config(write_config, server.url, {"path": str(path)}, mode=mode)
    assert seeds(config) == 0
    run = run_dir(config)
    rows = records(run)
    check_records(rows)
    check_ledger_adds_up(run)
    summary = run_json(run)
    assert summary["complete"]
    assert Counter(r["task_type"] for r in rows) == Counter(CORPUS_TARGETS)
    assert summary["corpus_grounded"] == CORPUS_TARGETS
    texts = {f"d{i}": line for i, line in enumerate(path.read_text().splitlines())}
    for row in rows:
        document = json.loads(texts[row["document_id"]])["text"]
        field = TASK_TABLE[row["task_type"]].document_field
        if field == "S1":
            assert row["example"]["S1"] in document
        else:
            assert row["example"][field] == document
        assert row["template_id"].startswith("corpus_")
    # Off-topic answers were served to grounded prompts and every one was turned away.
    off_topic = server.fake.faults_served()["off_topic"]
    assert off_topic > 0 and summary["rejected"]["not_in_top_k"] == off_topic
    assert summary["corpus"]["documents"] == len(TOPICS)
    assert summary["corpus"]["source"] == "docs.jsonl"  # no folder of this machine
    snapshot = pq.read_table(run / "corpus.parquet")
    assert snapshot["document_id"].to_pylist() == [f"d{i}" for i in range(len(TOPICS))]


def test_estimate_counts_the_corpus_lanes_and_sends_nothing(serve, write_config, tmp_path, capsys):
    server = serve()
    path = small_corpus(tmp_path / "corpus")
    config = corpus_config(write_config, server.url, {"path": str(path)})
    from kit.cli import run_stage
    from seeds.__main__ import add_arguments

    assert run_stage("seeds", "seeds.main:main", ["--config", str(config), "--estimate"],
                     add_arguments) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "corpus: 8 documents from docs.jsonl; 11 corpus-grounded rows asked for" in out
    assert "requests: 11 (11 examples and 0 brainstorms)" in out
    assert server.fake.log == []


# ---- bad corpus inputs: the exact error, and nothing written ------------------------------
def _write_bytes(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


BAD_INPUTS = {
    "empty file": ("docs.jsonl", b"", {}, "docs.jsonl: the file is empty"),
    "non-UTF-8": (
        "notes.txt", "caf\u00e9 au lait".encode("latin-1"), {},
        "notes.txt: not UTF-8 text (byte 3 is 0xe9); convert the file to UTF-8",
    ),
    "missing text column": (
        "docs.jsonl", b'{"id": "a", "body": "some words here"}\n', {},
        "docs.jsonl line 1: no 'text' field (it has body, id; generation.corpus.text_column "
        "names it)",
    ),
    "duplicate id": (
        "docs.jsonl", b'{"id": "a", "text": "first"}\n{"id": "a", "text": "second"}\n', {},
        "docs.jsonl:2: id 'a' is used again (first at docs.jsonl:1)",
    ),
    "too long": (
        "docs.jsonl", json.dumps({"id": "big", "text": "word " * 900}).encode() + b"\n",
        {"max_document_tokens": 1000},
        "docs.jsonl:1: document 'big' is about 1,500 tokens, more than "
        "generation.corpus.max_document_tokens = 1,000; split long documents into passages, or "
        "raise the limit within the generator's context",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_bad_corpus_stops_before_anything_is_written(serve, write_config, tmp_path, capsys,
                                                       case):  # fmt: skip
    name, data, extra, message = BAD_INPUTS[case]
    folder = tmp_path / "corpus"
    _write_bytes(folder, name, data)
    server = serve()
    config = corpus_config(write_config, server.url, {"path": str(folder), **extra})
    assert seeds(config) == 2
    assert message in capsys.readouterr().err
    assert not run_dir(config).exists()
    assert server.fake.log == []
    assert (folder / name).read_bytes() == data  # the user's file is untouched


def test_a_parquet_corpus_without_the_text_column_is_refused(tmp_path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["text"]}), path)
    with pytest.raises(CorpusError) as caught:
        load_corpus(CorpusSection(path=str(path), targets={"short_long": 1}))
    assert str(caught.value) == (
        "docs.parquet: no column 'text' (it has id, body; generation.corpus.text_column names it)"
    )


def test_corpus_formats_read_alike(tmp_path) -> None:
    """A folder of .txt files, a .jsonl.gz and a .parquet give the same documents."""
    texts = {"alpha": "The first document is about rivers.", "beta": "The second one: hills."}
    txt = tmp_path / "txt"
    txt.mkdir()
    for name, text in texts.items():
        (txt / f"{name}.txt").write_text(text, encoding="utf-8")
    rows = [{"id": f"{k}.txt", "title": k, "text": v, "language": "en"} for k, v in texts.items()]
    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    loaded = [
        load_corpus(CorpusSection(path=str(p), targets={"sts": 1})).documents
        for p in (txt, gz, parquet)
    ]
    assert [(d.id, d.title, d.text) for d in loaded[0]] == [
        (r["id"], r["title"], r["text"]) for r in rows
    ]
    assert loaded[0] == loaded[1] == loaded[2]
    # A dataset read with load_dataset (``hub_dataset``; a local folder of the same shape here)
    hub = tmp_path / "hub"
    hub.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), hub / "train-00000-of-00001.parquet")
    section = CorpusSection(hub_dataset=str(hub), targets={"sts": 1})
    assert load_corpus(section).documents == loaded[0]
    with pytest.raises(CorpusError) as caught:
        load_corpus(CorpusSection(hub_dataset=str(hub), text_column="body", targets={"sts": 1}))
    assert str(caught.value) == (
        f"{hub}: no column 'body' (it has id, title, text, language; "
        "generation.corpus.text_column names it)"
    )


# ---- the consistency gate's precision on the hand-labelled questions ----------------------
def test_the_gate_keeps_real_pairs_and_turns_wrong_passages_away() -> None:
    """The figures BENCHMARKS.md reports (``bench/corpus_bench.py``). The bars: a random
    wrong passage almost never passes; a near miss from the same article, which shares the
    question's names, passes less often than the real passage (precision above the 0.5 of a
    gate that cannot tell them apart), and less often still at a smaller k."""
    from bench.corpus_bench import bundled_corpus, gate_precision

    corpus = bundled_corpus()
    ranker = Bm25Ranker([d.text for d in corpus.documents])
    at_10 = gate_precision(corpus, ranker, 10, "near_misses")
    at_1 = gate_precision(corpus, ranker, 1, "near_misses")
    assert at_10["rows"] == 126
    assert gate_precision(corpus, ranker, 10, "random")["precision"] > 0.95
    assert 0.55 < at_10["precision"] < at_1["precision"]
    assert at_10["recall"] > at_1["recall"]


def test_a_query_without_words_ranks_nothing_and_is_turned_away(caplog) -> None:
    """A generator's query of punctuation alone is rejected like an off-topic one, beside
    worded queries of the same call, and bm25s is not asked to rank it (it logs a line for
    each)."""
    documents = [Document(f"d{i}", "", text, "en") for i, text in enumerate(TOPICS)]
    gate = ConsistencyGate(Corpus(documents, "test"), Bm25Ranker(TOPICS), 3, reject=True,
                           neighbours=False)  # fmt: skip
    item = WorkItem("corpus_short_long-0000000", "generate", "short_long", "", {},
                    document_id="d1")  # fmt: skip
    rows = [(item, {"user_query": text, "positive_document": TOPICS[1]})
            for text in ("?!", "the violin and its strings", "")]  # fmt: skip
    with caplog.at_level("DEBUG"):
        verdicts = gate.check(rows)
    assert [(v.reason, v.rank) for v in verdicts] == [
        ("not_in_top_k", None), (None, 0), ("not_in_top_k", None)
    ]
    assert "query is empty" not in caplog.text
    assert Bm25Ranker(TOPICS).top(["...", ""], 3) == [[], []]


def test_neighbour_negatives_are_the_best_other_document() -> None:
    documents = [Document(f"d{i}", "", text, "en") for i, text in enumerate(TOPICS)]
    corpus = Corpus(documents, "test")
    gate = ConsistencyGate(corpus, Bm25Ranker(TOPICS), 3, reject=True, neighbours=True)
    item = WorkItem("corpus_short_long-0000000", "generate", "short_long", "", {},
                    document_id="d1")  # fmt: skip
    example = {"user_query": "the violin and its strings", "positive_document": TOPICS[1],
               "hard_negative_document": ""}  # fmt: skip
    (verdict,) = gate.check([(item, example)])
    assert verdict.reason is None and verdict.rank == 0
    assert verdict.filled["hard_negative_document"] in TOPICS and (
        verdict.filled["hard_negative_document"] != TOPICS[1]
    )
    off = {"user_query": "glaciers valleys ice", "positive_document": TOPICS[1],
           "hard_negative_document": ""}  # fmt: skip
    (verdict,) = gate.check([(item, off)])
    assert verdict.reason == "not_in_top_k"


def test_the_my_documents_recipe_estimates_its_cost_offline(capsys) -> None:
    """The README's "train an embedder on my documents" config plans its batch run with no
    key and no network: every prompt carries a real document of the corpus."""
    from kit.cli import run_stage
    from seeds.__main__ import add_arguments

    config = REPO / "configs" / "my-documents.toml"
    assert run_stage("seeds", "seeds.main:main", ["--config", str(config), "--estimate"],
                     add_arguments) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert ("corpus: 6,609 documents from seeds/corpora/wikipedia-passages; 27,000 "
            "corpus-grounded rows asked for") in out  # fmt: skip
    assert "requests: 27,000 (27,000 examples and 0 brainstorms)" in out
    assert "batch files: 1 (at most 50,000 requests" in out


def test_a_budget_stop_resumes_to_the_same_corpus_rows(serve, write_config, tmp_path) -> None:
    """Stopped by its budget, then resumed: the run completes without asking a finished slot
    again, and ends with the rows an uninterrupted run of the same plan makes."""
    path = small_corpus(tmp_path / "corpus")
    server = serve(seed=2, by_request=True)
    whole = corpus_config(write_config, server.url, {"path": str(path)})
    assert seeds(whole) == 0
    expected = sorted((r["id"], r["document_id"], json.dumps(r["example"])) for r in
                      records(run_dir(whole)))  # fmt: skip

    resumed_root = tmp_path / "resumed"
    resumed_root.mkdir()

    def config_at(budget: float) -> Path:
        def write(name: str = "config.toml", **sections: dict) -> Path:
            sections["generation"] = {**sections["generation"], "budget_usd": budget}
            return write_config(f"resumed/{name}", project={
                "runs_dir": str(resumed_root / "runs"), "build_dir": str(resumed_root / "b")},
                **sections)  # fmt: skip
        return corpus_config(write, server.url, {"path": str(path)})

    stopped = config_at(0.004)
    assert seeds(stopped) == 0
    first = run_json(resumed_root / "runs" / "t")
    assert first["stopped_reason"] == "budget_usd" and not first["complete"]
    asked_before = len(server.fake.log)
    assert seeds(config_at(0.0)) == 0
    rows = records(resumed_root / "runs" / "t")
    check_records(rows)
    assert run_json(resumed_root / "runs" / "t")["complete"]
    asked = [s.item for s in server.fake.log[asked_before:]]
    assert len(asked) == len(set(asked))
    assert sorted((r["id"], r["document_id"], json.dumps(r["example"])) for r in rows) == expected


def test_the_dataset_publishes_the_corpus_and_counts_grounded_rows(serve, write_config, tmp_path):
    """seeds in corpus mode, then the dataset stage: the rows keep their document_id in the
    type configs and the unified view, the corpus config loads with load_dataset, a document
    that copies an evaluation text is left out of it, and the card says where it came from."""
    from datasets import load_dataset

    from dataset_builder.export import build
    from kit.config import load_config

    path = small_corpus(tmp_path / "corpus")
    leaked = "Our current vehicles will be in museums when everyone has their own aircraft."
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "leak", "text": leaked, "language": "en"}) + "\n")
    server = serve(seed=4)
    corpus = {"path": str(path), "license": "cc-by-4.0", "attribution": "Test authors, 2026."}
    sts17 = {"name": "STS17-en-en", "type": "sts", "path": "model_card/evaldata/sts17/en-en.tsv",
             "registry_task": "STS17", "languages": "eng-Latn"}  # fmt: skip

    def write(name: str = "config.toml", **sections: dict) -> Path:
        return write_config(name, evaluation={"local_tasks": [sts17]}, **sections)

    config_path = corpus_config(write, server.url, corpus)
    assert seeds(config_path) == 0
    config = load_config(config_path)
    out = build(config, config.layout.run_dir, tmp_path / "dataset").output_dir
    documents = load_dataset(str(out), "corpus", split="train")
    assert documents.column_names == ["document_id", "title", "text", "language"]
    assert "leak" not in documents["document_id"] and documents.num_rows == len(TOPICS)
    retrieval = load_dataset(str(out), "retrieval", split="train")
    assert all(doc_id.startswith("d") for doc_id in retrieval["document_id"])
    unified = load_dataset(str(out), "default")
    grounded = sum(len(split) for split in unified.values())
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"{grounded} of the rows (100%) were written about a real document" in card
    assert "Licence of the corpus: cc-by-4.0" in card and "Attribution: Test authors, 2026." in card
    assert "left out because they share an n-gram with an evaluation set: STS17-en-en 1" in card
    assert str(tmp_path) not in card  # no folder of the build machine


def test_neighbour_negatives_are_judged_and_the_losers_dropped(serve, write_config, tmp_path):
    """negatives = "neighbour": the generator writes no negative; the row gets the best-ranked
    other document, and the judge drops the rows whose neighbour it prefers."""
    from seeds.judge import positive_first

    path = small_corpus(tmp_path / "corpus")
    texts = {json.loads(line)["text"] for line in path.read_text().splitlines()}
    server = serve(seed=6)
    generation = {"targets": {}, "max_requests_per_target": 6.0,
                  "corpus": {"path": str(path), "negatives": "neighbour",
                             "targets": {"short_long": 5}}}  # fmt: skip
    config = seeds_config(write_config, server.url, generation=generation,
                          quality={"judge": True, "judge_action": "drop"})  # fmt: skip
    assert seeds(config) == 0
    run = run_dir(config)
    rows, summary = records(run), run_json(run)
    check_records(rows)
    assert summary["complete"] and len(rows) == 5
    for row in rows:
        example = row["example"]
        assert example["hard_negative_document"] in texts
        assert example["hard_negative_document"] != example["positive_document"]
        assert row["quality"]["judge"] == "positive"
    judged = [s.item.removeprefix("judge-") for s in server.fake.log if s.kind == "judge"]
    lost = {i for i in judged if not positive_first(i, 3)}
    assert summary["rejected"].get("judge_rejected", 0) == len(lost) > 0
    generated = [json.loads(s.content) for s in server.fake.log if s.kind == "generate"
                 and s.content]  # fmt: skip
    assert generated and all("hard_negative_document" not in answer for answer in generated)


def test_neighbour_negatives_need_the_judge_dropping_rows(write_config, tmp_path) -> None:
    from kit.config import ConfigError, load_config

    path = small_corpus(tmp_path / "corpus")
    config = write_config(generation={"corpus": {"path": str(path), "negatives": "neighbour",
                                                 "targets": {"short_long": 2}}},
                          quality={"judge": True, "judge_action": "swap"})  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == (
        f"{config}: generation.corpus.negatives = 'neighbour' takes the judge's word that the "
        "neighbour does not answer the query: set quality.judge = true and "
        "quality.judge_action = 'drop'"
    )


def test_a_configured_embedder_ranks_the_corpus_like_its_own_cosines(tiny_st_model_dir) -> None:
    """``ranker`` naming a sentence-transformers model: the order is the model's own query
    against document cosine, best first, with every document ranked."""
    from sentence_transformers import SentenceTransformer

    from seeds.ranking import EmbedderRanker, make_ranker

    ranker = make_ranker(str(tiny_st_model_dir), TOPICS)
    assert isinstance(ranker, EmbedderRanker)
    queries = ["volcanic ash and lava", "bees dance"]
    found = ranker.top(queries, 3)
    model = SentenceTransformer(str(tiny_st_model_dir))
    scores = model.similarity(model.encode_query(queries), model.encode_document(list(TOPICS)))
    expected = scores.argsort(dim=1, descending=True)[:, :3].tolist()
    assert found == expected
    assert len(ranker.top(queries, 100)[0]) == len(TOPICS)
