"""Live pacing against the limits-faithful simulator: how much of the account's binding limit
(RPM or TPM) a run uses in steady state, how many of its requests come back 429, and the
client's CPU per request.

Peer: what users write by hand, the plain ``openai`` SDK behind an ``asyncio.Semaphore``
with the SDK's own retries (which honour Retry-After), sending the same requests with the
same concurrency. Each run gets a fresh simulator in its own process (``python -m
seeds.simulator``), so its CPU is not counted as the client's. Steady state leaves out the
first seconds (the account's allowance starts full) and the last ones (the run drains).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

from bench.servers import simulator_stats, start
from kit.config import Config, load_config
from seeds.client import Endpoint
from seeds.engine import SeedRun
from seeds.gates import QualityGates
from seeds.languages import XLMR_LANGUAGES, LanguageSampler
from seeds.live import run_live
from seeds.parsing import dedup_key
from seeds.plan import generation_item
from seeds.store import RunStore
from seeds.templates import load_templates

SCALE = 10.0  # ten simulated seconds a real second
LATENCY_S = 5.0  # simulated: 0.5 s real, so 64 in flight could send 128 a second
CONCURRENCY = 64
MAX_TOKENS = 1024
SECONDS = 45  # real seconds of requests at the limit
WARM_S, DRAIN_S = 8, 4
# (name, simulated RPM, simulated TPM): each binds at ~50 requests a real second
SETTINGS = (("RPM-bound", 300, 0), ("TPM-bound", 100_000, 300_000))


def run_kit(base: Config, url: str, rpm: int, tpm: int, n: int) -> tuple[int, float]:
    """Requests the kit gave up on, and its CPU seconds, for one live run of ``n`` rows."""
    generator = dataclasses.replace(
        base.generator, backend="openai", base_url=url, model="simulated", mode="live",
        concurrency=CONCURRENCY, max_tokens=MAX_TOKENS, response_format="json_schema",
        requests_per_minute=int(rpm * SCALE), tokens_per_minute=int(tpm * SCALE),
        timeout_s=60.0,
    )  # fmt: skip
    generation = dataclasses.replace(
        base.generation, run_name="bench", targets={"sts": n}, budget_tokens=0, budget_usd=0.0,
        max_requests_per_target=1.0,
    )  # fmt: skip
    config = dataclasses.replace(base, generator=generator, generation=generation)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        store.open(dedup_key)
        gates = QualityGates(config.quality, list(XLMR_LANGUAGES))
        run = SeedRun(config, store, load_templates(), "openai", False, gates, progress=False)
        endpoint = Endpoint(config.generator, url, "bench-key", False, run.log_attempt)
        cpu = time.process_time()
        asyncio.run(run_live(run, endpoint))
        cpu = time.process_time() - cpu
        gave_up = store.totals.rejected["generate_request_failed"]
        store.close()
    return gave_up, cpu


async def peer(url: str, prompts: list[str], schema: dict) -> int:
    """The hand-written loop: a semaphore, the SDK's retries. Returns the requests that
    failed after every retry."""
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    client = openai.AsyncOpenAI(
        base_url=url, api_key="bench-key", max_retries=8, timeout=60.0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=60.0),
    )  # fmt: skip
    semaphore = asyncio.Semaphore(CONCURRENCY)
    response_format = {"type": "json_schema", "json_schema": {"name": "sts", "schema": schema}}

    async def one(prompt: str) -> bool:
        async with semaphore:
            try:
                response = await client.chat.completions.create(
                    model="simulated", messages=[{"role": "user", "content": prompt}],
                    max_tokens=MAX_TOKENS, response_format=response_format,
                )  # fmt: skip
            except openai.APIError:
                return False
            return isinstance(json.loads(response.choices[0].message.content or "{}"), dict)

    try:
        return sum(not ok for ok in await asyncio.gather(*(one(p) for p in prompts)))
    finally:
        await client.close()


def run_peer(url: str, n: int) -> tuple[int, float]:
    template = load_templates()["sts"]
    sampler = LanguageSampler("xlmr")
    prompts = [generation_item(template, s, 0, sampler, [], 1.0).prompt for s in range(n)]
    cpu = time.process_time()
    failed = asyncio.run(peer(url, prompts, template.output_schema()))
    return failed, time.process_time() - cpu


def steady_share(stats: dict, rpm: int, tpm: int) -> tuple[float, str]:
    """The share of the binding limit used between warm-up and drain, and which binds."""
    timeline = stats["timeline"]
    last = timeline[-1][0]
    window = [row for row in timeline if WARM_S <= row[0] < last - DRAIN_S]
    seconds = max(1, last - DRAIN_S - WARM_S)
    per_request = MAX_TOKENS
    request_bound = not tpm or rpm * per_request <= tpm
    if request_bound:
        return sum(row[1] for row in window) / (rpm * SCALE / 60 * seconds), "RPM"
    return sum(row[2] for row in window) / (tpm * SCALE / 60 * seconds), "TPM"


def measure(base: Config, who: str, rpm: int, tpm: int) -> dict:
    rate = min(rpm, tpm / MAX_TOKENS if tpm else rpm) * SCALE / 60
    n = int(rate * SECONDS)
    process, url = start(
        "seeds.simulator", "--time-scale", str(SCALE), "--rpm", str(rpm), "--tpm", str(tpm),
        "--latency-s", str(LATENCY_S),
    )  # fmt: skip
    try:
        started = time.perf_counter()
        gave_up, cpu = run_kit(base, url, rpm, tpm, n) if who == "seeds" else run_peer(url, n)
        wall = time.perf_counter() - started
        stats = simulator_stats(url)
    finally:
        process.terminate()
        process.wait(10)
    share, binding = steady_share(stats, rpm, tpm)
    by_status = stats["chat"]["by_status"]
    sent = sum(by_status.values())
    return {
        "who": who, "binding": binding, "n": n, "share": share, "wall": wall,
        "limited": by_status.get("429", 0) / sent, "sent": sent, "gave_up": gave_up,
        "cpu_ms": 1000 * cpu / n,
    }  # fmt: skip


def run(config_path: str) -> str:
    base = load_config(config_path)
    rows = []
    for name, rpm, tpm in SETTINGS:
        for who in ("seeds", "peer"):
            r = measure(base, who, rpm, tpm)
            rows.append(
                f"| {name} | {who} | {r['n']:,} | {r['share']:.3f} | {r['limited']:.2%} | "
                f"{r['sent']:,} | {r['gave_up']} | {r['wall']:.1f} | {r['cpu_ms']:.2f} |"
            )
    limits = "; ".join(
        f"{name}: {rpm:,} RPM" + (f", {tpm:,} TPM" if tpm else "") for name, rpm, tpm in SETTINGS
    )
    return "\n".join(
        [
            "## seeds: live pacing against the account's limits",
            "",
            f"`seeds.simulator` in its own process at time scale {SCALE:g} (limits per "
            f"simulated minute: {limits}; max_tokens = {MAX_TOKENS} counted at admission; "
            f"answers after {LATENCY_S:g} simulated s), {CONCURRENCY} requests in flight, "
            f"about {SECONDS} real seconds of requests at the limit. seeds = the full live "
            "engine with its configured limits (gates, shards, ledger); peer = the plain "
            "`openai` SDK behind a semaphore with `max_retries=8` (it honours Retry-After). "
            f"Share of the limit = what the server admitted between second {WARM_S} and "
            f"{DRAIN_S} s before the end, over the limit; 429 = share of all requests sent; "
            "given up = requests that failed after every retry. Goal: share >= 0.95 with at "
            "most 1% 429.",
            "",
            "| limit | client | rows | share of limit | answered 429 | requests sent | "
            "given up | wall s | client CPU ms/req |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(run(sys.argv[1] if len(sys.argv) > 1 else "configs/default.toml"))
