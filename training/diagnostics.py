"""What explains a training result: accuracy along the run, and the known failure modes.

Recorded in ``training_record.json``: validation accuracy@1 before, during (every
``eval_steps``) and after training; the loss curve; the share of the batch each anchor
actually saw as negatives (short batches and batches without hard negatives see fewer); and
three checks of the release: the merged model embeds like the adapter model it came from,
the embeddings are not collapsed (mean pairwise cosine of unrelated texts, before and after)
and the pooled token is EOS.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


def _pairs_texts(pairs: dict[str, Any], limit: int) -> tuple[list[str], list[str]]:
    anchors: list[str] = []
    positives: list[str] = []
    for dataset in pairs.values():
        anchors.extend(dataset["anchor"])
        positives.extend(dataset["positive"])
    return anchors[:limit], positives[:limit]


def retrieval_accuracy(
    model: Any, pairs: dict[str, Any], batch_size: int, limit: int
) -> float | None:
    """Top-1 accuracy of finding each anchor's positive among the validation positives."""
    import torch

    anchors, positives = _pairs_texts(pairs, limit)
    if len(anchors) < 2:
        return None
    query = model.encode(anchors, batch_size=batch_size, convert_to_tensor=True)
    documents = model.encode(positives, batch_size=batch_size, convert_to_tensor=True)
    best = (query @ documents.T).argmax(dim=1).cpu()
    return round(float((best == torch.arange(len(anchors))).float().mean()), 4)


def mean_pairwise_cosine(model: Any, texts: list[str], batch_size: int) -> float | None:
    """Near 1.0 means every text lands on the same vector (a collapsed embedder)."""
    if len(texts) < 2:
        return None
    embeddings = model.encode(texts, batch_size=batch_size, convert_to_tensor=True)
    similarity = embeddings @ embeddings.T
    count = len(texts)
    off_diagonal = similarity.sum() - similarity.diagonal().sum()
    return round(float(off_diagonal / (count * (count - 1))), 4)


def probe_texts(pairs: dict[str, Any], limit: int = 32) -> list[str]:
    """Unrelated texts for the collapse check: one anchor and one positive of each pair."""
    anchors, positives = _pairs_texts(pairs, limit // 2)
    return anchors + positives


def pools_eos(model: Any) -> bool:
    """The pooling reads the last token, and the last token of every input is EOS."""
    tokenizer = model.tokenizer
    features = model.preprocess(["a probe", "a much longer probe sentence of words"])
    ids, lengths = features["input_ids"], features["attention_mask"].sum(dim=1)
    last = [int(row[int(n) - 1]) for row, n in zip(ids, lengths, strict=True)]
    pooling = model[1].get_config_dict().get("pooling_mode")
    return pooling == "lasttoken" and all(token == tokenizer.eos_token_id for token in last)


def negatives_share(batches: list[tuple[int, int]], batch_size: int) -> dict[str, float] | None:
    """Per anchor, the negatives a step offered (other rows' positives and every hard
    negative) over what a full batch with one hard negative offers."""
    if not batches:
        return None
    nominal = batch_size * 2 - 1
    shares = [(rows * (columns - 1) - 1) / nominal for rows, columns in batches]
    return {"mean": round(sum(shares) / len(shares), 4), "min": round(min(shares), 4)}


ACCURACY_KEY = "validation_accuracy_at_1"


class StepValidation(TrainerCallback):
    """Validation accuracy@1 every ``every`` optimizer steps (0: never)."""

    def __init__(self, model: Any, pairs: dict[str, Any], batch_size: int, limit: int,
                 every: int) -> None:  # fmt: skip
        self.model, self.pairs, self.batch_size, self.limit = model, pairs, batch_size, limit
        self.every = every

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Kept in the trainer's log history, which checkpoints save, so a resumed run
        reports the whole curve."""
        if self.every and state.global_step % self.every == 0:
            self.model.eval()
            accuracy = retrieval_accuracy(self.model, self.pairs, self.batch_size, self.limit)
            self.model.train()
            state.log_history.append({"step": state.global_step, ACCURACY_KEY: accuracy})


def validation_curve(log_history: list[dict[str, Any]]) -> list[tuple[int, float | None]]:
    """(step, accuracy@1) pairs that ``StepValidation`` logged."""
    return [(entry["step"], entry[ACCURACY_KEY]) for entry in log_history if ACCURACY_KEY in entry]
