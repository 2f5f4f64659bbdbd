"""Benchmark: the staged Space, in two sections.

1. Query latency on a 1,000-document corpus through the app's own search path, with corpus
   embeddings cached by content hash, against the peer that re-embeds the corpus for every
   query (the same code with a cache that keeps nothing).
2. 32 gradio_client users at once on loopback against the staged app run as the Space runs
   it (``python app.py``, its own process), each with its own corpus and a mixed stream of
   searches and bad inputs (``tests.space_helpers.MixedLoad``, the load the slow test uses),
   against two peers in the same run: the app with a concurrency limit of 1, and the same
   requests sent in turn by one client.

Models: ``tiny`` (default; the random-weight test model, so the run stays within ~5 minutes
on 2 shared cores and measures the app's and gradio's overhead and the cache), ``gemma``
(bundled Gemma 3 270M wrapped like the release: EOS appended, last-token pooling, Normalize)
or ``release`` (the trained model in ``its layout's ``model_dir````).
``python -m bench.space_bench --config configs/default.toml --model gemma`` prints the section.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

from kit.bundled import resolve_model
from kit.config import load_config
from space.staging import stage_space
from tests.space_helpers import (
    LOAD_CORPUS_SIZE,
    LOAD_LIMITS,
    MixedLoad,
    imported_space,
    loopback_client,
    percentile,
    rss_samples,
    serve_staged_app,
)

CORPUS_SIZE = 1000
CACHED_QUERIES = 30
REEMBED_QUERIES = 5
MAX_SEQ_LENGTH = 128
LOAD_USERS = 32
LOAD_REQUESTS = 8  # per user
LOAD_SEND_S = 90  # no request starts later than this; bounds a slow model's run
LOAD_CACHE_CORPORA = 8
WORDS = (
    "river mountain city ocean history music science weather forest village harbour bridge "
    "library market festival railway island desert glacier valley castle museum garden "
    "Fluss Berg Stadt Geschichte Wetter Brücke Bahnhof rivière montagne ville histoire "
    "musique río montaña ciudad historia música река гора город история"
).split()


def synthetic_corpus(size: int, seed: int = 0) -> list[str]:
    """Distinct documents of 20-40 words, like short retrieval passages."""
    rng = random.Random(seed)
    return [
        f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40)))
        for i in range(size)
    ]


def bench_model_dir(config_path: str, which: str, work_dir: Path) -> tuple[Path, str]:
    """A sentence-transformers folder, since the served app loads its model by path."""
    if which == "release":
        model_dir = load_config(config_path).layout.model_dir
        if not (model_dir / "config_sentence_transformers.json").is_file():
            raise FileNotFoundError(f"no release model in {model_dir}: run `make train` first")
        return model_dir, f"the release model at `{model_dir}`"
    if which == "tiny":
        from tests.tiny_models import build_tiny_decoder, build_tiny_sentence_transformer

        decoder = build_tiny_decoder("gemma3", work_dir / "decoder")
        model_dir = build_tiny_sentence_transformer(decoder, work_dir / "model", MAX_SEQ_LENGTH)
        return model_dir, "tiny random-weight Gemma3 (hidden size 32)"
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(
        resolve_model("bundled:gemma-3-270m"),
        max_seq_length=MAX_SEQ_LENGTH,
        processor_kwargs={"add_eos_token": True, "add_bos_token": True},
    )
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": "Instruct: Retrieve passages about the topic\nQuery: ", "document": ""},
        device="cpu",
    )
    model.save(str(work_dir / "gemma"))
    return (
        work_dir / "gemma",
        "bundled Gemma 3 270M (base, not fine-tuned), wrapped like the release",
    )


def query_latencies_ms(retriever: Any, corpus: str, queries: list[str]) -> list[float]:
    """Latency of the staged ``search.Retriever.search`` for each query."""
    latencies = []
    for query in queries:
        started = time.perf_counter()
        retriever.search(query, "query", "", 10, "paste", corpus, None)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def run(
    config_path: str,
    corpus_size: int = CORPUS_SIZE,
    cached_queries: int = CACHED_QUERIES,
    reembed_queries: int = REEMBED_QUERIES,
    model: str = "tiny",
) -> str:
    with tempfile.TemporaryDirectory(prefix="space-bench-") as work_dir:
        work = Path(work_dir)
        model_dir, model_name = bench_model_dir(config_path, model, work)
        space_dir = work / "space"
        stage_space(load_config(config_path), space_dir)
        with imported_space(space_dir) as space:
            # The app's entry point gives each search its share of the cores; so does this.
            threads = torch.get_num_threads()
            space.search.share_cores(space.settings.Settings().concurrency_limit)
            try:
                latency = latency_section(
                    space, model_dir, model_name, corpus_size, cached_queries, reembed_queries
                )
            finally:
                torch.set_num_threads(threads)
        load = load_section(space_dir, model_dir, model_name, work)
        if model == "tiny":
            load += (
                "\nWith the tiny model a corpus embeds in milliseconds, so these figures are "
                "the cost of gradio and the app per request, not of embedding; "
                "`--model gemma` makes embedding the cost.\n"
            )
        return latency + "\n" + load


def latency_section(
    space: SimpleNamespace,
    model_dir: Path,
    model_name: str,
    corpus_size: int,
    cached_queries: int,
    reembed_queries: int,
) -> str:
    model = SentenceTransformer(str(model_dir), device="cpu")
    documents = synthetic_corpus(corpus_size)
    corpus = "\n".join(documents)
    settings = space.settings.Settings(max_documents=corpus_size, max_total_chars=len(corpus) + 1)
    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(cached_queries)]

    cached = space.search.Retriever(model, settings)
    cold_ms = query_latencies_ms(cached, corpus, ["warm the cache"])[0]
    cached_ms = query_latencies_ms(cached, corpus, queries)
    keeps_nothing = space.search.CorpusEmbeddings(model, max_entries=0, max_bytes=0)
    reembedding = space.search.Retriever(model, settings, embeddings=keeps_nothing)
    reembed_ms = query_latencies_ms(reembedding, corpus, queries[:reembed_queries])

    rows = [
        ("cached corpus embeddings (the app)", cached_ms),
        ("re-embed the corpus per query (peer)", reembed_ms),
    ]
    table = "\n".join(
        f"| {name} | {len(ms)} | {percentile(ms, 0.5):,.1f} | {percentile(ms, 0.95):,.1f} |"
        for name, ms in rows
    )
    ratio = statistics.median(reembed_ms) / statistics.median(cached_ms)
    return (
        "## Space: query latency\n\n"
        f"{corpus_size:,} synthetic documents (20-40 words), top 10, model: {model_name}, "
        f"max length {model.max_seq_length}, CPU, {torch.get_num_threads()} torch thread(s) as "
        "the app's entry point sets them. Latency of the app's whole search call "
        "(limits, content hash, query embedding, similarity, top-k).\n\n"
        "| path | queries | p50 ms | p95 ms |\n| --- | ---: | ---: | ---: |\n"
        f"{table}\n\n"
        f"The first query on a new corpus embeds it once: {cold_ms:,.0f} ms. "
        f"Cached queries are **{ratio:,.0f}x** faster at the median than re-embedding."
        f" p95 is nearest-rank (with {len(reembed_ms)} re-embedding queries, the slowest).\n"
    )


@dataclass(frozen=True)
class LoadRun:
    name: str
    answers: int
    wrong: int
    wall_s: float
    p50_ms: float
    p95_ms: float
    rss_growth_mb: float

    @property
    def per_s(self) -> float:
        return self.answers / self.wall_s


def load_run(
    name: str, space_dir: Path, env: dict[str, str], log_path: Path, sequential: bool
) -> LoadRun:
    """One contender on a fresh server, after one warm-up search."""
    load = MixedLoad(log_path.with_suffix(""), users=LOAD_USERS, requests_per_user=LOAD_REQUESTS)
    with serve_staged_app(space_dir, env, log_path) as served:
        warm_up = loopback_client(served.url)
        load.send(warm_up, load.plans[0][0])
        warm_up.close()
        with rss_samples(served) as rss:
            send = load.run_sequential if sequential else load.run
            answers, wall_s = send(served.url, LOAD_SEND_S)
    latencies = [answer.latency_ms for answer in answers]
    return LoadRun(
        name=name,
        answers=len(answers),
        wrong=sum(1 for answer in answers if answer.problem),
        wall_s=wall_s,
        p50_ms=percentile(latencies, 0.5),
        p95_ms=percentile(latencies, 0.95),
        rss_growth_mb=(max(rss) - rss[0]) / 2**20,
    )


def load_section(space_dir: Path, model_dir: Path, model_name: str, work: Path) -> str:
    env = {
        "MODEL_ID": str(model_dir),
        "DATASET_ID": "",
        "CACHE_CORPORA": str(LOAD_CACHE_CORPORA),
        **{name.upper(): str(value) for name, value in LOAD_LIMITS.items()},
    }
    contenders = (
        ("32 users at once, concurrency limit 2 (the app)", env, False),
        ("32 users at once, concurrency limit 1 (peer)", {**env, "CONCURRENCY_LIMIT": "1"}, False),
        ("the same requests from one client, in turn (peer)", env, True),
    )
    app, limit_1, one_client = (
        load_run(name, space_dir, contender_env, work / f"load-{i}.log", sequential)
        for i, (name, contender_env, sequential) in enumerate(contenders)
    )
    table = "\n".join(
        f"| {r.name} | {r.answers} | {r.wrong} | {r.wall_s:,.1f} | {r.per_s:,.1f} | "
        f"{r.p50_ms:,.0f} | {r.p95_ms:,.0f} | {r.rss_growth_mb:,.0f} |"
        for r in (app, limit_1, one_client)
    )
    return (
        "## Space: 32 users at once\n\n"
        f"{LOAD_USERS} `gradio_client` users on loopback against the staged app run as the "
        f"Space runs it (`python app.py`, its own process), model: {model_name}. Each user has "
        f"its own {LOAD_CORPUS_SIZE}-document corpus and sends {LOAD_REQUESTS} requests: "
        "searches on pasted text or an uploaded .txt/.jsonl/.csv, and bad inputs (empty query, "
        "too many documents, a file that is not UTF-8, a broken .jsonl). The cache holds "
        f"{LOAD_CACHE_CORPORA} corpora, so most searches embed their corpus again. Latency is "
        "what the client sees (upload, queue, search, answer); each contender runs on a fresh "
        "server after one warm-up search, on the same machine as its clients; *wrong* counts "
        "answers that are not the right one for their own input.\n\n"
        "| contender | answers | wrong | wall s | answers/s | p50 ms | p95 ms | RSS growth MB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"{table}\n\n"
        f"Concurrency limit 1 against the app: p50 **{limit_1.p50_ms / app.p50_ms:.2f}x**, "
        f"p95 **{limit_1.p95_ms / app.p95_ms:.2f}x**, throughput "
        f"**{limit_1.per_s / app.per_s:.2f}x**. One client in turn against the app: "
        f"throughput **{one_client.per_s / app.per_s:.2f}x**; its p50 "
        f"({one_client.p50_ms / app.p50_ms:.2f}x the app's) is the cost of one request with "
        "nobody queued ahead of it.\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.space_bench")
    parser.add_argument("--config", default="configs/default.toml")
    parser.add_argument("--corpus-size", type=int, default=CORPUS_SIZE)
    parser.add_argument("--cached-queries", type=int, default=CACHED_QUERIES)
    parser.add_argument("--reembed-queries", type=int, default=REEMBED_QUERIES)
    parser.add_argument("--model", choices=("tiny", "gemma", "release"), default="tiny")
    args = parser.parse_args()
    print(run(args.config, args.corpus_size, args.cached_queries, args.reembed_queries, args.model))
