"""The GPU check's evaluation phase runs on CPU at toy size, so it cannot rot without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.usefixtures("single_torch_thread")
def test_the_evaluation_phase_evaluates_trained_and_base_on_the_device_picked(
    tmp_path: Path,
) -> None:
    from bench.gpu_check_eval import evaluation_phase

    report = evaluation_phase(tmp_path, tiny=True)
    assert report["task"] == "STS17-en-en: 24 pairs, 64 tokens at most"
    for role in ("trained", "base"):
        run = report[role]
        assert run["encoding"] == (
            "cpu, float32, batch 32 (device auto: no CUDA device, so cpu; fp32 on cpu; "
            "batch 32 off a GPU)"
        )
        assert (run["device"], run["weights"]) == ("cpu", ["float32"])
        assert -1.0 <= run["score"] <= 1.0 and run["texts_per_s"] > 0
        assert run["peak_memory_mb"] is None
    assert report["scores_agree"]
