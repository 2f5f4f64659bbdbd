"""The miner's embeddings, kept across builds: a text is embedded once per miner.

Embeddings are stored by a digest of the miner (its identity, precision, max length and
prompts), the role (query or document) and the text, under ``Layout.mining_cache_dir``, so
a rebuild embeds only the texts it has not seen: none when the rows are the same, only the
new ones when rows were added. Each build adds one part (``part-<digest>.vectors.npy`` and
its ``.keys.npy``); the keys file is written last, so a part without it is an interrupted
write and is ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.files import atomic_write_bytes

KEY_BYTES = 16


def miner_key(identity: str, dtype: str, max_length: int, prompts: dict[str, str]) -> str:
    """What makes two miners embed a text alike."""
    text = json.dumps([identity, dtype, max_length, prompts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def text_key(role: str, text: str) -> bytes:
    return hashlib.blake2b(f"{role}\0{text}".encode(), digest_size=KEY_BYTES).digest()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class EmbeddingStore:
    """The stored embeddings of one miner, and the ones this build adds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._rows: dict[bytes, tuple[int, int]] = {}
        self._parts: list[np.ndarray] = []
        for keys_file in sorted(folder.glob("part-*.keys.npy")):
            vectors_file = keys_file.with_name(keys_file.name.replace(".keys.", ".vectors."))
            if not vectors_file.is_file():
                continue
            raw = np.load(keys_file, allow_pickle=False).tobytes()
            self._parts.append(np.load(vectors_file, mmap_mode="r", allow_pickle=False))
            part = len(self._parts) - 1
            for row, start in enumerate(range(0, len(raw), KEY_BYTES)):
                self._rows.setdefault(raw[start : start + KEY_BYTES], (part, row))
        self.new_keys: list[bytes] = []
        self.new_vectors: list[np.ndarray] = []
        self.embedded = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: bytes) -> np.ndarray | None:
        found = self._rows.get(key)
        return None if found is None else np.asarray(self._parts[found[0]][found[1]])

    def encode(self, role: str, texts: Sequence[str], encode: Any, **kwargs: Any) -> np.ndarray:
        """The embeddings of ``texts``, embedding with ``encode`` only those not stored."""
        keys = [text_key(role, text) for text in texts]
        missing = sorted({i for i, key in enumerate(keys) if key not in self._rows})
        self.reused += len(keys) - len(missing)
        if missing:
            fresh = np.asarray(encode([texts[i] for i in missing], **kwargs), dtype=np.float32)
            self._parts.append(fresh)
            part = len(self._parts) - 1
            for row, i in enumerate(missing):
                self._rows.setdefault(keys[i], (part, row))
            self.new_keys += [keys[i] for i in missing]
            self.new_vectors.append(fresh)
            self.embedded += len(missing)
        return np.stack([self.get(key) for key in keys]) if keys else np.zeros((0, 0), np.float32)

    def save(self) -> Path | None:
        """Write what this build embedded as one new part (vectors first, keys last)."""
        if not self.new_keys:
            return None
        # Raw bytes, not numpy's "S" strings, which drop a digest's trailing zero bytes.
        keys = np.frombuffer(b"".join(self.new_keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
        name = f"part-{hashlib.sha256(keys.tobytes()).hexdigest()[:16]}"
        vectors = np.concatenate(self.new_vectors)
        atomic_write_bytes(self.folder / f"{name}.vectors.npy", _npy(vectors))
        atomic_write_bytes(self.folder / f"{name}.keys.npy", _npy(keys))
        self.new_keys, self.new_vectors = [], []
        return self.folder / f"{name}.keys.npy"


class CachedMiner:
    """The miner as ``mine_hard_negatives`` uses it, with its encodings read from the store
    (every other attribute is the model's own)."""

    def __init__(self, model: Any, store: EmbeddingStore, pool: Any = None) -> None:
        self._model = model
        self._store = store
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode_query(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self._encode("query", texts, self._model.encode_query, kwargs)

    def encode_document(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self._encode("document", texts, self._model.encode_document, kwargs)

    def _encode(self, role: str, texts: Sequence[str], encode: Any, kwargs: dict) -> np.ndarray:
        kwargs = {**kwargs, "pool": self._pool} if self._pool is not None else kwargs
        return self._store.encode(role, list(texts), encode, **kwargs)
