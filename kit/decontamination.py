"""Keep the evaluation sets out of the training data: drop rows sharing a word n-gram with one.

The dataset stage applies it to the synthetic rows, and training to the public datasets it
adds (``extra_datasets``), so no text of an evaluation set reaches the model either way.

Both sides are tokenized by the same Arrow kernel (lower-case, split on anything that is not
a letter or a digit). An evaluation text contributes its n-grams (13 words by default); a
text shorter than that contributes itself whole, if it has at least ``MIN_WORDS`` words, so
a short STS sentence copied verbatim is caught too. Words become ids of the evaluation
vocabulary (``index_in``), windows of ids become rolling hashes in numpy, and ``isin``
finds the candidate windows of a whole batch at once; only those few are compared exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kit.evalsets import LocalTask, task_texts
from kit.net import hub_reachable

SPLIT = r"[^\p{L}\p{N}]+"
MIN_WORDS = 4
_PRIME = np.uint64(1_000_000_007)


def words(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Lower-cased words; empty strings (from leading or trailing punctuation) dropped."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    lists = pc.split_pattern_regex(pc.utf8_lower(texts), SPLIT)
    flat = lists.flatten()
    keep = pc.not_equal(flat, "")
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy()
    owners = np.repeat(np.arange(len(lengths)), lengths)
    kept = owners[keep.to_numpy(zero_copy_only=False)]
    kept_lengths = np.bincount(kept, minlength=len(lengths))
    offsets = np.concatenate([[0], np.cumsum(kept_lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.filter(flat, keep))


def _window_hashes(ids: np.ndarray, length: int) -> np.ndarray:
    """Rolling hash of every window of ``length`` ids (uint64 wrap-around arithmetic)."""
    values = ids.astype(np.uint64) + np.uint64(1)
    hashes = np.zeros(len(values) - length + 1, dtype=np.uint64)
    for k in range(length):
        hashes = hashes * _PRIME + values[k : k + len(hashes)]
    return hashes


def _candidate_starts(ids: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
    """Where a window of ``MIN_WORDS`` ids equals the start of some evaluation gram: every
    gram is at least that long, so only these positions can begin a match."""
    if len(ids) < MIN_WORDS or not len(prefixes):
        return np.zeros(0, dtype=np.int64)
    hashes = _window_hashes(ids, MIN_WORDS)
    slots = np.minimum(np.searchsorted(prefixes, hashes), len(prefixes) - 1)
    return np.flatnonzero(prefixes[slots] == hashes)


@dataclass
class EvaluationNgrams:
    """Evaluation grams by length: their hashes, and each gram's owner for the report."""

    n: int
    vocabulary: pa.Array
    grams: dict[int, dict[tuple[int, ...], str]]
    sizes: dict[str, int]
    unavailable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, n: int, local: Iterable[LocalTask], registry: Iterable[str]) -> EvaluationNgrams:
        sets: dict[str, list[str]] = {task.name: task_texts(task) for task in local}
        unavailable = {}
        for name in registry:
            try:
                sets[name] = registry_texts(name)
            except Exception as exc:  # noqa: BLE001 - offline or gated: reported, not guessed
                unavailable[name] = f"not checked, its data could not be loaded: {exc}"[:200]
        tokenized = {name: words(pa.array(texts, pa.string())) for name, texts in sets.items()}
        flat = [lists.flatten() for lists in tokenized.values()]
        vocabulary = pc.unique(pa.concat_arrays(flat)) if flat else pa.array([], pa.string())
        grams: dict[int, dict[tuple[int, ...], str]] = {}
        for name, lists in tokenized.items():
            ids = pc.index_in(lists.flatten(), value_set=vocabulary).to_numpy()
            offsets = lists.offsets.to_numpy()
            for start, end in zip(offsets[:-1], offsets[1:], strict=True):
                row = tuple(int(x) for x in ids[start:end])
                if len(row) < MIN_WORDS:
                    continue
                length = min(n, len(row))
                for i in range(len(row) - length + 1):
                    grams.setdefault(length, {}).setdefault(row[i : i + length], name)
        sizes = {name: len(texts) for name, texts in sets.items()}
        return cls(n, vocabulary, grams, sizes, unavailable)

    @property
    def prefixes(self) -> np.ndarray:
        """Sorted hashes of every gram's first ``MIN_WORDS`` ids (computed once)."""
        if not hasattr(self, "_prefixes"):
            starts = [gram[:MIN_WORDS] for owners in self.grams.values() for gram in owners]
            matrix = np.array(starts, dtype=np.int64).reshape(-1, MIN_WORDS)
            self._prefixes = np.unique(_window_hashes(matrix.reshape(-1), MIN_WORDS)[::MIN_WORDS])
        return self._prefixes


def registry_texts(name: str) -> list[str]:
    """Every text of an mteb registry task (its data lives on the Hub)."""
    import mteb

    if not hub_reachable():
        raise ConnectionError("no Hub reachable")
    task = mteb.get_task(name)
    task.load_data()
    texts: list[str] = []
    for subset in task.dataset.values():
        for split in subset.values():
            for column in ("text", "sentence1", "sentence2", "sentences", "query"):
                if hasattr(split, "column_names") and column in split.column_names:
                    texts += [str(v) for v in split[column] if v]
    return texts


@dataclass
class Contamination:
    """What the gate dropped: rows per evaluation set, with one example id each."""

    rows: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def contaminated_mask(table: pa.Table, ngrams: EvaluationNgrams, found: Contamination) -> pa.Array:
    """True for each row that shares a gram with an evaluation set."""
    flagged = np.zeros(table.num_rows, dtype=bool)
    if not ngrams.grams or not table.num_rows:
        return pa.array(flagged)
    example = table["example"]
    row_ids = table["id"].to_pylist()
    for name in [text_field.name for text_field in example.type]:
        lists = words(pc.struct_field(example, name))
        ends = lists.offsets.to_numpy()[1:]
        ids = pc.index_in(lists.flatten(), value_set=ngrams.vocabulary).fill_null(-1).to_numpy()
        lengths = sorted(ngrams.grams, reverse=True)
        starts = _candidate_starts(ids, ngrams.prefixes)
        rows = np.searchsorted(ends, starts, side="right")
        for position, row in zip(starts.tolist(), rows.tolist(), strict=True):
            if flagged[row]:
                continue
            window = tuple(int(x) for x in ids[position : min(position + ngrams.n, ends[row])])
            owner = next(
                (ngrams.grams[n][window[:n]] for n in lengths if window[:n] in ngrams.grams[n]),
                None,
            )
            if owner is not None:
                flagged[row] = True
                found.rows[owner] += 1
                found.examples.setdefault(owner, row_ids[row])
    return pa.array(flagged)
