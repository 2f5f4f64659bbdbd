"""The training arguments: every check of the config that needs no data, then the trainer's
arguments.

All of it runs before any data is read, any launcher starts workers or any weights load, so
a bad config costs seconds: the precision the hardware runs, the batch shape, the base
tokenizer's EOS, the Matryoshka widths, the world size and the ZeRO stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.bundled import resolve_model
from kit.cli import StageError
from kit.config import Config, TrainingSection
from kit.embedder import check_base_tokenizer
from training import distributed
from training.plan import ModelShape, Setting, model_shape, zero_stage_for

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """oneDNN's own check: bf16 matmuls need AVX512-BF16 or AMX on the CPU."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: str) -> str:
    """``auto`` means bf16 on a GPU that has it, fp32 otherwise (CPU bf16 is slow or missing)."""
    import torch

    on_gpu = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "bf16":
        supported = torch.cuda.is_bf16_supported() if on_gpu else cpu_supports_bf16()
        if not supported:
            where = "this GPU" if on_gpu else "this CPU (no AVX512-BF16/AMX)"
            raise StageError(
                f"training.precision = 'bf16' but {where} does not support bf16; "
                "use precision = 'auto' or 'fp32'"
            )
    if requested == "fp16" and not on_gpu:
        raise StageError("training.precision = 'fp16' needs a GPU; use 'auto' or 'fp32' on CPU")
    return requested


def trained_dims(configured: list[int], embedding_dim: int) -> tuple[int, ...]:
    """The Matryoshka widths trained, widest first; the full width is always one of them, so
    the untruncated vector is trained as well (``MatryoshkaLoss`` warns otherwise)."""
    if not configured:
        return ()
    too_wide = [dim for dim in configured if dim > embedding_dim]
    if too_wide:
        raise StageError(
            f"training.matryoshka_dims: {too_wide[0]} is wider than the base model's "
            f"embedding dimension {embedding_dim}"
        )
    return tuple(sorted({*configured, embedding_dim}, reverse=True))


def _check_batch_shape(cfg: TrainingSection, world: int) -> int:
    """The per-process batch, which the mini-batch must divide (each rank does GradCache)."""
    if cfg.batch_size % world:
        raise StageError(
            f"training.batch_size={cfg.batch_size} is not divisible by "
            f"training.num_processes={world}"
        )
    per_device = cfg.batch_size // world
    if per_device % cfg.mini_batch_size:
        raise StageError(
            f"training.mini_batch_size={cfg.mini_batch_size} must divide the per-process batch "
            f"{per_device} (batch_size {cfg.batch_size} / {world} processes)"
        )
    return per_device


@dataclass(frozen=True)
class Settings:
    """What the checks found: the run's fixed facts, shared by the run and its record."""

    base_path: str
    prompts: dict[str, str]
    precision: str
    world: int
    per_device_batch: int
    dims: tuple[int, ...]
    shape: ModelShape
    deepspeed: Path | None
    zero_stage: int


def check_settings(config: Config, prompts: dict[str, str]) -> Settings:
    """Every check of ``[training]`` that needs no data, in the order a user would fix them."""
    from transformers import AutoConfig

    cfg = config.training
    precision = resolve_precision(cfg.precision)
    world = distributed.expected_world(cfg)
    if world > 1 and not cfg.deepspeed:
        raise StageError(
            "training.num_processes > 1 runs through DeepSpeed: set training.deepspeed to "
            "'auto' or to configs/deepspeed/zero2.json or zero3.json"
        )
    if world > 1 and cfg.launcher == "none" and not distributed.is_launched():
        raise StageError("training.num_processes > 1 needs launcher = 'torchrun' or 'accelerate'")
    distributed.check_world_size(world)
    per_device_batch = _check_batch_shape(cfg, world)
    base_path = resolve_model(cfg.base_model)
    check_base_tokenizer(base_path)
    base_config = AutoConfig.from_pretrained(base_path)
    dims = trained_dims(cfg.matryoshka_dims, int(base_config.get_text_config().hidden_size))
    shape = model_shape(base_config, cfg.lora_r)
    stage = _zero_stage(cfg, shape, precision, world)
    return Settings(
        base_path=base_path,
        prompts=prompts,
        precision=precision,
        world=world,
        per_device_batch=per_device_batch,
        dims=dims,
        shape=shape,
        deepspeed=distributed.resolve_deepspeed(cfg.deepspeed, stage),
        zero_stage=stage,
    )


def _zero_stage(cfg: TrainingSection, shape: ModelShape, precision: str, world: int) -> int:
    """The configured stage, or for ``auto`` the plan's pick; said with its reason."""
    if not cfg.deepspeed:
        return 0
    memory = _gpu_memory()
    setting = Setting(
        gpus=world, batch_size=cfg.batch_size, mini_batch_size=cfg.mini_batch_size,
        max_length=cfg.max_length, mean_tokens=cfg.max_length, texts_per_row=3,
        precision=precision, deepspeed=True, zero_stage=2,
        checkpointing=cfg.gradient_checkpointing, lora_r=cfg.lora_r,
        lora_dropout=cfg.lora_dropout,
    )  # fmt: skip
    picked, reason = zero_stage_for(shape, setting, memory) if memory else (2, "")
    if cfg.deepspeed == "auto":
        why = reason or "ZeRO-2: no GPU, so nothing to partition for its memory"
        _say(f"training.deepspeed = auto: {why}")
        return picked
    stage = distributed.zero_stage_of(cfg.deepspeed)
    if memory and {stage, picked} == {2, 3}:
        _say(f"training.deepspeed asks for ZeRO-{stage}; the plan would pick {reason}")
    return stage


def _gpu_memory() -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return float(torch.cuda.get_device_properties(0).total_memory)


def _say(line: str) -> None:
    if distributed.is_main_process():
        log.info(line)


def training_arguments(config: Config, settings: Settings) -> tuple[Any, dict[str, Any] | None]:
    """The trainer's arguments and the DeepSpeed config they carry. Creating them starts the
    process group and, under ZeRO-3, makes every model built afterwards partitioned at load
    (``zero.Init``), so the model is built after them."""
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    from training.trainer import StepAlignedProportionalBatchSampler

    cfg = config.training
    ds_config = None
    if settings.deepspeed is not None:
        distributed.set_single_process_env()
        ds_config = distributed.deepspeed_config(
            settings.deepspeed, settings.shape.largest_lora_tensor
        )
    cuda = _gpu_memory() > 0
    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(config.layout.checkpoint_dir),
        per_device_train_batch_size=settings.per_device_batch,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        bf16=settings.precision == "bf16",
        fp16=settings.precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        # The GradCache replay takes gradients with torch.autograd.grad, which reentrant
        # checkpointing does not support.
        activation_checkpointing_kwargs={"use_reentrant": False},
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=StepAlignedProportionalBatchSampler,
        # Ranks gather each other's embeddings, which needs the same batch size everywhere.
        dataloader_drop_last=settings.world > 1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        deepspeed=ds_config,
        report_to=[],
        disable_tqdm=False,
        use_cpu=not cuda,
        ddp_backend="gloo" if ds_config is not None and not cuda else None,
    )
    if ds_config is not None and arguments.world_size > 1:
        _share_process_group_with_deepspeed(arguments.ddp_backend)
    return arguments, ds_config


def _share_process_group_with_deepspeed(backend: str | None) -> None:
    """accelerate hands DeepSpeed the process group on GPUs only; on CPU (gloo) a model built
    under ZeRO-3's ``zero.Init`` would otherwise see a world of one and refuse the batch."""
    from deepspeed import comm

    if not comm.is_initialized():
        comm.init_distributed(dist_backend=backend or "nccl", auto_mpi_discovery=False)

