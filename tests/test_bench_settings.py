"""The settings sweep picks the default by the default tasks, breaks ties by time, and says
how far the seeds move each data mix."""

from __future__ import annotations

from bench.corpus_bench import TASK_NAME
from bench.settings_bench import DRAWS, SWEEP, default_task_mean, verdict


def row(index: int, sts: float, xquad: float, corpus: float, train_s: float) -> dict:
    return {"variant": SWEEP[index], "train_s": train_s,
            "scores": {"STS17": sts, "XQuAD": xquad, TASK_NAME: corpus}}  # fmt: skip


def test_the_corpus_questions_stay_out_of_the_default_task_mean():
    assert default_task_mean(row(0, 0.80, 0.60, 0.10, 1)["scores"]) == 70.0


def test_the_sweep_runs_each_mix_with_three_seeds_before_the_settings():
    assert [variant.settings for variant in SWEEP[:6]] == [(("seed", s),) for s in (42, 43, 44)] * 2
    assert list(DRAWS) == ["corpus-grounded + SNLI", "SNLI only"]
    assert [v.synthetic for v in SWEEP[:6]] == [True] * 3 + [False] * 3


def test_the_best_setting_is_named_with_the_fastest_tie_and_the_seed_spans():
    rows = [row(0, 0.80, 0.60, 0.70, 500), row(1, 0.78, 0.60, 0.70, 500),
            row(2, 0.80, 0.64, 0.70, 500), row(3, 0.80, 0.50, 0.70, 400),
            row(4, 0.80, 0.52, 0.70, 400), row(5, 0.80, 0.54, 0.70, 400),
            row(6, 0.815, 0.61, 0.99, 200)]  # fmt: skip
    assert verdict(rows) == (
        f"Best mean over the default tasks: **{SWEEP[2].name}** (72.00). Fastest within 1 point "
        f"of it: **{SWEEP[6].name}** (71.25, 200 s of training). Over seeds 42, 43, 44 the "
        "default tasks' mean spans corpus-grounded + SNLI 69.00 to 72.00 (mean 70.33); SNLI "
        "only 65.00 to 67.00 (mean 66.00): a gap smaller than a span is one draw against another."
    )
