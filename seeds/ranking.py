"""Ranking the corpus for a text: the consistency gate and the neighbour negatives ask it.

BM25 (bm25s, language-neutral word tokens, no stop words) needs nothing but the documents; a
configured sentence-transformers model ranks by cosine instead. The index is built once per
run, over the whole corpus, so a row is checked against every document it competes with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

BM25 = "bm25"


class Ranker(Protocol):
    def top(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """The indices of the ``k`` best documents for each query, best first."""
        ...


class Bm25Ranker:
    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self.size = len(texts)
        self.index = bm25s.BM25()
        tokens = bm25s.tokenize(list(texts), stopwords=None, show_progress=False)
        self.index.index(tokens, show_progress=False)

    def top(self, queries: Sequence[str], k: int) -> list[list[int]]:
        if not queries:
            return []
        k = min(k, self.size)
        tokens = self._bm25s.tokenize(
            list(queries), stopwords=None, return_ids=False, show_progress=False
        )
        # A query with no word (punctuation only) ranks nothing; bm25s would log a line for each.
        worded = [i for i, words in enumerate(tokens) if words]
        ranked: list[list[int]] = [[] for _ in queries]
        if not worded:
            return ranked
        found, scores = self.index.retrieve(
            [tokens[i] for i in worded], k=k, show_progress=False, n_threads=1
        )
        # A document with no word of the query scores 0: it is not ranked at all.
        for i, row, row_scores in zip(worded, found, scores, strict=True):
            ranked[i] = [int(d) for d, s in zip(row, row_scores, strict=True) if s > 0]
        return ranked


class EmbedderRanker:
    def __init__(self, texts: Sequence[str], model: str, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model)
        self.batch_size = batch_size
        self.embeddings = self.model.encode_document(
            list(texts), batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True,
        )  # fmt: skip

    def top(self, queries: Sequence[str], k: int) -> list[list[int]]:
        if not queries:
            return []
        found = self.model.encode_query(
            list(queries), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True,
        )  # fmt: skip
        scores = found @ self.embeddings.T
        k = min(k, scores.shape[1])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return best.tolist()


def make_ranker(ranker: str, texts: Sequence[str]) -> Ranker:
    return Bm25Ranker(texts) if ranker == BM25 else EmbedderRanker(texts, ranker)
