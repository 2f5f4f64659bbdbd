"""The training stage: check, prepare the data, fine-tune with GradCache InfoNCE, export.

Three steps, one function each: the training arguments (``training.arguments``: every check
of the config, then the trainer's arguments), the run (model, loss, trainer, resume) and the
record (``training_record.json`` with the release). With several processes and no outside
launcher, this process checks the config, prepares the data (which checks it too) and then
becomes the launcher, so a bad config or dataset costs seconds, not a failed multi-GPU job,
and the parent holds nothing while the workers train.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kit.artifacts import ExtraDatasetUse, TrainingRecord
from kit.cli import StageError
from kit.config import Config
from kit.decontamination import EvaluationNgrams
from kit.embedder import build_embedder
from kit.instructions import release_prompts
from kit.provenance import public_name, read_provenance
from kit.staleness import StageRun, training_source, why_stale
from training import distributed
from training.adapter import add_lora, lora_state_dict, merged_embedder, save_release
from training.arguments import Settings, check_settings, training_arguments
from training.checkpoints import is_final, keep_only_this_runs_state, last_complete_checkpoint
from training.data import TrainingData, build_groups, read_dataset_facts, read_groups
from training.diagnostics import (
    Validation,
    before_training,
    mean_pairwise_cosine,
    negatives_share,
    pools_eos,
    probe_texts,
    retrieval_accuracy,
    validation_curve,
    validation_evaluator,
)
from training.loss import BucketedCachedInfoNCELoss, with_matryoshka
from training.trainer import EmbedderTrainer

log = logging.getLogger(__name__)
# Recorded elsewhere in the record by their public names only, or not at all (where a node
# takes part says nothing about the model, and a host name must not be published).
NOT_HYPERPARAMETERS = ("base_model", "dataset", "synthetic_rows", "extra_datasets", "deepspeed",
                       "node_rank", "rdzv_endpoint")  # fmt: skip
DATA_FOLDER = "data"


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    settings = check_settings(config, release_prompts())
    cfg = config.training
    if settings.world == 1 or distributed.is_launched():
        train(config, settings, stage, fresh=args.fresh)
        return
    where = distributed.nodes(cfg)
    prepare_data(config, stage)
    nodes = f" per node, node {where.rank} of {where.count}" if where.count > 1 else ""
    log.info("relaunching under %s on %d processes%s", cfg.launcher, cfg.num_processes, nodes)
    passed = [flag for flag in ("force", "fresh") if getattr(args, flag, False)]
    stage_args = ["--config", str(config.path), *(f"--{flag}" for flag in passed)]
    distributed.relaunch(cfg.launcher, cfg.num_processes, stage_args, where)


def prepare_data(config: Config, stage: StageRun) -> TrainingData:
    """The training groups, built once beside the checkpoints and memory-mapped by every
    process. A node's first process builds them when the folder holds none of this run (a
    bad dataset, or one with no group that fills a batch, then fails before anything is
    written), and clears other runs' state."""
    cfg = config.training
    folder = config.layout.checkpoint_dir
    groups = folder / DATA_FOLDER
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        ours = why_stale(read_provenance(folder), stage.expected) is None
        if not ours or read_groups(groups) is None:
            held_out = config.held_out
            ngrams = (
                EvaluationNgrams.build(
                    cfg.decontamination_ngram, held_out.local_tasks, held_out.registry_tasks
                )
                if cfg.decontaminate and cfg.extra_datasets
                else None
            )
            build_groups(
                groups, folder.parent, training_source(config), cfg.synthetic_rows,
                cfg.extra_datasets, ngrams, cfg.batch_size,
                make_room=lambda: keep_only_this_runs_state(folder, stage.expected),
            )  # fmt: skip
    data = read_groups(groups)
    if data is None:
        raise StageError(
            f"{groups} holds no complete training data (the first process of each node "
            "builds it there)"
        )
    if data.decontaminated.rows:
        log.info("left out of the public sets, sharing text with evaluation sets: %s",
                 dict(data.decontaminated.rows))  # fmt: skip
    return data


def train(config: Config, settings: Settings, stage: StageRun, fresh: bool) -> None:
    """Arguments, data, run, and on the main process the release with its record."""
    arguments, ds_config = training_arguments(config, settings)
    with arguments.main_process_first(local=True, desc="training data"):
        data = prepare_data(config, stage)
    outcome = run(config, settings, arguments, data, fresh)
    if not distributed.is_main_process():
        return
    if ds_config is not None:
        # Training is over: a model loaded while the ZeRO-3 config is registered would be
        # partitioned on load, and the release would be built from empty shards.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    cfg = config.training
    lora = {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout}
    release = merged_embedder(
        settings.base_path, cfg.max_length, settings.prompts, lora, outcome.adapter_state
    )
    record = training_record(config, settings, data, outcome, release)
    save_release(release, stage, record)
    log.info("saved %s (%d steps, %.1f s)", stage.folder, outcome.steps, outcome.runtime_s)


@dataclass(frozen=True)
class Outcome:
    """What the run leaves for the record: the trainer's state and the trained adapter."""

    trainer: Any
    steps: int
    runtime_s: float
    resumed_from: str | None
    accuracy_after: float | None
    probes: list[str]
    adapter_probes: Any
    adapter_state: dict[str, Any]


def run(
    config: Config, settings: Settings, arguments: Any, data: TrainingData, fresh: bool
) -> Outcome:
    """Build the model (after the arguments, so ZeRO-3 partitions it at load), train or
    resume, and read the adapter back; every rank runs all of it."""
    cfg = config.training
    model = build_embedder(settings.base_path, cfg.max_length, settings.prompts)
    add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    infonce = BucketedCachedInfoNCELoss(
        model,
        scale=cfg.scale,
        mini_batch_size=cfg.mini_batch_size,
        length_bucketing=cfg.length_bucketing,
        gather_across_devices=settings.world > 1,
    )
    batch = cfg.mini_batch_size
    evaluator = validation_evaluator(data.validation, batch, cfg.validation_pairs)
    probes = probe_texts(data.validation or data.train)
    trainer = EmbedderTrainer(
        model=model,
        args=arguments,
        train_dataset=data.train,
        loss=with_matryoshka(model, infonce, settings.dims),
        callbacks=[Validation(model, evaluator, probes, batch, cfg.eval_steps)],
    )
    resume = None if fresh else last_complete_checkpoint(config.layout.checkpoint_dir)
    if resume:
        log.info("resuming from %s", resume)
    started = time.monotonic()
    if resume and is_final(resume, cfg.max_steps):
        log.info("%s is the run's last step: exported as it is, with no further training", resume)
        steps = trainer.restore_final(resume)
    else:
        steps = trainer.train(resume_from_checkpoint=resume).global_step
    runtime = time.monotonic() - started
    # Collective under ZeRO-3 (every forward and the adapter read gather the partitioned
    # weights), so every rank runs them before the others stop.
    return Outcome(
        trainer=trainer,
        steps=steps,
        runtime_s=runtime,
        resumed_from=Path(resume).name if resume else None,
        accuracy_after=retrieval_accuracy(model, evaluator),
        probes=probes,
        adapter_probes=model.encode(probes, batch_size=batch, convert_to_tensor=True),
        adapter_state=lora_state_dict(model),
    )


def training_record(
    config: Config, settings: Settings, data: TrainingData, outcome: Outcome, release: Any
) -> TrainingRecord:
    cfg = config.training
    trainer = outcome.trainer
    history = trainer.state.log_history
    batch = cfg.mini_batch_size
    merged_probes = release.encode(outcome.probes, batch_size=batch, convert_to_tensor=True)
    adapter_probes = outcome.adapter_probes.to(merged_probes.device)
    before = before_training(history)
    facts = read_dataset_facts(data.source)
    return TrainingRecord(
        base_model=public_name(cfg.base_model),
        dataset=(facts.repo_id if facts else None) or public_name(data.source),
        dataset_revision=data.revision,
        synthetic_rows=cfg.synthetic_rows,
        dataset_repo_id=facts.repo_id if facts else None,
        generator=facts.generator if facts else None,
        languages=facts.languages if facts else [],
        extra_datasets=[
            ExtraDatasetUse(public_name(extra.path), extra.task_definition, extra.max_rows)
            for extra in cfg.extra_datasets
        ],
        hyperparameters={
            **{k: v for k, v in asdict(cfg).items() if k not in NOT_HYPERPARAMETERS},
            "loss": ("MatryoshkaLoss over " if settings.dims else "")
            + "CachedMultipleNegativesRankingLoss (GradCache InfoNCE)",
            "temperature": 1.0 / cfg.scale if cfg.scale else math.inf,
        },
        seed=cfg.seed,
        steps=outcome.steps,
        train_runtime_s=round(outcome.runtime_s, 2),
        final_loss=_last(history, "loss"),
        max_length=cfg.max_length,
        matryoshka_dims=list(settings.dims),
        precision=settings.precision,
        deepspeed=(
            {"config": public_name(cfg.deepspeed), "zero_stage": settings.zero_stage}
            if settings.deepspeed is not None
            else None
        ),
        world_size=distributed.world_size(),
        resumed_from=outcome.resumed_from,
        train_rows={k: len(v) for k, v in data.train.items()},
        decontamination={
            "removed": dict(data.decontaminated.rows),
            "examples": data.decontaminated.examples,
        },
        validation_accuracy_before=before.get("validation_accuracy_at_1"),
        validation_accuracy_after=outcome.accuracy_after,
        validation_accuracy_curve=validation_curve(history),
        loss_curve=[
            (entry["step"], round(float(entry["loss"]), 4)) for entry in history if "loss" in entry
        ],
        negatives_per_anchor_share=negatives_share(
            trainer.batch_shapes, settings.per_device_batch
        ),
        checks={
            "merged_equals_adapter_min_cosine": round(
                float((merged_probes * adapter_probes).sum(dim=1).min()), 6
            ),
            "mean_pairwise_cosine_before": before.get("mean_pairwise_cosine"),
            "mean_pairwise_cosine_after": mean_pairwise_cosine(release, outcome.probes, batch),
            "pools_eos": pools_eos(release),
            "repeated_texts_in_gathered_steps": trainer.repeated_texts,
        },
    )


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return float(values[-1]) if values else None

