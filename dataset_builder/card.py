"""The dataset card: YAML metadata the Hub and ``load_dataset`` read, and a body people read.

The body is ``card_template.md`` (Jinja, rendered by ``DatasetCard.from_template``); this
module computes what fills it. Everything comes from the run (run.json, ledger, scan) and
the build, never from the clock, so an unchanged run gives a byte-identical card. Strings
that came from the generator side (model names, template ids) are shown as escaped inline
code, never as markup.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import datasets
import numpy as np
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from dataset_builder.hard_negatives import MinedNegatives, TypeStats
from dataset_builder.provenance import LedgerSummary
from dataset_builder.raw_run import RunScan
from kit.artifacts import RunSummary
from kit.decontamination import MIN_WORDS, EvaluationNgrams
from kit.schema import (
    CONFIG_NAMES,
    CORPUS_CONFIG,
    GATES,
    ROLES,
    SPLITS,
    TASK_TABLE,
    TYPE_CONFIGS,
    UNIFIED_CONFIG,
    config_columns,
    mined_negative_columns,
)

CITATION = """@article{wang2024improving,
  title={Improving Text Embeddings with Large Language Models},
  author={Wang, Liang and Yang, Nan and Huang, Xiaolong and Yang, Linjun and
          Majumder, Rangan and Wei, Furu},
  journal={arXiv preprint arXiv:2401.00368},
  year={2024}
}"""
DESCRIPTION = (
    "LLM-synthesized training data for text embeddings in the style of Wang et al. (2024): "
    "the paper's task types, many languages, one example per brainstormed task."
)
HOMEPAGE = "https://arxiv.org/abs/2401.00368"
TEMPLATE = Path(__file__).with_name("card_template.md")

TASK_CATEGORIES = ["sentence-similarity", "text-retrieval", "text-classification"]
TAGS = ["synthetic", "embeddings", "llm-generated", "e5-mistral", "multilingual", "parquet"]
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


class CorpusFacts(Protocol):
    """What the card needs of the published corpus (``dataset_builder.corpus`` builds it, and
    reads this module's constants, so this module cannot import it)."""

    source: dict[str, Any]
    info: datasets.DatasetInfo
    documents: int
    contaminated: Counter[str]
    grounded: Counter[str]


@dataclass(frozen=True)
class CardInputs:
    """What the card is written from."""

    repo_id: str
    pretty_name: str
    license: str
    validation_fraction: float
    scan: RunScan
    run: RunSummary
    ledger: LedgerSummary
    infos: dict[str, datasets.DatasetInfo]
    source_digest: str
    plots: list[str]
    ngrams: EvaluationNgrams | None = None
    mined: MinedNegatives | None = None
    corpus: CorpusFacts | None = None


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>10M"


def published_splits(info: datasets.DatasetInfo) -> list[str]:
    """Splits with rows; a config without any is left out of the YAML (nothing to load)."""
    return [split for split in SPLITS if info.splits and info.splits[split].num_examples]


def data_files(config_name: str, splits: list[str]) -> list[dict[str, str]]:
    return [{"split": split, "path": f"data/{config_name}/{split}-*.parquet"} for split in splits]


def code(value: Any, limit: int = 80) -> str:
    """Untrusted text as one line of inline code."""
    text = " ".join(str(value).split()).replace("`", "'")
    return f"`{text[:limit] + ('…' if len(text) > limit else '')}`"


def card_data(inputs: CardInputs) -> DatasetCardData:
    data = DatasetCardData(
        pretty_name=inputs.pretty_name,
        license=inputs.license,
        language=inputs.scan.stats.verified() or None,
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(inputs.scan.accepted)],
        tags=TAGS,
    )
    splits = {name: published_splits(inputs.infos[name]) for name in CONFIG_NAMES}
    published = [name for name in CONFIG_NAMES if splits[name]]
    configs = {name: {"data_files": data_files(name, splits[name])} for name in published}
    infos = {name: inputs.infos[name].copy() for name in published}
    if inputs.corpus is not None and inputs.corpus.documents:
        configs[CORPUS_CONFIG] = {"data_files": data_files(CORPUS_CONFIG, ["train"])}
        infos[CORPUS_CONFIG] = inputs.corpus.info.copy()
        splits[CORPUS_CONFIG] = ["train"]
    MetadataConfigs(configs).to_dataset_card_data(data)
    for name, info in infos.items():
        info.splits = datasets.SplitDict(
            {split: info.splits[split] for split in splits[name]}, dataset_name=info.dataset_name
        )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def _rows(inputs: CardInputs, config_name: str, split: str) -> int:
    splits = inputs.infos[config_name].splits
    return splits[split].num_examples if splits and split in splits else 0


def _length_summary(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    median, p90 = np.percentile(values, [50, 90], method="lower")
    return f"{int(median)} / {int(p90)}"


def _config_rows(inputs: CardInputs) -> list[list[Any]]:
    rows = []
    for name in CONFIG_NAMES:
        task_type = TYPE_CONFIGS.get(name, "all")
        mined = inputs.mined.count if inputs.mined and name == UNIFIED_CONFIG else 0
        columns = ", ".join(f"`{column}`" for column in config_columns(name, mined))
        rows.append(
            [f"`{name}`", task_type, columns, *(_rows(inputs, name, split) for split in SPLITS)]
        )
    return rows


def _corpus_facts(inputs: CardInputs) -> dict[str, Any] | None:
    """The corpus section: source, licence and attribution as the run recorded them, what
    was published, and how many rows are grounded in it."""
    corpus = inputs.corpus
    if corpus is None:
        return None
    source = corpus.source
    grounded = sum(corpus.grounded.values())
    return {
        "source": code(source.get("source", "?")),
        "documents": source.get("documents", 0),
        "published": corpus.documents,
        "sha256": source.get("sha256", ""),
        "languages": ", ".join(f"{k} {n}" for k, n in sorted(
            source.get("languages", {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        "license": source.get("license") or "not stated in the config",
        "attribution": " ".join(str(source.get("attribution", "")).split()),
        "contaminated": sorted(corpus.contaminated.items()),
        "grounded": grounded,
        "grounded_percent": f"{grounded / max(inputs.scan.accepted, 1):.0%}",
        "by_type": sorted(corpus.grounded.items()),
    }


def _run_facts(run: RunSummary) -> dict[str, Any]:
    """run.json's facts as the card shows them."""
    return {
        "model": code(run.generator.model),
        "backend": code(run.generator.backend),
        "bundled": run.generator.bundled_small_model,
        "name": code(run.run_name),
        "started": code(run.started_at or "?"),
        "finished": code(run.finished_at or "?"),
        "complete": run.complete,
        "stopped": code(run.stopped_reason) if run.stopped_reason else "",
        "requests": run.requests,
        "acceptance_rate": run.acceptance_rate,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cost_usd": run.cost_usd,
    }


def _template_rows(inputs: CardInputs) -> list[list[str]]:
    templates = inputs.run.templates
    seen = inputs.scan.stats.templates
    return [
        [
            code(tid),
            code(templates.get(tid, "–"), 64),
            ", ".join(code(h, 64) for h in sorted(seen.get(tid, ()))),
        ]
        for tid in sorted(set(templates) | set(seen))
    ]


def _gate_rows(rejected: dict[str, int], switches: dict[str, Any]) -> list[list[Any]]:
    """Every gate of ``kit.schema.GATES`` with the rows it rejected, zero included."""
    rows = []
    for gate in GATES:
        reasons = {r: n for r, n in sorted(rejected.items()) if gate.claims(r)}
        switch = switches.get(gate.key)
        on = "not recorded" if switch is None else ("yes" if switch else "no")
        by_reason = ", ".join(f"{code(r)}: {n}" for r, n in reasons.items()) or "–"
        rows.append([gate.name, f"`{gate.key}`", on, sum(reasons.values()), by_reason])
    return rows


def _contamination_rows(inputs: CardInputs) -> list[list[Any]]:
    ngrams, found = inputs.ngrams, inputs.scan.contamination
    if ngrams is None:
        return []
    rows = [
        [code(name), ngrams.sizes[name], found.rows[name], code(found.examples.get(name, "–"))]
        for name in sorted(ngrams.sizes)
    ]
    rows += [[code(name), "–", reason, "–"] for name, reason in sorted(ngrams.unavailable.items())]
    return rows or [["–"] * 4]


def _scores(values: list[float]) -> str:
    return f"{np.mean(values):.4f} / {np.median(values):.4f}" if values else "–"


def _mining_row(name: str, stats: TypeStats) -> list[Any]:
    skipped = f"{stats.skipped} of {stats.nearest}" if stats.nearest else "–"
    return [name, stats.rows, stats.mined, stats.rows - stats.mined,
            _scores(stats.positive_scores), _scores(stats.negative_scores), skipped]  # fmt: skip


def _type_rows(inputs: CardInputs) -> list[list[Any]]:
    stats, scan = inputs.scan.stats, inputs.scan
    rows = []
    for type_code, task in enumerate(TASK_TABLE.values()):
        languages = sum(1 for (t, _), n in stats.by_type_language.items() if t == task.name and n)
        groups = (
            "1 (fixed)"
            if task.symmetric
            else len(np.unique(scan.group_keys[scan.type_codes == type_code]))
        )
        lengths = [_length_summary(stats.length_array(task.name, role)) for role in ROLES]
        rows.append([task.name, stats.by_type[task.name], languages, groups, *lengths])
    return rows


def _language_rows(inputs: CardInputs) -> list[list[Any]]:
    stats, total = inputs.scan.stats, max(inputs.scan.accepted, 1)
    sources, targets = stats.by_language, stats.target_languages
    ranked = sorted(stats.languages(), key=lambda code: (-sources[code], -targets[code], code))
    verified, verified_targets = stats.verified_languages, stats.verified_targets
    return [
        [f"`{code}`", sources[code], verified[code], f"{sources[code] / total:.1%}",
         targets[code], verified_targets[code]]
        for code in ranked
    ]  # fmt: skip


def render_card(inputs: CardInputs) -> DatasetCard:
    """The card, from ``card_template.md``: every number comes from the inputs."""
    run, scan, ledger, mined = inputs.run, inputs.scan, inputs.ledger, inputs.mined
    rejected = run.rejected
    switches = run.gates or {}
    configs = _config_rows(inputs)
    return DatasetCard.from_template(
        card_data(inputs),
        template_path=str(TEMPLATE),
        pretty_name=inputs.pretty_name,
        rows=scan.accepted,
        task_types=sum(1 for count in scan.stats.by_type.values() if count),
        verified_languages=len(scan.stats.verified()),
        configs=configs,
        empty_configs=[row[0] for row in configs if not any(row[3:])],
        run=_run_facts(run),
        record_models=[code(m) for m in sorted(scan.stats.generator_models)],
        ledger=ledger,
        ledger_attempts=sum(ledger.attempts.values()),
        attempts=[f"{code(k)}/{code(o)}: {n}" for (k, o), n in sorted(ledger.attempts.items())],
        rejected=[f"{code(reason)}: {n}" for reason, n in sorted(rejected.items())],
        templates=_template_rows(inputs),
        scan=scan,
        dropped_total=sum(scan.dropped.values()),
        dropped=sorted(scan.dropped.items()),
        validation_percent=f"{inputs.validation_fraction:.0%}",
        source_digest=inputs.source_digest,
        gates=_gate_rows(rejected, switches),
        ngrams=inputs.ngrams,
        decontamination_min_words=MIN_WORDS,
        contamination=_contamination_rows(inputs),
        mined=mined,
        mined_embedder=code(mined.embedder) if mined else "",
        margin_percent=f"{1 - mined.relative_margin:.0%}" if mined else "",
        mined_columns=[f"`{c}`" for c in mined_negative_columns(mined.count)] if mined else [],
        mining=(
            [_mining_row(n, s) for n, s in mined.by_type.items() if s.rows]
            + [_mining_row("all", mined.total())]
            if mined
            else []
        ),
        type_stats=_type_rows(inputs),
        language_stats=_language_rows(inputs),
        unverified=[f"`{code}`" for code in scan.stats.unverified()],
        plots=inputs.plots,
        repo_id=inputs.repo_id,
        english_percent=f"{scan.stats.by_language['en'] / max(scan.accepted, 1):.0%}",
        near_duplicates=switches.get("near_duplicates"),
        citation=CITATION,
        corpus=_corpus_facts(inputs),
    )
