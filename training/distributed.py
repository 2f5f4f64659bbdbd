"""DeepSpeed and launcher plumbing.

A multi-process run is started by re-executing this stage under ``torchrun`` or
``accelerate launch``; a single process with DeepSpeed gets the launcher environment
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) set here, so tests exercise the same path on
one CPU process with the gloo backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kit.cli import StageError
from kit.net import free_port

LAUNCHED_MARKER = "SYNTHEMBED_LAUNCHED"


def is_launched() -> bool:
    return os.environ.get(LAUNCHED_MARKER) == "1" or "LOCAL_RANK" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_world_size(expected: int) -> None:
    """A launcher that starts another number of workers than configured would silently
    change the global batch (each worker takes batch_size / num_processes rows)."""
    if is_launched() and world_size() != expected:
        raise StageError(
            f"the launcher started {world_size()} processes but training.num_processes is "
            f"{expected}; set training.num_processes to the number of workers"
        )


def set_single_process_env() -> None:
    """What a launcher would set for one process, so DeepSpeed can initialize."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def launch_command(launcher: str, num_processes: int, config_path: str, port: int) -> list[str]:
    """The command that re-runs this stage on ``num_processes`` workers.

    ``accelerate launch`` without ``--multi_gpu`` (and without a saved accelerate config)
    starts a single process on a machine without several GPUs; ``--multi_gpu`` is its
    torchrun-based launcher, which works on CPU (gloo) as well. The rendezvous port is
    passed explicitly so two runs on one machine do not both take the default 29500.
    """
    stage = ["-m", "training", "--config", config_path]
    if launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={num_processes}",
            f"--master_port={port}",
            *stage,
        ]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(port),
        *stage,
    ]


def relaunch(launcher: str, num_processes: int, config_path: str) -> None:
    """Run the stage under the launcher and wait; a failed worker fails the stage."""
    env = {**os.environ, LAUNCHED_MARKER: "1"}
    command = launch_command(launcher, num_processes, config_path, free_port())
    result = subprocess.run(command, env=env, check=False)
    if result.returncode:
        raise StageError(f"{launcher} run failed with exit code {result.returncode}")


def deepspeed_config(path: str, lora_param_numel: int) -> dict[str, Any]:
    """Load a ZeRO config; under ZeRO-3 keep the (small) LoRA tensors whole on every rank.

    A partitioned LoRA tensor has no data outside its module's forward pass: the GradCache
    replay deposits its gradient after all mini-batches, and ZeRO-3 checkpoints and exports
    could read empty tensors (tevatron #118). Persisting tensors up to the largest LoRA
    tensor costs a few MB and keeps the frozen base weights partitioned.
    """
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    zero = config.setdefault("zero_optimization", {})
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise StageError(f"{path}: zero_optimization.stage must be 0..3, got {stage!r}")
    if stage == 3:
        threshold = zero.get("stage3_param_persistence_threshold")
        if not isinstance(threshold, int) or threshold < lora_param_numel:
            zero["stage3_param_persistence_threshold"] = lora_param_numel
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return config
