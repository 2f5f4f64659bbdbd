"""Shared pieces for the training tests: one thread, configs, running the stage in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FAMILIES = ("gemma3", "qwen2", "mistral")


def training_section(base: Path, dataset: Path, **overrides: Any) -> dict[str, Any]:
    """A fast training config for the tiny decoders: fp32, small batches, learns in seconds."""
    section = {
        "base_model": str(base),
        "dataset": str(dataset),
        "max_length": 96,
        "batch_size": 16,
        "mini_batch_size": 4,
        "learning_rate": 3e-3,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "epochs": 3.0,
        "lora_dropout": 0.0,
        "precision": "fp32",
        "save_steps": 100,
        # The tiny tokenizers are byte-level BPE, which llama.cpp's converter reads only for
        # known pre-tokenizers; the GGUF export has tests of its own (test_serving.py).
        "gguf": [],
    }
    section.update(overrides)
    return section


def run_training(config_path: Path, *extra: str) -> int:
    from kit.cli import run_stage
    from training.__main__ import add_arguments

    return run_stage(
        "training", "training.run:main", ["--config", str(config_path), *extra], add_arguments,
        runs_anyway=lambda args: args.fresh,
    )  # fmt: skip
