"""Local evaluation sets as mteb tasks: retrieval, STS and bitext mining, held in memory.

The files are read and checked by ``kit.evalsets`` (the same readers the quality gates use),
then wrapped in mteb's own abstract tasks with a ``TaskMetadata`` of their own, so mteb runs
them exactly like registry tasks.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kit.evalsets import (
    LocalTask,
    data_fingerprint,
    load_bitext,
    load_retrieval,
    load_sts,
    source_of,
)

MTEB_TYPES = {"retrieval": "Retrieval", "sts": "STS", "bitext": "BitextMining"}
MAIN_SCORES = {"retrieval": "ndcg_at_10", "sts": "cosine_spearman", "bitext": "f1"}


def _metadata(task: LocalTask, revision: str, public_name: str) -> Any:
    from mteb import TaskMetadata

    return TaskMetadata(
        name=task.name,
        description=f"Local {MTEB_TYPES[task.type]} task on {public_name}.",
        type=MTEB_TYPES[task.type],
        category="t2t",
        eval_splits=["test"],
        eval_langs=task.language_codes,
        main_score=MAIN_SCORES[task.type],
        dataset={"path": f"local/{task.name}", "revision": revision},
    )


def _retrieval_task(metadata: Any, task: LocalTask) -> tuple[Any, dict[str, int]]:
    from datasets import Dataset
    from mteb.abstasks import AbsTaskRetrieval

    data = load_retrieval(task)

    class LocalRetrievalTask(AbsTaskRetrieval):
        """A BEIR folder held in memory; reloaded for each model after mteb unloads it."""

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            split = {
                "corpus": Dataset.from_list(data.corpus),
                "queries": Dataset.from_list(data.queries),
                "relevant_docs": data.qrels,
                "top_ranked": None,
            }
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    size = {
        "queries": len(data.queries),
        "queries_total": data.total_queries,
        "corpus": len(data.corpus),
        "corpus_total": data.total_corpus,
    }
    cls = type(f"LocalRetrieval_{task.name}", (LocalRetrievalTask,), {"metadata": metadata})
    return cls(), size


def _pair_task(metadata: Any, task: LocalTask) -> tuple[Any, dict[str, int]]:
    """STS (scored pairs) or bitext mining (translation pairs): one test split of pairs."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks import AbsTaskBitextMining, AbsTaskSTS

    data = load_sts(task) if task.type == "sts" else load_bitext(task)
    pairs = data.pairs
    base = AbsTaskSTS if task.type == "sts" else AbsTaskBitextMining

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = {"default": DatasetDict({"test": Dataset.from_list(pairs)})}
        self.data_loaded = True

    attributes: dict[str, Any] = {"metadata": metadata, "load_data": load_data}
    if task.type == "sts":
        # Scores keep their own scale; correlations ignore it.
        attributes |= {
            "min_score": min(p["score"] for p in pairs),
            "max_score": max(p["score"] for p in pairs),
        }
    cls = type(f"Local{MTEB_TYPES[task.type]}_{task.name}", (base,), attributes)
    return cls(), {"pairs": len(pairs), "pairs_total": data.total_pairs}


def local_mteb_task(task: LocalTask, prompts: str) -> tuple[Any, dict[str, int], dict[str, str]]:
    """The mteb task, its size and its public source. Its dataset revision stands for its
    data, caps and ``prompts``: mteb's cache reuses a result only at the same revision."""
    revision = hashlib.sha256(f"{data_fingerprint(task)}\n{prompts}".encode()).hexdigest()
    source = source_of(task)
    metadata = _metadata(task, revision[:16], source.get("name", task.name))
    build = _retrieval_task if task.type == "retrieval" else _pair_task
    mteb_task, size = build(metadata, task)
    return mteb_task, size, source
