"""What explains a training result: accuracy along the run, and the known failure modes.

Recorded in ``training_record.json``: validation accuracy@1 before, during (every
``eval_steps``) and after training; the loss curve; the share of the batch each anchor
actually saw as negatives (short batches and batches without hard negatives see fewer); and
three checks of the release: the merged model embeds like the adapter model it came from,
the embeddings are not collapsed (mean pairwise cosine of unrelated texts, before and after)
and the pooled token is EOS.

Accuracy@1 is sentence-transformers' ``InformationRetrievalEvaluator`` on the first
``validation_pairs`` pairs: each anchor (its instruction already in the text, so no prompt
is added) against the positives of those pairs as the corpus, its own positive the one
relevant document. The values before training and along it go into the trainer's log
history, which checkpoints save, so a resumed run reports the whole curve; they are taken
once the trainer has prepared the model, where a model partitioned under ZeRO-3 can embed.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

ACCURACY_KEY = "validation_accuracy_at_1"
SPREAD_KEY = "mean_pairwise_cosine"
METRIC = "cosine_accuracy@1"


def _pairs_texts(pairs: dict[str, Any], limit: int) -> tuple[list[str], list[str]]:
    anchors: list[str] = []
    positives: list[str] = []
    for dataset in pairs.values():
        room = limit - len(anchors)
        if room <= 0:
            break
        rows = dataset.select(range(min(room, len(dataset))))
        anchors.extend(rows["anchor"])
        positives.extend(rows["positive"])
    return anchors, positives


def validation_evaluator(pairs: dict[str, Any], batch_size: int, limit: int) -> Any | None:
    """Accuracy@1 of each anchor's own positive among the pairs' positives (``None`` for
    fewer than two pairs)."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    anchors, positives = _pairs_texts(pairs, limit)
    if len(anchors) < 2:
        return None
    width = len(str(len(anchors)))
    ids = [f"{i:0{width}d}" for i in range(len(anchors))]  # corpus order breaks score ties
    return InformationRetrievalEvaluator(
        queries=dict(zip(ids, anchors, strict=True)),
        corpus=dict(zip(ids, positives, strict=True)),
        relevant_docs={i: {i} for i in ids},
        accuracy_at_k=[1], precision_recall_at_k=[1], mrr_at_k=[1], ndcg_at_k=[1], map_at_k=[1],
        batch_size=batch_size, name="validation", write_csv=False,
        query_prompt="", corpus_prompt="",
    )  # fmt: skip


def retrieval_accuracy(model: Any, evaluator: Any | None) -> float | None:
    if evaluator is None:
        return None
    metrics = evaluator(model)
    return round(float(metrics[f"{evaluator.name}_{METRIC}"]), 4)


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


class Validation(TrainerCallback):
    """Accuracy@1 and the spread of the probes before the first step, then accuracy@1
    every ``every`` optimizer steps (0: only before and after)."""

    def __init__(self, model: Any, evaluator: Any | None, probes: list[str], batch_size: int,
                 every: int) -> None:  # fmt: skip
        self.model, self.evaluator, self.probes = model, evaluator, probes
        self.batch_size, self.every = batch_size, every

    def _measure(self, spread: bool) -> dict[str, Any]:
        self.model.eval()
        found = {ACCURACY_KEY: retrieval_accuracy(self.model, self.evaluator)}
        if spread:
            found[SPREAD_KEY] = mean_pairwise_cosine(self.model, self.probes, self.batch_size)
        _out_of_inference_mode(self.model)
        self.model.train()
        return found


    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            state.log_history.append({"step": 0, **self._measure(spread=True)})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every and state.global_step % self.every == 0:
            state.log_history.append({"step": state.global_step, **self._measure(spread=False)})


def _out_of_inference_mode(model: Any) -> None:
    """``encode`` runs in inference mode, and ZeRO-3 keeps the small parameters it gathered
    there (LoRA among them) as inference tensors, which the next training step's backward
    cannot save: copy those back out (a no-op without ZeRO-3)."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.data.is_inference():
                param.data = param.data.clone()


def before_training(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``Validation`` measured before the first step (kept across resumes)."""
    return next((entry for entry in log_history if entry.get("step") == 0 and SPREAD_KEY in entry),
                {})  # fmt: skip


def validation_curve(log_history: list[dict[str, Any]]) -> list[tuple[int, float | None]]:
    """(step, accuracy@1) pairs that ``Validation`` logged along the run."""
    return [
        (entry["step"], entry[ACCURACY_KEY])
        for entry in log_history
        if ACCURACY_KEY in entry and entry["step"] > 0
    ]
