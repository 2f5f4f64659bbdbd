"""Which training settings make the best default within the release's time goal?
``make bench-settings`` (not part of ``make bench``, about 85 minutes).

The default release's data (its corpus-grounded rows plus the SNLI slice) is trained with the
default settings and, as the peer in the same run, the SNLI slice alone with the same
settings, each with three seeds, so the table shows how far one draw moves the scores; then
the default data again with the previous default's step count. Each model is evaluated by the
model card stage on the default evaluation tasks and on the hand-written corpus questions.
Time is the other half of the choice, since ``make release`` has 25 minutes on 2 cores: the
table gives each variant's training time against the default's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from statistics import mean

from bench.corpus_bench import TASK_NAME
from bench.quality_bench import VARIANTS, Variant, train_and_evaluate

WORK = Path("build/bench-settings")
DEFAULT = next(variant for variant in VARIANTS if variant.default_release)
SEEDS = (42, 43, 44)
SNLI_ONLY = next(variant for variant in VARIANTS if not variant.synthetic)


def seeded(variant: Variant, label: str) -> tuple[Variant, ...]:
    return tuple(replace(variant, name=f"{label}, seed {seed}", settings=(("seed", seed),))
                 for seed in SEEDS)  # fmt: skip


DRAWS = {
    "corpus-grounded + SNLI": seeded(DEFAULT, "corpus-grounded + SNLI"),
    "SNLI only": seeded(SNLI_ONLY, "SNLI only"),
}
SWEEP = (
    *(variant for draws in DRAWS.values() for variant in draws),
    # The default until 2026-12-03; 16 steps and a maximum length of 192 scored below it in
    # that day's sweep (README, "What the default model scores").
    replace(DEFAULT, name="24 steps", settings=(("max_steps", 24),)),
)
# Two settings whose mean scores lie this close are a tie, broken by training time.
TIE_POINTS = 1.0


def default_task_mean(scores: dict[str, float]) -> float:
    """The mean main score (x100) over the default evaluation tasks, the corpus questions
    left out: they are the domain goal, reported beside it."""
    return 100 * mean(score for task, score in scores.items() if task != TASK_NAME)


def draws_of(rows: list[dict], label: str) -> list[dict]:
    return [row for row in rows if row["variant"] in DRAWS[label]]


def verdict(rows: list[dict]) -> str:
    """The best setting by the default tasks, the fastest one that ties with it, and how far
    the seeds move each data mix."""
    best = max(rows, key=lambda row: default_task_mean(row["scores"]))
    top = default_task_mean(best["scores"])
    ties = [row for row in rows if top - default_task_mean(row["scores"]) <= TIE_POINTS]
    fastest = min(ties, key=lambda row: row["train_s"])
    spans = []
    for label in DRAWS:
        means = [default_task_mean(row["scores"]) for row in draws_of(rows, label)]
        spans.append(f"{label} {min(means):.2f} to {max(means):.2f} (mean {mean(means):.2f})")
    return (
        f"Best mean over the default tasks: **{best['variant'].name}** ({top:.2f}). Fastest "
        f"within {TIE_POINTS:.0f} point of it: **{fastest['variant'].name}** "
        f"({default_task_mean(fastest['scores']):.2f}, {fastest['train_s']:.0f} s of training). "
        f"Over seeds {', '.join(map(str, SEEDS))} the default tasks' mean spans "
        f"{'; '.join(spans)}: a gap smaller than a span is one draw against another."
    )


def run(config_path: str) -> str:
    rows = [
        train_and_evaluate(config_path, variant, index, WORK)
        for index, variant in enumerate(SWEEP)
    ]
    names = [row["variant"].name for row in rows]
    tasks = {task: metric for row in rows for task, metric in row["metrics"].items()}
    default_s = rows[0]["train_s"]
    lines = [
        "## Training settings: seeds and steps for the default release",
        "",
        "`make bench-settings`: the default release's data (corpus-grounded rows plus the SNLI "
        "slice, `configs/default.toml`) and the SNLI slice alone, each trained by the kit's "
        "training stage with the default settings and three seeds, then the default data with "
        "the previous default's step count; each model evaluated by the model card stage on "
        f"the default tasks and the corpus questions ({TASK_NAME}; main score x100).",
        "",
        "| task | metric | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for task, metric in tasks.items():
        cells = " | ".join(f"{row['scores'][task] * 100:.2f}" for row in rows)
        lines.append(f"| {task} | {metric} | {cells} |")
    means = " | ".join(f"{default_task_mean(row['scores']):.2f}" for row in rows)
    lines.append(f"| mean of the default tasks | | {means} |")
    lines += [
        "",
        f"Mean over seeds {', '.join(map(str, SEEDS))}:",
        "",
        "| task | " + " | ".join(DRAWS) + " |",
        "|---|" + "---:|" * len(DRAWS),
    ]
    for task in tasks:
        cells = " | ".join(
            f"{100 * mean(row['scores'][task] for row in draws_of(rows, label)):.2f}"
            for label in DRAWS
        )
        lines.append(f"| {task} | {cells} |")
    lines += [
        "",
        "| variant | steps | validation acc@1 after | train s | train time / default's |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        record = row["record"]
        lines.append(
            f"| {row['variant'].name} | {record.steps} | {record.validation_accuracy_after} | "
            f"{row['train_s']:.0f} | {row['train_s'] / default_s:.2f} |"
        )
    return "\n".join([*lines, "", verdict(rows)])
