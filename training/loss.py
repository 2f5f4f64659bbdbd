"""GradCache InfoNCE that also works under DeepSpeed ZeRO, with length-bucketed mini-batches.

Stock ``CachedMultipleNegativesRankingLoss`` replays each mini-batch in a backward hook and
calls ``backward()`` once per mini-batch, so every trainable parameter's gradient is
accumulated many times within one DeepSpeed micro-step. ZeRO reduces a gradient when it is
accumulated and asserts on the second time ("Gradient computed twice for this partition";
sentence-transformers #3173, tevatron #206). Here the replay collects each mini-batch's
parameter gradients with ``torch.autograd.grad`` (which accumulates nothing and fires no
hook) into a buffer the size of the trainable parameters (LoRA: a few MB), and deposits the
sum once at the end, so ZeRO sees exactly one accumulation per parameter per step, just like
an ordinary ``loss.backward()``. Without DeepSpeed the same path gives the same gradients.

Length bucketing: each column of a big batch is sorted by token count before it is cut into
mini-batches, so every mini-batch is trimmed to its own longest row instead of carrying the
padding of the batch's longest row; the embeddings are put back in the original order
before the loss, so the loss and its gradients are unchanged.

Matryoshka training: the same InfoNCE at several leading widths of the embedding, for users
who keep only the first ``d`` values of each vector (without it the first ``d`` values of a
fine-tuned decoder carry no more than any other ``d``). sentence-transformers'
``MatryoshkaLoss`` sees that this loss caches gradients and decorates its
``calculate_loss``, so every width shares one embedding pass (and one replay).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import torch

# Private to sentence-transformers: read from this exact version, which pyproject.toml pins
# and a test checks, so an upgrade fails loudly instead of changing the mini-batches.
from sentence_transformers.base.losses.gradcache import _minibatch_ranges
from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
from torch import Tensor

PRIVATE_API_READ_FROM = "6.2.0"


def _sort_by_length(feature: dict[str, Any]) -> tuple[dict[str, Any], Tensor]:
    """Reorder one column's rows longest first; return the features and the inverse order."""
    lengths = feature["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    batch = len(order)
    sorted_feature = {
        key: value[order]
        if isinstance(value, Tensor) and value.ndim and len(value) == batch
        else value
        for key, value in feature.items()
    }
    return sorted_feature, torch.argsort(order)


class BucketedCachedInfoNCELoss(CachedMultipleNegativesRankingLoss):
    """InfoNCE over in-batch and hard negatives with GradCache, ZeRO-safe, optionally bucketed.

    Overrides ``forward`` (sort each column) and ``forward_cached`` (the stock three steps,
    with a replay that deposits each gradient once); the loss itself is the stock
    ``calculate_loss``. Nothing is kept on the instance between calls: the inverse orders of
    one call travel with that call.
    """

    def __init__(self, model: Any, *, length_bucketing: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.length_bucketing = length_bucketing

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"Expected at least 2 inputs, got {len(features)}")
        if not self.length_bucketing:
            return self.forward_cached(features, labels)
        pairs = [_sort_by_length(feature) for feature in features]
        return self.forward_cached([f for f, _ in pairs], labels, [i for _, i in pairs])

    def _loss_in_order(
        self,
        reps: list[list[Tensor]],
        labels: Tensor | None,
        inverse_orders: list[Tensor] | None,
        with_backward: bool,
    ) -> Tensor:
        """The stock chunked loss on the embeddings put back in their original order.

        The stock loss back-propagates chunk by chunk, so it gets leaf tensors in the original
        order; their gradients are then sent back through the reordering in one pass.
        """
        if inverse_orders is None:
            return self.calculate_loss(reps, labels, with_backward=with_backward)
        restored = [
            torch.cat(column)[inverse.to(column[0].device)]
            for column, inverse in zip(reps, inverse_orders, strict=True)
        ]
        if not with_backward:
            return self.calculate_loss([[r] for r in restored], labels)
        leaves = [r.detach().requires_grad_() for r in restored]
        loss = self.calculate_loss([[leaf] for leaf in leaves], labels, with_backward=True)
        torch.autograd.backward(restored, [leaf.grad for leaf in leaves])
        return loss

    def forward_cached(
        self,
        sentence_features: Iterable[dict[str, Tensor]],
        labels: Tensor | None = None,
        inverse_orders: list[Tensor] | None = None,
    ) -> Tensor:
        """The three GradCache steps, with a replay that accumulates each gradient once."""
        sentence_features = list(sentence_features)
        grad_enabled = torch.is_grad_enabled()
        ranges = [
            _minibatch_ranges(feature, self.mini_batch_size, self.mini_batch_num_tokens)
            for feature in sentence_features
        ]
        if all(len(column) == 1 for column in ranges):
            return self._forward_once(sentence_features, labels, inverse_orders)
        reps, random_states = [], []
        for feature, column_ranges in zip(sentence_features, ranges, strict=True):
            column_reps, column_states = [], []
            for reps_mb, state in self.embed_minibatch_iter(
                sentence_feature=feature,
                with_grad=False,
                copy_random_state=grad_enabled,
                ranges=column_ranges,
            ):
                column_reps.append(reps_mb.detach().requires_grad_())
                column_states.append(state)
            reps.append(column_reps)
            random_states.append(column_states)
        if not grad_enabled:
            return self._loss_in_order(reps, labels, inverse_orders, with_backward=False)
        loss = self._loss_in_order(reps, labels, inverse_orders, with_backward=True)
        loss = loss.detach().requires_grad_()
        cache = [[rep.grad for rep in column] for column in reps]
        if any(grad is None for column in cache for grad in column):
            raise ValueError("the loss did not use every input column; remove unused columns")
        loss.register_hook(
            partial(
                self._replay,
                sentence_features=sentence_features,
                cache=cache,
                random_states=random_states,
                ranges=ranges,
            )
        )
        return loss

    def _forward_once(
        self,
        sentence_features: list[dict[str, Tensor]],
        labels: Tensor | None,
        inverse_orders: list[Tensor] | None,
    ) -> Tensor:
        """One mini-batch holds the whole batch: embed once, with gradients, and keep the graph.

        Replaying would only add a second forward pass. The loss still goes through the cached
        path (``calculate_loss`` back-propagates to detached embeddings), so a wrapper that
        decorates ``calculate_loss``, as ``MatryoshkaLoss`` does, sees the same calls as with
        many mini-batches; the hook then sends those gradients through the kept graph.
        """
        live = [self.model(feature)["sentence_embedding"] for feature in sentence_features]
        reps = [[rep.detach().requires_grad_()] for rep in live]
        if not torch.is_grad_enabled():
            return self._loss_in_order(reps, labels, inverse_orders, with_backward=False)
        loss = self._loss_in_order(reps, labels, inverse_orders, with_backward=True)
        grads = [column[0].grad for column in reps]
        if any(grad is None for grad in grads):
            raise ValueError("the loss did not use every input column; remove unused columns")
        loss = loss.detach().requires_grad_()
        loss.register_hook(partial(self._backward_once, live=live, grads=grads))
        return loss

    @staticmethod
    def _backward_once(grad_output: Tensor, live: list[Tensor], grads: list[Tensor]) -> None:
        """Backward hook of the one-forward path: one pass through the kept graph."""
        with torch.enable_grad():
            torch.autograd.backward(live, [grad * grad_output for grad in grads])

    def _replay(
        self,
        grad_output: Tensor,
        sentence_features: list[dict[str, Tensor]],
        cache: list[list[Tensor]],
        random_states: list[list[Any]],
        ranges: list[list[tuple[int, int]]],
    ) -> None:
        """Backward hook: re-embed each mini-batch with gradients, deposit the sum once."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        summed: list[Tensor | None] = [None] * len(params)
        with torch.enable_grad():
            for feature, column_cache, column_states, column_ranges in zip(
                sentence_features, cache, random_states, ranges, strict=True
            ):
                iterator = self.embed_minibatch_iter(
                    sentence_feature=feature,
                    with_grad=True,
                    copy_random_state=False,
                    random_states=column_states,
                    ranges=column_ranges,
                )
                for grad_mb in column_cache:
                    reps_mb, _ = next(iterator)
                    surrogate = (
                        torch.dot(reps_mb.flatten().float(), grad_mb.flatten().float())
                        * grad_output.float()
                    )
                    grads = torch.autograd.grad(surrogate, params, allow_unused=True)
                    for i, grad in enumerate(grads):
                        if grad is not None:
                            summed[i] = grad if summed[i] is None else summed[i] + grad
            used = [
                (p, g.to(p.dtype)) for p, g in zip(params, summed, strict=True) if g is not None
            ]
            if used:
                torch.autograd.backward([p for p, _ in used], [g for _, g in used])


def with_matryoshka(model: Any, loss: Any, dims: tuple[int, ...]) -> Any:
    """``loss`` at every width in ``dims`` (weights 1), or ``loss`` itself when there are none."""
    if not dims:
        return loss
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    return MatryoshkaLoss(model, loss, list(dims))
