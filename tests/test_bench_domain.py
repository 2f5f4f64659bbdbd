"""The domain bench's title queries: real corpus rows, none from the evaluation's passages."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import bench.corpus_bench
from bench.domain_bench import SAMPLED_PASSAGES, title_triplets


def test_title_queries_lead_to_their_passage_and_never_touch_the_evaluation_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.corpus_bench, "WORK", tmp_path / "corpus-bench")
    written = title_triplets(tmp_path / "titles")
    with gzip.open(tmp_path / "titles" / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert 0 < written == len(rows) <= SAMPLED_PASSAGES
    with gzip.open(bench.corpus_bench.CORPUS / "passages.jsonl.gz", "rt", encoding="utf-8") as f:
        title_of = {p["text"]: p["title"] for p in map(json.loads, f)}
    evaluation = tmp_path / "corpus-bench" / "corpus-questions" / "corpus.jsonl"
    held_out = {json.loads(line)["text"] for line in evaluation.open(encoding="utf-8")}
    for row in rows:
        assert row["anchor"] == title_of[row["positive"]]
        assert title_of[row["negative"]] != row["anchor"]
        assert not {row["positive"], row["negative"]} & held_out
    title_triplets(tmp_path / "again")
    with gzip.open(tmp_path / "again" / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        assert [json.loads(line) for line in handle] == rows
