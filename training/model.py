"""LoRA on the wrapped decoder, the trained adapter's weights, and the merge for release.

The wrapping itself is the kit's embedder recipe (``kit.embedder``), shared with the model
card's base comparison and the dataset stage's negative mining.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any


def add_lora(model: Any, r: int, alpha: int, dropout: float) -> None:
    """Wrap the inner decoder in a PEFT LoRA model on all linear layers (frozen base)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear")
    model[0].model = get_peft_model(model[0].model, config)


def lora_state_dict(model: Any) -> dict[str, Any]:
    """The trained adapter weights (CPU copies), gathered first when ZeRO-3 partitioned them."""
    from peft import get_peft_model_state_dict

    peft_model = model[0].model
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    with _gathered(params):
        state = get_peft_model_state_dict(peft_model)
        return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _gathered(params: list[Any]) -> Any:
    if not any(hasattr(p, "ds_id") for p in params):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def merge_lora(model: Any) -> None:
    """Fold the adapter into the base weights so the release is a plain model."""
    model[0].model = model[0].model.merge_and_unload()
