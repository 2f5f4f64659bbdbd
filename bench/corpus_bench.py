"""Corpus-grounded synthesis: does the gate keep the right rows, and does the default release
find real users' questions over the bundled corpus? ``make bench`` (``--only corpus``).

1. The consistency gate on hand-labelled rows (``bench/corpus_questions``): each of the 60
   hand-written questions with its relevant passage (should be kept) and with a passage that
   does not answer it: the hand-picked near miss of the same article, or a random passage of
   another article (should be rejected). Precision and recall at several k.
2. Retrieval of those questions (nDCG@10 through the model card's own mteb evaluation) by
   the default release's model (``build/model``, when ``make release`` has made it), its
   untrained base wrapped the same way, and the peer all-MiniLM-L6-v2. The documents: every
   labelled passage plus 1,000 seeded other passages of the corpus, so a 270M model on 2
   cores encodes it in about a minute.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kit.config import CorpusSection, load_config

if TYPE_CHECKING:
    from seeds.corpus import Corpus
    from seeds.ranking import Ranker

PEER = "bundled:all-minilm-l6-v2"
PEER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "bench" / "corpus_questions"
CORPUS = REPO / "seeds" / "corpora" / "wikipedia-passages"
WORK = Path("build/bench-corpus")
DISTRACTORS = 1000
TASK_NAME = "CorpusQuestions"
INSTRUCTION = "Given a question, retrieve Wikipedia passages that answer the question"
GATE_KS = (1, 3, 5, 10, 20)


def _tsv(name: str) -> list[tuple[str, str]]:
    lines = (QUESTIONS / name).read_text(encoding="utf-8").splitlines()[1:]
    return [(line.split("\t")[0], line.split("\t")[1]) for line in lines]


def _queries() -> dict[str, str]:
    rows = (QUESTIONS / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["_id"]: row["text"] for row in map(json.loads, rows)}


def labelled_rows(corpus: Corpus, negatives: str) -> list[tuple[str, str, bool]]:
    """(question id, passage id, relevant) rows: each question with its relevant passages,
    and with a passage that does not answer it: its hand-picked near miss of the same article
    (``near_misses``), or a seeded random passage of another article (``random``)."""
    relevant = _tsv("qrels/test.tsv")
    rows = [(query, doc, True) for query, doc in relevant]
    if negatives == "random":
        rng = random.Random(0)
        titles = {d.id: d.title for d in corpus.documents}
        for query, doc in relevant:
            while (other := rng.choice(corpus.documents)).title == titles[doc]:
                pass
            rows.append((query, other.id, False))
    else:
        rows += [(query, doc, False) for query, doc in _tsv("near_misses.tsv")]
    return rows


def gate_precision(corpus: Corpus, ranker: Ranker, top_k: int, negatives: str) -> dict:
    """Precision (kept rows that are relevant) and recall (relevant rows kept) of the
    consistency gate at ``top_k`` over ``labelled_rows``."""
    from seeds.consistency import ConsistencyGate
    from seeds.plan import WorkItem

    queries, labelled = _queries(), labelled_rows(corpus, negatives)
    gate = ConsistencyGate(corpus, ranker, top_k, reject=True, neighbours=False)
    items = [
        (WorkItem(f"corpus_short_long-{i:07d}", "generate", "short_long", "", {},
                  document_id=doc), {"user_query": queries[query]})
        for i, (query, doc, _) in enumerate(labelled)
    ]  # fmt: skip
    kept = [verdict.reason is None for verdict in gate.check(items)]
    hits = sum(k and label for k, (_, _, label) in zip(kept, labelled, strict=True))
    relevant = sum(label for _, _, label in labelled)
    return {"precision": hits / max(sum(kept), 1), "recall": hits / relevant,
            "rows": len(labelled)}  # fmt: skip


def bundled_corpus() -> Corpus:
    from seeds.corpus import load_corpus

    return load_corpus(CorpusSection(path=str(CORPUS), targets={"short_long": 1}))


def gate_figures() -> list[str]:
    from seeds.ranking import Bm25Ranker

    corpus = bundled_corpus()
    ranker = Bm25Ranker([d.text for d in corpus.documents])
    lines = [
        "| k | precision (near misses) | recall | precision (random passages) | recall |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k in GATE_KS:
        cells = []
        for negatives in ("near_misses", "random"):
            figures = gate_precision(corpus, ranker, k, negatives)
            cells += [f"{figures['precision']:.3f}", f"{figures['recall']:.3f}"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def build_task_folder() -> Path:
    """A BEIR folder: the questions, their qrels, and the labelled passages plus seeded others."""
    folder = WORK / "corpus-questions"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with gzip.open(CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as handle:
        passages = [json.loads(line) for line in handle]
    labelled = {d for _, d in _tsv("qrels/test.tsv") + _tsv("near_misses.tsv")}
    others = [p for p in passages if p["id"] not in labelled]
    chosen = labelled | {p["id"] for p in random.Random(0).sample(others, DISTRACTORS)}
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for p in passages:
            if p["id"] in chosen:
                row = {"_id": p["id"], "title": p["title"], "text": p["text"]}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = (QUESTIONS / "queries.jsonl").read_text(encoding="utf-8")
    (folder / "queries.jsonl").write_text(rows, encoding="utf-8")
    qrels = (QUESTIONS / "qrels" / "test.tsv").read_text(encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


def retrieval_figures(config_path: str) -> list[str]:
    from sentence_transformers import SentenceTransformer

    from kit.bundled import resolve_model
    from kit.evalsets import LocalTask
    from model_card.encoders import Embedder, build_base, load_trained
    from model_card.evaluation import evaluate_model
    from model_card.tasks import local_eval_task

    config = load_config(config_path)
    folder = build_task_folder()
    task = local_eval_task(LocalTask(name=TASK_NAME, type="retrieval", path=str(folder.resolve()),
                                     instruction=INSTRUCTION, languages="eng-Latn, kor-Hang, "
                                     "vie-Latn"))  # fmt: skip
    settings = config.evaluation
    model_dir = config.layout.model_dir
    embedders = []
    if (model_dir / "modules.json").is_file():
        trained = load_trained(model_dir, config.hub.repo_id("model"), settings)
        embedders.append(("default release", trained, True))
        max_length = trained.model.max_seq_length
    else:
        max_length = config.training.max_length
    embedders.append(("base (untrained)", build_base(config.training.base_model, max_length,
                                                     settings), True))  # fmt: skip
    peer = SentenceTransformer(str(resolve_model(PEER)), device="cpu")
    embedders.append((f"peer ({PEER_NAME})", Embedder("peer", peer, PEER_NAME, "bundled",
                                                       PEER_NAME), False))  # fmt: skip
    lines = ["| model | nDCG@10 | evaluate s |", "|---|---:|---:|"]
    for name, embedder, instructed in embedders:
        started = time.monotonic()
        results = evaluate_model(embedder, [task], WORK / "eval", settings.batch_size,
                                 fresh=True, instructed=instructed)  # fmt: skip
        score = results[TASK_NAME].main_score
        lines.append(f"| {name} | {score * 100:.2f} | {time.monotonic() - started:.0f} |")
    if not (model_dir / "modules.json").is_file():
        lines.append("")
        lines.append(f"No trained model at {model_dir.name}/: run `make release` first.")
    return lines


def run(config_path: str) -> str:
    lines = [
        "## Corpus-grounded synthesis: the gate and the hand-written questions",
        "",
        "Consistency gate (BM25, bm25s, over all 6,609 bundled passages) on labelled rows: the "
        "66 (question, relevant passage) pairs of `bench/corpus_questions`, against the 60 "
        "hand-picked near misses (same article, shares the question's names; 126 rows) or 66 "
        "random passages of other articles (132 rows). Precision: kept rows that are relevant; "
        "recall: relevant rows kept.",
        "",
        *gate_figures(),
        "",
        f"Retrieval of the 60 hand-written questions (44 en, 8 ko, 8 vi) among "
        f"{DISTRACTORS:,} seeded passages plus every labelled one, through the model card's "
        "mteb evaluation (query instruction: "
        f"\"{INSTRUCTION}\"; the peer takes none).",
        "",
        *retrieval_figures(config_path),
    ]
    return "\n".join(lines)
