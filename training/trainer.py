"""The stock trainer, with checkpoints the size of what trains and steps aligned across ranks.

Checkpoints hold the adapter, its optimizer state and the trainer state, never the frozen
base: the stock trainer leaves frozen weights out only for a PEFT model, and a
SentenceTransformer wrapping one is not. Under DeepSpeed the engine's checkpoint excludes
frozen parameters (and a resume accepts their absence); nothing gathers the 16-bit model at
a save. Without DeepSpeed, resume loads the adapter back in place (the stock resume would
rebuild a whole model from the folder).

The batch sampler keeps every rank of a distributed step on the same shape, with no text
repeated anywhere in the step: accelerate deals consecutive batches to the ranks in turn,
and the stock proportional sampler picks the dataset batch by batch, so in one step rank 0
could get rows with a hard negative (three columns) while rank 1 gets rows without (two);
the loss would gather a different number of columns on each rank and hang. And each rank's
batch would be free of duplicates only within itself, while the loss gathers every rank's
documents as negatives. Here each step is one batch of ``world_size`` times the per-rank
rows, drawn from one dataset by the dataset's own batch sampler (no duplicates across the
whole step), then cut into one batch per rank. The trainer counts, over the gathered step,
the texts that still appear twice, so the record shows it held.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.base.sampler import ProportionalBatchSampler
from torch.utils.data import BatchSampler, SubsetRandomSampler

from training import distributed
from training.adapter import lora_state_dict, save_adapter

SCHEDULER_FILE = "scheduler.pt"


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


def _text_keys(inputs: dict[str, Any]) -> list[int]:
    """A stable 64-bit key per tokenized text of the batch (equal texts, equal keys, on every
    rank: Python's own string hash differs between processes)."""
    keys = []
    for name, ids in inputs.items():
        if not name.endswith("input_ids"):
            continue
        masks = inputs[name.removesuffix("input_ids") + "attention_mask"].bool().cpu()
        for row, mask in zip(ids.cpu(), masks, strict=True):
            digest = hashlib.blake2b(row[mask].numpy().tobytes(), digest_size=8).digest()
            keys.append(int.from_bytes(digest, "little"))
    return keys


def _skip_frozen_keys(module: torch.nn.Module, incompatible: Any) -> None:
    """A checkpoint holds no frozen weight by design: their absence is not an error."""
    frozen = {name for name, param in module.named_parameters() if not param.requires_grad}
    incompatible.missing_keys[:] = [key for key in incompatible.missing_keys if key not in frozen]


class EmbedderTrainer(SentenceTransformerTrainer):
    """Adapter-sized checkpoints, resume in place, and a note of every step's shape and of
    the texts a gathered step repeats."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_shapes: list[tuple[int, int]] = []  # (rows, text columns) of each step
        self.repeated_texts = 0  # texts seen twice within one gathered step
        if self.is_deepspeed_enabled:
            self.model.register_load_state_dict_post_hook(_skip_frozen_keys)

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        ids = [value for key, value in inputs.items() if key.endswith("input_ids")]
        if ids and model.training:
            self.batch_shapes.append((len(ids[0]), len(ids)))
            self.repeated_texts += _repeated(_text_keys(inputs))
        return super().compute_loss(model, inputs, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """A checkpoint's weights are the adapter alone (every rank takes part in reading it,
        which is collective under ZeRO-3; the main process writes it)."""
        if not _internal_call:
            super().save_model(output_dir, _internal_call)
            return
        state = lora_state_dict(self.model)
        if self.args.should_save:
            save_adapter(self.model, state, Path(output_dir or self.args.output_dir))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.is_deepspeed_enabled:
            super()._save_optimizer_and_scheduler(output_dir)
            return
        self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
        from accelerate.utils import DeepSpeedSchedulerWrapper

        if self.args.should_save and not isinstance(self.lr_scheduler, DeepSpeedSchedulerWrapper):
            torch.save(self.lr_scheduler.state_dict(), Path(output_dir) / SCHEDULER_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: object = None) -> None:
        from peft import load_peft_weights, set_peft_model_state_dict

        state = load_peft_weights(resume_from_checkpoint, device="cpu")
        set_peft_model_state_dict(self.model[0].model, state)

    def restore_final(self, checkpoint: str) -> int:
        """Load a final checkpoint's adapter and trainer state without training (resuming
        from it would take one step past ``max_steps``); return its step."""
        from transformers import TrainerState

        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        return self.state.global_step


def _repeated(keys: list[int]) -> int:
    """Texts of this step, gathered from every rank, that another text of the step repeats."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[list[int]] = [[] for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather_object(gathered, keys)
        keys = [key for part in gathered for key in part]
    return len(keys) - len(set(keys))

