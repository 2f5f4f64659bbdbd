"""Training benchmark: GradCache memory vs batch size, length-bucketed throughput, the host
memory of the training data at paper scale, and the training plan of the paper config.

Peer: stock sentence-transformers ``CachedMultipleNegativesRankingLoss`` on the same model,
data and mini-batch size, in the same process, the contenders taking turns round by round.
The length mix is the one a seeds run asks its generator for (the short-long template's
query lengths and document word counts, drawn the way the request plan draws them), since
the bundled tiny generator writes far shorter texts than it is asked for. Throughput runs on
a Gemma-style random-weight decoder wide enough that its time goes into per-token work, with
a base tokenizer that pads on the left as Gemma's does; the memory sweep uses the tiny one.
``SYNTHEMBED_BENCH_FULL=1`` sweeps batch sizes up to 2048 and measures the data at 1.8M rows.
``SYNTHEMBED_BENCH_TRAINING_PARTS=data,plan`` reruns only the parts named (memory, throughput,
data, plan, gpu) and keeps the others from BENCHMARKS.md, each under the stamp of its own run.

The data part builds the training groups from a synthetic dataset in the published layout
(1 and 4 negatives per row) and then runs 1 and 4 rank processes at once, each mapping the
saved groups and drawing its share of the first steps through the trainer's own samplers
(step-aligned, duplicate-free, sharded as accelerate shards them) and tokenizing them as the
collator does. Peer: the row-by-row build this kit used before (every row through Python,
the dataset read into memory), at a tenth of the rows since it holds them all.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import full_run, previous_sections

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
    from kit.embedder import build_embedder
    from training.adapter import add_lora

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


# ---- host memory of the training data ---------------------------------------------------

DATA_ROWS = 180_000
DATA_ROWS_FULL = 1_800_000
PEER_ROWS = 180_000
DATA_WORLDS = (1, 4)
DATA_STEPS = 10
GLOBAL_BATCH = 2048
SHARD_ROWS = 100_000
QUERY_WORDS_DATA = 12
DOC_WORDS_DATA = 60


def _write_synthetic(folder: Path, rows: int, negatives: int) -> Path:
    """``rows`` unified rows in Parquet shards with a card, as the dataset stage publishes
    them: the generated negative plus ``negatives - 1`` mined ``negative_2..`` columns."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.tiny_models import WORDS
    from tests.training_fixtures import CARD

    vocabulary = np.array(WORDS)
    generator = np.random.default_rng(negatives)

    def texts(count: int, words: int) -> pa.Array:
        picks = vocabulary[generator.integers(0, len(vocabulary), (count, words))]
        return pa.array([" ".join(row) for row in picks.tolist()])

    columns = ["negative", *(f"negative_{i}" for i in range(2, negatives + 1))]
    for split, count in (("train", rows), ("validation", max(1, rows // 100))):
        for shard, start in enumerate(range(0, count, SHARD_ROWS)):
            size = min(SHARD_ROWS, count - start)
            table = pa.table({
                "id": pa.array([f"{split}-{start + i}" for i in range(size)]),
                "task_definition": pa.array(["Given a question, retrieve passages"] * size),
                "query": texts(size, QUERY_WORDS_DATA),
                "positive": texts(size, DOC_WORDS_DATA),
                **{column: texts(size, DOC_WORDS_DATA) for column in columns},
            })  # fmt: skip
            path = folder / "data" / "default" / f"{split}-{shard:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    return folder


def _watch(process: Any) -> dict[str, float]:
    """Peak resident memory of a child until it exits: the kernel's high-water mark (all
    pages) and the sampled peak of its anonymous pages (memory it owns, not file pages
    that every process mapping the same Arrow files shares)."""
    status = Path(f"/proc/{process.pid}/status")
    peak = {"VmHWM": 0.0, "RssAnon": 0.0}
    while process.is_alive():
        try:
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in peak:
                    peak[key] = max(peak[key], int(value.split()[0]) / 2**10)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        time.sleep(0.02)
    process.join()
    return {"peak_rss_mb": peak["VmHWM"], "peak_anon_mb": peak["RssAnon"]}


def _own_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**10
    return 0.0


def _child_build(source: str, target: str, batch: int, out: str) -> None:
    """The kit's build of the groups (what the stage does once, before its workers start)."""
    import json

    import datasets  # noqa: F401  (imported before the baseline, as in the peer and the ranks)

    from training.data import build_groups

    baseline = _own_rss_mb()
    started = time.perf_counter()
    build_groups(Path(target), Path(target).parent, source, "all", [], None, batch,
                 make_room=lambda: None)  # fmt: skip
    Path(out).write_text(json.dumps({"seconds": time.perf_counter() - started,
                                     "baseline_mb": baseline}))  # fmt: skip


def _child_peer(source: str, out: str) -> None:
    """The peer: the dataset read into memory, every row through Python into one dataset per
    shape (the kit's training/data.py until this change)."""
    import json

    from datasets import Dataset, load_dataset

    from kit.instructions import instruct

    baseline = _own_rss_mb()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        split = load_dataset(source, "default", split="train", cache_dir=cache, keep_in_memory=True)
    columns = [c for c in split.column_names if c.startswith("negative")]
    groups: dict[int, dict[str, list[str]]] = {}
    for row in split:
        negatives = [row[c] for c in columns if row[c]]
        group = groups.setdefault(len(negatives), {"anchor": [], "positive": []})
        group["anchor"].append(f"{instruct(row['task_definition'])}{row['query']}")
        group["positive"].append(row["positive"])
        for index, text in enumerate(negatives, start=1):
            group.setdefault(f"negative_{index}", []).append(text)
    datasets = [Dataset.from_dict(group) for group in groups.values()]
    Path(out).write_text(json.dumps({"seconds": time.perf_counter() - started,
                                     "baseline_mb": baseline,
                                     "rows": sum(len(d) for d in datasets)}))  # fmt: skip


def _child_rank(
    groups: str, tokenizer: str, batch: int, steps: int, world: int, rank: int, out: str
) -> None:
    """One rank's data path: map the groups, draw this rank's batches of the first steps
    with the trainer's samplers, read their rows and tokenize them."""
    import json

    import torch
    from accelerate.data_loader import BatchSamplerShard
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
    from torch.utils.data import ConcatDataset
    from transformers import AutoTokenizer

    from training.data import read_groups
    from training.trainer import StepAlignedProportionalBatchSampler

    os.environ["WORLD_SIZE"] = str(world)  # what the step-aligned sampler reads
    tokenize = AutoTokenizer.from_pretrained(tokenizer)
    baseline = _own_rss_mb()
    started = time.perf_counter()
    data = read_groups(Path(groups))
    if data is None:
        raise RuntimeError(f"no groups at {groups}")
    parts = list(data.train.values())
    per_rank = batch // world
    samplers = [NoDuplicatesBatchSampler(part, batch_size=per_rank, drop_last=True, seed=0)
                for part in parts]  # fmt: skip
    concat = ConcatDataset(parts)
    aligned = StepAlignedProportionalBatchSampler(concat, samplers, generator=torch.Generator(),
                                                  seed=0)  # fmt: skip
    rows = 0
    for index, indices in enumerate(BatchSamplerShard(aligned, num_processes=world,
                                                      process_index=rank)):  # fmt: skip
        if index >= steps:
            break
        records = [concat[i] for i in indices]
        for column in records[0]:
            tokenize([record[column] for record in records], truncation=True, max_length=512)
        rows += len(records)
    Path(out).write_text(json.dumps({"seconds": time.perf_counter() - started,
                                     "baseline_mb": baseline, "rows": rows}))  # fmt: skip


def _in_children(target: Any, argument_sets: list[tuple[Any, ...]]) -> list[dict[str, float]]:
    """Run ``target`` once per argument set, all at once, each in a fresh process; the last
    argument of each is the JSON file it reports to."""
    import json
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in argument_sets]
    for process in processes:
        process.start()
    peaks: list[dict[str, float]] = [{} for _ in processes]

    def watch(i: int) -> None:
        peaks[i] = _watch(processes[i])

    watchers = [threading.Thread(target=watch, args=(i,)) for i in range(len(processes))]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join()
    results = []
    for process, args, peak in zip(processes, argument_sets, peaks, strict=True):
        if process.exitcode:
            raise RuntimeError(f"{target.__name__}{args[:-1]} exited with {process.exitcode}")
        results.append({**json.loads(Path(args[-1]).read_text()), **peak})
    return results


def _data_section(workdir: Path) -> list[str]:
    from tests.tiny_models import FAMILIES, train_tokenizer

    rows = DATA_ROWS_FULL if full_run() else DATA_ROWS
    tokenizer = workdir / "tokenizer"
    train_tokenizer(FAMILIES["qwen2"]).save_pretrained(tokenizer)
    table = [
        "| negatives | process | rows | time (s) | peak RSS (MB) | RSS before the data (MB) "
        "| peak RSS beyond it (MB) | peak anonymous RSS (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]

    def line(negatives: int, who: str, count: int, result: dict[str, float]) -> None:
        beyond = result["peak_rss_mb"] - result["baseline_mb"]
        table.append(
            f"| {negatives} | {who} | {count:,} | {result['seconds']:.1f} | "
            f"{result['peak_rss_mb']:,.0f} | {result['baseline_mb']:,.0f} | {beyond:,.0f} | "
            f"{result['peak_anon_mb']:,.0f} |"
        )

    for negatives in (1, 4):
        folder = workdir / f"negatives-{negatives}"
        source = str(_write_synthetic(folder / "dataset", rows, negatives))
        groups = folder / "groups"
        report = str(folder / "build.json")
        (built,) = _in_children(_child_build, [(source, str(groups), GLOBAL_BATCH, report)])
        line(negatives, "build the groups (once)", rows, built)
        for world in DATA_WORLDS:
            reports = [str(folder / f"rank-{world}-{rank}.json") for rank in range(world)]
            results = _in_children(_child_rank, [
                (str(groups), str(tokenizer), GLOBAL_BATCH, DATA_STEPS, world, rank, report)
                for rank, report in enumerate(reports)
            ])  # fmt: skip
            for rank, result in enumerate(results):
                line(negatives, f"rank {rank} of {world}", int(result["rows"]), result)
        peer_source = source
        if rows > PEER_ROWS:
            peer_source = str(_write_synthetic(folder / "peer-dataset", PEER_ROWS, negatives))
        (peer,) = _in_children(_child_peer, [(peer_source, str(folder / "peer.json"))])
        line(negatives, "peer: row-by-row in memory", min(rows, PEER_ROWS), peer)
        shutil.rmtree(folder)
    return [
        "### Host memory of the training data",
        "",
        f"A synthetic dataset in the published layout: {rows:,} training rows, queries of "
        f"{QUERY_WORDS_DATA} words, documents of {DOC_WORDS_DATA}, 1 or 4 negatives per row. "
        f"Each rank process maps the saved groups and draws its share of the first "
        f"{DATA_STEPS} steps of global batch {GLOBAL_BATCH} (the trainer's step-aligned, "
        "duplicate-free samplers, sharded as accelerate shards them), reading and tokenizing "
        "the rows; the ranks of one line run at once. Peak RSS is the kernel's high-water "
        "mark; 'before the data' is the process after its imports; anonymous RSS is the "
        "memory a process owns (file pages of the mapped Arrow files are shared by all ranks "
        "and the page cache can drop them). The peer runs on "
        f"{min(rows, PEER_ROWS):,} rows.",
        "",
        *table,
        "",
    ]


# ---- the plan of the paper configuration ---------------------------------------------------


def _plan_section(workdir: Path) -> list[str]:
    """``python -m training --plan`` for configs/e5-mistral.toml on 8 and 16 H100s, with
    Mistral-7B's shape from transformers' own ``MistralConfig`` defaults (its published
    configuration; no file is fetched)."""
    import argparse

    from transformers import MistralConfig

    from kit.config import load_config
    from training.plan import DEFAULT_MFU, plan_text

    base = workdir / "mistral-7b-config"
    MistralConfig().save_pretrained(base)
    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "e5-mistral.toml")
    lines = [
        "### Training plan of the paper configuration",
        "",
        "`mistral-7b-config/` holds the `config.json` of transformers' `MistralConfig()` "
        "defaults, which are Mistral-7B-v0.1's shape (the Hub's file is not fetched here).",
        "",
    ]
    for gpus in (8, 16):
        args = argparse.Namespace(gpu="H100", gpus=gpus, mfu=DEFAULT_MFU, rows=0, mean_tokens=0,
                                  negatives=1, base_config=str(base))  # fmt: skip
        command = (f"python -m training --config configs/e5-mistral.toml --plan --gpu H100 "
                   f"--gpus {gpus} --base-config mistral-7b-config")  # fmt: skip
        lines += [f"`{command}`:", "", "```", plan_text(config, args), "```", ""]
    return lines


# ---- the GPU check's figures ---------------------------------------------------------------

GPU_RESULTS_VARIABLE = "SYNTHEMBED_GPU_CHECK"


def _gpu_section() -> list[str]:
    """The figures of a GPU check run (``SYNTHEMBED_GPU_CHECK=path/gpu_check.json``)."""
    import json

    lines = ["### One GPU (bench/gpu_check.py)", ""]
    path = os.environ.get(GPU_RESULTS_VARIABLE)
    if not path:
        return lines + [
            "No figures: this section was written where no GPU check had run (no GPU machine "
            "was lent). Run `bash bench/gpu_check.sh` through the device tool, then "
            f"`{GPU_RESULTS_VARIABLE}=DIR/gpu_check.json make bench`. The check passes every "
            "phase at toy sizes on CPU (tests/test_gpu_check.py).",
            "",
        ]
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    phases = report["phases"]
    lines += [f"Device: {report['device']}, torch {report['torch']}. Phases: "
              + ", ".join(f"{name} {phase['status']}" for name, phase in phases.items()) + ".",
              ""]  # fmt: skip
    cells = [c for c in phases.get("loss_steps", {}).get("results", []) if "seconds" in c]
    if cells:
        lines += [
            "| model | batch | loss | tokens/s | peak GPU memory (GB) | MFU (6N) | "
            "utilization by the plan's FLOPs | plan's memory (GB) |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
            *(f"| {c['model']} | {c['batch']} | {c['loss']} | {c['tokens_per_s']:,.0f} | "
              f"{_number(c['peak_memory_gb'])} | {c['mfu']:.1%} | {c['plan_utilization']:.1%} | "
              f"{c['plan_memory_gb']:.1f} |" for c in cells),
            "",
        ]  # fmt: skip
    for stage in (2, 3):
        for result in phases.get(f"zero{stage}", {}).get("results", []):
            lines.append(
                f"- ZeRO-{stage}, {result['model']} shape, batch {result['batch']}: "
                f"{result['seconds_per_step']} s per step, {result['tokens_per_s']:,.0f} tokens/s, "
                f"checkpoint {result['checkpoint_mb']} MB"
            )
    for result in phases.get("bf16_vs_fp32", {}).get("results", []):
        lines.append(f"- bf16 against fp32 embeddings: cosine min {result['min_cosine']}, "
                     f"mean {result['mean_cosine']}")  # fmt: skip
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# ---- the section: parts run now and parts kept from an earlier run ------------------------

PARTS_VARIABLE = "SYNTHEMBED_BENCH_TRAINING_PARTS"
# Each part's subsection heading starts with these words.
PARTS = {
    "memory": "### Peak memory",
    "throughput": "### Throughput",
    "data": "### Host memory",
    "plan": "### Training plan",
    "gpu": "### One GPU",
}
KEPT = "_Kept from an earlier run: "


def _chosen_parts() -> list[str]:
    named = os.environ.get(PARTS_VARIABLE, "")
    chosen = [part.strip() for part in named.split(",") if part.strip()] or list(PARTS)
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise ValueError(f"{PARTS_VARIABLE}: unknown part(s) {unknown}; pick from {list(PARTS)}")
    return chosen


def _kept_parts() -> dict[str, list[str]]:
    """The previous section's subsections by part, each stamped with the run it came from."""
    previous = previous_sections().get("training", "")
    stamp = previous.splitlines()[0].strip("_") if previous else ""
    kept = {}
    for block in previous.split("\n### ")[1:]:
        lines = f"### {block}".rstrip("\n").splitlines()
        part = next((name for name, head in PARTS.items() if lines[0].startswith(head)), None)
        if part is None:
            continue
        if not (len(lines) > 2 and lines[2].startswith(KEPT)):
            lines[1:1] = ["", f"{KEPT}{stamp}_"]
        kept[part] = [*lines, ""]
    return kept


def run(config_path: str) -> str:
    """``config_path`` is unused: the bench builds its own models, texts and datasets."""
    chosen = _chosen_parts()
    kept = _kept_parts()
    batches = FULL_BATCHES if full_run() else DEFAULT_BATCHES
    rows = max(max(batches), THROUGHPUT_BATCH * THROUGHPUT_ROUNDS)
    queries, docs, source = _texts(rows)
    lines = ["## Training (GradCache InfoNCE)", "", f"Texts: {source}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        measure = {
            "memory": lambda: _memory_section(workdir, queries, docs, batches),
            "throughput": lambda: _throughput_section(workdir, queries, docs),
            "data": lambda: _data_section(workdir),
            "plan": lambda: _plan_section(workdir),
            "gpu": _gpu_section,
        }
        for part in PARTS:
            if part in chosen:
                lines += measure[part]()
            elif part in kept:
                lines += kept[part]
    return "\n".join(lines)
