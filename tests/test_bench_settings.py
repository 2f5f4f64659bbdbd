"""The settings bench compares the default data with SNLI alone over three seeds, keeps the
corpus questions out of the default-task mean, and says whether the gap beats the seeds."""

from __future__ import annotations

from bench.corpus_bench import TASK_NAME
from bench.settings_bench import DRAWS, SWEEP, default_task_mean, train_seconds, verdict
from kit.artifacts import TrainingRecord


def record(train_s: float) -> TrainingRecord:
    return TrainingRecord(base_model="bundled:gemma-3-270m", dataset="build/dataset",
                          dataset_revision="local", steps=32, max_length=128, precision="fp32",
                          seed=42, train_runtime_s=train_s)  # fmt: skip


def row(index: int, sts: float, xquad: float, corpus: float, train_s: float) -> dict:
    return {"variant": SWEEP[index], "record": record(train_s),
            "scores": {"STS17": sts, "XQuAD": xquad, TASK_NAME: corpus}}  # fmt: skip


def test_the_corpus_questions_stay_out_of_the_default_task_mean():
    assert default_task_mean(row(0, 0.80, 0.60, 0.10, 1)["scores"]) == 70.0


def test_the_sweep_runs_each_mix_with_three_seeds():
    assert [variant.settings for variant in SWEEP] == [(("seed", s),) for s in (42, 43, 44)] * 2
    assert list(DRAWS) == ["corpus-grounded + SNLI", "SNLI only"]
    assert [v.synthetic for v in SWEEP] == [True] * 3 + [False] * 3


def test_the_time_is_the_training_loops_from_the_record():
    assert train_seconds(row(0, 0.8, 0.6, 0.7, 485.0)) == 485.0


def test_the_verdict_gives_each_mix_and_whether_the_worst_draw_beats_the_peers_best():
    rows = [row(0, 0.80, 0.60, 0.70, 500), row(1, 0.78, 0.60, 0.70, 500),
            row(2, 0.80, 0.64, 0.70, 500), row(3, 0.80, 0.50, 0.70, 400),
            row(4, 0.80, 0.52, 0.70, 400), row(5, 0.80, 0.54, 0.70, 400)]  # fmt: skip
    assert verdict(rows) == (
        "Mean over the default tasks, seeds 42, 43, 44: corpus-grounded + SNLI 69.00 to 72.00 "
        "(mean 70.33); SNLI only 65.00 to 67.00 (mean 66.00). corpus-grounded + SNLI beats "
        "SNLI only: its worst draw (69.00) is above the other's best (67.00)."
    )
    rows[3] = row(3, 0.80, 0.62, 0.70, 400)
    assert "does not clearly beat SNLI only: its worst draw (69.00) is not above the other's " \
        "best (71.00)." in verdict(rows)
