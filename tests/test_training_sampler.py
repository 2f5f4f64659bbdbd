"""Every rank of a distributed step gets a batch from the same dataset (same columns), and no
text appears twice in a step (the loss gathers every rank's texts as negatives)."""

from __future__ import annotations

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset
from sentence_transformers.base.sampler import (
    DefaultBatchSampler,
    NoDuplicatesBatchSampler,
    ProportionalBatchSampler,
)
from torch.utils.data import ConcatDataset

from training.trainer import StepAlignedProportionalBatchSampler

SIZES = (48, 40)  # rows with a hard negative, rows without
BATCH = 4
WORLD = 2


def _sampler(cls):
    datasets = [list(range(size)) for size in SIZES]
    samplers = [DefaultBatchSampler(d, batch_size=BATCH, drop_last=True) for d in datasets]
    return cls(ConcatDataset(datasets), samplers, generator=torch.Generator(), seed=3)


def _steps(sampler) -> list[tuple[list[int], ...]]:
    """Each step's batches, one per rank, as accelerate shards the sampler."""
    shards = [
        list(BatchSamplerShard(sampler, num_processes=WORLD, process_index=rank))
        for rank in range(WORLD)
    ]
    assert len({len(shard) for shard in shards}) == 1
    return list(zip(*shards, strict=True))


def _dataset_per_step(sampler) -> list[list[int]]:
    """Which dataset each rank's batch comes from, step by step."""
    return [[int(batch[0] >= SIZES[0]) for batch in step] for step in _steps(sampler)]


def test_ranks_get_the_same_dataset_in_every_step(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", str(WORLD))
    sampler = _sampler(StepAlignedProportionalBatchSampler)
    steps = _dataset_per_step(sampler)
    assert all(len(set(step)) == 1 for step in steps)
    assert {step[0] for step in steps} == {0, 1}, "both datasets are used"
    batches = list(sampler)
    assert len(batches) == len(sampler) == sum(size // BATCH for size in SIZES)
    assert sorted(row for batch in batches for row in batch) == list(range(sum(SIZES)))

    stock = _dataset_per_step(_sampler(ProportionalBatchSampler))
    assert any(len(set(step)) > 1 for step in stock), "the stock sampler mixes shapes"


def test_one_process_keeps_the_stock_order(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    ours = list(_sampler(StepAlignedProportionalBatchSampler))
    assert ours == list(_sampler(ProportionalBatchSampler))


@pytest.mark.parametrize("world", [2, 3])
def test_a_dataset_too_small_for_a_step_is_skipped_whole(monkeypatch, world):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    datasets = [list(range(4 * world * 2)), list(range(4 * (world - 1)))]
    samplers = [DefaultBatchSampler(d, batch_size=BATCH, drop_last=True) for d in datasets]
    sampler = StepAlignedProportionalBatchSampler(
        ConcatDataset(datasets), samplers, generator=torch.Generator(), seed=0
    )
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 * world
    assert all(row < len(datasets[0]) for batch in batches for row in batch)


def test_no_text_repeats_anywhere_in_a_step(monkeypatch):
    """Positives repeat (16 distinct over 64 rows): each rank's own batch is duplicate-free
    with the stock samplers, but two ranks share a text in some step."""
    monkeypatch.setenv("WORLD_SIZE", str(WORLD))
    rows = [
        Dataset.from_dict(
            {
                "anchor": [f"query {part}-{i}" for i in range(64)],
                "positive": [f"document {i % 16}" for i in range(64)],
            }
        )
        for part in range(2)
    ]

    def texts_per_step(cls) -> list[list[str]]:
        # One seeded generator for all, as the trainer does: every rank then draws the same.
        generator = torch.Generator()
        samplers = [
            NoDuplicatesBatchSampler(
                d, batch_size=BATCH, drop_last=True, generator=generator, seed=1
            )
            for d in rows
        ]
        concat = ConcatDataset(rows)
        sampler = cls(concat, samplers, generator=generator, seed=5)
        steps = []
        for step in _steps(sampler):
            assert all(len(batch) == BATCH for batch in step)
            steps.append([concat[row]["positive"] for batch in step for row in batch])
        return steps

    ours = texts_per_step(StepAlignedProportionalBatchSampler)
    assert len(ours) == 2 * 64 // (BATCH * WORLD)
    assert all(len(set(step)) == len(step) for step in ours)
    stock = texts_per_step(ProportionalBatchSampler)
    assert any(len(set(step)) < len(step) for step in stock), "stock repeats across ranks"
