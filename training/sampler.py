"""Multi-dataset batches that keep every rank of a distributed step on the same shape.

accelerate deals consecutive batches to the ranks in turn. The stock proportional sampler
picks the dataset batch by batch, so in one step rank 0 can get rows with a hard negative
(three columns) while rank 1 gets rows without (two columns); the loss then gathers a
different number of columns on each rank and the run hangs in a collective. Here the
dataset is drawn once per step and every rank gets a batch from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate, islice

from sentence_transformers.base.sampler import ProportionalBatchSampler
from torch.utils.data import SubsetRandomSampler

from training import distributed


class StepAlignedProportionalBatchSampler(ProportionalBatchSampler):
    """Proportional sampling in runs of ``world_size`` batches from one dataset."""

    def __iter__(self) -> Iterator[list[int]]:
        world = distributed.world_size()
        if world == 1:
            yield from super().__iter__()
            return
        if self.generator and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        offsets = [0, *accumulate(len(dataset) for dataset in self.dataset.datasets)]
        steps = [len(sampler) // world for sampler in self.batch_samplers]
        draws = [index for index, count in enumerate(steps) for _ in range(count)]
        iterators = [iter(sampler) for sampler in self.batch_samplers]
        for index in SubsetRandomSampler(draws, generator=self.generator):
            group = list(islice(iterators[index], world))
            if len(group) < world:
                continue
            for batch in group:
                yield [row + offsets[index] for row in batch]

    def __len__(self) -> int:
        world = distributed.world_size()
        return sum(len(sampler) // world * world for sampler in self.batch_samplers)
