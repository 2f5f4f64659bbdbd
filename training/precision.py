"""Pick the training precision, and refuse one the hardware cannot run, before any work."""

from __future__ import annotations

from kit.cli import StageError


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
