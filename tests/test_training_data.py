"""The training data as Arrow groups: shapes and order as the rows give them, built once and
memory-mapped by every process, nothing left behind by a build that fails; and the
diagnostics that read it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from kit.cli import StageError
from kit.instructions import instruct
from tests.training_fixtures import phrase_rows, write_dataset
from training.data import build_groups, pairs, read_groups

ROWS = [
    {"task_definition": "t0", "query": "q0", "positive": "p0", "negative": "n0",
     "negative_2": None, "negative_3": "m0"},
    {"task_definition": "t1", "query": "q1", "positive": "p1", "negative": "",
     "negative_2": None, "negative_3": None},
    {"task_definition": "t2", "query": "q2", "positive": "p2", "negative": None,
     "negative_2": "m2", "negative_3": ""},
    {"task_definition": "t3", "query": "q3", "positive": "p3", "negative": "n3",
     "negative_2": "m3", "negative_3": "k3"},
    {"task_definition": "t4", "query": "q4", "positive": "p4", "negative": "n4",
     "negative_2": "", "negative_3": "k4"},
]  # fmt: skip


def test_rows_are_grouped_by_their_negatives_in_column_order():
    """Present negatives move to the front in column order (None and "" are absent), each
    group keeps the rows' order, and the instruction goes into the anchor only."""
    groups = pairs(Dataset.from_list(ROWS))
    assert {name: group.to_list() for name, group in groups.items()} == {
        "without_negative": [{"anchor": f"{instruct('t1')}q1", "positive": "p1"}],
        "with_negative": [
            {"anchor": f"{instruct('t2')}q2", "positive": "p2", "negative_1": "m2"},
        ],
        "with_2_negatives": [
            {"anchor": f"{instruct('t0')}q0", "positive": "p0", "negative_1": "n0",
             "negative_2": "m0"},
            {"anchor": f"{instruct('t4')}q4", "positive": "p4", "negative_1": "n4",
             "negative_2": "k4"},
        ],
        "with_3_negatives": [
            {"anchor": f"{instruct('t3')}q3", "positive": "p3", "negative_1": "n3",
             "negative_2": "m3", "negative_3": "k3"},
        ],
    }  # fmt: skip
    fixed = pairs(Dataset.from_list(ROWS), "one task", negative="")
    assert fixed["with_2_negatives"][0]["anchor"] == f"{instruct('one task')}q3"


def test_the_groups_are_built_once_and_every_process_maps_the_same_files(tmp_path):
    dataset = write_dataset(tmp_path / "dataset", phrase_rows(0, 40, 1), phrase_rows(100, 8, 2))
    target = tmp_path / "checkpoints" / "data"
    made_room = []
    build_groups(
        target, tmp_path, str(dataset), "all", [], None, 8, make_room=lambda: made_room.append(1)
    )
    assert made_room == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "dataset"]
    first, second = read_groups(target), read_groups(target)
    assert first is not None and second is not None
    assert first.train.keys() == {"with_negative", "without_negative"}
    for shape, group in first.train.items():
        files = [Path(f["filename"]) for f in group.cache_files]
        assert files and all(target in path.parents for path in files)  # memory-mapped there
        assert files == [Path(f["filename"]) for f in second.train[shape].cache_files]
    assert sum(len(group) for group in first.train.values()) == 40
    assert first.revision.startswith("sha256:") and first.source == str(dataset)


def test_a_build_that_fails_leaves_nothing(tmp_path):
    dataset = write_dataset(tmp_path / "dataset", phrase_rows(0, 40, 1), phrase_rows(100, 8, 2))
    target = tmp_path / "checkpoints" / "data"
    with pytest.raises(StageError, match="training.batch_size=64 is larger than every group"):
        build_groups(target, tmp_path, str(dataset), "all", [], None, 64, make_room=lambda: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    assert read_groups(target) is None


def grounded(rows: list[dict], every: int) -> list[dict]:
    """The rows with every ``every``-th one written about a corpus document."""
    return [{**row, "document_id": f"doc-{i}" if i % every == 0 else None}
            for i, row in enumerate(rows)]  # fmt: skip


@pytest.mark.parametrize(("which", "train_rows", "validation_rows"),
                         [("all", 40, 8), ("corpus", 10, 2), ("scratch", 30, 6)])  # fmt: skip
def test_synthetic_rows_train_on_the_grounded_rows_or_the_others(
    tmp_path, which, train_rows, validation_rows
):
    dataset = write_dataset(tmp_path / "dataset", grounded(phrase_rows(0, 40, 1), 4),
                            grounded(phrase_rows(100, 8, 2), 4))  # fmt: skip
    target = tmp_path / "checkpoints" / "data"
    build_groups(target, tmp_path, str(dataset), which, [], None, 2, make_room=lambda: None)
    data = read_groups(target)
    assert data is not None
    assert sum(len(group) for group in data.train.values()) == train_rows
    assert sum(len(group) for group in data.validation.values()) == validation_rows
    anchors = {row["anchor"] for group in data.train.values() for row in group}
    firsts = {f"{instruct('find the same words')}{row['query']}"
              for row in grounded(phrase_rows(0, 40, 1), 4) if row["document_id"]}  # fmt: skip
    assert (anchors == firsts) if which == "corpus" else not anchors & firsts or which == "all"


def test_corpus_rows_of_a_dataset_that_marks_none_fail_before_anything_is_written(tmp_path):
    unmarked = write_dataset(tmp_path / "unmarked", phrase_rows(0, 40, 1), phrase_rows(100, 8, 2))
    target = tmp_path / "checkpoints" / "data"
    with pytest.raises(StageError) as error:
        build_groups(target, tmp_path, str(unmarked), "corpus", [], None, 2,
                     make_room=lambda: None)  # fmt: skip
    assert str(error.value) == (
        f"dataset {str(unmarked)!r} split 'train' has no document_id column, so "
        "training.synthetic_rows='corpus' cannot tell corpus-grounded rows from the others; "
        "set it to 'all'"
    )
    scratch_only = write_dataset(tmp_path / "scratch", grounded(phrase_rows(0, 40, 1), 10**6)[1:],
                                 phrase_rows(100, 8, 2))  # fmt: skip
    with pytest.raises(StageError) as error:
        build_groups(target, tmp_path, str(scratch_only), "corpus", [], None, 2,
                     make_room=lambda: None)  # fmt: skip
    assert str(error.value) == f"dataset {str(scratch_only)!r} has no training rows (corpus rows)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch", "unmarked"]
    assert read_groups(target) is None


def test_a_public_set_is_cut_to_max_rows_the_same_whatever_the_seed(tmp_path):
    """``max_rows`` keeps the synthetic rows from drowning in a large public set; its
    validation split is left whole."""
    from kit.config import ExtraDataset
    from training.data import load_training_data

    folder = tmp_path / "public"
    (folder / "data").mkdir(parents=True)
    for split, count in (("train", 50), ("validation", 7)):
        rows = {"query": [f"{split} query {i}" for i in range(count)],
                "positive": [f"{split} answer {i}" for i in range(count)]}  # fmt: skip
        Dataset.from_dict(rows).to_parquet(str(folder / "data" / f"{split}.parquet"))
    extra = ExtraDataset(
        path=str(folder), task_definition="Find the answer", validation_split="validation",
        negative_column="", max_rows=12,
    )  # fmt: skip
    anchors = []
    for attempt in range(2):
        data = load_training_data("none", [extra], None, tmp_path / f"cache-{attempt}")
        assert sum(len(group) for group in data.train.values()) == 12
        assert sum(len(group) for group in data.validation.values()) == 7
        anchors.append(sorted(a for group in data.train.values() for a in group["anchor"]))
    assert anchors[0] == anchors[1]
    assert anchors[0] != sorted(f"{instruct('Find the answer')}train query {i}" for i in range(12))
    whole = ExtraDataset(path=str(folder), task_definition="Find the answer", negative_column="")
    data = load_training_data("none", [whole], None, tmp_path / "cache-whole")
    assert sum(len(group) for group in data.train.values()) == 50


def test_texts_repeated_in_a_step_are_counted():
    from training.trainer import _repeated, _text_keys

    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8], [9, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    inputs = {
        "anchor_input_ids": ids, "anchor_attention_mask": mask,
        "positive_input_ids": torch.tensor([[5, 6, 7, 3], [4, 4, 0, 0], [9, 9, 0, 0]]),
        "positive_attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]]),
    }  # fmt: skip
    keys = _text_keys(inputs)
    assert len(keys) == 6
    # [5, 6, 7] and [9, 9] each appear twice (padding ignored); [5, 6, 7, 8] and [4, 4] once.
    assert _repeated(keys) == 2


@pytest.mark.usefixtures("single_torch_thread")
def test_validation_accuracy_is_top1_retrieval_of_each_anchors_own_positive(tiny_model_dirs):
    """sentence-transformers' InformationRetrievalEvaluator gives what the hand loop it
    replaced gave: the share of anchors whose own positive scores highest among the first
    ``limit`` pairs' positives (ties to the earlier positive), with no prompt added."""
    from kit.embedder import build_embedder
    from kit.instructions import release_prompts
    from training.diagnostics import retrieval_accuracy, validation_evaluator

    model = build_embedder(str(tiny_model_dirs["qwen2"]), 32, release_prompts())
    rows = phrase_rows(0, 30, 3)
    groups = pairs(Dataset.from_list(rows))
    limit = 20
    anchors = [a for g in groups.values() for a in g["anchor"]][:limit]
    positives = [p for g in groups.values() for p in g["positive"]][:limit]
    queries = model.encode(anchors, convert_to_tensor=True)
    documents = model.encode(positives, convert_to_tensor=True)
    best = (queries @ documents.T).argmax(dim=1)
    by_hand = round(float((best == torch.arange(limit)).float().mean()), 4)
    assert retrieval_accuracy(model, validation_evaluator(groups, 8, limit)) == by_hand
    assert 0 < by_hand < 1  # the check is not trivially all or nothing
    assert validation_evaluator({"only": groups["without_negative"].select([0])}, 8, 20) is None
