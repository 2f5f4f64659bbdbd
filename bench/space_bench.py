"""Benchmark: Space query latency on a 1,000-document corpus, through the app's own search
path, with corpus embeddings cached by content hash against the peer that re-embeds the
corpus for every query (the same code with a cache that keeps nothing).

Models: ``tiny`` (default; the random-weight test model, so the run stays within ~3 minutes on
2 shared cores and measures the app's overhead and the cache), ``gemma`` (bundled Gemma 3 270M
wrapped like the release: EOS appended, last-token pooling, Normalize) or ``release`` (the
trained model in ``layout["model_dir"]``).
``python -m bench.space_bench --config configs/default.toml --model gemma`` prints the section.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sentence_transformers import SentenceTransformer

from kit.bundled import resolve_model
from kit.paths import layout
from space import app

CORPUS_SIZE = 1000
CACHED_QUERIES = 30
REEMBED_QUERIES = 5
MAX_SEQ_LENGTH = 128
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


def bench_model(config_path: str, which: str, work_dir: Path) -> tuple[SentenceTransformer, str]:
    if which == "release":
        model_dir = Path(layout(config_path)["model_dir"])
        if not (model_dir / "config_sentence_transformers.json").is_file():
            raise FileNotFoundError(f"no release model in {model_dir}: run `make train` first")
        return SentenceTransformer(str(model_dir)), f"the release model at `{model_dir}`"
    if which == "tiny":
        from tests.tiny_models import build_tiny_decoder, build_tiny_sentence_transformer

        decoder = build_tiny_decoder("gemma3", work_dir / "decoder")
        model_dir = build_tiny_sentence_transformer(decoder, work_dir / "model", MAX_SEQ_LENGTH)
        return SentenceTransformer(str(model_dir)), "tiny random-weight Gemma3 (hidden size 32)"
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
    return model, "bundled Gemma 3 270M (base, not fine-tuned), wrapped like the release"


def query_latencies_ms(retriever: app.Retriever, corpus: str, queries: list[str]) -> list[float]:
    latencies = []
    for query in queries:
        started = time.perf_counter()
        retriever.search(query, "query", "", 10, app.SOURCE_PASTE, corpus, None)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p95 is the slowest, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def run(
    config_path: str,
    corpus_size: int = CORPUS_SIZE,
    cached_queries: int = CACHED_QUERIES,
    reembed_queries: int = REEMBED_QUERIES,
    model: str = "tiny",
) -> str:
    with tempfile.TemporaryDirectory(prefix="space-bench-") as work_dir:
        return _run(
            config_path, corpus_size, cached_queries, reembed_queries, model, Path(work_dir)
        )


def _run(
    config_path: str,
    corpus_size: int,
    cached_queries: int,
    reembed_queries: int,
    which: str,
    work_dir: Path,
) -> str:
    model, model_name = bench_model(config_path, which, work_dir)
    documents = synthetic_corpus(corpus_size)
    corpus = "\n".join(documents)
    settings = app.Settings(max_documents=corpus_size, max_total_chars=len(corpus) + 1)
    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(cached_queries)]

    cached = app.Retriever(model, settings)
    cold_ms = query_latencies_ms(cached, corpus, ["warm the cache"])[0]
    cached_ms = query_latencies_ms(cached, corpus, queries)
    reembedding = app.Retriever(model, settings)
    reembedding.embeddings = app.CorpusEmbeddings(model, max_entries=0)
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
        f"max length {model.max_seq_length}, CPU. Latency of the app's whole search call "
        "(limits, content hash, query embedding, similarity, top-k).\n\n"
        "| path | queries | p50 ms | p95 ms |\n| --- | ---: | ---: | ---: |\n"
        f"{table}\n\n"
        f"The first query on a new corpus embeds it once: {cold_ms:,.0f} ms. "
        f"Cached queries are **{ratio:,.0f}x** faster at the median than re-embedding."
        f" p95 is nearest-rank (with {len(reembed_ms)} re-embedding queries, the slowest).\n"
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
