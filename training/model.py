"""Wrap a decoder LLM as a sentence-transformers embedder and merge its LoRA for release.

The pieces are stock modules only (Transformer, Pooling lasttoken, Normalize) so anyone can
load the release without ``trust_remote_code``. The tokenizer appends EOS, so the last real
token, which lasttoken pooling reads, is always EOS: also after truncation, because the
tokenizer truncates the text before its post-processor adds the special tokens.
"""

from __future__ import annotations

from typing import Any

from kit.cli import StageError

PROBE_TEXT = "a short probe sentence"


def tokenizer_adds_bos(model_path: str) -> bool:
    """Whether the base tokenizer prepends BOS (Gemma, Mistral) and must keep doing so.

    transformers 5 rebuilds the post-processor from ``add_bos_token`` and ``add_eos_token``
    together: asking for EOS alone silently drops the BOS these models were trained with.
    """
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(model_path)
    if base.eos_token_id is None:
        raise StageError(
            f"base model {model_path} has no EOS token: last-token pooling needs one to read"
        )
    ids = base(PROBE_TEXT)["input_ids"]
    return base.bos_token_id is not None and bool(ids) and ids[0] == base.bos_token_id


def check_base_tokenizer(model_path: str) -> None:
    """The tokenizer checks alone (no weights), so a launcher parent stays light."""
    from transformers import AutoTokenizer

    adds_bos = tokenizer_adds_bos(model_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path, add_eos_token=True, add_bos_token=adds_bos
    )
    check_eos_appended(tokenizer, model_path)


def build_embedder(model_path: str, max_length: int, prompts: dict[str, str]) -> Any:
    """A SentenceTransformer on ``model_path`` with EOS appended, lasttoken pooling, Normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    adds_bos = tokenizer_adds_bos(model_path)
    transformer = Transformer(
        model_path,
        max_seq_length=max_length,
        processor_kwargs={"add_eos_token": True, "add_bos_token": adds_bos},
    )
    tokenizer = transformer.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # GradCache trims each mini-batch to its longest row only at the right end (leading
    # padding is kept), so a left-padding base (Gemma) would carry the whole batch's padding
    # through every mini-batch and length bucketing would save nothing. RoPE decoders give
    # the same last-token state either way; lasttoken pooling reads the mask on both sides.
    tokenizer.padding_side = "right"
    check_eos_appended(tokenizer, model_path)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=prompts)


def check_eos_appended(tokenizer: Any, model_path: str) -> None:
    """Fail before training if the tokenizer does not end every input with EOS."""
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        raise StageError(
            f"the tokenizer of {model_path} does not append EOS even with add_eos_token=True; "
            "last-token pooling would read a content token"
        )


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
    from contextlib import nullcontext

    if not any(hasattr(p, "ds_id") for p in params):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def merge_lora(model: Any) -> None:
    """Fold the adapter into the base weights so the release is a plain model."""
    model[0].model = model[0].model.merge_and_unload()
