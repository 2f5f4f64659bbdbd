"""The consistency gate: a corpus-grounded row is kept only if its own document ranks in the
top k for the text the generator wrote, among every document of the corpus.

A query that does not lead back to its document is either off topic or so generic that other
documents answer it as well; either way the row would teach the model a wrong positive. The
same ranking gives the neighbour negatives (``generation.corpus.negatives = "neighbour"``):
the best-ranked other document, which the judge then checks does not answer the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kit.schema import TASK_TABLE
from seeds.corpus import Corpus
from seeds.plan import WorkItem
from seeds.ranking import Ranker

NOT_IN_TOP_K = "not_in_top_k"
NO_NEIGHBOUR = "no_neighbour"


@dataclass
class ConsistencyVerdict:
    """``reason`` None keeps the row; ``rank`` is its document's place (0 best, None: not in
    the list); ``filled`` holds the fields the corpus gave it (a neighbour negative)."""

    reason: str | None
    rank: int | None
    filled: dict[str, str] = field(default_factory=dict)


def written_text_field(task_type: str) -> str:
    """The generator's text that should lead to the document: the query, or the positive
    when the document itself is the query side (an STS sentence)."""
    task = TASK_TABLE[task_type]
    query = task.field_for("query")
    return (task.field_for("positive") if query == task.document_field else query) or ""


class ConsistencyGate:
    def __init__(
        self, corpus: Corpus, ranker: Ranker, top_k: int, reject: bool, neighbours: bool
    ) -> None:
        self.corpus = corpus
        self.ranker = ranker
        self.top_k = top_k
        self.reject = reject
        self.neighbours = neighbours

    def check(self, rows: Sequence[tuple[WorkItem, dict[str, str]]]) -> list[ConsistencyVerdict]:
        """One verdict per (item, example), ranked in one call."""
        queries = [example[written_text_field(item.task_type)] for item, example in rows]
        ranked = self.ranker.top(queries, self.top_k + 1)
        return [
            self._verdict(item, example, found)
            for (item, example), found in zip(rows, ranked, strict=True)
        ]

    def _verdict(
        self, item: WorkItem, example: dict[str, str], found: list[int]
    ) -> ConsistencyVerdict:
        own = self.corpus.index_of(item.document_id or "")
        rank = found.index(own) if own in found else None
        if self.reject and (rank is None or rank >= self.top_k):
            return ConsistencyVerdict(NOT_IN_TOP_K, rank)
        negative = TASK_TABLE[item.task_type].field_for("negative")
        if not self.neighbours or negative is None or example.get(negative):
            return ConsistencyVerdict(None, rank)
        others = [index for index in found if index != own]
        if not others:
            return ConsistencyVerdict(NO_NEIGHBOUR, rank)
        return ConsistencyVerdict(None, rank, {negative: self.corpus.documents[others[0]].text})
