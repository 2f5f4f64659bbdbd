"""The embedder recipe: how a decoder LLM is wrapped as a sentence-transformers embedder.

Training wraps its base model this way, the model card wraps the base model this way for
its comparison, and the dataset stage mines hard negatives with it, so all three embed with
the same rules: EOS appended to every input (BOS kept where the family adds one), padding
on the right, the last layer's hidden state at EOS (last-token pooling), normalized. The
pieces are stock modules only (Transformer, Pooling, Normalize), so anyone loads the release
without ``trust_remote_code``.
"""

from __future__ import annotations

from typing import Any

from kit.errors import StageError

PROBE_TEXT = "a short probe sentence"
RECIPE = "eos appended;bos kept;right padding;lasttoken;normalize"


class RecipeError(StageError):
    """A base model the recipe cannot wrap safely (no EOS, EOS not appended)."""


def tokenizer_adds_bos(model_path: str) -> bool:
    """Whether the base tokenizer prepends BOS (Gemma, Mistral) and must keep doing so.

    transformers 5 rebuilds the post-processor from ``add_bos_token`` and ``add_eos_token``
    together: asking for EOS alone silently drops the BOS these models were trained with.
    """
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(model_path)
    if base.eos_token_id is None:
        raise RecipeError(
            f"base model {model_path} has no EOS token: last-token pooling needs one to read"
        )
    ids = base(PROBE_TEXT)["input_ids"]
    return base.bos_token_id is not None and bool(ids) and ids[0] == base.bos_token_id


def check_eos_appended(tokenizer: Any, where: str) -> None:
    """Every input must end with EOS, or last-token pooling reads a content token."""
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    if tokenizer.eos_token_id is None or not ids or ids[-1] != tokenizer.eos_token_id:
        last = ids[-1] if ids else None
        raise RecipeError(
            f"{where}: the tokenizer does not append EOS (ids end with {last}), so "
            "last-token pooling would read the wrong token"
        )


def check_base_tokenizer(model_path: str) -> None:
    """The tokenizer checks alone (no weights), so a launcher parent stays light."""
    from transformers import AutoTokenizer

    adds_bos = tokenizer_adds_bos(model_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path, add_eos_token=True, add_bos_token=adds_bos
    )
    check_eos_appended(tokenizer, f"base model {model_path}")


def build_embedder(
    model_path: str,
    max_length: int,
    prompts: dict[str, str] | None = None,
    device: str | None = None,
    dtype: Any = None,
) -> Any:
    """A SentenceTransformer on ``model_path`` wrapped by the recipe; ``dtype`` (a torch
    dtype) loads the weights in that precision (bf16 for a decoder on a GPU)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    adds_bos = tokenizer_adds_bos(model_path)
    transformer = Transformer(
        model_path,
        max_seq_length=max_length,
        processor_kwargs={"add_eos_token": True, "add_bos_token": adds_bos},
        model_kwargs={"dtype": dtype} if dtype is not None else None,
    )
    tokenizer = transformer.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # GradCache trims each mini-batch to its longest row only at the right end (leading
    # padding is kept), so a left-padding base (Gemma) would carry the whole batch's padding
    # through every mini-batch. RoPE decoders give the same last-token state either way, and
    # lasttoken pooling reads the mask on both sides.
    tokenizer.padding_side = "right"
    check_eos_appended(tokenizer, model_path)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(
        modules=[transformer, pooling, Normalize()], prompts=prompts or {}, device=device
    )


def check_model_appends_eos(model: Any, where: str) -> None:
    """The same EOS check on a loaded SentenceTransformer (a release read back)."""
    check_eos_appended(model.tokenizer, where)
