"""Keep the evaluation sets out of the training data: drop rows sharing a word n-gram with one.

The dataset stage applies it to the synthetic rows, and training to the public datasets it
adds (``extra_datasets``), so no text of an evaluation set reaches the model either way.

Evaluation texts come from the local sets and from the registry tasks the evaluation runs
(a configured benchmark's and those named alone, with the same subsets: ``kit.registry_tasks``),
in every task shape of mteb 2's data: a retrieval or reranking task's corpus (titles and
texts) and queries, and every text column of the STS, pair-classification, classification,
clustering, bitext and summarization shapes (columns of strings or of lists of strings,
found in the data itself). A task whose data cannot be loaded, or holds no text, is listed
as unavailable with the reason, never as checked.

Both sides are tokenized by the same Arrow kernel (lower-case, split on anything that is not
a letter or a digit). An evaluation text contributes its n-grams (13 words by default); a
text shorter than that contributes itself whole, if it has at least ``MIN_WORDS`` words, so
a short STS sentence copied verbatim is caught too. Each distinct word gets a 64-bit hash
(blake2b, the same in every process), a window of words the polynomial hash of its words
(computed for every window of a text at once from prefix sums, in uint64 arithmetic), and
the evaluation side is one sorted array of window hashes per length with each one's owner.
A training window matches when its hash is in the array of its length: a bitset on the
hash's top bits settles most windows, a binary search the rest. Against MTEB(eng, v2)'s
~2.4e8 grams a 500k-row dataset has ~1.4e8 windows of each length, so the expected number of
rows dropped by a hash collision is about 0.002 (BENCHMARKS.md, "Decontamination at paper
scale", also for time and memory).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kit.evalsets import LocalTask, RegistryTask, task_texts
from kit.net import hub_reachable

log = logging.getLogger(__name__)
SPLIT = r"[^\p{L}\p{N}]+"
MIN_WORDS = 4
_PRIME = 1_000_000_007
_INVERSE = pow(_PRIME, -1, 1 << 64)
# Characters of evaluation text hashed at a time (about 40 bytes a word are held while a
# chunk is hashed, so this bounds that to a few hundred MB).
CHUNK_CHARS = 1 << 24
# Bits of the membership bitset per evaluation gram (a few percent of misses reach the search).
BITS_PER_GRAM = 16
MAX_BITSET_BITS = 1 << 32


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


@lru_cache(maxsize=1 << 20)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def word_hashes(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Every word of the texts as its 64-bit hash (flat), and each text's offsets in it.
    Each distinct word of the batch is hashed once."""
    lists = words(texts)
    encoded = pc.dictionary_encode(lists.flatten())
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    table = np.fromiter((_word_hash(w) for w in encoded.dictionary.to_pylist()), np.uint64)
    values = table[encoded.indices.to_numpy(zero_copy_only=False)] if len(table) else table
    return values.astype(np.uint64), lists.offsets.to_numpy().astype(np.int64)


def _first_of_each(values: np.ndarray) -> np.ndarray:
    """In a sorted array, where each distinct value first appears (numpy's own ``unique``
    hashes, and is many times slower on uint64)."""
    return np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))


def _unique(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered[_first_of_each(ordered)] if len(ordered) else ordered


class WindowHasher:
    """The hash of any window of a flat word-hash array, in O(1) after one prefix pass:
    hash(s, L) = sum_k v[s+k] * P^(L-1-k) = (A[s+L] - A[s]) * P^(s+L-1), with
    A[i] = sum_{j<i} v[j] * P^-j, all modulo 2^64 (P is odd, so P^-1 exists)."""

    def __init__(self, values: np.ndarray) -> None:
        count = len(values)
        inverse = np.full(count, _INVERSE, dtype=np.uint64)
        inverse[0] = 1
        with np.errstate(over="ignore"):
            start = np.zeros(1, dtype=np.uint64)
            self.prefix = np.concatenate([start, np.cumsum(values * np.cumprod(inverse))])
            powers = np.full(max(count, 1), _PRIME, dtype=np.uint64)
            powers[0] = 1
            self.powers = np.cumprod(powers)

    def at(self, starts: np.ndarray, length: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            span = self.prefix[starts + length] - self.prefix[starts]
            return span * self.powers[starts + length - 1]


def _windows(offsets: np.ndarray, length: int) -> np.ndarray:
    """Start of every window of ``length`` words that lies inside one text."""
    lengths = np.diff(offsets)
    counts = np.maximum(lengths - length + 1, 0)
    if not counts.sum():
        return np.zeros(0, dtype=np.int64)
    firsts = np.repeat(offsets[:-1], counts)
    steps = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return firsts + steps


def gram_hashes(texts: pa.Array | pa.ChunkedArray, n: int) -> dict[int, np.ndarray]:
    """An evaluation batch's grams by length: every n-word window of a text of n words or
    more, and each text of ``MIN_WORDS`` to n-1 words whole."""
    values, offsets = word_hashes(texts)
    hasher = WindowHasher(values)
    found = {n: hasher.at(_windows(offsets, n), n)}
    lengths = np.diff(offsets)
    for length in np.unique(lengths[(lengths >= MIN_WORDS) & (lengths < n)]).tolist():
        found[length] = hasher.at(offsets[:-1][lengths == length], length)
    return {length: _unique(h) for length, h in found.items() if len(h)}


@dataclass
class GramIndex:
    """The evaluation grams of one length: sorted hashes, each one's owner, and a bitset on
    the top bits for the quick "surely not" answer."""

    hashes: np.ndarray
    owners: np.ndarray
    shift: int
    bits: np.ndarray

    @classmethod
    def build(cls, parts: list[tuple[np.ndarray, int]]) -> GramIndex:
        """``parts``: each set's hashes with its owner number; the first owner keeps a gram."""
        every = np.concatenate([h for h, _ in parts])
        every.sort()  # in place: no index array as large as every gram
        hashes = every[_first_of_each(every)]
        del every
        owners = np.full(len(hashes), -1, dtype=np.int32)
        for found, owner in parts:  # in the sets' order: the first set keeps a gram
            places = np.searchsorted(hashes, found)
            owners[places[owners[places] < 0]] = owner
        size = min(MAX_BITSET_BITS, 1 << max(6, int(len(hashes) * BITS_PER_GRAM).bit_length()))
        shift = 64 - (size.bit_length() - 1)
        slots = (hashes >> np.uint64(shift)).astype(np.int64)  # sorted, as the hashes are
        cells, masks = slots >> 3, (1 << (slots & 7)).astype(np.uint8)
        bits = np.zeros(size // 8, dtype=np.uint8)
        if len(cells):
            starts = np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]]))
            bits[cells[starts]] = np.bitwise_or.reduceat(masks, starts)
        return cls(hashes, owners, shift, bits)

    def find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the queries that are grams here, and their owners."""
        slots = (queries >> np.uint64(self.shift)).astype(np.int64)
        maybe = np.flatnonzero(self.bits[slots >> 3] & (1 << (slots & 7)).astype(np.uint8))
        places = np.minimum(np.searchsorted(self.hashes, queries[maybe]), len(self.hashes) - 1)
        hit = self.hashes[places] == queries[maybe]
        return maybe[hit], self.owners[places[hit]]

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.owners.nbytes + self.bits.nbytes


@dataclass
class EvaluationNgrams:
    """Evaluation grams by length, the sets they come from, and the sets not checked."""

    n: int
    names: list[str]
    index: dict[int, GramIndex]
    sizes: dict[str, int]
    unavailable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        n: int,
        local: Iterable[LocalTask],
        registry: Iterable[RegistryTask | str],
        benchmark: str = "",
    ) -> EvaluationNgrams:
        # A local set that cannot be read is a config error (raised here), not "unavailable".
        texts = {task.name: [pa.array(task_texts(task), pa.string())] for task in local}
        sets = [(name, lambda arrays=arrays: arrays) for name, arrays in texts.items()]
        unavailable: dict[str, str] = {}
        try:
            sets += list(registry_sets(registry, benchmark))
        except UnavailableTasks as exc:
            unavailable |= exc.reasons
        return cls.from_sets(n, sets, unavailable)

    @classmethod
    def from_sets(
        cls, n: int, sets: Iterable[tuple[str, Any]], unavailable: dict[str, str] | None = None
    ) -> EvaluationNgrams:
        """``sets``: (name, a function returning its texts as Arrow string arrays)."""
        names: list[str] = []
        sizes: dict[str, int] = {}
        unavailable = dict(unavailable or {})
        parts: dict[int, list[tuple[np.ndarray, int]]] = {}
        for name, load in sets:
            try:
                arrays = load()
            except Exception as exc:  # noqa: BLE001 - offline or gated: reported, not guessed
                unavailable[name] = f"not checked, its data could not be loaded: {exc}"[:200]
                continue
            count, grams = _set_grams(arrays, n)
            if not count:
                unavailable[name] = "not checked, no text was found in its data"
                continue
            names.append(name)
            sizes[name] = count
            for length, hashes in grams.items():
                parts.setdefault(length, []).append((hashes, len(names) - 1))
        index = {length: GramIndex.build(found) for length, found in parts.items()}
        return cls(n, names, index, sizes, unavailable)

    @property
    def grams(self) -> int:
        return sum(len(found.hashes) for found in self.index.values())


def _chunks(array: pa.Array) -> Iterator[pa.Array]:
    """Consecutive slices of about ``CHUNK_CHARS`` characters (one text at least)."""
    ends = np.cumsum(pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False))
    start = 0
    while start < len(array):
        reach = ends[start - 1] + CHUNK_CHARS if start else CHUNK_CHARS
        stop = max(start + 1, int(np.searchsorted(ends, reach, side="right")))
        yield array.slice(start, stop - start)
        start = stop


def _set_grams(arrays: list[pa.Array], n: int) -> tuple[int, dict[int, np.ndarray]]:
    """Texts counted and grams (by length) of one evaluation set, a chunk at a time."""
    count = 0
    grams: dict[int, list[np.ndarray]] = {}
    for array in arrays:
        array = array.drop_null()
        count += len(array)
        for chunk in _chunks(array):
            for length, hashes in gram_hashes(chunk, n).items():
                grams.setdefault(length, []).append(hashes)
    return count, {length: _unique(np.concatenate(h)) for length, h in grams.items()}


class UnavailableTasks(Exception):
    """Registry tasks that cannot be read here, each with its reason."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


def registry_sets(
    registry: Iterable[RegistryTask | str], benchmark: str = ""
) -> Iterator[tuple[str, Any]]:
    """(name, loader of its texts) for each registry task the evaluation runs."""
    from kit.registry_tasks import resolve

    specs = [RegistryTask(spec) if isinstance(spec, str) else spec for spec in registry]
    if not specs and not benchmark:
        return
    tasks = resolve(benchmark, specs)
    if not hub_reachable():
        raise UnavailableTasks(
            {task.name: "not checked, its data could not be loaded: no Hub reachable"
             for task in tasks}  # fmt: skip
        )
    for resolved in tasks:
        yield resolved.name, lambda task=resolved.task: loaded_texts(task)


def loaded_texts(task: Any) -> list[pa.Array]:
    """Every text of an mteb task, loaded (its data lives on the Hub) and then let go."""
    task.load_data()
    try:
        return data_texts(task.dataset)
    finally:
        task.unload_data()


def data_texts(data: Any) -> list[pa.Array]:
    """The text columns of a task's data in any of mteb 2's layouts: nested dicts (subset ->
    split -> Dataset, or a retrieval split's corpus and queries) down to ``datasets``
    tables, whose string columns, and list-of-string columns, are texts. Ids and labels are
    short, so the ``MIN_WORDS`` rule leaves them out."""
    from datasets import Dataset

    if isinstance(data, Dataset):
        table = data.with_format("arrow")[:]
        arrays = []
        for column in table.itercolumns():
            column = column.combine_chunks()
            kind = column.type
            if pa.types.is_list(kind) or pa.types.is_large_list(kind):
                column, kind = column.flatten(), kind.value_type
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                arrays.append(column.cast(pa.string()))
        return arrays
    if isinstance(data, dict):
        return [array for value in data.values() for array in data_texts(value)]
    return []


@dataclass
class Contamination:
    """What the gate dropped: rows per evaluation set, with one example id each."""

    rows: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def _first_matches(texts: pa.Array, ngrams: EvaluationNgrams) -> dict[int, int]:
    """Row -> owner of its first matching window (longest first at equal positions)."""
    values, offsets = word_hashes(texts)
    if not len(values):
        return {}
    hasher = WindowHasher(values)
    hits = []
    for length in sorted(ngrams.index, reverse=True):
        starts = _windows(offsets, length)
        where, owners = ngrams.index[length].find(hasher.at(starts, length))
        if len(where):
            hits.append(np.stack([starts[where], np.full(len(where), -length), owners], axis=1))
    if not hits:
        return {}
    found = np.concatenate(hits)
    found = found[np.lexsort((found[:, 1], found[:, 0]))]
    rows = np.searchsorted(offsets, found[:, 0], side="right") - 1  # sorted, as positions are
    first = _first_of_each(rows)
    return dict(zip(rows[first].tolist(), found[first, 2].tolist(), strict=True))


def contaminated_mask(table: pa.Table, ngrams: EvaluationNgrams, found: Contamination) -> pa.Array:
    """True for each row that shares a gram with an evaluation set."""
    flagged = np.zeros(table.num_rows, dtype=bool)
    if not ngrams.index or not table.num_rows:
        return pa.array(flagged)
    example = table["example"]
    row_ids = table["id"].to_pylist()
    for name in [text_field.name for text_field in example.type]:
        for row, owner in _first_matches(pc.struct_field(example, name), ngrams).items():
            if flagged[row]:
                continue
            flagged[row] = True
            owner_name = ngrams.names[owner]
            found.rows[owner_name] += 1
            found.examples.setdefault(owner_name, row_ids[row])
    return pa.array(flagged)
