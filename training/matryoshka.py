"""Matryoshka training: the same InfoNCE at several leading widths of the embedding.

Users who store millions of vectors keep only the first ``d`` values of each; without this
loss the first ``d`` values of a fine-tuned decoder carry no more than any other ``d``.
sentence-transformers' ``MatryoshkaLoss`` sees that the kit's loss caches gradients and
decorates its ``calculate_loss``, so every width shares one embedding pass (and one replay).
"""

from __future__ import annotations

from typing import Any

from kit.cli import StageError


def base_embedding_dimension(model_path: str) -> int:
    """The width of the recipe's embedding: the decoder's hidden size (last-token pooling),
    read from its config alone so a bad width is refused before any weights load."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_path).get_text_config().hidden_size)


def trained_dims(configured: list[int], embedding_dim: int) -> tuple[int, ...]:
    """The widths trained, widest first; the full width is always one of them, so the
    untruncated vector is trained as well (``MatryoshkaLoss`` warns otherwise)."""
    if not configured:
        return ()
    too_wide = [dim for dim in configured if dim > embedding_dim]
    if too_wide:
        raise StageError(
            f"training.matryoshka_dims: {too_wide[0]} is wider than the base model's "
            f"embedding dimension {embedding_dim}"
        )
    return tuple(sorted({*configured, embedding_dim}, reverse=True))


def with_matryoshka(model: Any, loss: Any, dims: tuple[int, ...]) -> Any:
    """``loss`` at every width in ``dims`` (weights 1), or ``loss`` itself when there are none."""
    if not dims:
        return loss
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    return MatryoshkaLoss(model, loss, list(dims))
