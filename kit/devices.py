"""Where and how a model encodes: device, precision and batch size, each with its reason.

The evaluation and the hard-negative miner encode the same way. The device is the one
sentence-transformers picks (``get_device_name``: CUDA when present, else MPS and the other
accelerators, else CPU) unless the config names one; with several GPUs every one of them
encodes, each in a process of sentence-transformers' multi-process pool. A decoder runs in
bf16 on a GPU (fp16 where the GPU has no bf16): fp32 would double its memory and time for
no gain in ranking. Encoders and every model on a CPU stay in fp32. The batch size is the
configured one, else 32 on a CPU, else the largest power of two whose activations fit in half
of the GPU memory left once the model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kit.errors import StageError

CPU_BATCH = 32
GPU_BATCH_RANGE = (8, 1024)
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class EncodePlan:
    """How one model encodes, and why (for the stage log and the card)."""

    device: str
    dtype: str
    batch_size: int
    reason: str
    # One encoding process per device when there are several (sentence-transformers' pool).
    pool_devices: tuple[str, ...] = ()

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> str:
        where = ", ".join(self.pool_devices) if self.pool_devices else self.device
        return f"{where}, {self.dtype}, batch {self.batch_size} ({self.reason})"


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    pool_devices: tuple[str, ...]
    reason: str


def choose_device(configured: str = "auto", key: str = "evaluation.device") -> DeviceChoice:
    """``auto``: sentence-transformers' pick, every GPU when CUDA has several; otherwise the
    device (or GPUs) named, which must be present."""
    import torch
    from sentence_transformers.util import get_device_name

    if configured == "auto":
        device = get_device_name()
        count = torch.cuda.device_count() if device.startswith("cuda") else 0
        if count > 1:
            gpus = tuple(f"cuda:{i}" for i in range(count))
            return DeviceChoice(gpus[0], gpus, f"auto: {count} GPUs, one encoding process each")
        reason = "auto: CUDA is present" if count else f"auto: no CUDA device, so {device}"
        return DeviceChoice(device, (), reason)
    names = [name.strip() for name in configured.split(",")]
    if any(name.startswith("cuda") for name in names):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        indices = [int(name.split(":")[1]) if ":" in name else 0 for name in names]
        missing = [name for name, i in zip(names, indices, strict=True) if i >= count]
        if missing:
            raise StageError(f"{key}: {missing[0]} is not available here ({count} CUDA devices)")
    pool = tuple(names) if len(names) > 1 else ()
    return DeviceChoice(names[0], pool, "configured")


def is_decoder(config: Any) -> bool:
    """A causal language model (Mistral, Qwen2, Gemma...), not a masked-LM encoder."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "")
    causal, masked = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return kind in causal and kind not in masked


def choose_dtype(configured: str, device: str, decoder: bool) -> tuple[str, str]:
    """The precision to load the model in, and why."""
    import torch

    if configured != "auto":
        return DTYPES[configured], "configured"
    if not device.startswith("cuda"):
        return "float32", f"fp32 on {device.split(':')[0]}"
    if not decoder:
        return "float32", "fp32 for an encoder"
    if torch.cuda.is_bf16_supported():
        return "bfloat16", "bf16 for a decoder on a GPU"
    return "float16", "fp16 for a decoder on a GPU without bf16"


def model_config(path: str) -> Any | None:
    """The transformers config of a model folder or Hub id (``None`` when it has none)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None


def _per_sequence_bytes(config: Any, max_length: int, dtype: str) -> int:
    """Activations one sequence holds at once in a forward pass (no gradients kept): the
    feed-forward's widest tensors and one layer's attention scores."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 1024))
    inner = int(getattr(text, "intermediate_size", 4 * hidden))
    heads = int(getattr(text, "num_attention_heads", 16))
    per_token = 2 * inner + 4 * hidden
    return BYTES[dtype] * max_length * (per_token + heads * max_length)


def choose_batch_size(
    configured: int, device: str, config: Any, max_length: int, dtype: str
) -> tuple[int, str]:
    """The configured batch size, else one fitted to the device."""
    import torch

    if configured:
        return configured, "configured"
    if not device.startswith("cuda") or config is None:
        return CPU_BATCH, f"{CPU_BATCH} off a GPU"
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    fits = free // 2 // _per_sequence_bytes(config, max_length, dtype)
    low, high = GPU_BATCH_RANGE
    batch = max(low, min(high, 1 << max(0, int(fits).bit_length() - 1)))
    return batch, f"fitted to half the free memory of {device} at {max_length} tokens a text"


def plan_encoding(
    device: DeviceChoice, precision: str, batch_size: int, config: Any
) -> EncodePlan:
    """Device, precision and the configured batch (0: fitted once the model is loaded, by
    ``fit_batch``) for a model with this transformers config."""
    decoder = config is not None and is_decoder(config)
    dtype, dtype_reason = choose_dtype(precision, device.device, decoder)
    reason = f"device {device.reason}; {dtype_reason}"
    return EncodePlan(device.device, dtype, batch_size, reason, device.pool_devices)


def fit_batch(plan: EncodePlan, config: Any, max_length: int) -> EncodePlan:
    """The plan with its batch size chosen, once the model sits on its device."""
    batch, why = choose_batch_size(plan.batch_size, plan.device, config, max_length, plan.dtype)
    return EncodePlan(plan.device, plan.dtype, batch, f"{plan.reason}; batch {why}",
                      plan.pool_devices)  # fmt: skip


@contextmanager
def encode_pool(model: Any, plan: EncodePlan | None) -> Iterator[Any]:
    """sentence-transformers' multi-process pool, one process per device, when the plan
    spans several (``None`` otherwise), stopped when the work is done."""
    if plan is None or not plan.pool_devices:
        yield None
        return
    pool = model.start_multi_process_pool(list(plan.pool_devices))
    try:
        yield pool
    finally:
        model.stop_multi_process_pool(pool)


def encode_kwargs(plan: EncodePlan, pool: Any = None) -> dict[str, Any]:
    """What ``SentenceTransformer.encode`` (and mteb's wrapper around it) is given."""
    kwargs: dict[str, Any] = {"batch_size": plan.batch_size}
    if pool is not None:
        kwargs["pool"] = pool
    return kwargs
