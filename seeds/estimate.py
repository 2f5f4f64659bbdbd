"""``python -m seeds --config ... --estimate``: what a run will ask for and cost, and how long
it takes at the configured limits, before anything is sent.

Prompts are rendered from the templates for a sample of the plan's own slots, so their
sizes are the real ones. Answers are counted at ``max_tokens`` (the most a run can pay);
when the run folder already has answers, their mean size gives the expected figures too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from kit.config import Config
from seeds.corpus import Corpus
from seeds.languages import LanguageSampler
from seeds.pacing import admission_tokens
from seeds.plan import brainstorm_item, brainstorms_needed, corpus_item, generation_item
from seeds.templates import Template, corpus_lane

SAMPLE_SLOTS = 64
SAMPLE_TASK = "Given a short question about household budgets, find expert answers for a beginner."
FRAMING_TOKENS = 7  # what the chat format adds to a one-message prompt


def _api_tokens(text: str) -> int:
    """Prompt tokens the way the API counts English text (about 4 characters a token)."""
    return math.ceil(len(text) / 4) + FRAMING_TOKENS


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def _answers_so_far(ledger: Path) -> float | None:
    """Mean completion tokens of the run's answered generation requests, if it has any."""
    if not ledger.is_file():
        return None
    sizes = []
    with ledger.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line) if line.endswith("\n") else {}
            if entry.get("kind") == "generate" and entry.get("completion_tokens"):
                sizes.append(entry["completion_tokens"])
    return _mean(sizes) or None


def _duration(minutes: float) -> str:
    return f"{minutes:,.0f} min" if minutes < 120 else f"{minutes / 60:,.1f} h"


def estimate(
    config: Config, templates: dict[str, Template], run_dir: Path, corpus: Corpus | None = None
) -> Iterator[str]:
    """The lines ``--estimate`` prints (prompts of corpus lanes carry their real documents)."""
    gen, generator = config.generation, config.generator
    sampler = LanguageSampler(gen.languages, gen.language_subset)
    requests = prompt_tokens = admitted = body_bytes = 0
    brainstorms = capped = 0
    targets = dict(gen.targets)
    if corpus is not None:
        targets |= {corpus_lane(t): n for t, n in gen.corpus.targets.items()}
    for lane, target in targets.items():
        if target <= 0:
            continue
        template = templates[lane]
        prompts = [
            corpus_item(template, slot, gen.seed, corpus).prompt
            if corpus is not None and lane != template.task_type
            else generation_item(template, slot, gen.seed, sampler, [SAMPLE_TASK], 1.0).prompt
            for slot in range(SAMPLE_SLOTS)
        ]
        requests += target
        capped += math.ceil(target * gen.max_requests_per_target)
        prompt_tokens += round(target * _mean([_api_tokens(p) for p in prompts]))
        admitted += round(
            target * _mean([admission_tokens(p, generator.max_tokens) for p in prompts])
        )
        body_bytes += round(target * (_mean([len(p.encode()) for p in prompts]) + 600))
        if template.asymmetric:
            needed = brainstorms_needed(target, gen.examples_per_task, gen.tasks_per_brainstorm)
            prompt = brainstorm_item(template, 0, gen.tasks_per_brainstorm).prompt
            brainstorms += needed
            prompt_tokens += needed * _api_tokens(prompt)
            admitted += needed * admission_tokens(prompt, generator.max_tokens)
    total = requests + brainstorms
    most_completion = total * generator.max_tokens
    prompt_price, completion_price = generator.prices()

    def cost(completion: float) -> float:
        return prompt_tokens / 1000 * prompt_price + completion / 1000 * completion_price

    yield f"estimate for {run_dir} ({generator.mode} mode, {generator.model}); nothing is sent"
    if corpus is not None:
        grounded = sum(gen.corpus.targets.values())
        yield (
            f"  corpus: {len(corpus.documents):,} documents from {corpus.source}; {grounded:,} "
            "corpus-grounded rows asked for"
        )
    yield (
        f"  requests: {total:,} ({requests:,} examples and {brainstorms:,} brainstorms) if "
        f"every answer is accepted; at most {capped + brainstorms:,} with "
        f"max_requests_per_target = {gen.max_requests_per_target}"
    )
    yield f"  prompt tokens: {prompt_tokens:,} (about {prompt_tokens / total:,.0f} a request)"
    yield (
        f"  completion tokens: at most {most_completion:,} (max_tokens = "
        f"{generator.max_tokens} each)"
    )
    prices = f"${prompt_price:g} / ${completion_price:g} per 1k prompt / completion tokens"
    yield f"  cost: at most ${cost(most_completion):,.2f} at {generator.mode} prices ({prices})"
    typical = _answers_so_far(run_dir / "ledger.jsonl")
    if typical is not None:
        yield (
            f"  expected from this run's answers so far ({typical:,.0f} completion tokens "
            f"each): {prompt_tokens + total * typical:,.0f} tokens, ${cost(total * typical):,.2f}"
        )
    if gen.budget_usd or gen.budget_tokens:
        budgets = [f"budget_usd = ${gen.budget_usd:,.2f}"] if gen.budget_usd else []
        budgets += [f"budget_tokens = {gen.budget_tokens:,}"] if gen.budget_tokens else []
        yield f"  budget: {', '.join(budgets)}; the run stops before a request could pass it"
    yield from (_live_time if generator.mode == "live" else _batch_time)(
        config, total, admitted, prompt_tokens, body_bytes
    )


def _live_time(
    config: Config, total: int, admitted: int, prompt_tokens: int, body_bytes: int
) -> Iterator[str]:
    generator = config.generator
    rates = []
    if generator.requests_per_minute:
        rates.append((generator.requests_per_minute, "requests_per_minute"))
    if generator.tokens_per_minute:
        per_request = admitted / total
        rates.append((generator.tokens_per_minute / per_request, "tokens_per_minute"))
        yield (
            f"  each request counts {per_request:,.0f} tokens against tokens_per_minute when "
            "it is admitted (the larger of max_tokens and its prompt), however short its answer"
        )
    if not rates:
        yield (
            "  wall time: unknown, no limits configured (requests_per_minute, "
            "tokens_per_minute); the endpoint's headers set the pace once the run starts"
        )
        return
    rate, binding = min(rates)
    yield (
        f"  wall time: {_duration(total / rate)} at {rate:,.0f} requests a minute "
        f"({binding} binds), if every answer is accepted"
    )


def _batch_time(
    config: Config, total: int, admitted: int, prompt_tokens: int, body_bytes: int
) -> Iterator[str]:
    generator = config.generator
    files = max(
        math.ceil(total / generator.batch_max_requests),
        math.ceil(body_bytes / generator.batch_max_bytes),
    )
    yield (
        f"  batch files: {files:,} (at most {generator.batch_max_requests:,} requests and "
        f"{generator.batch_max_bytes / 2**20:,.0f} MiB each, {body_bytes / 2**20:,.0f} MiB in all)"
    )
    waves = 1
    if generator.batch_enqueued_tokens:
        waves = max(1, math.ceil(prompt_tokens / generator.batch_enqueued_tokens))
        yield (
            f"  enqueued-token limit {generator.batch_enqueued_tokens:,}: the batches go in "
            f"{waves:,} waves of at most that many prompt tokens"
        )
    yield (
        f"  wall time: up to {waves:,} x the {generator.batch_completion_window} completion "
        "window, if every answer is accepted (batches often end sooner)"
    )
