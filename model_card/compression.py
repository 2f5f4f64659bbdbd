"""Smaller and coarser vectors, scored on the same tasks: what storing less costs.

People who store vectors by the million keep fewer values (``truncate_dim``) or fewer bits
(int8, binary) per vector. Each variant is derived from the fp32 embeddings the main
evaluation just computed, kept in memory for the task at hand, so a variant costs mteb's
scoring only, never a second encoding:

- ``truncate_dim=d``: the first ``d`` values (what ``SentenceTransformer(..., truncate_dim=d)``
  returns), compared by cosine;
- int8: each dimension cut into 256 levels between its minimum and maximum over the task's
  embeddings (sentence-transformers' ``quantize_embeddings`` with those embeddings as the
  calibration set), compared by cosine;
- binary: the sign of each dimension as +1/-1, whose cosine ranks exactly like the Hamming
  distance of the packed bits that ``precision="binary"`` returns.

Each variant's mteb result is cached under its own experiment name (mteb's
``experiments/<name>/`` layout), beside the model's own result and never over it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.cli import StageError


@dataclass(frozen=True)
class Variant:
    """One way of storing the vectors: fewer values, or fewer bits per value."""

    name: str
    truncate_dim: int | None = None
    precision: str = "float32"

    @property
    def experiment(self) -> dict[str, Any]:
        """mteb's experiment keys: ``embed_dim`` as a model run with fewer dims would carry,
        ``output_dtypes`` as mteb's own CompressionWrapper sets it."""
        if self.truncate_dim is not None:
            return {"embed_dim": self.truncate_dim}
        return {"output_dtypes": self.precision}

    def bytes_per_vector(self, width: int) -> float:
        if self.truncate_dim is not None:
            return 4 * self.truncate_dim
        return {"int8": width, "binary": width / 8}[self.precision]


def report_dims(configured: list[int], trained: list[int], width: int) -> list[int]:
    """The widths the card reports, widest first: the configured ones, else the Matryoshka
    widths the model was trained at (the full one aside), else a half, a quarter and an
    eighth of the full width."""
    too_wide = [dim for dim in configured if dim > width]
    if too_wide:
        raise StageError(
            f"evaluation.compression_dims: {too_wide[0]} is wider than the model's "
            f"embedding dimension {width}"
        )
    chosen = configured or [dim for dim in trained if dim < width]
    chosen = chosen or [width // 2, width // 4, width // 8]
    return sorted({dim for dim in chosen if 0 < dim < width}, reverse=True)


def variants_for(dims: list[int]) -> list[Variant]:
    """Each width, then int8 and binary at the full width."""
    by_width = [Variant(f"{dim} dims", truncate_dim=dim) for dim in dims]
    return by_width + [Variant("int8", precision="int8"), Variant("binary", precision="binary")]


def derive(embeddings: np.ndarray, variant: Variant, calibration: np.ndarray) -> np.ndarray:
    """The variant of fp32 ``embeddings``, as float32 for mteb's scoring."""
    from sentence_transformers import quantize_embeddings

    if variant.truncate_dim is not None:
        return embeddings[:, : variant.truncate_dim]
    if variant.precision == "int8":
        quantized = quantize_embeddings(embeddings, "int8", calibration_embeddings=calibration)
        return quantized.astype(np.float32)
    return np.where(embeddings > 0, 1.0, -1.0).astype(np.float32)


class EmbeddingMemo:
    """The fp32 embeddings of one task's encode calls, by what each call encoded."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, ...], np.ndarray] = {}

    def get(self, key: tuple[str, ...]) -> np.ndarray | None:
        return self._store.get(key)

    def put(self, key: tuple[str, ...], embeddings: np.ndarray) -> None:
        self._store[key] = embeddings

    def calibration(self) -> np.ndarray:
        """Every embedding of the task so far (queries and documents): int8's ranges."""
        return np.concatenate(list(self._store.values()))

    def clear(self) -> None:
        self._store.clear()


class MemoEncoder:
    """An mteb encoder that embeds each input set once and returns ``variant`` of it.

    With no variant it is the model as it is (same name, revision and result file) and fills
    the memo; with a variant it reads the memo and derives, encoding only what it lacks.
    """

    def __init__(self, inner: Any, memo: EmbeddingMemo, variant: Variant | None = None) -> None:
        self.inner = inner
        self.memo = memo
        self.variant = variant
        meta = inner.mteb_model_meta
        if variant is not None:
            meta = meta.model_copy(update={"experiment_kwargs": variant.experiment})
        self.mteb_model_meta = meta

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        role = getattr(prompt_type, "value", str(prompt_type))
        key = (task_metadata.name, hf_split, hf_subset, role, digest)
        embeddings = self.memo.get(key)
        if embeddings is None:
            encoded = self.inner.encode(
                inputs,
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=prompt_type,
                **kwargs,
            )
            embeddings = np.asarray(encoded, dtype=np.float32)
            self.memo.put(key, embeddings)
        if self.variant is None:
            return embeddings
        return derive(embeddings, self.variant, self.memo.calibration())

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        return self.inner.similarity(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        return self.inner.similarity_pairwise(embeddings1, embeddings2)
