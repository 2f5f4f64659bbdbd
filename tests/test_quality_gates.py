"""Quality gates on hand-written rows: each must pass, or fail with its exact reason."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest

from kit.config import QualitySection
from seeds.gates import Candidate, QualityGates
from seeds.gates.language import LanguageCheck, identifier
from seeds.languages import XLMR_LANGUAGES

REPO = Path(__file__).resolve().parent.parent
TATOEBA = REPO / "model_card" / "evaldata" / "tatoeba" / "deu-eng.tsv"

GERMAN = "Die Stadt liegt an einem breiten Fluss, der jedes Frühjahr über die Ufer tritt."
ENGLISH = "The city lies on a wide river that floods its banks every spring."
POLISH = "Miasto leży nad szeroką rzeką, która każdej wiosny wylewa z brzegów."
FRENCH = "La ville se trouve au bord d'un large fleuve qui déborde chaque printemps."
DOC_DE = " ".join([GERMAN] * 4)
DOC_EN = " ".join([ENGLISH] * 4)


def _gates(**settings: object) -> QualityGates:
    return QualityGates(QualitySection(**settings), list(XLMR_LANGUAGES))


def _retrieval(
    query: str, positive: str, negative: str, language: str = "en", **slots: str
) -> Candidate:
    placeholders = {"query_length": "5 to 15 words", "num_words": "50"} | slots
    example = {"user_query": query, "positive_document": positive,
               "hard_negative_document": negative}  # fmt: skip
    return Candidate("short_long", example, placeholders, language)


def _reasons(gates: QualityGates, candidates: list[Candidate]) -> list[str | None]:
    return [verdict.reason for verdict in gates.inspect(candidates)]


LONG_EN = (
    "A river city builds dikes and pumps to hold back spring floods, and the old town moves "
    "its archives to higher ground every year before the snow melts in the hills."
)
LONG_EN_2 = (
    "Mountain villages store grain in stone houses on stilts so that mice and damp cannot reach "
    "it, a custom kept for centuries in the high valleys of the region."
)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (_retrieval("how do river towns prepare for floods", LONG_EN, LONG_EN_2), None),
        (_retrieval("{language} query about floods", LONG_EN, LONG_EN_2), "placeholder:user_query"),
        (_retrieval("{", LONG_EN, LONG_EN_2), "markup:user_query"),
        (_retrieval("<to-go_with_this_task1.json", LONG_EN, LONG_EN_2), "markup:user_query"),
        (_retrieval("floods in river towns", '{"positive_document": "x"}', LONG_EN_2),
         "markup:positive_document"),
        (_retrieval("river town floods", LONG_EN, "<b>bold</b> text about towns and floods"),
         "markup:hard_negative_document"),
        (_retrieval("John Doom", LONG_EN, LONG_EN_2, query_length="at least 10 words"),
         "too_short:user_query"),
        (_retrieval("how do river towns prepare", "Dikes.", LONG_EN_2),
         "too_short:positive_document"),
        (_retrieval("how do river towns prepare for floods", LONG_EN, LONG_EN_2, num_words="500"),
         "too_short:positive_document"),
        (_retrieval("river city builds dikes and pumps", LONG_EN, LONG_EN_2), "query_in_positive"),
        (_retrieval("write_one_json_example", LONG_EN, LONG_EN_2), "markup:user_query"),
    ],
)  # fmt: skip
def test_content_rules(candidate: Candidate, reason: str | None) -> None:
    gates = _gates(language_check=False)
    assert _reasons(gates, [candidate]) == [reason]


def test_the_prompt_written_back_is_rejected() -> None:
    gates = _gates(language_check=False)
    prompt = '- "S1": a phrase in Spanish.\n- "S2": a phrase in German that translates S1.'
    echoed = {"S1": "a phrase in Spanish.", "S2": "Ein Satz auf Deutsch.", "S3": "Noch einer."}
    fine = {"S1": "Una frase en español.", "S2": "Ein Satz auf Deutsch.", "S3": "Noch einer."}
    rows = [Candidate("bitext", e, {}, "es", "de", prompt) for e in (echoed, fine)]
    assert _reasons(gates, rows) == ["prompt_echo:S1", None]


def test_label_equal_to_its_input_is_rejected() -> None:
    gates = _gates(language_check=False)
    slots = {"num_words": "less than 10"}
    same = {"input_text": "Great phone", "label": "great phone", "misleading_label": "bad"}
    fine = {"input_text": "Great phone, fast and light", "label": "positive",
            "misleading_label": "negative"}  # fmt: skip
    rows = [Candidate("long_short", same, slots, "en"), Candidate("long_short", fine, slots, "en")]
    assert _reasons(gates, rows) == ["label_equals_input", None]


def test_language_verdicts_per_field() -> None:
    gates = _gates(content_rules=False)
    rows = [
        _retrieval("Wie schützt sich eine Stadt vor Hochwasser?", DOC_DE, DOC_DE, "de"),
        _retrieval("How does a town guard against floods?", DOC_EN, DOC_EN, "pl"),
        _retrieval("Jak miasto chroni się przed powodzią?", POLISH * 3, DOC_EN, "pl"),
        _retrieval("ok", DOC_DE, DOC_DE, "de"),
    ]
    verdicts = gates.inspect(rows)
    assert [v.reason for v in verdicts] == [
        None, "wrong_language:user_query", "wrong_language:hard_negative_document", None,
    ]  # fmt: skip
    assert verdicts[0].quality == {
        "language": dict.fromkeys(rows[0].example, "verified"), "language_verified": True,
    }  # fmt: skip
    assert verdicts[3].quality["language"]["user_query"] == "unverified"  # too short to tell
    assert verdicts[3].quality["language_verified"] is True


def test_bitext_checks_source_and_target_sides() -> None:
    gates = _gates(content_rules=False)
    good = {"S1": GERMAN, "S2": FRENCH, "S3": "Le village est loin de la mer et des montagnes."}
    swapped = {"S1": FRENCH, "S2": GERMAN, "S3": GERMAN}
    rows = [Candidate("bitext", good, {}, "de", "fr"), Candidate("bitext", swapped, {}, "de", "fr")]
    verdicts = gates.inspect(rows)
    assert [v.reason for v in verdicts] == [None, "wrong_language:S1"]
    assert verdicts[0].quality["target_language_verified"] is True


def test_unsupported_and_unverifiable_languages_are_never_guessed() -> None:
    gates = _gates(content_rules=False, require_verified_language=True)
    sindhi = _retrieval("سنڌي ٻوليءَ ۾ هڪ سوال", "سنڌي ٻوليءَ ۾ ڊگهو متن " * 5, "ٻيو متن " * 5, "sd")
    verdicts = gates.inspect([sindhi])
    assert set(verdicts[0].quality["language"].values()) == {"unverified"}
    assert verdicts[0].reason == "unverified_language"
    assert _reasons(_gates(content_rules=False), [sindhi]) == [None]


def test_batch_scorer_equals_py3langid() -> None:
    with TATOEBA.open(encoding="utf-8") as handle:
        pairs = list(csv.reader(handle, delimiter="\t"))[1:300]
    texts = [t for pair in pairs for t in pair] + ["", "  ", "123", "HELLO WORLD", "你好，世界"]
    check = LanguageCheck(list(XLMR_LANGUAGES), 10, 0.7)
    ident, _ = identifier(frozenset(XLMR_LANGUAGES))
    probabilities = check.scorer.probabilities(texts)
    for text, row in zip(texts, probabilities, strict=True):
        label, confidence = ident.classify(text)
        assert ident.nb_classes[int(row.argmax())] == label, text
        if len(text) >= check.min_chars:  # shorter texts are never judged
            assert abs(float(row.max()) - confidence) < 0.02, text


def test_near_duplicates_keep_the_first_of_a_group() -> None:
    gates = _gates()
    first = [LONG_EN, LONG_EN_2]
    reworded = [LONG_EN.replace("every year", "each year"), LONG_EN_2]
    other = [LONG_EN_2, "A different document about bread and ovens in old bakeries."]
    assert gates.admit([first, reworded, other]) == [True, False, True]
    assert gates.admit([reworded]) == [False]
    assert _gates(near_duplicates=False).admit([first, first]) == [True, True]


def test_decontamination_drops_rows_that_share_text_with_an_evaluation_set() -> None:
    from kit.config import load_config
    from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask

    tasks = load_config(REPO / "configs" / "default.toml").evaluation.local_tasks
    ngrams = EvaluationNgrams.build(13, tasks, [])
    with (REPO / "model_card/evaldata/sts17/en-en.tsv").open(encoding="utf-8") as handle:
        sts = next(csv.DictReader(handle, delimiter="\t"))["sentence1"]
    paragraph = (REPO / "model_card/evaldata/xquad/en/corpus.jsonl").read_text().splitlines()[0]
    thirteen = " ".join(paragraph.split('"text": "')[1].split()[5:18])
    rows = [
        {"S1": f"Intro. {sts.upper()} Outro.", "S2": "x", "S3": "y"},  # whole short sentence
        {"S1": f"Before {thirteen} after.", "S2": "x", "S3": "y"},  # a 13-word run
        {"S1": " ".join(thirteen.split()[:12]) + " zzz", "S2": "x", "S3": "y"},  # only 12
        {"S1": "Nothing in common with any evaluation text at all here.", "S2": "a", "S3": "b"},
    ]
    fields = [(name, pa.string()) for name in ("S1", "S2", "S3")]
    table = pa.table({"id": ["a", "b", "c", "d"], "example": pa.array(rows, pa.struct(fields))})
    found = Contamination()
    assert contaminated_mask(table, ngrams, found).to_pylist() == [True, True, False, False]
    assert found.rows == {"STS17-en-en": 1, "XQuADRetrieval-de-en": 1}
    assert found.examples == {"STS17-en-en": "a", "XQuADRetrieval-de-en": "b"}


def test_the_batch_scorer_is_read_from_the_pinned_py3langid() -> None:
    """The batch scorer reads py3langid's model arrays: a new version must be re-checked."""
    from importlib.metadata import version

    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"py3langid=={version("py3langid")}"' in pyproject


def test_gate_processes_give_the_verdicts_of_one_process() -> None:
    """A Batch API output file is gated in chunks over several spawned processes: the
    verdicts, order and quality records must be those of the in-process gates."""
    from seeds.gates import CHUNK_ROWS

    kinds = [
        _retrieval("how do river towns prepare for floods", LONG_EN, LONG_EN_2),
        _retrieval("How does a town guard against floods?", DOC_EN, DOC_EN, "pl"),
        _retrieval("{", LONG_EN, LONG_EN_2),
        Candidate("bitext", {"S1": FRENCH, "S2": GERMAN, "S3": GERMAN}, {}, "de", "fr"),
    ]
    rows = [kinds[i % len(kinds)] for i in range(2 * CHUNK_ROWS + 7)]
    one = _gates(gate_processes=1).inspect(rows)
    two = _gates(gate_processes=2).inspect(rows)
    assert [(v.reason, v.quality) for v in two] == [(v.reason, v.quality) for v in one]
    assert [v.reason for v in two[:4]] == [
        None, "wrong_language:user_query", "markup:user_query", "wrong_language:S1",
    ]  # fmt: skip
