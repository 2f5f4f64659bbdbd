"""The seeds stage: open the run, start the endpoint (or the bundled local server), generate
live or through the Batch API, and write ``run.json`` whatever way the run ends."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path

from kit.artifacts import RunSummary
from kit.cli import StageError
from kit.config import Config
from kit.files import digest_files
from kit.logs import redact
from kit.schema import RAW_SCHEMA_VERSION
from kit.staleness import StageRun
from seeds.batch import run_batch
from seeds.client import Endpoint, EndpointFatal
from seeds.consistency import ConsistencyGate
from seeds.corpus import Corpus, CorpusError, load_corpus
from seeds.engine import SeedRun
from seeds.estimate import estimate
from seeds.gates import QualityGates
from seeds.languages import XLMR_LANGUAGES, LanguageSampler
from seeds.live import run_live
from seeds.local_server import BUNDLED_GENERATOR, llama_server, resolve_gguf
from seeds.parsing import dedup_key
from seeds.ranking import make_ranker
from seeds.store import RunStore
from seeds.templates import (
    TemplateError,
    load_corpus_templates,
    load_templates,
    restrict_placeholders,
)

log = logging.getLogger("seeds")
# Reasons a run stops for good: running again with the same settings asks for nothing more.
FINISHED_REASONS = ("targets_reached", "attempts_exhausted", "budget_tokens", "budget_usd")

SMALL_MODEL_WARNING = (
    "the generator is SmolLM2-135M-Instruct, a very small bundled model: its examples show "
    "the pipeline working end to end, not the quality of a GPT-4-class generator"
)


def _endpoint_address(config: Config, stack: ExitStack, run_dir: Path) -> tuple[str | None, str]:
    generator = config.generator
    if generator.backend == "local":
        if generator.mode == "batch":
            raise StageError("generator.mode = 'batch' needs backend = 'openai'")
        log.info("starting the local llama.cpp server (%s)", generator.local_model)
        url = stack.enter_context(
            llama_server(
                resolve_gguf(generator.local_model),
                generator.local_context,
                generator.concurrency,
                generator.local_startup_timeout_s,
                run_dir / "local_server.log",
            )
        )
        return url, "local-no-key"
    api_key = os.environ.get(generator.api_key_env, "")
    if not api_key:
        raise StageError(
            f"generator.api_key_env: set the environment variable {generator.api_key_env} "
            "to the endpoint's API key"
        )
    return generator.base_url or None, api_key


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    generator = config.generator
    if config.quality.judge and generator.mode == "batch":
        raise StageError("quality.judge asks the generator about each row: it needs mode = 'live'")
    run_dir = config.layout.run_dir
    bundled = generator.backend == "local" and generator.local_model == BUNDLED_GENERATOR
    for noisy in ("httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if bundled:
        log.warning(SMALL_MODEL_WARNING)
    try:
        LanguageSampler(config.generation.languages, config.generation.language_subset)
    except ValueError as exc:
        raise StageError(f"generation.language_subset: {exc}") from None
    try:
        templates = restrict_placeholders(load_templates(), config.generation.placeholder_subsets)
        corpus = _corpus(config)
        if corpus is not None:
            templates |= load_corpus_templates(config.generation.corpus.negatives)
    except (TemplateError, CorpusError) as exc:
        raise StageError(str(exc)) from None
    if getattr(args, "estimate", False):
        print("\n".join(estimate(config, templates, run_dir, corpus)))
        return
    gates = QualityGates(config.quality, list(XLMR_LANGUAGES), templates)
    consistency = _consistency_gate(config, corpus) if corpus is not None else None
    stage.begin()
    store = RunStore(run_dir)
    store.open(dedup_key, lambda rows: gates.admit([list(r["example"].values()) for r in rows]))
    run = SeedRun(
        config,
        store,
        templates,
        backend=generator.backend,
        bundled_small_model=bundled,
        gates=gates,
        progress=not getattr(args, "no_progress", False),
        corpus=corpus,
        consistency=consistency,
    )
    if corpus is not None:
        corpus.write_snapshot(run_dir)
    try:
        with ExitStack() as stack:
            base_url, api_key = _endpoint_address(config, stack, run_dir)
            endpoint = Endpoint(
                generator, base_url, api_key, generator.backend == "local", run.log_attempt
            )
            runner = run_batch if generator.mode == "batch" else run_live
            asyncio.run(runner(run, endpoint))
    except EndpointFatal as exc:
        run.stop(exc.reason)
        raise StageError(redact(str(exc), generator.api_key_env)) from None
    except StageError:
        run.stop("setup_error")
        raise
    except (KeyboardInterrupt, asyncio.CancelledError):
        run.stop("interrupted")
    finally:
        run.close()
        summary = run.summary()
        store.write_run_json(summary)
        store.close()
        stage.publish(
            facts=_facts(summary, bundled),
            output=run_content_digest(run_dir, store.shard_paths(), summary),
            finished=summary.stopped_reason in FINISHED_REASONS,
        )
        _report(summary, run_dir, bundled)
    if run.stopped_reason == "interrupted":
        raise StageError(f"interrupted; run the same command again to resume {run_dir}")


def _corpus(config: Config) -> Corpus | None:
    """The checked documents of corpus mode, read before anything is written or asked."""
    section = config.generation.corpus
    if not section.active:
        return None
    corpus = load_corpus(section)
    log.info("corpus: %d documents from %s (%s)", len(corpus.documents), corpus.source,
             ", ".join(f"{k} {n}" for k, n in corpus.summary()["languages"].items()))  # fmt: skip
    return corpus


def _consistency_gate(config: Config, corpus: Corpus) -> ConsistencyGate | None:
    section = config.generation.corpus
    neighbours = section.negatives == "neighbour"
    if not (config.quality.consistency_check or neighbours):
        return None
    log.info("ranking the corpus with %s for the consistency gate", section.ranker)
    ranker = make_ranker(section.ranker, [doc.text for doc in corpus.documents])
    return ConsistencyGate(corpus, ranker, section.gate_top_k, config.quality.consistency_check,
                           neighbours)  # fmt: skip


def run_content_digest(run_dir: Path, shards: list[Path], summary: RunSummary) -> str:
    """The accepted rows and the run's totals, without its clock: a resumed run that asks
    for nothing more publishes the same digest, so the dataset after it stays current."""
    rows = digest_files(run_dir, shards)
    totals = json.dumps(summary.content(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{rows}\n{totals}".encode()).hexdigest()


def _facts(summary: RunSummary, bundled: bool) -> dict:
    """What the dataset stage needs to know about this run, without reading our sections."""
    return {
        "schema_version": RAW_SCHEMA_VERSION,
        "generator_model": summary.generator.model,
        "bundled_small_generator": bundled,
        "stopped_reason": summary.stopped_reason,
        "accepted": sum(summary.accepted.values()),
    }


def _report(summary: RunSummary, run_dir: Path, bundled: bool) -> None:
    accepted = summary.accepted
    log.info(
        "%s: %d accepted (%s), acceptance rate %.1f%%, %d requests, %d tokens, $%.4f; %s",
        run_dir,
        sum(accepted.values()),
        ", ".join(f"{t} {n}" for t, n in accepted.items()),
        100 * summary.acceptance_rate,
        summary.requests,
        summary.prompt_tokens + summary.completion_tokens,
        summary.cost_usd,
        summary.stopped_reason,
    )
    if summary.rejected:
        log.info("rejected: %s", ", ".join(f"{k} {n}" for k, n in summary.rejected.items()))
    log.info("languages: %s", ", ".join(f"{k} {n}" for k, n in summary.languages.items()))
    if bundled:
        log.warning(SMALL_MODEL_WARNING)
