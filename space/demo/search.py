"""Search: the model, a bounded cache of corpus embeddings, and the ranking of one query.

Embedding a corpus is the expensive step, so each distinct corpus is embedded once and kept
while it is recent. The cache is bounded both in corpora and in bytes: a public Space meets
many corpora, and the memory it may use is fixed.

The model is either sentence-transformers on PyTorch or the model's verified GGUF file on
llama.cpp (``llama_backend``); both answer ``prompts``, ``encode_query``, ``encode_document``
and ``similarity``, so the search does not care which, and neither library is imported
unless its backend is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The Space's own modules, which sit beside app.py in the Space repo:
# isort: split
from corpus import CorpusSources
from errors import InputError
from instructions import query_prompt
from settings import BACKEND_AUTO, BACKEND_GGUF, Settings

log = logging.getLogger("space")

MAX_TOP_K = 50


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the Space cannot start without it."""


def load_model(model_id: str) -> Any:
    """The sentence-transformers model, or a one-line reason it could not be loaded."""
    from sentence_transformers import SentenceTransformer

    if not model_id:
        raise ModelLoadError(
            "Set MODEL_ID to a Hub model id or a local sentence-transformers folder."
        )
    try:
        return SentenceTransformer(model_id)
    except Exception as exc:  # any loader failure: one line instead of a traceback
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise ModelLoadError(
            f"Could not load the model {model_id!r}: {reason or type(exc).__name__}"
        ) from exc


def load_embedder(settings: Settings) -> Any:
    """The model's verified GGUF on llama.cpp when the settings allow it and the repo has
    one, else sentence-transformers (whose torch threads then share the cores)."""
    if settings.backend in (BACKEND_AUTO, BACKEND_GGUF) and settings.model_id:
        try:
            from llama_backend import LlamaCppEmbedder

            return LlamaCppEmbedder(settings.model_id, settings.concurrency_limit)
        except Exception as exc:  # no verified file, no xllamacpp, a file it cannot load
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            reason = reason or type(exc).__name__
            if settings.backend == BACKEND_GGUF:
                raise ModelLoadError(
                    f"Could not embed with a GGUF of {settings.model_id!r}: {reason}"
                ) from exc
            log.info("no usable GGUF (%s): embedding with sentence-transformers", reason)
    model = load_model(settings.model_id)
    share_cores(settings.concurrency_limit)
    return model


def backend_label(model: Any) -> str:
    """How the embeddings are computed, for the page."""
    return getattr(model, "label", None) or "sentence-transformers (PyTorch)"


def share_cores(searches_at_once: int) -> int:
    """Split the CPU cores between the searches that run at once; returns torch's threads.

    Torch gives every search all the cores by default, so two searches at once would run
    four threads on a free Space's 2 vCPUs and slow each other down. ``OMP_NUM_THREADS``,
    when set, is left to decide.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // searches_at_once))
    log.info(
        "torch uses %d thread(s) per search, %d search(es) at once",
        torch.get_num_threads(),
        searches_at_once,
    )
    return torch.get_num_threads()


def corpus_key(documents: Sequence[str]) -> str:
    """A content hash of the ordered corpus; length prefixes keep document borders unambiguous."""
    digest = hashlib.sha256()
    for document in documents:
        data = document.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds now, and how many corpora it has dropped since it started."""

    corpora: int
    nbytes: int
    evictions: int


class CorpusEmbeddings:
    """Embeds each distinct corpus once and keeps the most recent ones within two limits.

    A corpus whose embeddings alone exceed ``max_bytes`` is embedded but never kept.
    """

    def __init__(self, model: Any, max_entries: int, max_bytes: int) -> None:
        self.model = model
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._nbytes = 0
        self._evictions = 0
        self._lock = threading.Lock()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._nbytes, self._evictions)

    def get(self, documents: Sequence[str]) -> tuple[Any, bool]:
        """Return the corpus embeddings and whether they came from the cache."""
        key = corpus_key(documents)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], True
        started = time.perf_counter()
        embeddings = self.model.encode_document(
            list(documents), convert_to_tensor=True, batch_size=16
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        stats = self._keep(key, embeddings)
        log.info(
            "embedded %d documents in %.0f ms; cache holds %d/%d corpora, %d/%d bytes; "
            "%d evicted so far",
            len(documents),
            elapsed_ms,
            stats.corpora,
            self.max_entries,
            stats.nbytes,
            self.max_bytes,
            stats.evictions,
        )
        return embeddings, False

    def _keep(self, key: str, embeddings: Any) -> CacheStats:
        """Store new embeddings (unless another search stored them first), oldest out first."""
        size = embeddings.nbytes
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
            elif self.max_entries and size <= self.max_bytes:
                self._entries[key] = embeddings
                self._nbytes += size
            while len(self._entries) > self.max_entries or self._nbytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._nbytes -= dropped.nbytes
                self._evictions += 1
            return CacheStats(len(self._entries), self._nbytes, self._evictions)


@dataclass(frozen=True)
class SearchResult:
    """The ranked documents of one search and what it took to get them."""

    ranked: list[tuple[int, float, str]]  # (rank, cosine score, document)
    documents: list[str]
    cached: bool
    elapsed_ms: float


class Retriever:
    """Everything a search needs: the model, its prompts, the corpus sources and the cache."""

    def __init__(
        self,
        model: Any,
        settings: Settings,
        embeddings: CorpusEmbeddings | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.sources = CorpusSources(settings)
        self.embeddings = embeddings or CorpusEmbeddings(
            model, settings.cache_corpora, settings.cache_megabytes * 2**20
        )

    def search(
        self,
        query: str | None,
        instruction: str | None,
        custom_instruction: str | None,
        top_k: float | None,
        source: str,
        pasted: str | None,
        upload: str | None,
    ) -> SearchResult:
        """Check the inputs in the order the page shows them, then rank the corpus."""
        started = time.perf_counter()
        query = (query or "").strip()
        if not query:
            raise InputError("Type a query first.")
        if len(query) > self.settings.max_chars_per_document:
            raise InputError(
                f"The query has {len(query):,} characters; the limit is "
                f"{self.settings.max_chars_per_document:,}."
            )
        k = _whole(top_k)
        if k is None or not 1 <= k <= MAX_TOP_K:
            raise InputError(f"Top k must be between 1 and {MAX_TOP_K}.")
        prompt = query_prompt(self.model.prompts, instruction, custom_instruction)
        documents = self.sources.documents(source, pasted, upload)
        corpus_embeddings, cached = self.embeddings.get(documents)
        query_embedding = self.model.encode_query([query], prompt=prompt, convert_to_tensor=True)
        scores = np.asarray(
            self.model.similarity(query_embedding, corpus_embeddings)[0].tolist(), dtype=float
        )
        best = np.argsort(-scores, kind="stable")[: min(k, len(documents))]
        ranked = [
            (rank, round(float(scores[index]), 4), documents[index])
            for rank, index in enumerate(best.tolist(), start=1)
        ]
        return SearchResult(ranked, documents, cached, (time.perf_counter() - started) * 1000)


def _whole(value: float | None) -> int | None:
    """``top_k`` as sent by the slider or an API client; ``None`` if it is not a number."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
