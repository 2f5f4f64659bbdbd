"""The dataset card: YAML metadata the Hub and ``load_dataset`` read, and a body people read.

Everything in it comes from the run (run.json, ledger, scan) and the build, never from the
clock, so an unchanged run gives a byte-identical card. Strings that came from the generator
side (model names, template ids) are shown as escaped inline code, never as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from dataset_builder.hard_negatives import MinedNegatives, TypeStats
from dataset_builder.provenance import LedgerSummary
from dataset_builder.raw_run import RunScan
from kit.decontamination import MIN_WORDS, EvaluationNgrams
from kit.schema import (
    CONFIG_NAMES,
    ROLES,
    SPLITS,
    SYMMETRIC_TYPES,
    TASK_TYPES,
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
    "six task types, many languages, one example per brainstormed task."
)
HOMEPAGE = "https://arxiv.org/abs/2401.00368"

# Rejection reasons of the generation-time gates that carry no field name.
GATE_REASONS = (
    "near_duplicate", "query_in_positive", "label_equals_input", "judge_rejected",
    "unverified_language", "unverified_target_language",
)  # fmt: skip
TASK_CATEGORIES = ["sentence-similarity", "text-retrieval", "text-classification"]
TAGS = ["synthetic", "embeddings", "llm-generated", "e5-mistral", "multilingual", "parquet"]
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


@dataclass(frozen=True)
class CardInputs:
    """What the card is written from."""

    repo_id: str
    pretty_name: str
    license: str
    validation_fraction: float
    scan: RunScan
    run: dict[str, Any]
    ledger: LedgerSummary
    infos: dict[str, datasets.DatasetInfo]
    source_digest: str
    plots: list[str]
    ngrams: EvaluationNgrams | None = None
    mined: MinedNegatives | None = None


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
    MetadataConfigs(
        {name: {"data_files": data_files(name, splits[name])} for name in published}
    ).to_dataset_card_data(data)
    infos = {name: inputs.infos[name].copy() for name in published}
    for name, info in infos.items():
        info.splits = datasets.SplitDict(
            {split: info.splits[split] for split in splits[name]}, dataset_name=info.dataset_name
        )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def _rows(inputs: CardInputs, config_name: str, split: str) -> int:
    splits = inputs.infos[config_name].splits
    return splits[split].num_examples if splits and split in splits else 0


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _length_summary(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    median, p90 = np.percentile(values, [50, 90], method="lower")
    return f"{int(median)} / {int(p90)}"


def configs_section(inputs: CardInputs) -> str:
    rows = []
    for name in CONFIG_NAMES:
        task_type = TYPE_CONFIGS.get(name, "all")
        mined = inputs.mined.count if inputs.mined and name == UNIFIED_CONFIG else 0
        columns = ", ".join(f"`{column}`" for column in config_columns(name, mined))
        rows.append(
            [f"`{name}`", task_type, columns, *(_rows(inputs, name, split) for split in SPLITS)]
        )
    empty = [f"`{row[0][1:-1]}`" for row in rows if not any(row[3:])]
    note = (
        f"\n\nNo rows in this run, so not loadable: {', '.join(empty)}. A split with no rows is "
        "left out of its config."
        if empty
        else "\n\nA split with no rows is left out of its config."
    )
    return _table(["config", "task type", "columns", "train", "validation"], rows) + note


def generation_section(inputs: CardInputs) -> str:
    run, ledger = inputs.run, inputs.ledger
    generator = run.get("generator") if isinstance(run.get("generator"), dict) else {}
    lines = [
        f"- Generator model: {code(generator.get('model', 'unknown'))} "
        f"(backend {code(generator.get('backend', 'unknown'))}); models named in the records: "
        + ", ".join(code(m) for m in sorted(inputs.scan.stats.generator_models)),
        f"- Run {code(run.get('run_name', '?'))}: started {code(run.get('started_at', '?'))}, "
        f"finished {code(run.get('finished_at', '?'))}, complete: {bool(run.get('complete'))}"
        + (f", stopped because {code(run['stopped_reason'])}" if run.get("stopped_reason") else ""),
        f"- Requests: {run.get('requests', '?')}, acceptance rate "
        f"{run.get('acceptance_rate', '?')}, prompt tokens {run.get('prompt_tokens', '?')}, "
        f"completion tokens {run.get('completion_tokens', '?')}, cost (run.json) "
        f"${float(run.get('cost_usd') or 0):.4f}",
    ]
    if ledger.present:
        attempts = ", ".join(
            f"{code(kind)}/{code(outcome)}: {n}"
            for (kind, outcome), n in sorted(ledger.attempts.items())
        )
        lines.append(
            f"- Ledger: {sum(ledger.attempts.values())} request attempts ({attempts or 'none'}), "
            f"{ledger.prompt_tokens} prompt + {ledger.completion_tokens} completion tokens, "
            f"cost ${ledger.cost_usd:.4f}"
            + (
                f"; {ledger.unreadable_lines} unreadable ledger lines"
                if ledger.unreadable_lines
                else ""
            )
        )
    else:
        lines.append("- Ledger: not found in the run folder")
    rejected = run.get("rejected") if isinstance(run.get("rejected"), dict) else {}
    if rejected:
        lines.append(
            "- Rejected by the generator stage: "
            + ", ".join(f"{code(reason)}: {n}" for reason, n in sorted(rejected.items()))
        )
    templates = run.get("templates") if isinstance(run.get("templates"), dict) else {}
    seen = inputs.scan.stats.templates
    template_rows = [
        [
            code(tid),
            code(templates.get(tid, "–"), 64),
            ", ".join(code(h, 64) for h in sorted(seen.get(tid, ()))),
        ]
        for tid in sorted(set(templates) | set(seen))
    ]
    return (
        "\n".join(lines)
        + "\n\nPrompt templates (SHA-256 of the template file):\n\n"
        + _table(["template", "run.json", "in the records"], template_rows)
    )


def build_section(inputs: CardInputs) -> str:
    scan = inputs.scan
    dropped_total = sum(scan.dropped.values())
    lines = [
        f"- Raw lines read: {scan.lines_read} from {len(scan.shards)} shard(s); "
        f"rows published: {scan.accepted}; dropped: {dropped_total}.",
    ]
    lines += [f"- {n} dropped: {reason}" for reason, n in sorted(scan.dropped.items())]
    lines.append(
        f"- Split: `validation` holds about {inputs.validation_fraction:.0%} of the task "
        "definitions of each task type (chosen by a hash of the normalized definition), so it "
        "measures unseen instructions; STS and bitext share one fixed instruction, so they are "
        "split by example."
    )
    lines.append(f"- Source run digest (SHA-256 over its raw shards): `{inputs.source_digest}`")
    return "\n".join(lines)


def quality_section(inputs: CardInputs) -> str:
    """What the gates rejected: at generation time (seeds) and when this repo was built."""
    run = inputs.run
    rejected = run.get("rejected") if isinstance(run.get("rejected"), dict) else {}
    gated = {k: v for k, v in rejected.items() if ":" in k or k in GATE_REASONS}
    lines = [
        "Every generated row passed these checks before it was accepted; the raw rows that "
        "failed are kept in the generation run for re-examination.",
        "",
        _table(
            ["rejected at generation", "rows"],
            [[code(reason), n] for reason, n in sorted(gated.items())] or [["(none)", 0]],
        ),
    ]
    ngrams = inputs.ngrams
    if ngrams is None:
        lines += ["", "Decontamination against the evaluation sets was turned off for this build."]
        return "\n".join(lines)
    found = inputs.scan.contamination
    rows = [
        [code(name), ngrams.sizes[name], found.rows[name], code(found.examples.get(name, "–"))]
        for name in sorted(ngrams.sizes)
    ]
    rows += [[code(name), "–", reason, "–"] for name, reason in sorted(ngrams.unavailable.items())]
    lines += [
        "",
        f"Rows sharing a {ngrams.n}-word sequence with an evaluation set (or the whole of an "
        f"evaluation text of {MIN_WORDS} to {ngrams.n - 1} words) were dropped:",
        "",
        _table(["evaluation set", "texts", "rows dropped", "example id"], rows or [["–"] * 4]),
    ]
    return "\n".join(lines)


def _scores(values: list[float]) -> str:
    return f"{np.mean(values):.4f} / {np.median(values):.4f}" if values else "–"


def _mining_row(name: str, stats: TypeStats) -> list[Any]:
    skipped = f"{stats.skipped} of {stats.nearest}" if stats.nearest else "–"
    return [name, stats.rows, stats.mined, stats.rows - stats.mined,
            _scores(stats.positive_scores), _scores(stats.negative_scores), skipped]  # fmt: skip


def hard_negatives_section(inputs: CardInputs) -> str:
    """How the extra negatives were mined, and what the margin did to them."""
    mined = inputs.mined
    if mined is None:
        return (
            "Not mined for this build: `negative` is the generator's own hard negative "
            "(`[dataset.hard_negatives] enabled = true` mines more)."
        )
    columns = mined_negative_columns(mined.count)
    rows = [_mining_row(name, stats) for name, stats in mined.by_type.items() if stats.rows]
    lines = [
        f"- Embedder: {code(mined.embedder)}, a trained embedder loaded as it is published, max "
        f"length {mined.max_length}; queries carry their instruction, documents the embedder's "
        "own document prompt. Scores are cosine similarities to the query.",
        "- Candidates: the positives and generated negatives of the same task type and split. "
        f"A candidate scoring above {1 - mined.relative_margin:.0%} of the positive's score "
        f"(`relative_margin = {mined.relative_margin}`, NV-Retriever's TopK-PercPos) is skipped "
        "as a likely unlabelled positive.",
        f"- A mined row of the `default` config has exactly {mined.count} of them in "
        f"{', '.join(f'`{c}`' for c in columns)} (nearest first), never its positive nor its "
        "own `negative`. A row with fewer candidates passing the margin gets none and keeps "
        "only its generated negative, so training sees few row shapes.",
        "- STS and bitext rows are not mined.",
        "",
        _table(
            [
                "task type",
                "rows",
                "mined",
                "without enough candidates",
                "positive score mean / median",
                "mined negative score mean / median",
                f"nearest {mined.count} per row skipped by the margin",
            ],
            [*rows, _mining_row("all", mined.total())],
        ),
    ]
    return "\n".join(lines)


def statistics_section(inputs: CardInputs) -> str:
    stats = inputs.scan.stats
    scan = inputs.scan
    type_rows = []
    for type_code, task_type in enumerate(TASK_TYPES):
        languages = sum(1 for (t, _), n in stats.by_type_language.items() if t == task_type and n)
        groups = (
            len(np.unique(scan.group_keys[scan.type_codes == type_code]))
            if task_type not in SYMMETRIC_TYPES
            else "1 (fixed)"
        )
        type_rows.append(
            [task_type, stats.by_type[task_type], languages, groups]
            + [_length_summary(stats.length_array(task_type, role)) for role in ROLES]
        )
    total = max(inputs.scan.accepted, 1)
    sources, targets = stats.by_language, stats.target_languages
    ranked = sorted(stats.languages(), key=lambda code: (-sources[code], -targets[code], code))
    verified, verified_targets = stats.verified_languages, stats.verified_targets
    language_rows = [
        [f"`{code}`", sources[code], verified[code], f"{sources[code] / total:.1%}",
         targets[code], verified_targets[code]]
        for code in ranked
    ]  # fmt: skip
    unverified = stats.unverified()
    language_note = (
        "Languages claimed by rows but never confirmed by the language identifier, so left out "
        "of the metadata: " + ", ".join(f"`{code}`" for code in unverified) + "."
        if unverified
        else "Every language claimed by a row was confirmed in at least one row."
    )
    return "\n\n".join(
        [
            "Per task type (lengths in characters, median / 90th percentile):",
            _table(
                [
                    "task type",
                    "rows",
                    "languages",
                    "task definitions",
                    *(f"{r} length" for r in ROLES),
                ],
                type_rows,
            ),
            "Per source language (bitext target languages counted separately). A row is "
            "*verified* when py3langid identified its texts as the language it claims:",
            _table(
                ["language", "rows", "verified", "share", "as bitext target", "verified target"],
                language_rows,
            ),
            language_note,
            "\n\n".join(f"![{name[:-4].replace('_', ' ')}]({name})" for name in inputs.plots),
        ]
    )


def usage_section(repo_id: str) -> str:
    return f"""```python
from datasets import load_dataset, get_dataset_config_names

repo = "{repo_id}"
print(get_dataset_config_names(repo))
retrieval = load_dataset(repo, "retrieval", split="train")
print(retrieval.num_rows, retrieval.column_names)
unified = load_dataset(repo, split="train")  # the `default` config
for row in unified.select(range(min(2, unified.num_rows))):
    print(f"Instruct: {{row['task_definition']}}\\nQuery: {{row['query']}}")
```"""


def limitations_section(inputs: CardInputs) -> str:
    generator = inputs.run.get("generator") if isinstance(inputs.run.get("generator"), dict) else {}
    english = inputs.scan.stats.by_language["en"] / max(inputs.scan.accepted, 1)
    lines = []
    if generator.get("bundled_small_model"):
        lines.append(
            f"- **This corpus was written by the small generator bundled with the kit "
            f"({code(generator.get('model', 'unknown'))}), not by a frontier LLM.** Its examples "
            "are often off-task, repetitive or wrong. It shows that the pipeline works end to end; "
            "do not expect it to train a useful embedder."
        )
    if not inputs.run.get("complete"):
        lines.append("- The generation run did not complete: the task-type mix may be off target.")
    lines += [
        "- All text is machine-generated and unchecked by people: expect factual errors, "
        "inconsistent labels and the biases of the generator.",
        f"- The language mix is skewed: {english:.0%} of the rows are English; low-resource "
        "languages have few rows and the lowest quality.",
        "- Hard negatives were written by the same model as the positives and can be "
        "accidentally relevant.",
        "- Duplicates were removed by exact match only; near-duplicates remain.",
    ]
    return "\n".join(lines)


def render_card(inputs: CardInputs) -> DatasetCard:
    body = f"""
# {inputs.pretty_name}

Synthetic training data for text embeddings, generated by an LLM following the recipe of
"Improving Text Embeddings with Large Language Models" (Wang et al., 2024): the model first
brainstorms retrieval and classification tasks, then writes one example per task; symmetric
tasks (STS, bitext) use fixed instructions. There are six task types in
{len(inputs.scan.stats.verified())} verified language(s), {inputs.scan.accepted} rows in all.

## Configs

Each task type has its own config with its native fields; `default` is the unified training
view: `query`, `positive`, `negative` (empty for short-short and long-long), with the task
definition to put in front of the query (`Instruct: {{task_definition}}\\nQuery: {{query}}`).

{configs_section(inputs)}

## How it was generated

{generation_section(inputs)}

## How this repository was built

{build_section(inputs)}

## Quality gates

{quality_section(inputs)}

## Mined hard negatives

{hard_negatives_section(inputs)}

## Statistics

{statistics_section(inputs)}

## Usage

{usage_section(inputs.repo_id)}

## Limitations

{limitations_section(inputs)}

## Citation

```bibtex
{CITATION}
```
"""
    return DatasetCard(f"---\n{card_data(inputs).to_yaml()}\n---\n{body}")
