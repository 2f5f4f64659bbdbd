"""Launchers, nodes and DeepSpeed configs.

A multi-process run either starts under an outside launcher (``torchrun``, ``accelerate
launch``: the stage finds ``LOCAL_RANK`` and trains) or the stage, once its checks pass and
its data is prepared, replaces its own process with the launcher (``os.execv``), so the
parent holds nothing while the workers train. Nodes, the node's rank and the rendezvous
endpoint come from ``[training]`` or from torchrun's own environment variables
(``PET_NNODES``, ``PET_NODE_RANK``, ``PET_RDZV_ENDPOINT``), which win, so one config serves
every node. A single process with DeepSpeed gets the launcher environment set here, so tests
exercise the same path on one CPU process with the gloo backend.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.cli import StageError
from kit.config import AUTO_DEEPSPEED, TrainingSection
from kit.net import free_port

log = logging.getLogger(__name__)


def is_launched() -> bool:
    return "LOCAL_RANK" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Nodes:
    """How many nodes take part, which one this is, and where they meet."""

    count: int
    rank: int
    endpoint: str


def node_count(cfg: TrainingSection) -> int:
    return int(os.environ.get("PET_NNODES") or cfg.nnodes)


def nodes(cfg: TrainingSection) -> Nodes:
    """``[training]`` nnodes, node_rank and rdzv_endpoint, each overridden by torchrun's
    environment variable of the same meaning: where the kit's own launch meets the others."""
    env = os.environ
    found = Nodes(
        count=node_count(cfg),
        rank=int(env.get("PET_NODE_RANK") or cfg.node_rank),
        endpoint=env.get("PET_RDZV_ENDPOINT") or cfg.rdzv_endpoint,
    )
    if found.count > 1 and not found.endpoint:
        raise StageError(
            f"training.nnodes = {found.count} needs training.rdzv_endpoint (host:port of node "
            "0), or PET_RDZV_ENDPOINT"
        )
    if not 0 <= found.rank < found.count:
        raise StageError(f"training.node_rank = {found.rank} is not below nnodes = {found.count}")
    return found


def expected_world(cfg: TrainingSection) -> int:
    return node_count(cfg) * cfg.num_processes


def check_world_size(expected: int) -> None:
    """A launcher that starts another number of workers than configured would silently
    change the global batch (each worker takes batch_size / world size rows)."""
    if is_launched() and world_size() != expected:
        raise StageError(
            f"the launcher started {world_size()} processes but training.num_processes is "
            f"{expected} (nnodes x num_processes); set training.num_processes (per node) and "
            "training.nnodes to the launcher's"
        )


def set_single_process_env() -> None:
    """What a launcher would set for one process, so DeepSpeed can initialize."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def launch_command(
    launcher: str, num_processes: int, stage_args: list[str], where: Nodes, port: int
) -> list[str]:
    """The command that runs this stage on ``num_processes`` workers per node.

    One node meets on a free local port, so two runs on one machine do not both take the
    default 29500; several nodes meet at the rendezvous endpoint (node 0's address), with
    torchrun's static rendezvous so node ranks are the configured ones. ``accelerate
    launch`` without ``--multi_gpu`` (and without a saved accelerate config) starts a single
    process on a machine without several GPUs; ``--multi_gpu`` is its torchrun-based
    launcher, which works on CPU (gloo) as well.
    """
    stage = ["-m", "training", *stage_args]
    if launcher == "torchrun":
        meet = (
            [f"--rdzv-endpoint={where.endpoint}"] if where.count > 1 else [f"--master_port={port}"]
        )
        return [
            sys.executable, "-m", "torch.distributed.run", f"--nnodes={where.count}",
            f"--node_rank={where.rank}", f"--nproc_per_node={num_processes}", *meet, *stage,
        ]  # fmt: skip
    host, _, node_port = where.endpoint.rpartition(":") if where.count > 1 else ("", "", "")
    meet = (
        ["--main_process_ip", host, "--main_process_port", node_port]
        if where.count > 1
        else ["--main_process_port", str(port)]
    )
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", str(num_processes * where.count),
        "--num_machines", str(where.count), "--machine_rank", str(where.rank), *meet, *stage,
    ]  # fmt: skip


def relaunch(launcher: str, num_processes: int, stage_args: list[str], where: Nodes) -> None:
    """Become the launcher: this process is replaced, so it holds no memory of its own while
    the workers run, and the launcher's exit status is the stage's."""
    command = launch_command(launcher, num_processes, stage_args, where, free_port())
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def resolve_deepspeed(setting: str, stage: int) -> Path | None:
    """The ZeRO config file a setting names: none, a path, or the kit's for ``stage``."""
    if not setting:
        return None
    if setting == "auto":
        return AUTO_DEEPSPEED[stage]
    return Path(setting)


def zero_stage_of(path: str | Path) -> int:
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise StageError(f"{path}: zero_optimization.stage must be 0..3, got {stage!r}")
    return stage


def deepspeed_config(path: str | Path, lora_param_numel: int) -> dict[str, Any]:
    """Load a ZeRO config; under ZeRO-3 keep the (small) LoRA tensors whole on every rank.

    A partitioned LoRA tensor has no data outside its module's forward pass: the GradCache
    replay deposits its gradient after all mini-batches, and ZeRO-3 checkpoints and exports
    could read empty tensors (tevatron #118). Persisting tensors up to the largest LoRA
    tensor costs a few MB and keeps the frozen base weights partitioned. Nothing gathers the
    16-bit model at a save: checkpoints hold the adapter and its optimizer state, and the
    release is rebuilt from the base weights plus the adapter.
    """
    zero_stage_of(path)
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        threshold = zero.get("stage3_param_persistence_threshold")
        if not isinstance(threshold, int) or threshold < lora_param_numel:
            zero["stage3_param_persistence_threshold"] = lora_param_numel
    return config
