"""The training plan: what a run costs on a named GPU, from the model's shape alone.

``python -m training --config X --plan --gpu H100 --gpus 8`` prints the tokens per step, the
memory per rank (weights, adapter and optimizer state, activations at the configured
mini-batch and checkpointing, the loss's buffers) and the step and total time at a stated
MFU. It reads the base model's ``config.json`` and builds the decoder on PyTorch's meta
device, so it loads no weights and sends nothing.

Activations per token and layer are the tensors a LoRA'd decoder layer keeps for backward,
counted with ``torch.autograd.graph.saved_tensors_hooks`` on CPU (a test checks the formula
against that count): 8 x hidden + 4 x intermediate + 7 x r values, and with LoRA dropout the
dropped copies of each adapted layer's input, 10 x hidden + intermediate more. FLOPs count
every pass the kit's GradCache step runs: the no-gradient pass that fills the embedding
cache (when a rank's batch spans several mini-batches), the replayed forward, the
checkpointing recompute and the backward, which for frozen weights computes input gradients
only. Communication (the gradient reduction, ZeRO-3's gathers) is not counted.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.cli import StageError
from kit.config import Config, TrainingSection

GB = 1e9
DEFAULT_MFU = 0.4
# The paper's synthetic rows, the row count assumed when no local dataset says otherwise.
PAPER_ROWS = 500_000


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float
    bf16_tflops: float  # dense, by the vendor's datasheet


GPUS = {
    gpu.name.lower(): gpu
    for gpu in (
        Gpu("A100-40GB", 40, 312),
        Gpu("A100", 80, 312),
        Gpu("L40S", 48, 362),
        Gpu("H100", 80, 989),
        Gpu("H200", 141, 989),
    )
}


@dataclass(frozen=True)
class ModelShape:
    """A decoder's sizes as the plan needs them, with LoRA on all its linear layers."""

    parameters: int
    matmul_parameters: int  # all but the input embedding (a lookup, not a product)
    layer_parameters: int
    layers: int
    hidden: int
    intermediate: int
    attention_width: int  # heads x head dim
    lora_parameters: int
    largest_lora_tensor: int


def model_shape(base_config: Any, lora_r: int) -> ModelShape:
    """Sizes of the decoder the embedder wraps (``AutoModel``, no LM head), built on the meta
    device: shapes without storage."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(base_config)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise StageError(f"{base_config.model_type}: no linear layers for LoRA to adapt")
    text = base_config.get_text_config()
    parameters = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(
        parameters=parameters,
        matmul_parameters=parameters - embedding,
        layer_parameters=(parameters - embedding) // text.num_hidden_layers,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        attention_width=heads * head_dim,
        lora_parameters=sum(lora_r * (m.in_features + m.out_features) for m in linears),
        largest_lora_tensor=max(lora_r * max(m.in_features, m.out_features) for m in linears),
    )


def activation_values_per_token_layer(shape: ModelShape, lora_r: int, dropout: float) -> int:
    """Values one decoder layer keeps for backward per token (see the module docstring)."""
    values = 8 * shape.hidden + 4 * shape.intermediate + 7 * lora_r
    if dropout > 0:
        values += 10 * shape.hidden + shape.intermediate
    return values


def linear_flops_per_token(shape: ModelShape, passes: int) -> int:
    """Products of the linear layers: ``passes`` times the forward (2 per weight), plus the
    adapter's weight gradients; frozen weights get input gradients only."""
    lora = shape.lora_parameters
    return passes * 2 * (shape.matmul_parameters + lora) + 2 * lora


@dataclass(frozen=True)
class Setting:
    """The run being planned: the config's recipe on ``gpus`` ranks."""

    gpus: int
    batch_size: int
    mini_batch_size: int
    max_length: int
    mean_tokens: int
    texts_per_row: int
    precision: str
    deepspeed: bool  # DeepSpeed holds the weights in the precision; autocast keeps them fp32
    zero_stage: int
    checkpointing: bool
    lora_r: int
    lora_dropout: float

    @property
    def rank_batch(self) -> int:
        return self.batch_size // self.gpus

    @property
    def passes(self) -> int:
        """Forward-sized passes per step: cache pass (GradCache), forward, recompute, backward."""
        cache = 1 if self.mini_batch_size < self.rank_batch else 0
        return cache + 2 + (1 if self.checkpointing else 0)


def memory_per_rank(shape: ModelShape, setting: Setting) -> dict[str, float]:
    """Bytes per rank by what holds them."""
    half = setting.precision in ("bf16", "fp16")
    weight_bytes = 2 if half and setting.deepspeed else 4
    activation_bytes = 2 if half else 4
    world = setting.gpus
    if setting.zero_stage == 3:  # a partition, plus one layer gathered and one prefetched
        weights = shape.parameters * weight_bytes / world + 2 * shape.layer_parameters * 2
    else:
        weights = shape.parameters * weight_bytes
    lora = shape.lora_parameters
    # Weights, gradients and the GradCache gradient sum; Adam's two moments and, under
    # DeepSpeed, its fp32 master copy, partitioned across ranks by ZeRO.
    state = (12 if setting.deepspeed else 8) * lora / (world if setting.zero_stage >= 1 else 1)
    adapter = 3 * lora * weight_bytes + state
    tokens = setting.mini_batch_size * setting.max_length
    layer = activation_values_per_token_layer(shape, setting.lora_r, setting.lora_dropout)
    if setting.checkpointing:
        activations = tokens * activation_bytes * (shape.layers * shape.hidden + layer)
    else:
        activations = tokens * activation_bytes * shape.layers * layer
    texts = setting.rank_batch * setting.texts_per_row
    gathered = setting.batch_size * setting.texts_per_row
    documents = setting.batch_size * (setting.texts_per_row - 1)
    loss = (
        2 * texts * shape.hidden * 4  # cached embeddings and their gradients (fp32)
        + gathered * shape.hidden * activation_bytes  # every rank's embeddings
        + 2 * setting.rank_batch * documents * 4  # scores and their softmax
    )
    return {
        "base weights": weights,
        "adapter, gradients and optimizer": adapter,
        "activations": activations,
        "loss buffers": loss,
    }


def step_flops_per_rank(shape: ModelShape, setting: Setting) -> float:
    tokens = setting.rank_batch * setting.texts_per_row * setting.mean_tokens
    linear = linear_flops_per_token(shape, setting.passes)
    # Causal attention over half the length on average: QK^T and AV, backward twice forward.
    attention = 2 * 2 * (setting.mean_tokens / 2) * shape.attention_width * shape.layers
    return tokens * (linear + (setting.passes + 1) * attention)


def zero_stage_for(shape: ModelShape, setting: Setting, gpu_memory: float) -> tuple[int, str]:
    """ZeRO-2 when a rank holds the whole bf16 base and its working set; ZeRO-3 otherwise.

    For LoRA on a frozen base, ZeRO-3 would all-gather every layer for every GradCache pass
    (cache, forward, recompute, backward) of every mini-batch; ZeRO-2 keeps the base whole.
    """
    two = memory_per_rank(shape, _with_stage(setting, 2))
    total = sum(two.values())
    if total <= 0.9 * gpu_memory:
        return 2, (
            f"ZeRO-2: the base ({two['base weights'] / GB:.1f} GB) and a rank's working set "
            f"({total / GB:.1f} GB in all) fit in {gpu_memory / GB:.0f} GB, and ZeRO-3 would "
            "gather the base for every GradCache pass"
        )
    return 3, (
        f"ZeRO-3: a rank under ZeRO-2 would need {total / GB:.1f} GB, more than 90% of "
        f"{gpu_memory / GB:.0f} GB, so the base is partitioned (built under zero.Init)"
    )


def _with_stage(setting: Setting, stage: int) -> Setting:
    from dataclasses import replace

    return replace(setting, deepspeed=True, zero_stage=stage)


def training_steps(cfg: TrainingSection, rows: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return math.ceil(rows * cfg.epochs / cfg.batch_size)


# ---- the command ----------------------------------------------------------------------------


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plan (with --plan; loads no weights, sends nothing)")
    group.add_argument("--plan", action="store_true", help="print the training plan and stop")
    group.add_argument("--gpu", default="H100", help=f"one of {_gpu_names()}")
    for flag, kind, default, text in (
        ("--gpus", int, 0, "GPU count (default: nnodes x num_processes)"),
        ("--mfu", float, DEFAULT_MFU, "share of the GPU's bf16 peak the step reaches"),
        ("--rows", int, 0, "training rows (default: the local dataset's, else 500,000)"),
        ("--mean-tokens", int, 0, "mean tokens per text (default: max_length, an upper bound)"),
        ("--negatives", int, 1, "hard negatives per row"),
        ("--base-config", str, "", "a folder or config.json with the base model's shape"),
    ):
        group.add_argument(flag, type=kind, default=default, help=text)


def _gpu_names() -> str:
    return ", ".join(gpu.name for gpu in GPUS.values())


def _base_config(reference: str) -> Any:
    from transformers import AutoConfig

    from kit.bundled import resolve_model

    path = Path(reference)
    if path.is_file():
        path = path.parent
    try:
        if reference and path.is_dir():
            return AutoConfig.from_pretrained(str(path))
        return AutoConfig.from_pretrained(resolve_model(reference), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise StageError(
            f"the plan reads the base model's config.json and found none for {reference!r} "
            f"({str(exc).splitlines()[0]}); fetch it (`hf download ID config.json`) or pass "
            "--base-config"
        ) from None


def _local_rows(source: str) -> int | None:
    """Rows of the train split of a local dataset folder, from its Parquet footers."""
    import pyarrow.parquet as pq

    from kit.schema import UNIFIED_CONFIG

    shards = sorted(Path(source).glob(f"data/{UNIFIED_CONFIG}/train-*.parquet"))
    return sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards) or None


def plan_text(config: Config, args: argparse.Namespace, gpu_memory: float | None = None) -> str:
    """The plan as printed; ``gpu_memory`` overrides the named GPU's (for the run's check)."""
    from kit.staleness import training_source

    cfg = config.training
    gpu = GPUS.get(args.gpu.lower())
    if gpu is None:
        raise StageError(f"--gpu {args.gpu}: unknown; pick one of {_gpu_names()}")
    gpus = args.gpus or cfg.nnodes * cfg.num_processes
    if cfg.batch_size % gpus:
        raise StageError(f"training.batch_size={cfg.batch_size} is not divisible by {gpus} GPUs")
    shape = model_shape(_base_config(args.base_config or cfg.base_model), cfg.lora_r)
    local = _local_rows(training_source(config)) if not args.rows else None
    rows = args.rows or local or PAPER_ROWS
    rows_source = (
        "given" if args.rows else "the local dataset" if local else "the paper's synthetic rows"
    )
    setting = Setting(
        gpus=gpus,
        batch_size=cfg.batch_size,
        mini_batch_size=cfg.mini_batch_size,
        max_length=cfg.max_length,
        mean_tokens=args.mean_tokens or cfg.max_length,
        texts_per_row=2 + args.negatives,
        precision="bf16" if cfg.precision == "auto" else cfg.precision,
        deepspeed=bool(cfg.deepspeed) or gpus > 1,
        zero_stage=0,
        checkpointing=cfg.gradient_checkpointing,
        lora_r=cfg.lora_r,
        lora_dropout=cfg.lora_dropout,
    )
    memory = gpu_memory or gpu.memory_gb * GB
    stage, reason = _planned_stage(cfg.deepspeed, shape, setting, memory)
    setting = _with_stage(setting, stage) if setting.deepspeed else setting
    parts = memory_per_rank(shape, setting)
    flops = step_flops_per_rank(shape, setting)
    step_s = flops / (gpu.bf16_tflops * 1e12 * args.mfu)
    steps = training_steps(cfg, rows)
    tokens = cfg.batch_size * setting.texts_per_row * setting.mean_tokens
    fill = "max_length, an upper bound" if not args.mean_tokens else "given mean"
    lines = [
        f"Training plan: {config.path.name} on {gpus} x {gpu.name} "
        f"({gpu.memory_gb:.0f} GB, {gpu.bf16_tflops:.0f} TFLOP/s bf16 dense)",
        f"  base model     {cfg.base_model}: {shape.parameters / 1e9:.2f}B parameters, "
        f"{shape.layers} layers, hidden {shape.hidden}, {setting.precision}",
        f"  adapter        LoRA r={cfg.lora_r} on all linear layers: "
        f"{shape.lora_parameters / 1e6:.1f}M parameters "
        f"({100 * shape.lora_parameters / shape.parameters:.2f}%)",
        f"  DeepSpeed      {reason}",
        f"  batch          {cfg.batch_size} rows x {setting.texts_per_row} texts, "
        f"{setting.rank_batch} rows per rank, mini-batch {cfg.mini_batch_size}, "
        f"{setting.passes} passes per step",
        f"  tokens/step    {tokens:,} ({setting.mean_tokens} tokens per text: {fill})",
        "  memory per rank",
        *(f"    {name:<34} {value / GB:7.2f} GB" for name, value in parts.items()),
        f"    {'total':<34} {sum(parts.values()) / GB:7.2f} GB of {memory / GB:.0f} GB",
        f"  step time      {flops / 1e15:.1f} PFLOP per rank: {step_s:.1f} s at MFU "
        f"{args.mfu:.0%} (compute only)",
        f"  total          {rows:,} rows ({rows_source}) x {cfg.epochs:g} epoch = {steps} steps: "
        f"{steps * step_s / 3600:.1f} h; a checkpoint every {cfg.save_steps} steps "
        f"({cfg.save_steps * step_s / 60:.0f} min)",
    ]
    return "\n".join(lines)


def _planned_stage(
    deepspeed: str, shape: ModelShape, setting: Setting, memory: float
) -> tuple[int, str]:
    if not setting.deepspeed:
        return 0, "none (one process)"
    if deepspeed in ("", "auto"):
        stage, reason = zero_stage_for(shape, setting, memory)
        return stage, f"auto: {reason}"
    from training.distributed import zero_stage_of

    stage = zero_stage_of(deepspeed)
    return stage, f"ZeRO-{stage} ({Path(deepspeed).name})"


def main(config: Config, args: argparse.Namespace) -> None:
    print(plan_text(config, args))
