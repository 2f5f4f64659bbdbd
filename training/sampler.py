"""Multi-dataset batches that keep every rank of a distributed step on the same shape, with
no text repeated anywhere in the step.

accelerate deals consecutive batches to the ranks in turn. The stock proportional sampler
picks the dataset batch by batch, so in one step rank 0 can get rows with a hard negative
(three columns) while rank 1 gets rows without (two columns); the loss then gathers a
different number of columns on each rank and the run hangs in a collective. And each rank's
batch is free of duplicates only within itself, while the loss gathers every rank's
documents as negatives, so a text on two ranks becomes a false negative. Here each step is
one batch of ``world_size`` times the per-rank rows, drawn from one dataset by the dataset's
own batch sampler (no duplicates across the whole step), then cut into one batch per rank.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import accumulate

from sentence_transformers.base.sampler import ProportionalBatchSampler
from torch.utils.data import BatchSampler, SubsetRandomSampler

from training import distributed


class StepAlignedProportionalBatchSampler(ProportionalBatchSampler):
    """Proportional sampling of whole steps, each from one dataset, cut into rank batches."""

    def _step_samplers(self, world: int) -> list[BatchSampler]:
        """Each dataset's sampler, asked for a whole step's rows at once."""
        steps = []
        for sampler in self.batch_samplers:
            step = copy.copy(sampler)
            step.batch_size = sampler.batch_size * world
            step.drop_last = True
            steps.append(step)
        return steps

    def __iter__(self) -> Iterator[list[int]]:
        world = distributed.world_size()
        if world == 1:
            yield from super().__iter__()
            return
        if self.generator and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        offsets = [0, *accumulate(len(dataset) for dataset in self.dataset.datasets)]
        step_samplers = self._step_samplers(world)
        draws = [index for index, sampler in enumerate(step_samplers) for _ in range(len(sampler))]
        iterators = [iter(sampler) for sampler in step_samplers]
        for index in SubsetRandomSampler(draws, generator=self.generator):
            rows = next(iterators[index], None)
            if rows is None:
                continue
            size = self.batch_samplers[index].batch_size
            for rank in range(world):
                yield [row + offsets[index] for row in rows[rank * size : (rank + 1) * size]]

    def __len__(self) -> int:
        world = distributed.world_size()
        if world == 1:
            return super().__len__()
        return sum(len(sampler) * world for sampler in self._step_samplers(world))
