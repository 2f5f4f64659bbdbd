"""The GGUF backend: the model's verified GGUF file served by llama.cpp (xllamacpp's wheel),
with no torch in the Space.

The model card stage lists each GGUF file of the model repo in ``gguf/verification.json``
with the verdict of its check against the safetensors model; only a file that passed is
used. llama.cpp embeds an input whole, so each text is cut to the model's
``max_seq_length`` tokens (EOS kept last) as sentence-transformers cuts it. The prompts come
from ``config_sentence_transformers.json``, as sentence-transformers reads them.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("space")

VERIFICATION_FILE = "gguf/verification.json"
# Smallest first: the Space takes the smallest file that passed.
PREFERRED_TYPES = ("q8_0", "f16", "bf16", "f32")
HTTP_TIMEOUT_S = 300
# Inputs embedded in one batch (server slots); the searches at once share them.
SLOTS = 16
# BOS and EOS: the most tokens a text gets besides its own.
SPECIAL_TOKENS = 2
# llama.cpp refuses an input that fills its slot's context exactly: each slot gets a spare.
SLOT_SPARE_TOKENS = 8


class GgufUnavailable(RuntimeError):
    """The model repo has no GGUF file that passed its check (or it could not be read)."""


def _repo_file(model_id: str, name: str) -> Path:
    """A file of the model: from a local folder, else downloaded from the Hub."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        path = local / name
        if not path.is_file():
            raise GgufUnavailable(f"{model_id} has no {name}")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(model_id, name))
    except Exception as exc:  # missing file, no network, gated repo: one line
        raise GgufUnavailable(f"{model_id}: {name}: {type(exc).__name__}") from None


def verified_gguf(model_id: str) -> dict[str, Any]:
    """The check entry of the smallest GGUF file that passed."""
    entries = json.loads(_repo_file(model_id, VERIFICATION_FILE).read_text(encoding="utf-8"))
    passed = [entry for entry in entries if entry.get("passed")]
    if not passed:
        raise GgufUnavailable(f"{model_id}: no GGUF file passed its check")
    rank = {kind: i for i, kind in enumerate(PREFERRED_TYPES)}
    return min(passed, key=lambda entry: rank.get(entry["type"], len(rank)))


def _post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.load(response)


class LlamaCppEmbedder:
    """What the Space asks of a model (prompts, query and document embeddings, similarity),
    answered by llama.cpp's server running in this process on loopback."""

    def __init__(self, model_id: str, searches_at_once: int) -> None:
        import xllamacpp

        entry = verified_gguf(model_id)
        path = _repo_file(model_id, entry["file"])
        config = json.loads(
            _repo_file(model_id, "config_sentence_transformers.json").read_text(encoding="utf-8")
        )
        st_config = json.loads(
            _repo_file(model_id, "sentence_bert_config.json").read_text(encoding="utf-8")
        )
        self.prompts: dict[str, str] = dict(config.get("prompts") or {})
        self.max_tokens = int(st_config["max_seq_length"])
        self.label = f"llama.cpp, GGUF {entry['type'].upper()} (`{entry['file']}`)"
        # Each search at once gets its share of the cores, as torch's threads do: llama.cpp's
        # threads wait for each other by spinning, so more threads than free cores stall it
        # (measured: 10 short texts took 19 ms on 1 thread and 378 ms on 2 on a busy 2-core
        # machine).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        threads = max(1, cores // searches_at_once)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.embedding = True
        slots = max(SLOTS, searches_at_once)
        params.n_parallel = slots
        params.n_ctx = (self.max_tokens + SLOT_SPARE_TOKENS) * slots
        params.n_batch = params.n_ctx
        params.n_ubatch = params.n_ctx
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        self._server = xllamacpp.Server(params)
        self.url = self._server.listening_address.rstrip("/")
        log.info("embedding with %s, %d thread(s)", self.label, threads)

    def _input(self, text: str) -> str | list[int]:
        """The text when it surely fits (no tokenizer makes more tokens than bytes), else its
        ids cut to ``max_seq_length`` with EOS kept last."""
        if len(text.encode("utf-8")) + SPECIAL_TOKENS <= self.max_tokens:
            return text
        ids = _post(f"{self.url}/tokenize", {"content": text, "add_special": True})["tokens"]
        return ids if len(ids) <= self.max_tokens else ids[: self.max_tokens - 1] + ids[-1:]

    def _embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), batch_size):
            batch = [self._input(text) for text in texts[start : start + batch_size]]
            answer = _post(f"{self.url}/v1/embeddings", {"input": batch})
            rows += [row["embedding"] for row in sorted(answer["data"], key=lambda r: r["index"])]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)

    def encode_document(self, texts: Sequence[str], batch_size: int = 16, **_: Any) -> np.ndarray:
        return self._embed(list(texts), batch_size)

    def encode_query(
        self, texts: Sequence[str], prompt: str = "", batch_size: int = 16, **_: Any
    ) -> np.ndarray:
        return self._embed([prompt + text for text in texts], batch_size)

    @staticmethod
    def similarity(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
        """Cosine: the server normalizes every vector."""
        return queries @ documents.T
