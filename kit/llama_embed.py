"""A GGUF embedder served by llama.cpp's own HTTP server, and a client for its
``/v1/embeddings`` endpoint, as users run ``llama-server --embeddings``.

xllamacpp ships that server as a wheel; it runs in this process's background threads and
stops when the context ends. The file decides the pooling and whether BOS and EOS are added
(no flags). llama.cpp does not cut long inputs the way sentence-transformers does, so the
client cuts each text to the model's ``max_seq_length`` tokens, keeping EOS last, and sends
token ids.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kit.errors import StageError

HTTP_TIMEOUT_S = 600
# llama.cpp refuses an input that fills its slot's context exactly: each slot gets a spare.
SLOT_SPARE_TOKENS = 8


class LlamaServerError(StageError):
    """The llama.cpp server could not load the file or refused a request."""


def server_params(gguf: Path, max_tokens: int, threads: int, parallel: int = 8) -> Any:
    """Embedding mode; ``parallel`` slots of ``max_tokens`` tokens each, all in one batch, so
    the inputs of one request are embedded together (llama.cpp embeds an input only whole)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.embedding = True
    params.n_parallel = parallel
    params.n_ctx = (max_tokens + SLOT_SPARE_TOKENS) * parallel
    params.n_batch = params.n_ctx
    params.n_ubatch = params.n_ctx
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    return params


@contextmanager
def embedding_server(
    gguf: Path, max_tokens: int, threads: int, parallel: int = 8
) -> Iterator[str]:
    """Yield the base URL of a llama.cpp server embedding with ``gguf``."""
    import xllamacpp

    try:
        server = xllamacpp.Server(server_params(gguf, max_tokens, threads, parallel))
    except Exception as exc:
        raise LlamaServerError(f"llama.cpp could not serve {gguf.name}: {exc}") from None
    try:
        yield server.listening_address.rstrip("/")
    finally:
        del server


def _post(url: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise LlamaServerError(f"llama.cpp server answered {exc.code}: {detail}") from None


# BOS and EOS: the most tokens a text gets besides its own.
SPECIAL_TOKENS = 2


def fits(text: str, max_tokens: int) -> bool:
    """Whether the text surely fits: no tokenizer makes more tokens than the text has bytes."""
    return len(text.encode("utf-8")) + SPECIAL_TOKENS <= max_tokens


def server_input(base_url: str, text: str, max_tokens: int) -> str | list[int]:
    """The text itself when it fits, else its ids as the server tokenizes it (BOS and EOS as
    the file says), cut to ``max_tokens`` with the appended EOS kept last, as
    sentence-transformers truncates."""
    if fits(text, max_tokens):
        return text
    ids = _post(f"{base_url}/tokenize", {"content": text, "add_special": True})["tokens"]
    return ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + ids[-1:]


def embed(
    base_url: str, texts: Sequence[str], max_tokens: int, batch_size: int = 16
) -> list[list[float]]:
    """Embeddings of ``texts`` from ``/v1/embeddings``, in order (normalized by the server)."""
    found: list[list[float]] = []
    for start in range(0, len(texts), batch_size):
        batch = [server_input(base_url, text, max_tokens) for text in
                 texts[start : start + batch_size]]  # fmt: skip
        answer = _post(f"{base_url}/v1/embeddings", {"input": batch, "encoding_format": "float"})
        rows = sorted(answer["data"], key=lambda row: row["index"])
        found.extend(row["embedding"] for row in rows)
    return found
