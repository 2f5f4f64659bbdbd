"""What would the corpus questions need to beat all-MiniLM-L6-v2? ``make bench-domain`` (not
part of ``make bench``, about 40 minutes).

The default release trains on about 15 corpus-grounded rows among about 1,000 SNLI triplets
and stays below the peer on the hand-written corpus questions. This bench asks whether domain
rows in quantity close the gap, using queries no generator wrote: each of a seeded sample of
bundled passages gets its article's title as the query, with the best BM25 neighbour of
another article as the hard negative (none of the corpus questions' evaluation passages is
used). They train beside the default release's grounded rows and a capped SNLI slice, with
the default settings, and the model is evaluated like the release's, against the peer in the
same run. The training time shows what such rows cost on 2 cores.
"""

from __future__ import annotations

import gzip
import json
import random
import time
import tomllib
from pathlib import Path

from bench.corpus_bench import TASK_NAME, build_task_folder, bundled_corpus
from bench.quality_bench import (
    VARIANTS,
    Variant,
    evaluate_peer,
    train_and_evaluate,
    variant_config,
)

WORK = Path("build/bench-domain")
SAMPLED_PASSAGES = 256
NEIGHBOURS = 20
SNLI_ROWS = 512
TITLES_TASK = "Given a search query, retrieve Wikipedia passages about it"
DEFAULT = next(variant for variant in VARIANTS if variant.default_release)


def title_triplets(folder: Path) -> int:
    """Write (title, passage, neighbour of another article) rows under ``folder``; return how
    many. Passages the corpus questions are evaluated on are never used."""
    from seeds.ranking import Bm25Ranker

    passages = bundled_corpus().documents
    evaluation_corpus = build_task_folder() / "corpus.jsonl"
    held_out = {json.loads(line)["_id"] for line in evaluation_corpus.open(encoding="utf-8")}
    pool = [i for i, p in enumerate(passages) if p.id not in held_out and p.title]
    chosen = random.Random(0).sample(pool, SAMPLED_PASSAGES)
    ranker = Bm25Ranker([p.text for p in passages])
    found = ranker.top([passages[i].title for i in chosen], NEIGHBOURS)
    rows = []
    for i, ranked in zip(chosen, found, strict=True):
        negative = next((j for j in ranked if passages[j].title != passages[i].title
                         and passages[j].id not in held_out), None)  # fmt: skip
        if negative is not None:
            rows.append({"anchor": passages[i].title, "positive": passages[i].text,
                         "negative": passages[negative].text})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return len(rows)


def run(config_path: str) -> str:
    titles = (WORK / "titles").resolve()
    title_rows = title_triplets(titles)
    training = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))["training"]
    snli, *others = training["extra_datasets"]
    extra = [{**snli, "max_rows": SNLI_ROWS}, *others,
             {"path": str(titles), "task_definition": TITLES_TASK, "query_column": "anchor"}]
    variant = Variant(
        f"grounded + {SNLI_ROWS} SNLI + {title_rows} title queries", synthetic=True,
        public=True, rows=DEFAULT.rows, settings=(("extra_datasets", extra),),
    )  # fmt: skip
    row = train_and_evaluate(config_path, variant, 0, WORK)
    started = time.monotonic()
    peer = evaluate_peer(variant_config(config_path, variant, 1, WORK))
    peer_s = time.monotonic() - started
    record = row["record"]
    lines = [
        "## Domain rows: what the corpus questions need",
        "",
        f"`make bench-domain`: {SAMPLED_PASSAGES} seeded passages of the bundled corpus, none "
        "of the corpus questions' evaluation passages, each with its article's title as the "
        "query and the best BM25 neighbour of another article as the hard negative (no "
        f"generator wrote them; {title_rows} had such a neighbour in the top {NEIGHBOURS}), "
        f"trained beside the default release's grounded rows and {SNLI_ROWS} rows of the SNLI "
        "slice with the default settings, evaluated by the model card stage on the default "
        f"tasks and the corpus questions ({TASK_NAME}; main score x100). Peer: "
        "all-MiniLM-L6-v2, without instruction.",
        "",
        f"| task | metric | {variant.name} | peer (all-MiniLM-L6-v2) |",
        "|---|---|---:|---:|",
    ]
    for task, metric in row["metrics"].items():
        lines.append(
            f"| {task} | {metric} | {row['scores'][task] * 100:.2f} | {peer[task] * 100:.2f} |"
        )
    lines += [
        "",
        "| training rows | steps | validation acc@1 after | train s | s per step | "
        "evaluate s | peer evaluate s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {record.train_rows} | {record.steps} | {record.validation_accuracy_after} | "
        f"{record.train_runtime_s:.0f} | {record.train_runtime_s / record.steps:.1f} | "
        f"{row['eval_s']:.0f} | {peer_s:.0f} |",
    ]
    return "\n".join(lines)
