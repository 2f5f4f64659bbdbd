"""Training benchmark: GradCache memory vs batch size, and length-bucketed throughput.

Peer: stock sentence-transformers ``CachedMultipleNegativesRankingLoss`` on the same model,
data and mini-batch size, in the same process. A small random-weight decoder keeps the
default run short on CPU; ``SYNTHEMBED_BENCH_FULL=1`` sweeps batch sizes up to 2048.
Texts come from the dataset stage's ``default`` config when it exists (the seeds run's real
length mix); otherwise from a synthetic mix shaped like it (short queries, long documents).
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MINI_BATCH = 16
MAX_LENGTH = 256
DEFAULT_BATCHES = (32, 128, 512, 1024)
FULL_BATCHES = (32, 64, 128, 256, 512, 1024, 2048)
THROUGHPUT_BATCH = 128
THROUGHPUT_STEPS = 2


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


def _texts(config_path: str, rows: int) -> tuple[list[str], list[str], str]:
    from kit.paths import layout

    dataset_dir = Path(layout(config_path)["dataset_dir"])
    if (dataset_dir / "README.md").is_file():
        from datasets import load_dataset

        train = load_dataset(str(dataset_dir), "default")["train"]
        if len(train) >= 16:
            queries = [
                f"Instruct: {d}\nQuery: {q}"
                for d, q in zip(train["task_definition"], train["query"], strict=True)
            ]
            docs = list(train["positive"])
            reps = -(-rows // len(queries))
            tagged = [
                (f"{q} #{i}", f"{p} #{i}")
                for i in range(reps)
                for q, p in zip(queries, docs, strict=True)
            ]
            return [q for q, _ in tagged[:rows]], [p for _, p in tagged[:rows]], str(dataset_dir)
    from tests.tiny_models import WORDS

    rng = random.Random(0)

    def text(median_words: int) -> str:
        count = min(int(rng.lognormvariate(0, 0.7) * median_words) + 2, MAX_LENGTH)
        return " ".join(rng.choice(WORDS) for _ in range(count))

    queries = [f"Instruct: retrieve passages\nQuery: {text(8)}" for _ in range(rows)]
    docs = [text(70) for _ in range(rows)]
    return (
        queries,
        docs,
        "synthetic mix (lognormal lengths: queries median ~8 words, documents ~70)",
    )


def _model(workdir: Path) -> Any:
    from tests.tiny_models import build_tiny_decoder
    from training.model import add_lora, build_embedder

    base = build_tiny_decoder("qwen2", workdir / "decoder")
    model = build_embedder(str(base), MAX_LENGTH, {"query": "", "document": ""})
    add_lora(model, 16, 32, 0.0)
    model[0].model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    return model


def _step(model: Any, loss: Any, queries: list[str], docs: list[str]) -> tuple[float, int]:
    """One optimizer-free training step; returns seconds and real (non-pad) tokens."""
    features = [model.preprocess(queries), model.preprocess(docs)]
    tokens = int(sum(f["attention_mask"].sum() for f in features))
    started = time.perf_counter()
    loss(features, None).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started, tokens


def run(config_path: str) -> str:
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
    )

    from training.loss import BucketedCachedInfoNCELoss

    full = os.environ.get("SYNTHEMBED_BENCH_FULL") == "1"
    batches = FULL_BATCHES if full else DEFAULT_BATCHES
    queries, docs, source = _texts(config_path, max(max(batches), THROUGHPUT_BATCH))
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(Path(tmp))
        model.train()
        ours = BucketedCachedInfoNCELoss(model, scale=50.0, mini_batch_size=MINI_BATCH)
        lines = [
            "## Training (GradCache InfoNCE)",
            "",
            f"Model: random-weight Qwen2-style decoder (hidden 32, 2 layers) + LoRA r=16, "
            f"activation checkpointing, fp32, max length {MAX_LENGTH}, mini-batch {MINI_BATCH}, "
            f"torch threads {torch.get_num_threads()}. Texts: {source}.",
            "",
            "### Memory and step time vs batch size (ours, length bucketing on)",
            "",
            "| batch | peak RSS growth (MB) | step time (s) |",
            "|---:|---:|---:|",
        ]
        _step(model, ours, queries[:MINI_BATCH], docs[:MINI_BATCH])
        for batch in batches:
            with PeakRss() as rss:
                seconds, _ = _step(model, ours, queries[:batch], docs[:batch])
            lines.append(f"| {batch} | {rss.growth_mb:.1f} | {seconds:.2f} |")
        lines += [
            "",
            "Memory stays flat because only one mini-batch of activations is alive at a time; "
            "what grows is the embedding cache (batch x hidden) and the tokenized batch.",
            "",
            f"### Throughput on the length mix (batch {THROUGHPUT_BATCH}, "
            f"{THROUGHPUT_STEPS} steps each)",
            "",
            "| loss | tokens/s | vs stock |",
            "|---|---:|---:|",
        ]
        contenders = {
            "stock CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss(
                model, scale=50.0, mini_batch_size=MINI_BATCH
            ),
            "ours, bucketing off": BucketedCachedInfoNCELoss(
                model, scale=50.0, mini_batch_size=MINI_BATCH, length_bucketing=False
            ),
            "ours, length bucketing": ours,
        }
        rates = {}
        for name, loss in contenders.items():
            seconds = tokens = 0
            for step in range(THROUGHPUT_STEPS):
                lo = step * THROUGHPUT_BATCH % len(queries)
                s, t = _step(
                    model,
                    loss,
                    queries[lo : lo + THROUGHPUT_BATCH],
                    docs[lo : lo + THROUGHPUT_BATCH],
                )
                seconds, tokens = seconds + s, tokens + t
            rates[name] = tokens / seconds
        stock = rates["stock CachedMultipleNegativesRankingLoss"]
        for name, rate in rates.items():
            lines.append(f"| {name} | {rate:,.0f} | {rate / stock:.2f}x |")
        lines.append("")
    return "\n".join(lines)
