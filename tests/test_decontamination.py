"""Decontamination against every task shape of mteb 2, built here as real mteb tasks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kit.decontamination import (
    Contamination,
    EvaluationNgrams,
    WindowHasher,
    contaminated_mask,
    loaded_texts,
    word_hashes,
)
from kit.evalsets import RegistryTask

FILLER = "plain words that no evaluation set holds in any order at all"


def _sentence(shape: str, i: int) -> str:
    return (
        f"the {shape} evaluation text number {i} speaks of rivers and quiet harbours in the "
        "cold north"
    )


def _data(shape: str) -> Any:
    """A task's loaded data in mteb 2's layout for its shape (two texts of our own each)."""
    from datasets import Dataset, DatasetDict

    a, b = _sentence(shape, 1), _sentence(shape, 2)
    if shape in ("Retrieval", "Reranking"):
        split = {
            "corpus": Dataset.from_dict({"id": ["d1"], "title": ["a title"], "text": [a]}),
            "queries": Dataset.from_dict({"id": ["q1"], "text": [b]}),
            "relevant_docs": {"q1": {"d1": 1}},
            "top_ranked": {"q1": ["d1"]} if shape == "Reranking" else None,
        }
        return {"default": {"test": split}}
    columns = {
        "STS": {"sentence1": [a], "sentence2": [b], "score": [3.0]},
        "PairClassification": {"sentence1": [a], "sentence2": [b], "labels": [1]},
        "Classification": {"text": [a, b], "label": [0, 1]},
        "Clustering": {"sentences": [a, b], "labels": ["x", "y"]},
        # the legacy clustering layout: one row holds a whole list of sentences
        "ClusteringLegacy": {"sentences": [[a, b]], "labels": [["x", "y"]]},
        "BitextMining": {"sentence1": [a], "sentence2": [b]},
        "Summarization": {"text": [a], "human_summaries": [[b]],
                          "machine_summaries": [["a machine wrote this summary"]],
                          "relevance": [[1.0]]},
    }[shape]  # fmt: skip
    split = DatasetDict({"test": Dataset.from_dict(columns)})
    # A multilingual task: one DatasetDict per subset.
    return {"en": split} if shape == "BitextMining" else {"default": split}


SHAPES = ("Retrieval", "Reranking", "STS", "PairClassification", "Classification",
          "Clustering", "ClusteringLegacy", "BitextMining", "Summarization")  # fmt: skip


def _task(shape: str, data: Callable[[], Any] | None = None) -> Any:
    """A real mteb task of the shape whose ``load_data`` puts ``data`` in place."""
    import mteb.abstasks as abstasks
    from mteb import TaskMetadata

    base = getattr(abstasks, f"AbsTask{shape}")
    kind = "Clustering" if shape == "ClusteringLegacy" else shape
    metadata = TaskMetadata(
        name=f"Tiny{shape}", description="test", type=kind, category="t2t",
        eval_splits=["test"], eval_langs=["eng-Latn"], main_score="main",
        dataset={"path": f"local/{shape}", "revision": "1"},
    )  # fmt: skip

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = (data or (lambda: _data(shape)))()
        self.data_loaded = True

    return type(f"Tiny{shape}", (base,), {"metadata": metadata, "load_data": load_data})()


def _rows(texts: list[str]) -> pa.Table:
    example = pa.StructArray.from_arrays(
        [pa.array(texts), pa.array([FILLER] * len(texts))], names=["query", "positive"]
    )
    return pa.table({"id": [f"row-{i}" for i in range(len(texts))], "example": example})


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_gives_its_texts(shape: str) -> None:
    texts = {t for array in loaded_texts(_task(shape)) for t in array.to_pylist()}
    assert {_sentence(shape, 1), _sentence(shape, 2)} <= texts


def test_rows_copying_any_shape_s_text_are_dropped_and_counted_by_set() -> None:
    sets = [(f"Tiny{shape}", lambda shape=shape: loaded_texts(_task(shape))) for shape in SHAPES]
    ngrams = EvaluationNgrams.from_sets(13, sets)
    assert ngrams.unavailable == {}
    assert all(ngrams.sizes[f"Tiny{shape}"] >= 2 for shape in SHAPES)
    # Each shape's text, padded, inside a row; one clean row; one row with a 12-word window.
    planted = [
        f"intro words {_sentence(shape, 1 + i % 2)} and more" for i, shape in enumerate(SHAPES)
    ]
    texts = [*planted, FILLER, " ".join(_sentence("STS", 1).split()[:12])]
    found = Contamination()
    mask = contaminated_mask(_rows(texts), ngrams, found).to_pylist()
    assert mask == [True] * len(SHAPES) + [False, False]
    assert found.rows == {f"Tiny{shape}": 1 for shape in SHAPES}
    assert found.examples["TinySTS"] == "row-2"


def test_a_short_evaluation_text_is_caught_whole_and_only_whole() -> None:
    """A text of 4 to n-1 words is a gram of its own; fewer than 4 words are too common."""
    sets = [("short", lambda: [pa.array(["Quiet harbours at dawn!", "too short here"])])]
    ngrams = EvaluationNgrams.from_sets(13, sets)
    texts = ["we saw quiet harbours at dawn today", "quiet harbours at noon", "too short here"]
    assert contaminated_mask(_rows(texts), ngrams, Contamination()).to_pylist() == [
        True, False, False
    ]  # fmt: skip


def test_a_task_that_cannot_be_read_is_unavailable_never_checked_with_no_text() -> None:
    def offline() -> Any:
        raise ConnectionError("no Hub reachable")

    def no_text() -> Any:
        from datasets import Dataset, DatasetDict

        return {"default": DatasetDict({"test": Dataset.from_dict({"label": [0, 1]})})}

    sets = [
        ("Offline", lambda: loaded_texts(_task("STS", offline))),
        ("Empty", lambda: loaded_texts(_task("Classification", no_text))),
        ("TinySTS", lambda: loaded_texts(_task("STS"))),
    ]
    ngrams = EvaluationNgrams.from_sets(13, sets)
    assert ngrams.unavailable == {
        "Offline": "not checked, its data could not be loaded: no Hub reachable",
        "Empty": "not checked, no text was found in its data",
    }
    assert ngrams.sizes == {"TinySTS": 2}


def test_registry_tasks_offline_are_listed_with_the_benchmark_s_tasks() -> None:
    ngrams = EvaluationNgrams.build(13, [], [RegistryTask("SciFact")], benchmark="MTEB(eng, v2)")
    assert len(ngrams.unavailable) == 42 and ngrams.sizes == {}
    assert set(ngrams.unavailable.values()) == {
        "not checked, its data could not be loaded: no Hub reachable"
    }
    assert "STS17" in ngrams.unavailable and "SciFact" in ngrams.unavailable


def test_the_dataset_card_lists_unreadable_sets_as_not_checked(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from huggingface_hub import DatasetCard

    from dataset_builder.export import build
    from kit.config import load_config
    from tests.dataset_raw import synthesize, write_run

    run_dir = tmp_path / "runs" / "default"
    write_run(run_dir, synthesize(20, seed=1))
    config = load_config(write_config(evaluation={"benchmark": "MTEB(eng, v2)"}))
    text = DatasetCard.load(build(config, run_dir, tmp_path / "out").output_dir / "README.md").text
    line = "| `STS17` | – | not checked, its data could not be loaded: no Hub reachable | – |"
    assert line in text
    assert text.count("not checked, its data could not be loaded") == 41


def test_window_hashes_equal_the_polynomial_of_each_window() -> None:
    values, offsets = word_hashes(pa.array(["one two three four five", "six seven eight"]))
    assert offsets.tolist() == [0, 5, 8]
    starts = np.arange(len(values) - 3 + 1)
    prime, mask = 1_000_000_007, (1 << 64) - 1
    expected = []
    for start in starts.tolist():
        value = 0
        for k in range(3):
            value = (value * prime + int(values[start + k])) & mask
        expected.append(value)
    assert WindowHasher(values).at(starts, 3).tolist() == expected
