"""seeds end to end against a fault-injecting OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kit.schema import RAW_SCHEMA_VERSION
from tests.seeds_helpers import (
    API_KEY,
    API_KEY_ENV,
    SMALL_TARGETS,
    check_ledger_adds_up,
    check_records,
    ledger,
    read_jsonl_dir,
    records,
    run_dir,
    run_json,
    seeds,
    seeds_config,
)

ALL_FAULTS = {
    "429": 0.06, "500": 0.06, "timeout": 0.03, "malformed": 0.06, "truncated": 0.06,
    "wrong_keys": 0.06, "duplicate": 0.1, "prose": 0.1,
}  # fmt: skip


def no_secret_in(run: Path) -> None:
    for path in run.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(encoding="utf-8", errors="replace"), path


def test_faults_are_survived_and_counted_exactly(serve, write_config) -> None:
    first = ("prose", "429", "500", "timeout", "malformed", "truncated", "wrong_keys")
    first += ("none",) * 12 + ("duplicate",) * 3  # duplicates of outputs already accepted
    server = serve(faults=ALL_FAULTS, retry_after="0.3", seed=11, first_faults=first)
    config = seeds_config(write_config, server.url)
    assert seeds(config) == 0
    run, fake = run_dir(config), server.fake
    rows, lines, summary = records(run), ledger(run), run_json(run)

    check_records(rows)
    check_ledger_adds_up(run)
    no_secret_in(run)
    assert summary["complete"] and summary["stopped_reason"] == "targets_reached"
    assert summary["accepted"] == {t: SMALL_TARGETS[t] for t in summary["accepted"]}
    # which gates ran, for the dataset card (the language gate is off in these configs)
    assert summary["gates"] == {"content_rules": True, "language_check": False,
                                "near_duplicates": True, "judge": False,
                                "consistency_check": True}  # fmt: skip
    provenance = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["stage"] == "seeds"
    assert set(provenance["sections"]) == {"generator", "generation", "quality"}
    assert provenance["facts"]["accepted"] == len(rows) == sum(SMALL_TARGETS.values())
    assert provenance["facts"]["schema_version"] == RAW_SCHEMA_VERSION
    assert Counter(r["task_type"] for r in rows) == Counter(SMALL_TARGETS)

    served = fake.faults_served("generate")
    assert served["malformed"] and served["duplicate"] and served["prose"]
    assert len(rows) == served["none"] + served["prose"]
    assert summary["rejected"].get("invalid_json", 0) == served["malformed"]
    assert summary["rejected"].get("truncated", 0) == served["truncated"]
    assert summary["rejected"].get("missing_key", 0) == served["wrong_keys"]
    assert summary["rejected"].get("duplicate", 0) == served["duplicate"]
    judged = len(rows) + sum(summary["rejected"].get(k, 0) for k in
                             ("invalid_json", "truncated", "missing_key", "duplicate"))  # fmt: skip
    assert summary["acceptance_rate"] == round(len(rows) / judged, 4)

    # one ledger line per request the server saw, with the same transport outcomes
    assert Counter(x["outcome"] for x in lines).total() == len(fake.log), (
        Counter((x["outcome"], x["reason"]) for x in lines),
        Counter((s.fault, s.status) for s in fake.log),
    )
    reasons = Counter(x["reason"] for x in lines if x["outcome"] in ("retry", "failed"))
    every = Counter(s.fault for s in fake.log)
    assert reasons["http_429"] == every["429"] > 0
    assert reasons["http_500"] == every["500"] > 0
    assert reasons["timeout"] == every["timeout"] > 0

    # Retry-After is honoured: the next try of an item comes no sooner than 0.3 s later
    by_item: dict[str, list] = {}
    for request in fake.log:
        by_item.setdefault(request.item, []).append(request)
    gaps = [
        later.at - earlier.at
        for tries in by_item.values()
        for earlier, later in zip(tries, tries[1:], strict=False)
        if earlier.fault == "429"
    ]
    assert gaps and min(gaps) >= 0.3


def test_second_run_requests_nothing_and_dedups_across_runs(serve, write_config) -> None:
    server = serve(seed=2)
    small = {"short_long": 2, "long_short": 2, "short_short": 1, "long_long": 1, "sts": 3,
             "bitext": 2}  # fmt: skip
    config = seeds_config(write_config, server.url, generation={"targets": small})
    assert seeds(config) == 0
    first = records(run_dir(config))
    seen = len(server.fake.log)

    assert seeds(config) == 0
    assert len(server.fake.log) == seen, "a finished run must not send any request"
    assert records(run_dir(config)) == first

    # grow the targets; the server now repeats earlier outputs half of the time
    server.fake.faults = {"duplicate": 0.5}
    config = seeds_config(write_config, server.url, generation={"targets": SMALL_TARGETS})
    assert seeds(config) == 0
    rows = records(run_dir(config))
    check_records(rows)
    check_ledger_adds_up(run_dir(config))
    assert {r["id"] for r in first} <= {r["id"] for r in rows}
    new_requests = {s.item for s in server.fake.log[seen:]}
    assert not new_requests & {r["id"] for r in first}
    assert (
        run_json(run_dir(config))["rejected"]["duplicate"]
        == server.fake.faults_served()["duplicate"]
    )


def test_response_format_falls_back_to_json_object_then_text(serve, write_config) -> None:
    server = serve(unsupported_formats=("json_schema", "json_object"))
    config = seeds_config(
        write_config, server.url, generation={"targets": {"sts": 3, "short_long": 2}}
    )
    assert seeds(config) == 0
    lines = ledger(run_dir(config))
    fallbacks = [x["response_format"] for x in lines if x["outcome"] == "format_fallback"]
    assert "json_schema" in fallbacks and "json_object" in fallbacks
    assert {x["response_format"] for x in lines if x["outcome"] == "accepted"} == {"text"}
    check_records(records(run_dir(config)))
    check_ledger_adds_up(run_dir(config))
    assert run_json(run_dir(config))["complete"]


def test_fixed_response_format_does_not_fall_back(serve, write_config) -> None:
    server = serve(unsupported_formats=("json_schema",))
    config = seeds_config(
        write_config,
        server.url,
        generator={"response_format": "json_schema"},
        generation={"targets": {"sts": 2}, "max_requests_per_target": 2.0},
    )
    assert seeds(config) == 0
    summary = run_json(run_dir(config))
    assert not summary["complete"] and summary["stopped_reason"] == "attempts_exhausted"
    assert summary["rejected"] == {"generate_request_failed": 4}
    assert len(server.fake.log) == 4 and records(run_dir(config)) == []


def test_budget_stop_leaves_a_consistent_resumable_run(serve, write_config) -> None:
    server = serve(seed=5, faults={"malformed": 0.1})
    config = seeds_config(write_config, server.url, generation={"budget_tokens": 8000})
    assert seeds(config) == 0
    run = run_dir(config)
    summary = run_json(run)
    assert not summary["complete"] and summary["stopped_reason"] == "budget_tokens"
    # The budget holds: the run stopped once the next request's worst case (a full
    # max_tokens answer, 1024 by default, and a prompt under 600 tokens) could pass it.
    spent = summary["prompt_tokens"] + summary["completion_tokens"]
    assert spent <= 8000 < spent + 1024 + 600
    first = records(run)
    assert 0 < len(first) < sum(SMALL_TARGETS.values())
    check_records(first)
    check_ledger_adds_up(run)
    # the type mix is kept while stopping early: no type is ahead by more than the in-flight
    assert min(summary["accepted"].values()) >= 1

    seen = len(server.fake.log)
    assert seeds(config) == 0  # same budget: nothing more is asked
    assert len(server.fake.log) == seen

    config = seeds_config(write_config, server.url, generation={"budget_tokens": 10**7})
    assert seeds(config) == 0
    assert run_json(run)["complete"]
    assert not {s.item for s in server.fake.log[seen:]} & {r["id"] for r in first}
    check_records(records(run))
    check_ledger_adds_up(run)


def test_usd_budget_stops_too(serve, write_config) -> None:
    server = serve()
    config = seeds_config(write_config, server.url, generation={"budget_usd": 0.5})
    assert seeds(config) == 0
    summary = run_json(run_dir(config))
    assert summary["stopped_reason"] == "budget_usd" and summary["cost_usd"] <= 0.5
    check_ledger_adds_up(run_dir(config))


def test_rejected_key_is_one_line_and_never_printed(serve, write_config, capsys) -> None:
    server = serve(require_key="sk-the-right-one")
    config = seeds_config(write_config, server.url)
    assert seeds(config) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the endpoint answered HTTP 401")
    assert API_KEY not in "\n".join(err)
    summary = run_json(run_dir(config))
    assert summary["stopped_reason"] == "endpoint_error" and not summary["complete"]
    no_secret_in(run_dir(config))


def test_missing_key_variable_fails_before_any_request(serve, write_config, monkeypatch, capsys):
    server = serve()
    monkeypatch.delenv(API_KEY_ENV)
    config = seeds_config(write_config, server.url)
    assert seeds(config) == 2
    assert f"set the environment variable {API_KEY_ENV}" in capsys.readouterr().err
    assert server.fake.log == []
    assert run_json(run_dir(config))["stopped_reason"] == "setup_error"


def test_brainstorm_output_shapes_and_task_dedup(serve, write_config) -> None:
    server = serve(brainstorm_style="numbered")
    config = seeds_config(
        write_config, server.url, generation={"targets": {"short_long": 4, "long_short": 2}}
    )
    assert seeds(config) == 0
    rows = records(run_dir(config))
    check_records(rows)
    tasks = [r["task_definition"] for r in rows if r["task_type"] == "short_long"]
    assert len(set(tasks)) == 2 and Counter(tasks).most_common(1)[0][1] == 2


def test_batch_mode_against_the_same_server(serve, write_config) -> None:
    server = serve(faults={"500": 0.05, "malformed": 0.1, "duplicate": 0.1, "prose": 0.1})
    config = seeds_config(write_config, server.url, generator={"mode": "batch"})
    assert seeds(config) == 0
    run, fake = run_dir(config), server.fake
    rows = records(run)
    check_records(rows)
    check_ledger_adds_up(run)
    summary = run_json(run)
    assert summary["complete"] and Counter(r["task_type"] for r in rows) == Counter(SMALL_TARGETS)
    assert len(fake.batches_created) >= 2  # brainstorm round, then generation rounds
    assert len(ledger(run)) == len(fake.log)
    assert summary["rejected"].get("invalid_json", 0) == fake.faults_served()["malformed"]
    assert fake.log and all(s.item for s in fake.log)


def test_batch_mode_needs_a_remote_endpoint(write_config, capsys) -> None:
    config = write_config(generator={"backend": "local", "mode": "batch"})
    assert seeds(config) == 2
    assert "generator.mode = 'batch' needs backend = 'openai'" in capsys.readouterr().err


def test_gates_reject_degenerate_rows_and_a_resumed_run_keeps_them_out(serve, write_config) -> None:
    first = ("placeholder", "markup", "too_short") * 2
    server = serve(seed=4, first_faults=first)
    config = seeds_config(write_config, server.url)
    assert seeds(config) == 0
    run, fake = run_dir(config), server.fake
    rows, summary = records(run), run_json(run)
    check_records(rows)
    check_ledger_adds_up(run)
    # A one-word first field is too short everywhere but in short_short, which asks for a
    # short input: there it is a fine answer.
    degenerate = [
        s for s in fake.log
        if s.fault in ("placeholder", "markup")
        or (s.fault == "too_short" and not s.item.startswith("short_short"))
    ]  # fmt: skip
    gate_reasons = Counter({k: v for k, v in summary["rejected"].items() if ":" in k})
    assert gate_reasons.total() == len(degenerate) >= 5
    assert Counter(k.split(":")[0] for k in gate_reasons.elements()) == Counter(
        s.fault for s in degenerate
    )
    kept = read_jsonl_dir(run / "rejected")
    assert Counter(r["rejected_because"] for r in kept) == gate_reasons
    rejected_ids = {r["id"] for r in kept}
    assert not rejected_ids & {r["id"] for r in rows}
    # a resumed run (targets grown) asks again for none of them and admits none of them
    seen = len(fake.log)
    grown = {t: n + 1 for t, n in SMALL_TARGETS.items()}
    config = seeds_config(write_config, server.url, generation={"targets": grown})
    assert seeds(config) == 0
    assert not {s.item for s in fake.log[seen:]} & rejected_ids
    assert not rejected_ids & {r["id"] for r in records(run)}
    assert len(read_jsonl_dir(run / "rejected")) == len(degenerate)


@pytest.mark.parametrize("action", ["drop", "swap"])
def test_the_judge_drops_or_swaps_rows_whose_negative_wins(serve, write_config, action) -> None:
    from kit.schema import TASK_TABLE
    from seeds.judge import positive_first

    server = serve(seed=9)
    config = seeds_config(write_config, server.url, quality={"judge": True, "judge_action": action})
    assert seeds(config) == 0
    run, fake = run_dir(config), server.fake
    rows, summary, lines = records(run), run_json(run), ledger(run)
    check_records(rows)
    check_ledger_adds_up(run)
    judged = [s.item.removeprefix("judge-") for s in fake.log if s.kind == "judge"]
    assert judged and len(judged) == len(set(judged))
    assert {x["item_id"] for x in lines if x["kind"] == "judge"} == {f"judge-{i}" for i in judged}
    # The fake judge answers "A": the positive wins exactly where it was shown first.
    lost = {i for i in judged if not positive_first(i, 3)}
    by_id = {r["id"]: r for r in rows}
    if action == "drop":
        assert summary["rejected"].get("judge_rejected", 0) == len(lost) > 0
        assert not lost & set(by_id)
        kept = read_jsonl_dir(run / "rejected")
        assert {r["id"] for r in kept if r["rejected_because"] == "judge_rejected"} == lost
    else:
        assert "judge_rejected" not in summary["rejected"]
        swapped = {i for i, r in by_id.items() if r["quality"].get("judge") == "swapped"}
        assert swapped == lost & set(by_id) and swapped
        for record_id in swapped:
            example = by_id[record_id]["example"]
            _, positive, negative = TASK_TABLE[by_id[record_id]["task_type"]].judged
            assert example[positive].startswith(f"{negative.replace('_', ' ')} answer")
    kept_verdicts = {by_id[i]["quality"]["judge"] for i in judged if i in by_id}
    assert kept_verdicts <= {"positive", "swapped"}
    untouched = [r for r in rows if TASK_TABLE[r["task_type"]].judged is None]
    assert untouched and all("judge" not in r["quality"] for r in untouched)
