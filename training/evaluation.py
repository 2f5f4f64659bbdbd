"""A quick retrieval check on the validation pairs, recorded before and after training."""

from __future__ import annotations

from typing import Any

MAX_VALIDATION_PAIRS = 512


def retrieval_accuracy(model: Any, pairs: dict[str, Any], batch_size: int) -> float | None:
    """Top-1 accuracy of finding each anchor's positive among all validation positives."""
    import torch

    anchors: list[str] = []
    positives: list[str] = []
    for dataset in pairs.values():
        anchors.extend(dataset["anchor"])
        positives.extend(dataset["positive"])
    anchors, positives = anchors[:MAX_VALIDATION_PAIRS], positives[:MAX_VALIDATION_PAIRS]
    if len(anchors) < 2:
        return None
    query_emb = model.encode(anchors, batch_size=batch_size, convert_to_tensor=True)
    doc_emb = model.encode(positives, batch_size=batch_size, convert_to_tensor=True)
    best = (query_emb @ doc_emb.T).argmax(dim=1).cpu()
    return float((best == torch.arange(len(anchors))).float().mean())
