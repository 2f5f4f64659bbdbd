"""Near-duplicate rows across the whole run: MinHash LSH over character shingles.

Exact duplicates are caught by the normalized dedup key; this catches the rows an LLM
writes again with a word changed. Shingles are character 5-grams of the normalized text, so
the check works the same in every script, spaces or not. Shingles are hashed with numpy and
the MinHash signatures computed by rensa (compiled) for a whole batch at once; the banded
index keeps the first row of each near-duplicate group. A resumed run rebuilds the index
from the accepted shards in the same batches, so it compares against everything it kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHINGLE = 5
SEED = 0
_BASE = np.uint64(1_000_003)
_SEPARATOR = "\x00"


def _normalized(texts: Sequence[str]) -> str:
    text = " ".join(" ".join(t.split()).casefold() for t in texts).replace(_SEPARATOR, " ")
    return text.ljust(SHINGLE)


def shingle_hashes(rows: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The 5-gram hashes of every row, flat, and the row offsets into them."""
    texts = [_normalized(row) for row in rows]
    joined = _SEPARATOR.join(texts) + _SEPARATOR
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    windows = len(points) - SHINGLE + 1
    hashes = np.zeros(windows, dtype=np.uint64)
    for k in range(SHINGLE):
        hashes = hashes * _BASE + points[k : k + windows]
    separators = np.concatenate([[0], np.cumsum(points == ord(_SEPARATOR))])
    clean = separators[SHINGLE : SHINGLE + windows] == separators[:windows]
    lengths = np.fromiter((len(t) - SHINGLE + 1 for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint64)
    return hashes[clean], offsets


def signatures(rows: Sequence[Sequence[str]], permutations: int) -> np.ndarray:
    """One MinHash signature (``permutations`` uint32) per row."""
    from rensa import RMinHash

    hashes, offsets = shingle_hashes(rows)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, permutations, SEED)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(rows), permutations)


def band_count(threshold: float, permutations: int) -> int:
    """The band count whose LSH curve crosses 50% near the threshold (rows per band r,
    threshold ~ (1/b)^(1/r)), among the divisors of ``permutations``."""
    candidates = [b for b in range(1, permutations + 1) if permutations % b == 0]
    return min(candidates, key=lambda b: abs((1 / b) ** (b / permutations) - threshold))


class NearDuplicateIndex:
    """The rows kept so far, banded; a row is a near-duplicate when a kept row in one of its
    buckets has an estimated Jaccard similarity at or above the threshold."""

    def __init__(self, threshold: float, permutations: int) -> None:
        self.threshold = threshold
        self.permutations = permutations
        self.bands = band_count(threshold, permutations)
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self._kept: list[np.ndarray] = []

    def admit(self, rows: Sequence[Sequence[str]]) -> list[bool]:
        """For each row in order: ``True`` (kept, indexed) or ``False`` (a near-duplicate of
        a kept row, earlier rows of this batch included)."""
        if not rows:
            return []
        kept = []
        for signature in signatures(rows, self.permutations):
            keys = [band.tobytes() for band in signature.reshape(self.bands, -1)]
            buckets = (self._buckets[band].get(key, ()) for band, key in enumerate(keys))
            candidates = {kept_row for bucket in buckets for kept_row in bucket}
            if any(self._similarity(signature, i) >= self.threshold for i in candidates):
                kept.append(False)
                continue
            number = len(self._kept)
            self._kept.append(signature)
            for band, key in enumerate(keys):
                self._buckets[band].setdefault(key, []).append(number)
            kept.append(True)
        return kept

    def _similarity(self, signature: np.ndarray, number: int) -> float:
        return float(np.mean(self._kept[number] == signature))

    def __len__(self) -> int:
        return len(self._kept)
