"""The training stage: check every input, fine-tune with GradCache InfoNCE, export.

All checks that can fail on user input (precision, data columns, EOS, batch shape,
DeepSpeed config) run before the first training step and before any launcher starts
workers, so a bad config costs seconds, not a failed multi-GPU job.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kit.artifacts import ExtraDatasetUse, TrainingRecord
from kit.bundled import resolve_model
from kit.cli import StageError
from kit.config import Config, TrainingSection
from kit.decontamination import EvaluationNgrams
from kit.embedder import build_embedder, check_base_tokenizer
from kit.instructions import release_prompts
from kit.provenance import public_name
from kit.staleness import StageRun, training_source
from training import distributed
from training.checkpoints import (
    is_final,
    keep_only_this_runs_checkpoints,
    last_complete_checkpoint,
)
from training.data import TrainingData, load_training_data, read_dataset_facts
from training.diagnostics import (
    StepValidation,
    mean_pairwise_cosine,
    negatives_share,
    pools_eos,
    probe_texts,
    retrieval_accuracy,
    validation_curve,
)
from training.export import merged_embedder, save_release
from training.loss import BucketedCachedInfoNCELoss
from training.matryoshka import base_embedding_dimension, trained_dims, with_matryoshka
from training.model import add_lora, lora_state_dict
from training.precision import resolve_precision
from training.sampler import StepAlignedProportionalBatchSampler
from training.trainer import EmbedderTrainer

log = logging.getLogger(__name__)
# Recorded elsewhere in the record, by their public names only.
NOT_HYPERPARAMETERS = ("base_model", "dataset", "extra_datasets", "deepspeed")


def _check_batch_shape(cfg: TrainingSection, processes: int) -> int:
    """The per-process batch, which the mini-batch must divide (each rank does GradCache)."""
    if cfg.batch_size % processes:
        raise StageError(
            f"training.batch_size={cfg.batch_size} is not divisible by "
            f"training.num_processes={processes}"
        )
    per_device = cfg.batch_size // processes
    if per_device % cfg.mini_batch_size:
        raise StageError(
            f"training.mini_batch_size={cfg.mini_batch_size} must divide the per-process batch "
            f"{per_device} (batch_size {cfg.batch_size} / {processes} processes)"
        )
    return per_device


def _lora_settings(cfg: TrainingSection) -> dict[str, Any]:
    return {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout}


def _largest_lora_tensor(model: Any) -> int:
    return max(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    cfg = config.training
    layout = config.layout
    precision = resolve_precision(cfg.precision)
    if cfg.num_processes > 1 and not cfg.deepspeed:
        raise StageError(
            "training.num_processes > 1 runs through DeepSpeed: set training.deepspeed to "
            "configs/deepspeed/zero2.json or zero3.json"
        )
    per_device_batch = _check_batch_shape(cfg, cfg.num_processes)
    held_out = config.held_out
    ngrams = (
        EvaluationNgrams.build(
            cfg.decontamination_ngram, held_out.local_tasks, held_out.registry_tasks
        )
        if cfg.decontaminate and cfg.extra_datasets
        else None
    )
    data = load_training_data(training_source(config), cfg.extra_datasets, ngrams)
    if data.decontaminated.rows:
        log.info("left out of the public sets, sharing text with evaluation sets: %s",
                 dict(data.decontaminated.rows))  # fmt: skip
    _check_a_batch_fits(data.train, cfg.batch_size)
    base_path = resolve_model(cfg.base_model)
    prompts = release_prompts()
    check_base_tokenizer(base_path)
    dims = trained_dims(cfg.matryoshka_dims, base_embedding_dimension(base_path))

    relaunching = cfg.num_processes > 1 and not distributed.is_launched()
    if relaunching and cfg.launcher == "none":
        raise StageError("training.num_processes > 1 needs launcher = 'torchrun' or 'accelerate'")
    distributed.check_world_size(cfg.num_processes)
    if distributed.is_main_process():
        keep_only_this_runs_checkpoints(layout.checkpoint_dir, stage.expected)
    if relaunching:
        log.info("relaunching under %s on %d processes", cfg.launcher, cfg.num_processes)
        distributed.relaunch(cfg.launcher, cfg.num_processes, str(config.path))
        return
    train(config, args, data, base_path, prompts, precision, per_device_batch, stage, dims)


def _check_a_batch_fits(groups: dict[str, Any], batch_size: int) -> None:
    """Each step draws one whole batch from one group of rows of the same shape, so at least
    one group must hold a batch; otherwise the trainer would find no batch at all."""
    sizes = {name: len(rows) for name, rows in sorted(groups.items())}
    if max(sizes.values(), default=0) < batch_size:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise StageError(
            f"training.batch_size={batch_size} is larger than every group of training rows "
            f"of one shape ({listed}); lower it or add rows"
        )


def train(
    config: Config,
    args: argparse.Namespace,
    data: TrainingData,
    base_path: str,
    prompts: dict[str, str],
    precision: str,
    per_device_batch: int,
    stage: StageRun,
    dims: tuple[int, ...],
) -> None:
    """Fine-tune the base model as an embedder and write the release folder; ``dims`` are
    the Matryoshka widths trained (none: the plain loss)."""
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    cfg = config.training
    model = build_embedder(base_path, cfg.max_length, prompts)
    add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    ds_config = None
    if cfg.deepspeed:
        distributed.set_single_process_env()
        ds_config = distributed.deepspeed_config(cfg.deepspeed, _largest_lora_tensor(model))
    checkpoint_dir = config.layout.checkpoint_dir
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=per_device_batch,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        # The GradCache replay takes gradients with torch.autograd.grad, which reentrant
        # checkpointing does not support.
        activation_checkpointing_kwargs={"use_reentrant": False},
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=StepAlignedProportionalBatchSampler,
        # Ranks gather each other's embeddings, which needs the same batch size everywhere.
        dataloader_drop_last=distributed.world_size() > 1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        deepspeed=ds_config,
        report_to=[],
        disable_tqdm=False,
        use_cpu=not _cuda(),
        ddp_backend="gloo" if ds_config is not None and not _cuda() else None,
    )
    infonce = BucketedCachedInfoNCELoss(
        model,
        scale=cfg.scale,
        mini_batch_size=cfg.mini_batch_size,
        length_bucketing=cfg.length_bucketing,
        gather_across_devices=distributed.world_size() > 1,
    )
    loss = with_matryoshka(model, infonce, dims)
    batch = cfg.mini_batch_size
    probes = probe_texts(data.validation or data.train)
    spread_before = mean_pairwise_cosine(model, probes, batch)
    along = StepValidation(model, data.validation, batch, cfg.validation_pairs, cfg.eval_steps)
    trainer = EmbedderTrainer(
        model=model, args=training_args, train_dataset=data.train, loss=loss, callbacks=[along]
    )
    accuracy_before = retrieval_accuracy(model, data.validation, batch, cfg.validation_pairs)
    resume = None if args.fresh else last_complete_checkpoint(checkpoint_dir)
    if resume:
        log.info("resuming from %s", resume)
    started = time.monotonic()
    if resume and is_final(resume, cfg.max_steps):
        log.info("%s is the run's last step: exported as it is, with no further training", resume)
        steps = trainer.restore_final(resume)
    else:
        steps = trainer.train(resume_from_checkpoint=resume).global_step
    runtime = time.monotonic() - started
    # Both are collective under ZeRO-3 (every forward and the adapter read gather the
    # partitioned weights), so every rank runs them before the others stop.
    accuracy_after = retrieval_accuracy(model, data.validation, batch, cfg.validation_pairs)
    adapter_probes = model.encode(probes, batch_size=batch, convert_to_tensor=True)
    adapter_state = lora_state_dict(model)
    if not distributed.is_main_process():
        return
    if ds_config is not None:
        # Training is over: a model loaded while the ZeRO-3 config is registered would be
        # partitioned on load, and the release would be built from empty shards.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    release = merged_embedder(
        base_path, cfg.max_length, prompts, _lora_settings(cfg), adapter_state
    )
    merged_probes = release.encode(probes, batch_size=batch, convert_to_tensor=True)
    checks = {
        "merged_equals_adapter_min_cosine": round(
            float((merged_probes * adapter_probes.to(merged_probes.device)).sum(dim=1).min()), 6
        ),
        "mean_pairwise_cosine_before": spread_before,
        "mean_pairwise_cosine_after": mean_pairwise_cosine(release, probes, batch),
        "pools_eos": pools_eos(release),
    }
    facts = read_dataset_facts(data.source)
    record = TrainingRecord(
        base_model=public_name(cfg.base_model),
        dataset=(facts.repo_id if facts else None) or public_name(data.source),
        dataset_revision=data.revision,
        dataset_repo_id=facts.repo_id if facts else None,
        generator=facts.generator if facts else None,
        languages=facts.languages if facts else [],
        extra_datasets=[
            ExtraDatasetUse(public_name(extra.path), extra.task_definition)
            for extra in cfg.extra_datasets
        ],
        hyperparameters={
            **{k: v for k, v in asdict(cfg).items() if k not in NOT_HYPERPARAMETERS},
            "loss": ("MatryoshkaLoss over " if dims else "")
            + "CachedMultipleNegativesRankingLoss (GradCache InfoNCE)",
            "temperature": 1.0 / cfg.scale if cfg.scale else math.inf,
        },
        seed=cfg.seed,
        steps=steps,
        train_runtime_s=round(runtime, 2),
        final_loss=_final_loss(trainer),
        max_length=cfg.max_length,
        matryoshka_dims=list(dims),
        precision=precision,
        deepspeed=_deepspeed_summary(public_name(cfg.deepspeed), ds_config),
        world_size=distributed.world_size(),
        resumed_from=Path(resume).name if resume else None,
        train_rows={k: len(v) for k, v in data.train.items()},
        decontamination={
            "removed": dict(data.decontaminated.rows),
            "examples": data.decontaminated.examples,
        },
        validation_accuracy_before=accuracy_before,
        validation_accuracy_after=accuracy_after,
        validation_accuracy_curve=validation_curve(trainer.state.log_history),
        loss_curve=[
            (entry["step"], round(float(entry["loss"]), 4))
            for entry in trainer.state.log_history
            if "loss" in entry
        ],
        negatives_per_anchor_share=negatives_share(trainer.batch_shapes, per_device_batch),
        checks=checks,
    )
    save_release(release, stage, record)
    log.info("saved %s (%d steps, %.1f s)", stage.folder, steps, runtime)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _final_loss(trainer: Any) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return float(losses[-1]) if losses else None


def _deepspeed_summary(path: str, ds_config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ds_config:
        return None
    return {"config": path, "zero_stage": ds_config.get("zero_optimization", {}).get("stage")}
