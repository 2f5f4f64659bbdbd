"""seeds throughput against a fixed-latency local OpenAI-compatible server.

Peer: a hand-written ``asyncio.gather`` + ``asyncio.Semaphore`` loop over the same
``AsyncOpenAI`` client settings, run in the same process against the same server. Ideal is
C / L accepted examples per second (C requests in flight, each taking L seconds). The server
runs in its own process so its CPU is not counted as the client's.
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

from bench.servers import start
from kit.config import Config, load_config
from seeds.client import Endpoint
from seeds.engine import SeedRun
from seeds.gates import QualityGates
from seeds.languages import XLMR_LANGUAGES
from seeds.live import run_live
from seeds.parsing import dedup_key
from seeds.store import RunStore
from seeds.templates import load_templates

LATENCY_S = 0.2
CONCURRENCIES = (64, 256)
ROUNDS = 4  # requests per run = C * ROUNDS, so an ideal run takes ROUNDS * L seconds


def bench_config(base: Config, url: str, concurrency: int, n: int) -> Config:
    generator = dataclasses.replace(
        base.generator, backend="openai", base_url=url, model="fake", concurrency=concurrency,
        response_format="json_schema", timeout_s=60.0, mode="live",
        requests_per_minute=0, tokens_per_minute=0,
    )  # fmt: skip
    generation = dataclasses.replace(
        base.generation, run_name="bench", targets={"sts": n}, budget_tokens=0, budget_usd=0.0
    )
    return dataclasses.replace(base, generator=generator, generation=generation)


def run_seeds(config: Config, url: str) -> tuple[int, float, float]:
    """Accepted examples, wall seconds, client CPU seconds for one seeds run."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        store.open(dedup_key)
        gates = QualityGates(config.quality, list(XLMR_LANGUAGES))
        run = SeedRun(config, store, load_templates(), "openai", False, gates, progress=False)
        endpoint = Endpoint(config.generator, url, "bench-key", False, run.log_attempt)
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(run_live(run, endpoint))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        accepted = sum(store.totals.accepted.values())
        store.close()
    return accepted, wall, cpu


async def hand_loop(url: str, concurrency: int, n: int, prompt: str) -> int:
    """The obvious peer: gather all requests behind a semaphore, json.loads each answer."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = openai.AsyncOpenAI(
        base_url=url, api_key="bench-key", max_retries=0, timeout=60.0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=60.0),
    )  # fmt: skip
    semaphore = asyncio.Semaphore(concurrency)
    schema = load_templates()["sts"].output_schema()
    response_format = {"type": "json_schema", "json_schema": {"name": "sts", "schema": schema}}

    async def one() -> bool:
        async with semaphore:
            response = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": prompt}],
                response_format=response_format, max_tokens=256,
            )  # fmt: skip
            return isinstance(json.loads(response.choices[0].message.content or ""), dict)

    try:
        return sum(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


def run_hand_loop(url: str, concurrency: int, n: int) -> tuple[int, float, float]:
    prompt = load_templates()["sts"].prompt
    wall, cpu = time.perf_counter(), time.process_time()
    ok = asyncio.run(hand_loop(url, concurrency, n, prompt))
    return ok, time.perf_counter() - wall, time.process_time() - cpu


def run(config_path: str) -> str:
    base = load_config(config_path)
    server, url = start("tests.seeds_fake_server", "--latency", str(LATENCY_S))
    rows = []
    try:
        run_seeds(bench_config(base, url, 8, 16), url)  # warm imports and the server
        for concurrency in CONCURRENCIES:
            n = concurrency * ROUNDS
            ideal = concurrency / LATENCY_S
            hand_n, hand_wall, hand_cpu = run_hand_loop(url, concurrency, n)
            seeds_n, seeds_wall, seeds_cpu = run_seeds(bench_config(base, url, concurrency, n), url)
            seeds_rate, hand_rate = seeds_n / seeds_wall, hand_n / hand_wall
            rows.append(
                f"| {concurrency} | {n} | {ideal:.0f} | {seeds_rate:.0f} | "
                f"{seeds_rate / ideal:.2f} | {hand_rate:.0f} | {hand_rate / ideal:.2f} | "
                f"{seeds_rate / hand_rate:.2f} | {1000 * seeds_cpu / n:.2f} | "
                f"{1000 * hand_cpu / n:.2f} |"
            )
    finally:
        server.terminate()
        server.wait(10)
    return "\n".join(
        [
            "## seeds: generation throughput",
            "",
            f"Local fake OpenAI-compatible server (`tests/seeds_fake_server.py`, own process) "
            f"answering every request after a fixed L = {int(LATENCY_S * 1000)} ms with a valid "
            f"STS example; {ROUNDS} x C requests per run. seeds = the full engine (planning, "
            "validation, dedup, shard + ledger writes, progress accounting); peer = hand-written "
            "`asyncio.gather` + `Semaphore` over `AsyncOpenAI` (same connection limits) that "
            "only `json.loads` each answer. CPU = client process time per request.",
            "",
            "| C | requests | ideal C/L (/s) | seeds accepted/s | seeds / ideal | "
            "hand loop /s | hand / ideal | seeds / hand | seeds CPU ms/req | hand CPU ms/req |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(run(sys.argv[1] if len(sys.argv) > 1 else "configs/default.toml"))
