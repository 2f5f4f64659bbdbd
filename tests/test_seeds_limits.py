"""seeds against the limits-faithful simulator (``seeds.simulator``) on loopback, with the real
``openai`` client: rate limits and their headers, an empty account, the budget, and every
limit and end state of the Batch API. The simulator runs at a compressed time scale."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kit.artifacts import PROVENANCE_FILE
from kit.cli import run_stage
from kit.config import load_config
from kit.staleness import StageRun
from seeds.__main__ import add_arguments, runs_anyway
from seeds.plan import brainstorms_needed
from seeds.simulator import BatchSettings, RunningSimulator, SimulatorSettings
from seeds.store import read_jsonl
from tests.seeds_helpers import (
    API_KEY,
    API_KEY_ENV,
    check_ledger_adds_up,
    check_records,
    ledger,
    records,
    run_dir,
    run_json,
    seeds,
    seeds_config,
)

STAGE = "seeds.main:main"
REPO = Path(__file__).resolve().parents[1]
SCALE = 60.0  # a simulated minute passes in a real second
TARGETS = {"short_long": 14, "long_short": 10, "short_short": 4, "long_long": 4, "sts": 12,
           "bitext": 10}  # fmt: skip
ASYMMETRIC = ("short_long", "long_short", "short_short", "long_long")
QUOTA_LINE = (
    "error: the endpoint's account has no credit left (HTTP 429 insufficient_quota); add "
    "credit or raise its spending limit, then run the same command again to resume"
)


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators on 127.0.0.1 (stopped after the test)."""
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    started: list[RunningSimulator] = []

    def start(batch: dict | None = None, **settings: object) -> RunningSimulator:
        quick = {"time_scale": SCALE, "latency_s": 1.0, **settings}
        batch_settings = BatchSettings(**{"validate_s": 6.0, "finalize_s": 6.0, **(batch or {})})
        server = RunningSimulator(SimulatorSettings(**quick, batch=batch_settings)).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def config_for(write_config, server: RunningSimulator, **generator: object) -> Path:
    generation = generator.pop("generation", {})
    quality = generator.pop("quality", {})
    return seeds_config(
        write_config,
        server.url,
        generator={"max_tokens": 2048, **generator},
        generation={"targets": dict(TARGETS), **generation},
        quality=quality,
    )


def statuses(server: RunningSimulator) -> Counter[int]:
    return Counter(status for _, _, status in server.simulator.chat_log)


def batch_inputs(server: RunningSimulator) -> list[list[dict]]:
    """The requests of every batch the simulator was asked to run, in order."""
    simulator = server.simulator
    return [
        read_jsonl(simulator.files.path(batch["input_file_id"]))
        for batch in simulator.batches.batches.values()
    ]


def nothing_lost_nothing_paid_twice(server: RunningSimulator, run: Path) -> None:
    """Each request the server answered is settled once in the ledger, and none twice."""
    answered = Counter(server.simulator.batches.answered)
    answered.update(item for _, item, status in server.simulator.chat_log if status == 200)
    assert answered and max(answered.values()) == 1
    settled = Counter(x["item_id"] for x in ledger(run) if x["outcome"] in ("accepted", "rejected"))
    assert max(settled.values()) == 1
    assert set(answered) == set(settled)


# ---- the simulator's answers ----------------------------------------------------------------
def test_simulated_answers_pass_the_kit_gates(simulate, write_config) -> None:
    server = simulate()
    config = config_for(write_config, server, quality={"language_check": True})
    assert seeds(config) == 0
    run = run_dir(config)
    summary = run_json(run)
    assert summary["complete"]
    assert summary["acceptance_rate"] >= 0.7, summary["rejected"]
    check_records(records(run))
    check_ledger_adds_up(run)
    # usage as the API counts it: the ledger's tokens are the simulator's
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_corpus_rows_from_the_simulator_in_both_modes(simulate, write_config, mode) -> None:
    """Corpus mode on the bundled passages against the limits-faithful simulator: grounded
    answers name their document, the gate keeps them, and nothing is paid twice."""
    server = simulate()
    corpus = {"path": str(REPO / "seeds/corpora/wikipedia-passages"),
              "targets": {"short_long": 8, "long_long": 2, "sts": 4}}  # fmt: skip
    # The simulator's sentences are random, so a lane may need several tries to pass every
    # gate (a long-long text of Tatoeba sentences rarely leads back to its passage alone).
    config = config_for(write_config, server, mode=mode, quality={"language_check": True},
                        generation={"targets": {}, "corpus": corpus,
                                    "max_requests_per_target": 10.0})  # fmt: skip
    assert seeds(config) == 0
    run = run_dir(config)
    summary = run_json(run)
    assert summary["complete"] and summary["corpus_grounded"] == corpus["targets"]
    rows = records(run)
    check_records(rows)
    check_ledger_adds_up(run)
    assert all(row["document_id"] for row in rows)
    nothing_lost_nothing_paid_twice(server, run)


# ---- live mode: limits ----------------------------------------------------------------------
def test_live_run_paces_itself_under_the_token_limit(simulate, write_config) -> None:
    """TPM binds (max_tokens counts in full at admission): the kit sends no more than the
    server admits instead of storming it with requests that come back 429."""
    server = simulate(tpm=60_000)  # ~29 requests a simulated minute at max_tokens 2048
    config = config_for(
        write_config, server, concurrency=64, tokens_per_minute=int(60_000 * SCALE),
        generation={"targets": {"sts": 120}},
    )  # fmt: skip
    assert seeds(config) == 0
    seen = statuses(server)
    assert seen[429] <= 0.01 * seen.total(), seen
    lines = ledger(run_dir(config))
    assert not [x for x in lines if x["outcome"] == "failed"]
    assert run_json(run_dir(config))["complete"]


def test_live_run_takes_its_limits_from_the_headers(simulate, write_config) -> None:
    """No limit configured: the first answers' x-ratelimit-* headers set the pace."""
    server = simulate(rpm=40)
    config = config_for(write_config, server, concurrency=32,
                        generation={"targets": {"sts": 150}})  # fmt: skip
    assert seeds(config) == 0
    seen = statuses(server)
    assert seen[429] <= 0.01 * seen.total(), seen
    assert run_json(run_dir(config))["complete"]


def test_a_lower_limit_in_the_headers_wins_and_a_429_pauses_every_worker_once(
    simulate, write_config
) -> None:
    """The config claims four times the account's real limit: the headers correct it, and
    the few 429s of the first moment pause the workers together instead of each retrying."""
    server = simulate(rpm=40)
    config = config_for(write_config, server, concurrency=32,
                        requests_per_minute=int(160 * SCALE),
                        generation={"targets": {"sts": 150}})  # fmt: skip
    assert seeds(config) == 0
    seen = statuses(server)
    assert seen[429] <= 0.02 * seen.total(), seen
    assert not [x for x in ledger(run_dir(config)) if x["outcome"] == "failed"]


def test_live_run_survives_dropped_connections_slow_answers_and_5xx_bursts(
    simulate, write_config
) -> None:
    server = simulate(drop_share=0.05, slow_share=0.05, slow_latency_s=30.0, error_every=25,
                      error_burst=3)  # fmt: skip
    config = config_for(write_config, server, concurrency=16)
    assert seeds(config) == 0
    run = run_dir(config)
    assert run_json(run)["complete"]
    reasons = Counter(x["reason"] for x in ledger(run) if x["outcome"] == "retry")
    assert reasons["connection_error"] > 0 and reasons["http_500"] > 0
    check_records(records(run))
    check_ledger_adds_up(run)


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_an_empty_account_stops_with_one_line_and_keeps_every_row(
    simulate, write_config, capsys, mode
) -> None:
    server = simulate(quota_requests=30 if mode == "live" else 1)
    config = config_for(write_config, server, mode=mode, concurrency=4)
    assert seeds(config) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == QUOTA_LINE
    run = run_dir(config)
    assert run_json(run)["stopped_reason"] == "insufficient_quota"
    kept = records(run)
    check_records(kept)
    check_ledger_adds_up(run)
    if mode == "live":
        assert kept, "rows accepted before the credit ran out are kept"
        # no retrying an empty account: one refusal per request in flight, at most
        assert statuses(server)[429] <= 4
        nothing_lost_nothing_paid_twice(server, run)
    # credit added: the same command finishes, and the rows already kept stay as they were
    server.simulator.quota_left = -1
    assert seeds(config) == 0
    final = {r["id"]: r for r in records(run)}
    assert all(final[r["id"]] == r for r in kept)
    assert run_json(run)["complete"]


def test_the_budget_holds_in_live_mode(simulate, write_config) -> None:
    server = simulate()
    config = config_for(write_config, server, concurrency=16, price_prompt_per_1k=1.0,
                        price_completion_per_1k=2.0, max_tokens=1024,
                        generation={"budget_usd": 20.0})  # fmt: skip
    assert seeds(config) == 0
    summary = run_json(run_dir(config))
    assert summary["stopped_reason"] == "budget_usd" and summary["cost_usd"] <= 20.0
    check_ledger_adds_up(run_dir(config))


# ---- batch mode ---------------------------------------------------------------------------
def test_batch_prices_are_half_the_live_ones_unless_set(simulate, write_config) -> None:
    server = simulate()
    config = config_for(write_config, server, mode="batch", price_prompt_per_1k=1.0,
                        price_completion_per_1k=3.0)  # fmt: skip
    assert seeds(config) == 0
    lines = ledger(run_dir(config))
    for line in lines:
        assert line["cost_usd"] == pytest.approx(
            line["prompt_tokens"] / 1000 * 0.5 + line["completion_tokens"] / 1000 * 1.5
        )
    config = config_for(write_config, server, mode="batch", price_prompt_per_1k=1.0,
                        price_completion_per_1k=3.0, batch_price_prompt_per_1k=0.2,
                        batch_price_completion_per_1k=0.4,
                        generation={"run_name": "priced"})  # fmt: skip
    assert seeds(config) == 0
    for line in read_jsonl(config.parent / "runs" / "priced" / "ledger.jsonl"):
        assert line["cost_usd"] == pytest.approx(
            line["prompt_tokens"] / 1000 * 0.2 + line["completion_tokens"] / 1000 * 0.4
        )


def test_a_budget_cuts_a_batch_round_and_says_so(simulate, write_config, caplog) -> None:
    server = simulate()
    config = config_for(write_config, server, mode="batch", price_prompt_per_1k=1.0,
                        price_completion_per_1k=2.0, max_tokens=1024,
                        generation={"budget_usd": 30.0})  # fmt: skip
    assert seeds(config) == 0
    run = run_dir(config)
    summary = run_json(run)
    assert summary["cost_usd"] <= 30.0
    inputs = batch_inputs(server)
    first_round = [r for r in inputs if not r[0]["custom_id"].startswith("brainstorm")][0]
    spent = sum(x["cost_usd"] for x in ledger(run) if x["kind"] == "brainstorm")
    wanted = sum(TARGETS.values())
    line = (
        f"budget_usd: this batch round is cut to {len(first_round):,} of {wanted:,} requests, "
        f"as many as the ${30.0 - spent:,.2f} of $30.00 left pay for if every answer takes "
        "max_tokens"
    )
    assert line in caplog.messages
    assert 0 < len(first_round) < wanted


def test_batch_files_are_split_at_the_request_and_byte_limits(simulate, write_config) -> None:
    """The simulator refuses larger files, as the real API does (its limits scaled down
    here, 50,000 and 200 MB in ``test_seeds_units``)."""
    server = simulate(batch={"max_requests": 6, "max_bytes": 8_000})
    config = config_for(write_config, server, mode="batch", batch_max_requests=6,
                        batch_max_bytes=8_000)  # fmt: skip
    assert seeds(config) == 0
    files = server.simulator.files
    inputs = [b["input_file_id"] for b in server.simulator.batches.batches.values()]
    counts = [len(read_jsonl(files.path(f))) for f in inputs]
    sizes = [files.path(f).stat().st_size for f in inputs]
    assert len(inputs) >= 10 and max(counts) == 6 and max(sizes) <= 8_000
    assert max(sizes) > 8_000 - 1_500  # the byte limit cut some files before 6 requests
    states = Counter(b["status"] for b in server.simulator.batches.batches.values())
    assert states == {"completed": len(inputs)}
    run = run_dir(config)
    assert run_json(run)["complete"]
    check_ledger_adds_up(run)
    nothing_lost_nothing_paid_twice(server, run)


@pytest.mark.parametrize("known", [True, False], ids=["configured", "learned"])
def test_batches_stay_within_the_enqueued_token_limit(simulate, write_config, known) -> None:
    """Configured, the limit is never passed; unknown, a refused batch waits for one to end
    and goes again, and nothing is lost or paid twice."""
    server = simulate(batch={"enqueued_tokens": 6_000, "rpm": 300})
    config = config_for(write_config, server, mode="batch", batch_max_requests=10,
                        batch_enqueued_tokens=6_000 if known else 0)  # fmt: skip
    assert seeds(config) == 0
    batches = server.simulator.batches.batches.values()
    refused = [b for b in batches if b["status"] == "failed"]
    if known:
        assert not refused
    else:
        assert refused and all(
            b["errors"]["data"][0]["code"] == "token_limit_exceeded" for b in refused
        )
    overlapping = [
        (a["id"], b["id"]) for a in batches for b in batches
        if a["id"] < b["id"] and a.get("in_progress_at") and b.get("in_progress_at")
        and b["in_progress_at"] <= a.get("completed_at", 0)
    ]  # fmt: skip
    assert overlapping, "more than one batch in flight at a time"
    run = run_dir(config)
    assert run_json(run)["complete"]
    nothing_lost_nothing_paid_twice(server, run)


@pytest.mark.parametrize("outcome", ["failed", "expired", "cancelled"])
def test_items_of_a_batch_that_did_not_finish_are_asked_again(
    simulate, write_config, outcome
) -> None:
    """The first generation batch ends badly; its unanswered items go into the next round
    under the same ids (no new slot is spent), its partial answers are kept."""
    server = simulate(batch={"outcomes": ["completed", outcome]})
    config = config_for(write_config, server, mode="batch")
    assert seeds(config) == 0
    run = run_dir(config)
    assert run_json(run)["complete"]
    batches = list(server.simulator.batches.batches.values())
    assert batches[1]["status"] == outcome
    first, later = batch_inputs(server)[1], batch_inputs(server)[2:]
    output = batches[1]["output_file_id"]
    answered = (
        {r["custom_id"] for r in read_jsonl(server.simulator.files.path(output))}
        if (output)
        else set()
    )
    unanswered = {r["custom_id"] for r in first} - answered
    asked_later = {r["custom_id"] for batch in later for r in batch}
    assert unanswered and unanswered <= asked_later
    assert not answered & asked_later, "an answered request is not asked again"
    if outcome != "failed":
        kept = {x["item_id"] for x in ledger(run) if x["outcome"] in ("accepted", "rejected")}
        assert answered and answered <= kept, "partial results are used"
    check_ledger_adds_up(run)
    nothing_lost_nothing_paid_twice(server, run)


def test_server_errors_while_polling_are_retried(simulate, write_config) -> None:
    server = simulate(error_every=4, error_burst=2)
    config = config_for(write_config, server, mode="batch")
    assert seeds(config) == 0
    control = server.simulator.control
    assert control["GET /batches/{batch} 500"] > 0
    run = run_dir(config)
    assert run_json(run)["complete"]
    nothing_lost_nothing_paid_twice(server, run)


def test_a_download_cut_short_is_fetched_again_whole(simulate, write_config) -> None:
    server = simulate(cut_downloads=2)
    config = config_for(write_config, server, mode="batch")
    assert seeds(config) == 0
    control = server.simulator.control
    outputs = sum(1 for b in server.simulator.batches.batches.values() if b["output_file_id"])
    assert control["GET /files/{file}/content 200"] == outputs + 2
    run = run_dir(config)
    assert run_json(run)["complete"]
    check_ledger_adds_up(run)
    nothing_lost_nothing_paid_twice(server, run)


# ---- endpoints without a Batch API ------------------------------------------------------------
def test_batch_mode_is_refused_for_a_server_named_vllm(write_config, capsys) -> None:
    config = write_config(generator={"backend": "openai", "mode": "batch", "server": "vllm"})
    assert seeds(config) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {config}: generator.mode = 'batch': a vllm server has no Batch API; "
        "use mode = 'live'"
    )


def test_batch_mode_is_refused_when_the_endpoint_has_no_batch_api(
    simulate, write_config, capsys
) -> None:
    server = simulate(no_batch_api=True)
    config = config_for(write_config, server, mode="batch")
    assert seeds(config) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: generator.mode = 'batch': the endpoint at {server.url}/ has no Batch API "
        "(vLLM and llama.cpp servers have none); use mode = 'live'"
    )
    assert server.simulator.chat_log == []
    assert set(server.simulator.control) == {"GET /batches 404"}
    assert records(run_dir(config)) == []


# ---- estimate -------------------------------------------------------------------------------
def test_estimate_prints_the_run_and_sends_nothing(simulate, write_config, capsys) -> None:
    server = simulate()
    config = config_for(write_config, server, requests_per_minute=600,
                        tokens_per_minute=200_000, price_prompt_per_1k=1.0,
                        price_completion_per_1k=2.0)  # fmt: skip
    code = run_stage(
        "seeds", STAGE, ["--config", str(config), "--estimate"], add_arguments, runs_anyway
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"estimate for {run_dir(config)} (live mode, fake-model); nothing is sent"
    examples = sum(TARGETS.values())
    brainstorms = sum(brainstorms_needed(TARGETS[t], 2.0, 4) for t in ASYMMETRIC)
    total = examples + brainstorms
    assert out[1] == (
        f"  requests: {total:,} ({examples:,} examples and {brainstorms:,} brainstorms) if "
        f"every answer is accepted; at most {3 * examples + brainstorms:,} with "
        "max_requests_per_target = 3.0"
    )
    assert f"  completion tokens: at most {total * 2048:,} (max_tokens = 2048 each)" in out
    # TPM binds: 200,000 / 2,048 tokens admitted a request
    assert out[-1] == (
        f"  wall time: {total / (200_000 / 2048):,.0f} min at 98 requests a minute "
        "(tokens_per_minute binds), if every answer is accepted"
    )
    assert server.simulator.requests == 0
    assert not run_dir(config).exists()

    # after a finished run: printed again, and the run stays current (nothing cleared)
    assert seeds(config) == 0
    sent = server.simulator.requests
    provenance = (run_dir(config) / PROVENANCE_FILE).read_bytes()
    assert run_stage(
        "seeds", STAGE, ["--config", str(config), "--estimate"], add_arguments, runs_anyway
    ) == 0
    assert capsys.readouterr().out.startswith(f"estimate for {run_dir(config)} (live mode")
    assert (run_dir(config) / PROVENANCE_FILE).read_bytes() == provenance
    assert StageRun.open("seeds", load_config(config)).decision.current
    assert server.simulator.requests == sent

    # batch mode: files within the limits, waves under the enqueued-token limit, half price
    config = config_for(write_config, server, mode="batch", price_prompt_per_1k=1.0,
                        price_completion_per_1k=2.0, batch_enqueued_tokens=4_000_000,
                        generation={"targets": {"sts": 120_000}})  # fmt: skip
    assert run_stage(
        "seeds", STAGE, ["--config", str(config), "--estimate"], add_arguments, runs_anyway
    ) == 0
    out = capsys.readouterr().out.splitlines()
    files = next(line for line in out if line.startswith("  batch files: "))
    assert files.startswith("  batch files: 3 (at most 50,000 requests and 190 MiB each")
    assert any(line.startswith("  enqueued-token limit 4,000,000: the batches go in ")
               for line in out)  # fmt: skip
    assert "at batch prices ($0.5 / $1 per 1k prompt / completion tokens)" in "\n".join(out)
    assert server.simulator.requests == sent


def test_ledger_lines_of_batch_answers_name_their_batch(simulate, write_config) -> None:
    server = simulate()
    config = config_for(write_config, server, mode="batch")
    assert seeds(config) == 0
    ids = set(server.simulator.batches.batches)
    lines = ledger(run_dir(config))
    assert lines and all(x["batch_id"] in ids for x in lines)
    assert json.loads((run_dir(config) / "run.json").read_text())["generator"]["mode"] == "batch"
