"""seeds building blocks: language mix, templates, request plan, parsing and validation,
retry timing, torn-line repair. Pure and fast."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from kit.config import TASK_TYPES, GeneratorSection
from kit.retry import backoff_delay
from seeds.batch_files import Splitter
from seeds.client import ResponseFormats, retry_after_seconds
from seeds.languages import HIGH_RESOURCE, XLMR_LANGUAGES, LanguageSampler, language_weights
from seeds.pacing import Pacer, admission_tokens, parse_duration
from seeds.parsing import (
    Rejection,
    dedup_key,
    extract_json_object,
    parse_task_list,
    validate_example,
)
from seeds.plan import brainstorm_item, brainstorms_needed, generation_item
from seeds.store import cut_torn_tail, read_jsonl
from seeds.templates import TEMPLATE_DIR, load_templates

TEMPLATES = load_templates()
PAPER_VALUES = {
    "short_long": {
        "query_type": ["extremely long-tail", "long-tail", "common"],
        "query_length": ["less than 5 words", "5 to 15 words", "at least 10 words"],
        "clarity": ["clear", "understandable with some effort", "ambiguous"],
        "num_words": ["50", "100", "200", "300", "400", "500"],
        "difficulty": ["high school", "college", "PhD"],
    },
    "long_short": {
        "clarity": ["clear", "understandable with some effort", "ambiguous"],
        "num_words": ["less than 10", "at least 10", "at least 50", "at least 100", "at least 200"],
        "difficulty": ["high school", "college", "PhD"],
    },
    "short_short": {},
    "long_long": {},
    "sts": {
        "unit": ["sentence", "phrase", "passage"],
        "high_score": ["4", "4.5", "5"],
        "low_score": ["2.5", "3", "3.5"],
        "difficulty": ["elementary school", "high school", "college"],
    },
    "bitext": {
        "unit": ["sentence", "phrase", "passage"],
        "high_score": ["4", "4.5", "5"],
        "low_score": ["1.5", "2", "2.5"],
        "difficulty": ["elementary school", "high school", "college"],
    },
}
OUTPUT_KEYS = {
    "short_long": ("user_query", "positive_document", "hard_negative_document"),
    "long_short": ("input_text", "label", "misleading_label"),
    "short_short": ("input", "positive_document"),
    "long_long": ("input", "positive_document"),
    "sts": ("S1", "S2", "S3"),
    "bitext": ("S1", "S2", "S3"),
}


def test_language_list_and_weights_follow_the_paper() -> None:
    weights = language_weights("xlmr")
    assert len(XLMR_LANGUAGES) == 93
    assert all(re.fullmatch(r"[a-z]{2}", code) for code in XLMR_LANGUAGES)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["en"] == pytest.approx(0.431)
    assert all(0.027 <= weights[code] <= 0.030 for code in HIGH_RESOURCE)
    tail = [w for c, w in weights.items() if c != "en" and c not in HIGH_RESOURCE]
    assert sum(tail) == pytest.approx(0.20)
    assert language_weights("english") == {"en": 1.0}


def test_sampler_draws_the_mix_and_bitext_pairs_differ() -> None:
    sampler = LanguageSampler("xlmr")
    rng = random.Random(1)
    drawn = Counter(sampler.language(rng) for _ in range(20_000))
    assert drawn["en"] / 20_000 == pytest.approx(0.431, abs=0.015)
    pairs = [sampler.pair(rng) for _ in range(2000)]
    assert all(source != target for source, target in pairs)
    assert all(target in XLMR_LANGUAGES for _, target in pairs)
    english_only = LanguageSampler("english")
    assert {english_only.pair(rng)[0] for _ in range(50)} == {"en"}


def test_templates_have_the_paper_keys_placeholders_and_value_sets() -> None:
    assert set(TEMPLATES) == set(TASK_TYPES)
    for task_type, template in TEMPLATES.items():
        assert template.placeholders == PAPER_VALUES[task_type]
        assert template.output_keys == OUTPUT_KEYS[task_type]
        path = TEMPLATE_DIR / f"{task_type}.json"
        assert template.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert template.template_id == f"{task_type}-v1"
    assert TEMPLATES["sts"].task_definition == "Retrieve semantically similar text."
    assert TEMPLATES["bitext"].task_definition == "Retrieve parallel sentences."
    asymmetric = {t for t, tpl in TEMPLATES.items() if tpl.asymmetric}
    assert asymmetric == {"short_long", "long_short", "short_short", "long_long"}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_placeholder_is_filled(task_type: str) -> None:
    template = TEMPLATES[task_type]
    sampler = LanguageSampler("xlmr")
    item = generation_item(template, 3, 7, sampler, ["Find recipes for an ingredient."], 3.3)
    assert "{" not in item.prompt and "}" not in item.prompt
    for value in item.placeholders.values():
        assert value in item.prompt
    for key in template.output_keys:
        assert f'"{key}"' in item.prompt
    if template.asymmetric:
        brainstorm = brainstorm_item(template, 0, 20)
        assert "20" in brainstorm.prompt and "{" not in brainstorm.prompt.replace('{"', "")
        assert brainstorm.schema["properties"]["tasks"]["minItems"] == 20


def test_plan_is_a_pure_function_of_seed_type_and_slot() -> None:
    sampler = LanguageSampler("xlmr")
    pool = [f"task {i}" for i in range(10)]
    for task_type in TASK_TYPES:
        template = TEMPLATES[task_type]
        first = [generation_item(template, s, 5, sampler, pool, 3.3) for s in range(30)]
        again = [generation_item(template, s, 5, sampler, pool, 3.3) for s in range(30)]
        other = [generation_item(template, s, 6, sampler, pool, 3.3) for s in range(30)]
        assert first == again
        assert [i.prompt for i in first] != [i.prompt for i in other]
        assert len({i.item_id for i in first}) == 30
        for item in first:
            if task_type == "bitext":
                assert item.target_language not in (None, item.language)
            else:
                assert item.target_language is None
    slots = [generation_item(TEMPLATES["short_long"], s, 0, sampler, pool, 3.3) for s in range(7)]
    assert [i.task_definition for i in slots] == ["task 0"] * 4 + ["task 1"] * 3
    assert brainstorms_needed(167, 3.3, 20) == 3
    assert brainstorms_needed(0, 3.3, 20) == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "b"}',
        'Sure! Here it is:\n```json\n{"a": "b"}\n```\nAnything else?',
        'The answer {is} below: {"a": "b"} -- done',
        '```\n{"a": "b"}\n```',
    ],
)
def test_json_object_is_found_in_fences_and_prose(text: str) -> None:
    assert extract_json_object(text) == {"a": "b"}


@pytest.mark.parametrize("text", ['{"a": "b"', "no json here", '["a", "b"]', '{"a" "b"}'])
def test_broken_json_is_rejected_as_invalid_json(text: str) -> None:
    with pytest.raises(Rejection) as caught:
        extract_json_object(text)
    assert caught.value.reason == "invalid_json"


@pytest.mark.parametrize(
    "text",
    [
        '{"tasks": ["Find all A.", "Find all B."]}',
        '["Find all A.", "Find all B."]',
        "Here: ['Find all A.', 'Find all B.']",
        "1. Find all A.\n2. Find all B.",
        "- Find all A.\n- Find all B.",
        '```python\n["Find all A.", "Find all B."]\n```',
    ],
)
def test_brainstorm_lists_parse_in_every_common_shape(text: str) -> None:
    assert parse_task_list(text) == ["Find all A.", "Find all B."]


@pytest.mark.parametrize("text", ['{"tasks": []}', '{"tasks": [",", "}}", "[a, b]", "two words"]}'])
def test_brainstorm_without_usable_tasks_is_rejected(text: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_task_list(text)
    assert caught.value.reason == "no_tasks"


def test_brainstorm_fragments_are_dropped_and_markers_stripped() -> None:
    text = '{"tasks": ["1. Classify reviews by product aspect", ",", "}}\\nOutput: {", "x y"]}'
    assert parse_task_list(text) == ["Classify reviews by product aspect"]


VALID = {
    "short_long": {"user_query": "q", "positive_document": "p", "hard_negative_document": "n"},
    "long_short": {"input_text": "t", "label": "a", "misleading_label": "b"},
    "short_short": {"input": "i", "positive_document": "p"},
    "long_long": {"input": "i", "positive_document": "p"},
    "sts": {"S1": "a", "S2": "b", "S3": "c"},
    "bitext": {"S1": "a", "S2": "b", "S3": "c"},
}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_valid_examples_pass_and_keep_only_native_fields(task_type: str) -> None:
    value = {**VALID[task_type], "extra": "ignored"}
    example = validate_example(TEMPLATES[task_type], value, 1, 100)
    assert example == VALID[task_type]


@pytest.mark.parametrize(
    ("task_type", "change", "reason"),
    [
        ("short_long", {"user_query": None}, "missing_key"),
        ("short_long", {"user_query": "  "}, "empty_field"),
        ("short_long", {"user_query": 3}, "not_a_string"),
        ("short_long", {"positive_document": " Q "}, "query_equals_positive"),
        ("short_long", {"hard_negative_document": "p"}, "positive_equals_negative"),
        ("long_short", {"misleading_label": "A"}, "label_equals_misleading_label"),
        ("short_short", {"positive_document": "i"}, "query_equals_positive"),
        ("long_long", {"positive_document": "i"}, "query_equals_positive"),
        ("sts", {"S3": "a"}, "sentences_not_distinct"),
        ("bitext", {"S2": "a"}, "sentences_not_distinct"),
        ("sts", {"S1": "x" * 101}, "too_long"),
    ],
)
def test_each_rule_rejects_with_its_reason(task_type: str, change: dict, reason: str) -> None:
    value = {**VALID[task_type], **change}
    value = {k: v for k, v in value.items() if v is not None}
    with pytest.raises(Rejection) as caught:
        validate_example(TEMPLATES[task_type], value, 1, 100)
    assert caught.value.reason == reason


def test_length_floor() -> None:
    with pytest.raises(Rejection) as caught:
        validate_example(TEMPLATES["sts"], VALID["sts"], 2, 100)
    assert caught.value.reason == "too_short"


def test_dedup_key_ignores_whitespace_only() -> None:
    a = dedup_key({"S1": "a  b", "S2": "c\n", "S3": " d"})
    assert a == dedup_key({"S1": "a b", "S2": "c", "S3": "d"})
    assert a != dedup_key({"S1": "a b", "S2": "C", "S3": "d"})
    assert a != dedup_key({"S1": "a b", "S2": "d", "S3": "c"})


def test_retry_after_forms_and_backoff_bounds() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after_seconds({"retry-after": date}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, None, rng) for a in range(10) for _ in range(50)]
    assert min(delays) >= 0 and max(delays) <= 8.0
    assert all(backoff_delay(0, 0.01, 0.05, 2.0, rng) >= 2.0 for _ in range(50))


def test_response_format_chain() -> None:
    auto = ResponseFormats("auto", local=False)
    assert auto.mode == "json_schema"
    assert auto.fall_back("json_schema") and auto.mode == "json_object"
    assert auto.fall_back("json_schema") and auto.mode == "json_object"  # late 400s: no skip
    assert auto.fall_back("json_object") and auto.mode == "text"
    assert not auto.fall_back("text")
    fixed = ResponseFormats("json_schema", local=False)
    assert not fixed.fall_back("json_schema") and fixed.mode == "json_schema"
    item = generation_item(TEMPLATES["sts"], 0, 0, LanguageSampler("xlmr"), [], 1.0)
    assert fixed.payload("json_schema", item)["json_schema"]["schema"] == item.schema
    assert fixed.payload("json_object", item) == {"type": "json_object"}
    assert fixed.payload("text", item) is None
    local = ResponseFormats("json_schema", local=True)
    assert local.payload("json_schema", item) == {"type": "json_object", "schema": item.schema}


def test_torn_last_line_is_cut_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + '{"a": 2, "b"', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}]
    assert cut_torn_tail(path)
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n'
    assert not cut_torn_tail(path)


def test_a_request_costs_what_the_server_charges_when_it_admits_it() -> None:
    assert admission_tokens("x" * 400, 2048) == 2048  # max_tokens counts in full
    assert admission_tokens("x" * 40_001, 256) == 10_001  # or the prompt, when larger


def test_reset_headers_parse_as_openai_writes_them() -> None:
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1h2m3s") == 3723.0
    assert parse_duration("soon") is None


def test_the_pacer_follows_the_headers() -> None:
    async def follow() -> Pacer:
        pacer = Pacer(6000, 0)  # configured: 6,000 requests a minute
        ticket = await pacer.admit(10)
        pacer.observe(
            {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "3",
             "x-ratelimit-limit-tokens": "90000", "x-ratelimit-remaining-tokens": "80000"},
            ticket,
        )  # fmt: skip
        return pacer

    pacer = asyncio.run(follow())
    assert pacer.requests.per_minute == 600  # a lower limit in the headers wins
    assert pacer.tokens.per_minute == 90_000  # learned: none was configured
    assert pacer.requests.level <= 3.5  # no more than the server says is left
    assert Pacer(600, 0).requests.level > 0  # a configured limit starts with its allowance
    learned = Pacer(0, 0)
    learned.observe({"x-ratelimit-limit-requests": "600"}, asyncio.run(learned.admit(1)))
    assert learned.requests.level <= 0.0  # a learned one starts empty


def test_the_first_request_goes_alone_until_its_answer_sets_the_limits() -> None:
    """The config claims 6,000 requests a minute; the account has 60. Nothing else is sent
    before the first answer, and after it the pace is the header's."""

    async def start() -> tuple[list[str], Pacer]:
        pacer = Pacer(6000, 0)
        order: list[str] = []

        async def worker(name: str) -> None:
            ticket = await pacer.admit(1)
            order.append(f"{name} sent")
            if name == "first":
                await asyncio.sleep(0.05)
                pacer.observe({"x-ratelimit-limit-requests": "60",
                               "x-ratelimit-remaining-requests": "1"}, ticket)  # fmt: skip
                order.append("first answered")
                pacer.attempt_ended()

        first = asyncio.ensure_future(worker("first"))
        await asyncio.sleep(0)  # the first request is admitted before the others ask
        await asyncio.gather(first, *(worker(f"w{i}") for i in range(3)))
        return order, pacer

    order, pacer = asyncio.run(start())
    assert order[:2] == ["first sent", "first answered"]
    assert sorted(order[2:]) == ["w0 sent", "w1 sent", "w2 sent"]
    assert pacer.requests.per_minute == 60


def test_a_failed_first_request_releases_the_others() -> None:
    async def start() -> int:
        pacer = Pacer(0, 0)
        await pacer.admit(1)
        waiting = asyncio.gather(*(pacer.admit(1) for _ in range(4)))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # held back while the first request is out
        pacer.attempt_ended()  # it timed out: no headers
        return len(await asyncio.wait_for(waiting, timeout=5))

    assert asyncio.run(start()) == 4


def test_429s_that_come_together_pause_every_worker_once() -> None:
    async def storm() -> tuple[int, list[float]]:
        pacer = Pacer(0, 0)
        started = time.monotonic()
        for _ in range(5):
            pacer.rate_limited(0.2)
        pacer.attempt_ended()  # the 429s were answers
        admitted = await asyncio.gather(*(pacer.admit(1) for _ in range(8)))
        return pacer.pauses, [ticket.at - started for ticket in admitted]

    pauses, times = asyncio.run(storm())
    assert pauses == 1
    assert min(times) >= 0.2  # no worker went before the pause ended


def test_batch_files_split_at_50000_requests_and_at_the_byte_limit() -> None:
    settings = GeneratorSection()
    assert settings.batch_max_requests == 50_000
    assert settings.batch_max_bytes == 190 * 2**20 < 200 * 10**6  # under 200 MB either way

    def files(sizes: list[int]) -> list[int]:
        splitter = Splitter(settings.batch_max_requests, settings.batch_max_bytes)
        counts: list[int] = []
        for size in sizes:
            if splitter.starts_new_file(size):
                counts.append(0)
            counts[-1] += 1
        return counts

    assert files([1_300] * 120_001) == [50_000, 50_000, 20_001]  # 507,000 at paper scale
    big = 4 * 2**20  # 4 MiB requests: the byte limit binds first
    assert files([big] * 100) == [47, 47, 6]
    assert all(n * big <= settings.batch_max_bytes for n in files([big] * 100))
    with pytest.raises(Exception, match="batch_max_bytes = 199,229,440 is less than one request"):
        files([settings.batch_max_bytes + 1])


def test_each_mode_has_its_price() -> None:
    live = GeneratorSection(price_prompt_per_1k=2.5, price_completion_per_1k=10.0)
    assert live.prices() == (2.5, 10.0)
    batch = GeneratorSection(mode="batch", price_prompt_per_1k=2.5, price_completion_per_1k=10.0)
    assert batch.prices() == (1.25, 5.0)  # half, when no batch price is set
    priced = GeneratorSection(
        mode="batch", price_prompt_per_1k=2.5, batch_price_prompt_per_1k=1.0,
        price_completion_per_1k=10.0, batch_price_completion_per_1k=0.0,
    )  # fmt: skip
    assert priced.prices() == (1.0, 0.0)


def test_a_language_subset_keeps_the_mix_among_its_languages() -> None:
    rng = random.Random(1)
    subset = LanguageSampler("xlmr", ["en", "de", "fr"])
    drawn = Counter(subset.language(rng) for _ in range(3000))
    assert set(drawn) == {"en", "de", "fr"}
    assert drawn["en"] > 0.8 * 3000 * 0.431 / (0.431 + 2 * 0.0282)  # English keeps its weight
    pairs = [subset.pair(rng) for _ in range(200)]
    assert all(s != t and {s, t} <= {"en", "de", "fr"} for s, t in pairs)
    with pytest.raises(ValueError, match="not an XLM-R language code: 'xx'"):
        LanguageSampler("xlmr", ["en", "xx"])
