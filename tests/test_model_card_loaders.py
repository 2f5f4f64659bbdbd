"""Local task loaders: malformed files are rejected naming file and line; caps are repeatable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.evalsets import EvalSetError, LocalTask, load_retrieval, load_sts
from tests.model_card_fixtures import write_beir, write_sts


def _retrieval(folder: Path, **caps: int) -> LocalTask:
    return LocalTask(name="T", type="retrieval", path=folder, **caps)


def _replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


BEIR_CASES = [
    ("corpus.jsonl", 3, '{"_id": "d2", "text": ', ":3: not valid JSON ("),
    ("queries.jsonl", 2, '{"_id": "q1"}', ":2: missing or empty 'text'"),
    ("queries.jsonl", 4, '{"_id": "q3", "text": ""}', ":4: missing or empty 'text'"),
    (
        "corpus.jsonl",
        4,
        '{"_id": "d0", "text": "again"}',
        ":4: duplicate _id 'd0' (first on line 1)",
    ),
    ("corpus.jsonl", 2, '["d1", "text"]', ":2: expected a JSON object"),
    (
        "qrels/test.tsv",
        3,
        "q1\td1",
        ":3: expected 3 tab-separated columns (query-id, corpus-id, score), found 2",
    ),
    ("qrels/test.tsv", 2, "q0\tnope\t1", ":2: corpus-id 'nope' is not in the corpus"),
    ("qrels/test.tsv", 2, "qx\td0\t1", ":2: query-id 'qx' is not a query"),
    ("qrels/test.tsv", 5, "q3\td3\tmany", ":5: score 'many' is not a number"),
]


@pytest.mark.parametrize(("file_name", "line_no", "bad", "expected"), BEIR_CASES)
def test_malformed_beir_folder_names_file_and_line(
    tmp_path: Path, file_name: str, line_no: int, bad: str, expected: str
) -> None:
    folder = write_beir(tmp_path / "beir")
    target = folder / file_name
    _replace_line(target, line_no, bad)
    before = target.read_bytes()
    with pytest.raises(EvalSetError) as info:
        load_retrieval(_retrieval(folder))
    assert str(info.value).startswith(f"{target}{expected}")
    assert target.read_bytes() == before  # the loader only reads


def test_missing_beir_file_is_named(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "beir")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(EvalSetError) as info:
        load_retrieval(_retrieval(folder))
    assert str(info.value) == (
        f"{folder / 'qrels' / 'test.tsv'}: file not found (a BEIR folder needs qrels/test.tsv)"
    )


def test_empty_corpus_is_rejected(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "beir")
    (folder / "corpus.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match=r"corpus\.jsonl: no records$"):
        load_retrieval(_retrieval(folder))


STS_CASES = [
    (1, "first\tsecond\tscore", ":1: the header must name the columns sentence1, sentence2"),
    (4, "only one field\t3", ":4: expected 3 tab-separated fields, found 2"),
    (3, "a\tb\thigh", ":3: score 'high' is not a number"),
    (5, " \tb\t2", ":5: empty sentence1"),
]


@pytest.mark.parametrize(("line_no", "bad", "expected"), STS_CASES)
def test_malformed_sts_file_names_file_and_line(
    tmp_path: Path, line_no: int, bad: str, expected: str
) -> None:
    path = write_sts(tmp_path / "sts.tsv")
    _replace_line(path, line_no, bad)
    with pytest.raises(EvalSetError) as info:
        load_sts(LocalTask(name="S", type="sts", path=path))
    assert str(info.value).startswith(f"{path}{expected}")


def test_sts_reads_csv_quoting_and_any_column_order(tmp_path: Path) -> None:
    path = tmp_path / "sts.tsv"
    path.write_text(
        'score\tsentence2\tsentence1\n4.5\t"He said ""yes""."\tA yes.\n0\tfar\tnear\n',
        encoding="utf-8",
    )
    data = load_sts(LocalTask(name="S", type="sts", path=path))
    assert data.pairs[0] == {"sentence1": "A yes.", "sentence2": 'He said "yes".', "score": 4.5}
    assert data.total_pairs == 2


def test_caps_keep_only_answerable_queries_and_repeat(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "beir", n_docs=30, n_queries=20)
    spec = _retrieval(folder, max_corpus=10, max_queries=4)
    first, second = load_retrieval(spec), load_retrieval(spec)
    assert first == second
    assert len(first.corpus) == 10 and first.total_corpus == 30
    assert len(first.queries) == 4 and first.total_queries == 20
    kept_docs = {d["id"] for d in first.corpus}
    for query in first.queries:
        assert set(first.qrels[query["id"]]) <= kept_docs


def test_cross_lingual_corpus_path(tmp_path: Path) -> None:
    queries_folder = write_beir(tmp_path / "de")
    corpus_folder = tmp_path / "en"
    corpus_folder.mkdir()
    docs = [json.dumps({"_id": f"d{i}", "text": f"english doc {i}"}) for i in range(12)]
    (corpus_folder / "corpus.jsonl").write_text("\n".join(docs) + "\n", encoding="utf-8")
    spec = LocalTask(name="X", type="retrieval", path=queries_folder, corpus_path=corpus_folder)
    data = load_retrieval(spec)
    assert data.corpus[0]["text"] == "english doc 0"
    assert len(data.queries) == 8
