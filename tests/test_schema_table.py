"""The task table (``kit.schema.TASK_TABLE``) is the one source of each task type's facts:
add a task type to it, and the raw Arrow schema, the raw checks, parsing, the gates' length
floors and language sides, the judge and the published columns all follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kit.schema
from dataset_builder.raw_run import RunScan, raw_schema, scan_run
from kit.config import QualitySection
from kit.schema import (
    GATES,
    RAW_RECORD,
    RAW_SCHEMA_VERSION,
    Repeat,
    TaskType,
    TextField,
    config_columns,
    raw_record,
)
from seeds.consistency import NO_NEIGHBOUR, NOT_IN_TOP_K
from seeds.gates import Candidate, QualityGates
from seeds.judge import judge_item, load_judge_prompt, swapped
from seeds.languages import XLMR_LANGUAGES
from seeds.parsing import Rejection, validate_example
from seeds.plan import WorkItem
from seeds.templates import TEMPLATE_DIR, TemplateError, load_template

# A cross-lingual question-answering type: a question in the source language, its answer in
# the target language, and a wrong answer in no checked language.
QA = TaskType(
    "qa", "question_answering", False,
    (
        TextField("question", "query"),
        TextField("answer", "positive", "target"),
        TextField("wrong_answer", "negative", None),
    ),
    (
        Repeat("answer", ("wrong_answer",), "answer_equals_wrong_answer"),
        Repeat("question", ("answer",), "question_in_answer", gated=True, inside=3),
    ),
)  # fmt: skip
QA_TEMPLATE = {
    "template_id": "qa",
    "version": 1,
    "task_type": "qa",
    "brainstorm": "List {num_tasks} question answering tasks.",
    "task_definition": None,
    "placeholders": {"answer_length": {"one sentence": 5, "a paragraph": 60}},
    "output_keys": ["question", "answer", "wrong_answer"],
    "asked_words": {"question": 4, "answer": "answer_length", "wrong_answer": "answer_length"},
    "prompt": "Task: {task}. Answer in {answer_length}.",
}
GERMAN = "Der Fluss tritt jedes Frühjahr über die Ufer und überschwemmt die alten Gassen der Stadt."
ENGLISH = "The river floods the old lanes of the town every spring, and the people move uphill."
FRENCH = "La rivière inonde chaque printemps les vieilles ruelles de la ville au bord de l'eau."


@pytest.fixture
def qa(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The QA type in the table and its template loaded from a file."""
    monkeypatch.setitem(kit.schema.TASK_TABLE, "qa", QA)
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(QA_TEMPLATE), encoding="utf-8")
    return load_template(path)


def _record(example: dict, target: str | None = "fr", task_type: str = "qa") -> dict:
    values = {
        "id": f"{task_type}-{len(json.dumps(example))}", "task_type": task_type,
        "task_definition": "Answer a question about a river.", "language": "de",
        "target_language": target, "placeholders": {}, "template_id": "qa-v1",
        "template_sha256": "0" * 64, "generator_model": "m", "generator_backend": "local",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "example": example, "quality": {},
        "document_id": None,
    }  # fmt: skip
    return raw_record(values)


def _scan(records: list[dict], folder: Path) -> RunScan:
    """The dataset stage's scan of a run made of these records."""
    shard = folder / "run" / "raw" / "shard-00000.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (folder / "spool").mkdir()
    return scan_run(folder / "run", folder / "spool")


def test_a_new_task_type_changes_the_raw_schema_and_its_checks(qa, tmp_path: Path) -> None:
    example = raw_schema().field("example").type
    assert {"question", "answer", "wrong_answer"} <= {f.name for f in example}
    good = {"question": "Wann?", "answer": "Au printemps.", "wrong_answer": "En hiver."}
    records = [
        _record(good),
        _record({k: v for k, v in good.items() if k != "wrong_answer"}),
        _record(good, target=None),
        _record(good, target="de"),
    ]
    scan = _scan(records, tmp_path)
    assert scan.accepted == 1 and scan.stats.by_type == {"qa": 1}
    assert scan.stats.target_languages == {"fr": 1}
    assert scan.dropped == {
        "missing field example.wrong_answer": 1,
        "missing field target_language": 1,
        "qa with the same source and target language": 1,
    }
    assert config_columns("question_answering") == (
        "id", "task_definition", "language", "target_language",
        "question", "answer", "wrong_answer",
    )  # fmt: skip


def test_the_raw_schema_reads_what_seeds_writes() -> None:
    """seeds builds its records from RAW_RECORD; the dataset reads those of its fields it
    needs, in the same order, and leaves seeds' own ones out."""
    read = raw_schema().names
    assert read == [name for name, kind in RAW_RECORD.items() if kind != "seeds"]
    assert list(_record({}, task_type="sts")) == list(RAW_RECORD)
    assert _record({}, task_type="sts")["schema_version"] == RAW_SCHEMA_VERSION
    with pytest.raises(KeyError, match="a raw record has the fields"):
        raw_record({"id": "x"})


def test_a_new_task_type_is_parsed_by_its_fields_and_rules(qa) -> None:
    answer = {"question": "Wann?", "answer": "Im Frühling.", "wrong_answer": "Im Winter.",
              "extra": "dropped"}  # fmt: skip
    assert list(validate_example(qa, answer, 1, 500)) == ["question", "answer", "wrong_answer"]
    for broken, reason in (
        ({"wrong_answer": " im  FRÜHLING. "}, "answer_equals_wrong_answer"),
        ({"wrong_answer": None}, "missing_key"),
    ):
        value = {k: v for k, v in {**answer, **broken}.items() if v is not None}
        with pytest.raises(Rejection) as caught:
            validate_example(qa, value, 1, 500)
        assert caught.value.reason == reason


def test_a_new_task_type_is_gated_by_its_floors_sides_and_rules(qa) -> None:
    gates = QualityGates(QualitySection(), list(XLMR_LANGUAGES), {"qa": qa})
    long_answer = " ".join([FRENCH] * 4)  # 60 words and more: enough for "a paragraph"

    def row(answer: str, length: str, **changes: str) -> Candidate:
        example = {"question": GERMAN, "answer": answer, "wrong_answer": long_answer} | changes
        return Candidate("qa", example, {"answer_length": length}, "de", "fr")

    rows = [
        row(FRENCH, "one sentence"),
        row(FRENCH, "a paragraph"),  # 15 words where 60 were asked (floor 15): kept
        row(" ".join(FRENCH.split()[:12]), "a paragraph"),  # 12 < 15
        row(FRENCH, "one sentence", question="Wie"),  # asked 4 words: floor 1, kept
        row(ENGLISH, "one sentence"),  # the answer must be in the target language
        row(FRENCH, "one sentence", wrong_answer=" ".join([ENGLISH] * 4)),  # not checked
        row(f"{GERMAN} {FRENCH}", "one sentence"),
    ]
    verdicts = gates.inspect(rows)
    assert [v.reason for v in verdicts] == [
        None, None, "too_short:answer", None, "wrong_language:answer", None,
        "question_in_answer",
    ]  # fmt: skip
    assert set(verdicts[0].quality["language"]) == {"question", "answer"}
    assert verdicts[0].quality["target_language_verified"] is True


def test_a_new_task_type_is_judged_by_its_roles(qa) -> None:
    example = {"question": "q?", "answer": "right", "wrong_answer": "wrong"}
    item = WorkItem("qa-1", "generate", "qa", "", {}, task_definition="Answer it.")
    request = judge_item(load_judge_prompt(), item, example, seed=0)
    assert request is not None and "q?" in request.prompt
    assert {"right", "wrong"} <= set(request.prompt.split())
    assert swapped("qa", example) == {**example, "answer": "wrong", "wrong_answer": "right"}
    unjudged = WorkItem("s-1", "generate", "short_short", "", {})  # no negative: not judged
    assert (
        judge_item(load_judge_prompt(), unjudged, {"input": "a", "positive_document": "b"}, 0)
        is None
    )


def test_length_floors_come_from_the_template_data(tmp_path: Path) -> None:
    """The words a placeholder value asks for are data in the template file: change the
    number there and the gate's floor follows."""
    raw = json.loads((TEMPLATE_DIR / "short_long.json").read_text(encoding="utf-8"))
    query = "how do river towns prepare for spring floods every year"  # 10 words
    document = " ".join([ENGLISH] * 4)
    candidate = Candidate(
        "short_long",
        {"user_query": query, "positive_document": document, "hard_negative_document": document},
        {"query_length": "5 to 15 words", "num_words": "50"},
        "en",
    )
    verdicts = []
    for words in (5, 60):
        raw["placeholders"]["query_length"]["5 to 15 words"] = words
        path = tmp_path / f"short_long-{words}.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        gates = QualityGates(QualitySection(language_check=False), [], {
            "short_long": load_template(path)})  # fmt: skip
        verdicts += [v.reason for v in gates.inspect([candidate])]
    assert verdicts == [None, "too_short:user_query"]


def test_a_template_must_say_how_long_its_fields_are_asked_to_be(tmp_path: Path, qa) -> None:
    for asked, what in (({"answer": "no_such_placeholder"}, "answer"), ({"title": 3}, "title")):
        path = tmp_path / "qa.json"
        path.write_text(json.dumps(QA_TEMPLATE | {"asked_words": asked}), encoding="utf-8")
        with pytest.raises(TemplateError) as caught:
            load_template(path)
        assert str(caught.value) == (
            f"{path}: asked_words.{what} must name an output key and give a number or a "
            "placeholder whose values give numbers"
        )


def test_every_gate_reason_is_declared_once_in_the_kit() -> None:
    """The reasons seeds' content and language gates give are those kit.schema.GATES
    declares, which the dataset card reads; each belongs to one gate."""
    gates = QualityGates(QualitySection(require_verified_language=True), list(XLMR_LANGUAGES))
    document = " ".join([ENGLISH] * 4)

    def retrieval(query: str, positive: str = document, prompt: str = "") -> Candidate:
        example = {"user_query": query, "positive_document": positive,
                   "hard_negative_document": document}  # fmt: skip
        return Candidate("short_long", example, {"num_words": "50"}, "en", None, prompt)

    classification = {"input_text": "good phone", "label": "Good phone", "misleading_label": "x"}
    rows = [
        retrieval("{language} floods"),
        retrieval("<b>floods</b>"),
        retrieval("floods", "Dikes."),
        retrieval("Write a search query now", prompt="Write a search query now about rivers"),
        retrieval("the old lanes of the town"),
        Candidate("long_short", classification, {}, "en"),
        retrieval(GERMAN),
        Candidate("short_short", {"input": "ok", "positive_document": "ok ok"}, {}, "en"),
        Candidate("bitext", {"S1": GERMAN, "S2": "ok ok", "S3": "ok ok ok"}, {}, "de", "fr"),
    ]
    reasons = [v.reason for v in gates.inspect(rows)]
    assert reasons == [
        "placeholder:user_query", "markup:user_query", "too_short:positive_document",
        "prompt_echo:user_query", "query_in_positive", "label_equals_input",
        "wrong_language:user_query", "unverified_language", "unverified_target_language",
    ]  # fmt: skip
    produced: dict[str, set[str]] = {}
    # The consistency gate's reasons: seeds.consistency's, tested in test_seeds_corpus.py.
    for reason in [*reasons, "near_duplicate", "judge_rejected", NOT_IN_TOP_K, NO_NEIGHBOUR]:
        (gate,) = [gate for gate in GATES if gate.claims(reason)]
        produced.setdefault(gate.key, set()).add(reason.split(":")[0] + ":" * (":" in reason))
    assert produced == {gate.key: set(gate.reasons) for gate in GATES}
    for reason in ("duplicate", "too_short", "invalid_json"):  # parsing's own, no gate's
        assert not any(gate.claims(reason) for gate in GATES)
