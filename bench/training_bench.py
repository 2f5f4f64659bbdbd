"""Training benchmark: GradCache memory vs batch size, and length-bucketed throughput.

Peer: stock sentence-transformers ``CachedMultipleNegativesRankingLoss`` on the same model,
data and mini-batch size, in the same process, the contenders taking turns round by round.
The length mix is the one a seeds run asks its generator for (the short-long template's
query lengths and document word counts, drawn the way the request plan draws them), since
the bundled tiny generator writes far shorter texts than it is asked for. Throughput runs on
a Gemma-style random-weight decoder wide enough that its time goes into per-token work, with
a base tokenizer that pads on the left as Gemma's does; the memory sweep uses the tiny one.
``SYNTHEMBED_BENCH_FULL=1`` sweeps batch sizes up to 2048.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import full_run

MINI_BATCH = 16
MAX_LENGTH = 512
DEFAULT_BATCHES = (32, 128, 512, 1024)
FULL_BATCHES = (32, 64, 128, 256, 512, 1024, 2048)
THROUGHPUT_BATCH = 128
THROUGHPUT_ROUNDS = 3
# A 1000-entry vocabulary gives about one token per word on the fixture's word list, so the
# requested word counts are close to token counts (real tokenizers give a little more).
VOCAB_SIZE = 1000
MEMORY_MODEL = {"hidden_size": 32, "num_layers": 2}
SPEED_MODEL = {"hidden_size": 128, "num_layers": 4}
TASK = "Given a question about a place, retrieve passages that describe it"
QUERY_WORDS = {"less than 5 words": (1, 4), "5 to 15 words": (5, 15), "at least 10 words": (10, 20)}
DOC_SPREAD = 0.2
TORCH_THREADS = 2
SCALE = 50.0
OURS = "ours (bucketed GradCache)"
OURS_UNBUCKETED = "ours, bucketing off"
STOCK_CACHED = "CachedMultipleNegativesRankingLoss"
NO_CACHE = "MultipleNegativesRankingLoss"
NO_CACHE_MAX_BATCH = 512


class PeakRss:
    """Sample this process's resident memory every few ms; torch CPU memory is not traced."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def __enter__(self) -> PeakRss:
        self.start = self._rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def _texts(rows: int) -> tuple[list[str], list[str], str]:
    """Query and positive texts with the lengths a seeds run requests for short-long rows."""
    from seeds.templates import load_templates
    from tests.tiny_models import WORDS

    placeholders = load_templates()["short_long"].placeholders
    rng = random.Random(0)

    def words(count: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(count))

    queries, docs = [], []
    for _ in range(rows):
        query_words = rng.randint(*QUERY_WORDS[rng.choice(placeholders["query_length"])])
        doc_words = int(rng.choice(placeholders["num_words"]))
        spread = rng.uniform(1 - DOC_SPREAD, 1 + DOC_SPREAD)
        queries.append(f"Instruct: {TASK}\nQuery: {words(query_words)}")
        docs.append(words(round(doc_words * spread)))
    source = (
        "the short-long template's requested lengths (query_length "
        f"{', '.join(placeholders['query_length'])}; documents of "
        f"{', '.join(placeholders['num_words'])} words, +/-{DOC_SPREAD:.0%}), "
        "queries with their instruction"
    )
    return queries, docs, source


def _decoder(workdir: Path, size: dict[str, int]) -> Path:
    from tests.tiny_models import build_tiny_decoder

    return build_tiny_decoder("gemma3", workdir / "decoder", vocab_size=VOCAB_SIZE, **size)


def _model(decoder: Path) -> Any:
    from training.model import add_lora, build_embedder

    model = build_embedder(str(decoder), MAX_LENGTH, {"query": "", "document": ""})
    add_lora(model, 16, 32, 0.0)
    model[0].model.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False}
    )
    model.train()
    return model


class PositionCounter:
    """Token positions the decoder runs (real and padding), counted at its embedding layer."""

    def __init__(self, model: Any) -> None:
        self.count = 0
        self._layer = model[0].auto_model.get_input_embeddings()

    def _add(self, _module: Any, args: tuple[Any, ...], _output: Any) -> None:
        self.count += args[0].numel()

    def __enter__(self) -> PositionCounter:
        self._handle = self._layer.register_forward_hook(self._add)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def _step(model: Any, loss: Any, queries: list[str], docs: list[str]) -> tuple[float, int, int]:
    """One optimizer-free training step: seconds, real tokens, positions the decoder ran."""
    features = [model.preprocess(queries), model.preprocess(docs)]
    tokens = int(sum(f["attention_mask"].sum() for f in features))
    with PositionCounter(model) as positions:
        started = time.perf_counter()
        loss(features, None).backward()
        seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return seconds, tokens, positions.count


def _loss(kind: str, model: Any) -> Any:
    """One contender on ``model``, with the benchmark's scale and mini-batch."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from training.loss import BucketedCachedInfoNCELoss

    if kind == STOCK_CACHED:
        return CachedMultipleNegativesRankingLoss(model, scale=SCALE, mini_batch_size=MINI_BATCH)
    if kind == NO_CACHE:
        return MultipleNegativesRankingLoss(model, scale=SCALE)
    return BucketedCachedInfoNCELoss(
        model, scale=SCALE, mini_batch_size=MINI_BATCH, length_bucketing=kind == OURS
    )


def _measure_step(
    decoder: Path, loss_name: str, queries: list[str], docs: list[str]
) -> tuple[float, float]:
    """Peak RSS growth (MB) and seconds of one step, in a fresh process (see _memory_section)."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    model = _model(decoder)
    loss = _loss(loss_name, model)
    _step(model, loss, queries[:MINI_BATCH], docs[:MINI_BATCH])
    with PeakRss() as rss:
        seconds, _, _ = _step(model, loss, queries, docs)
    return rss.growth_mb, seconds


def _memory_section(
    workdir: Path, queries: list[str], docs: list[str], batches: tuple[int, ...]
) -> list[str]:
    """Each (loss, batch) runs in its own process: in one process the allocator keeps what an
    earlier, larger step freed, and later steps would show no growth at all."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    decoder = _decoder(workdir / "memory", MEMORY_MODEL)
    context = multiprocessing.get_context("spawn")
    cells = [
        (name, batch)
        for batch in batches
        for name in (OURS, STOCK_CACHED, NO_CACHE)
        if name != NO_CACHE or batch <= NO_CACHE_MAX_BATCH
    ]
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {
            (name, batch): pool.submit(_measure_step, decoder, name, queries[:batch], docs[:batch])
            for name, batch in cells
        }
        results = {key: future.result() for key, future in futures.items()}

    def cell(name: str, batch: int) -> str:
        if (name, batch) not in results:
            return "not run | not run"
        growth, seconds = results[name, batch]
        return f"{growth:.1f} | {seconds:.2f}"

    lines = [
        "### Peak memory and step time vs batch size",
        "",
        f"Model: random-weight Gemma3-style decoder (hidden {MEMORY_MODEL['hidden_size']}, "
        f"{MEMORY_MODEL['num_layers']} layers) + LoRA r=16, activation checkpointing, fp32, "
        f"max length {MAX_LENGTH}, mini-batch {MINI_BATCH}, torch threads {TORCH_THREADS}. "
        "Each cell is one training step (forward and backward, no optimizer) in a fresh process "
        "after a warm-up step; memory is the peak resident-set growth during the step. Peers: "
        f"stock `{STOCK_CACHED}` (same mini-batch) and `{NO_CACHE}` (whole batch at once, "
        f"run up to batch {NO_CACHE_MAX_BATCH}).",
        "",
        f"| batch | ours: RSS growth (MB) | ours: step (s) | {STOCK_CACHED}: MB | s "
        f"| {NO_CACHE}: MB | s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in batches:
        lines.append(
            f"| {batch} | {cell(OURS, batch)} | {cell(STOCK_CACHED, batch)} "
            f"| {cell(NO_CACHE, batch)} |"
        )
    lines += [
        "",
        "With GradCache only one mini-batch of activations is alive at a time, so memory "
        "stays flat; what grows is the embedding cache (batch x hidden) and the tokenized "
        "batch. Without the cache, activations for the whole batch are alive at once.",
        "",
    ]
    return lines


def _throughput_section(workdir: Path, queries: list[str], docs: list[str]) -> list[str]:
    model = _model(_decoder(workdir / "speed", SPEED_MODEL))
    stock_name = f"stock {STOCK_CACHED}"
    bucketed = _loss(OURS, model)
    contenders = {
        stock_name: (_loss(STOCK_CACHED, model), "right"),
        "ours, bucketing off": (_loss(OURS_UNBUCKETED, model), "right"),
        "ours, length bucketing": (bucketed, "right"),
        "ours, length bucketing, base tokenizer's left padding": (bucketed, "left"),
    }
    for loss, _ in contenders.values():
        _step(model, loss, queries[:MINI_BATCH], docs[:MINI_BATCH])
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    overhead: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(THROUGHPUT_ROUNDS):
        lo = round_index * THROUGHPUT_BATCH
        for name, (loss, padding_side) in contenders.items():
            model.tokenizer.padding_side = padding_side
            seconds, tokens, positions = _step(
                model, loss, queries[lo : lo + THROUGHPUT_BATCH], docs[lo : lo + THROUGHPUT_BATCH]
            )
            rates[name].append(tokens / seconds)
            overhead[name].append(positions / (2 * tokens))
    model.tokenizer.padding_side = "right"
    lines = [
        f"### Throughput on the length mix (batch {THROUGHPUT_BATCH}, {THROUGHPUT_ROUNDS} "
        "rounds, contenders take turns within each round)",
        "",
        f"Model: random-weight Gemma3-style decoder (hidden {SPEED_MODEL['hidden_size']}, "
        f"{SPEED_MODEL['num_layers']} layers) + LoRA r=16, activation checkpointing, fp32, "
        f"max length {MAX_LENGTH}, mini-batch {MINI_BATCH}; its base tokenizer pads on the "
        "left and the embedder pads on the right. 'Positions run per real token' counts every "
        "position the decoder computes (cached pass and replay, padding included) over twice "
        "the real tokens: 1.00 means no padding at all. The last row keeps "
        "Gemma's left padding: GradCache trims only trailing padding, so every mini-batch "
        "keeps the whole batch's width and sorting saves nothing; this is why the embedder "
        "pads on the right.",
        "",
        "| loss | tokens/s (median) | vs stock (median of rounds) | rounds vs stock | "
        "positions run per real token |",
        "|---|---:|---:|---|---:|",
    ]
    for name in contenders:
        ratios = [ours / stock for ours, stock in zip(rates[name], rates[stock_name], strict=True)]
        lines.append(
            f"| {name} | {statistics.median(rates[name]):,.0f} | "
            f"{statistics.median(ratios):.2f}x | {', '.join(f'{r:.2f}' for r in ratios)} | "
            f"{statistics.mean(overhead[name]):.2f} |"
        )
    lines.append("")
    return lines


def run(config_path: str) -> str:
    """``config_path`` is unused: the bench builds its own models and length mix."""
    batches = FULL_BATCHES if full_run() else DEFAULT_BATCHES
    rows = max(max(batches), THROUGHPUT_BATCH * THROUGHPUT_ROUNDS)
    queries, docs, source = _texts(rows)
    lines = ["## Training (GradCache InfoNCE)", "", f"Texts: {source}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        lines += _memory_section(Path(tmp), queries, docs, batches)
        lines += _throughput_section(Path(tmp), queries, docs)
    return "\n".join(lines)
