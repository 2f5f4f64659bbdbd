"""A seeds run killed with SIGKILL resumes without losing or re-requesting anything; the same
for a Batch API run killed at any moment (against the limits-faithful simulator); and the
embedded llama.cpp default end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.cli import run_stage
from seeds.__main__ import add_arguments
from seeds.simulator import BatchSettings, RunningSimulator, SimulatorSettings
from seeds.store import read_jsonl
from tests.seeds_fake_server import FakeLLM, ServerThread
from tests.seeds_helpers import (
    API_KEY,
    API_KEY_ENV,
    SMALL_TARGETS,
    check_ledger_adds_up,
    check_records,
    records,
    run_dir,
    run_json,
    seeds_config,
)

REPO = Path(__file__).resolve().parents[1]


def start_seeds(config: Path) -> subprocess.Popen:
    env = {**os.environ, API_KEY_ENV: API_KEY}
    command = [sys.executable, "-m", "seeds", "--config", str(config), "--no-progress"]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def all_lines_parse(run: Path) -> None:
    for path in [*run.glob("*.jsonl"), *(run / "raw").glob("*.jsonl")]:
        for line in path.read_text(encoding="utf-8").splitlines():
            json.loads(line)


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_and_repeats_nothing(write_config) -> None:
    with ServerThread(FakeLLM(latency_s=0.25, faults={"malformed": 0.1, "429": 0.05})) as server:
        config = seeds_config(write_config, server.url, generator={"concurrency": 4})
        run = run_dir(config)
        process = start_seeds(config)
        wait_for(lambda: len(records(run)) >= 8)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not (run / "run.json").exists()

        before = records(run)
        shard = sorted((run / "raw").glob("shard-*.jsonl"))[-1]
        with shard.open("a", encoding="utf-8") as handle:  # a write torn by the kill
            handle.write('{"schema_version": 1, "id": "short_long-99')
        with (run / "ledger.jsonl").open("a", encoding="utf-8") as handle:
            handle.write('{"at": "2026')
        seen = len(server.fake.log)

        process = start_seeds(config)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err

        after = records(run)
        after_by_id = {r["id"]: r for r in after}
        assert all(after_by_id[r["id"]] == r for r in before), "an accepted record changed"
        asked_again = {s.item for s in server.fake.log[seen:]}
        assert not asked_again & {r["id"] for r in before}
        assert Counter(r["task_type"] for r in after) == Counter(SMALL_TARGETS)
        check_records(after)
        check_ledger_adds_up(run)
        all_lines_parse(run)
        assert run_json(run)["complete"]


def journal_has(run: Path, state: str) -> bool:
    """Whether a generation input file has reached ``state`` in the batch journal."""
    return any(
        row["state"] == state and row["file"].startswith("generate")
        for row in read_jsonl(run / "batches.jsonl")
    )


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["in_flight", "creating", "ingesting"])
def test_a_batch_run_killed_at_any_moment_resumes_without_paying_twice(
    write_config, moment
) -> None:
    """SIGKILL while a batch is in flight, while it is being created (the kill came before
    its id was written down), or while its answers are being judged; the same command then
    finishes the run. Each side's count: no batch made twice from one input file, no
    request answered twice, no output file fetched twice, every answer settled once."""
    big = moment == "ingesting"  # enough answers that judging them takes a while
    settings = SimulatorSettings(
        time_scale=60.0, latency_s=1.0,
        batch=BatchSettings(validate_s=60.0, finalize_s=6.0, rpm=600_000),
    )  # fmt: skip
    with RunningSimulator(settings) as server:
        config = seeds_config(
            write_config, server.url, generator={"mode": "batch", "max_tokens": 2048},
            generation={"targets": {"sts": 1500} if big else dict(SMALL_TARGETS)},
            quality={"language_check": big, "gate_processes": 2},
        )  # fmt: skip
        run = run_dir(config)
        process = start_seeds(config)
        wait_for(lambda: journal_has(run, "downloaded" if big else "submitted"))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not journal_has(run, "ingested")
        if moment == "creating":
            lines = (run / "batches.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            last = max(i for i, line in enumerate(lines) if '"state": "submitted"' in line)
            (run / "batches.jsonl").write_text("".join(lines[:last]), encoding="utf-8")
        made = len(server.simulator.batches.batches)

        process = start_seeds(config)
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

        simulator = server.simulator
        batches = list(simulator.batches.batches.values())
        per_file = Counter(b["input_file_id"] for b in batches if b["status"] != "failed")
        assert max(per_file.values()) == 1, "a batch was made twice from one input file"
        if moment == "creating":
            assert len(batches) >= made  # the one in flight was found, not made again
        answered = Counter(simulator.batches.answered)
        assert max(answered.values()) == 1, "a request was answered (paid for) twice"
        outputs = sum(bool(b.get(k)) for b in batches for k in ("output_file_id", "error_file_id"))
        assert simulator.control["GET /files/{file}/content 200"] == outputs
        settled = Counter(
            x["item_id"] for x in read_jsonl(run / "ledger.jsonl")
            if x["outcome"] in ("accepted", "rejected")
        )  # fmt: skip
        assert set(settled) == set(answered) and max(settled.values()) == 1
        check_records(records(run))
        check_ledger_adds_up(run)
        assert run_json(run)["complete"]


@pytest.mark.slow
def test_embedded_local_generator_end_to_end(write_config, caplog) -> None:
    config = write_config(
        generator={"backend": "local", "max_tokens": 160, "concurrency": 1},
        generation={"run_name": "t", "targets": {"sts": 1}, "max_requests_per_target": 3.0},
    )
    code = run_stage(
        "seeds", "seeds.main:main", ["--config", str(config), "--no-progress"], add_arguments
    )
    assert code == 0
    run = run_dir(config)
    summary = run_json(run)
    assert summary["generator"]["bundled_small_model"] is True
    assert "very small" in summary["generator"]["note"]
    assert summary["generator"]["backend"] == "local"
    assert summary["requests"] >= 1 and 0.0 <= summary["acceptance_rate"] <= 1.0
    rows = records(run)
    check_records(rows, backend="local")
    check_ledger_adds_up(run)
    assert all(r["generator_model"] == "SmolLM2-135M-Instruct" for r in rows)
    assert "very small bundled model" in caplog.text
    log = (run / "local_server.log").read_text(errors="replace")
    assert "listening on http://127.0.0.1:" in log
    assert log.rstrip().endswith("server stopped")  # stopped at the end of the run
