"""The GPU check runs on CPU at toy sizes, so it cannot rot while no GPU is at hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.usefixtures("single_torch_thread")
def test_the_gpu_check_measures_every_cell_at_toy_sizes(tmp_path: Path) -> None:
    from bench.gpu_check import TINY, run

    report = run(tmp_path, tiny=True, zero3=False, families=("gemma3",))
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == report
    cells = report["cells"]
    batches = next(shape.batches for shape in TINY if shape.family == "gemma3")
    assert [(c["batch"], c["loss"].split()[0]) for c in cells] == [
        (batch, name) for batch in batches for name in ("kit", "stock")
    ]
    for cell in cells:
        assert cell["tokens"] > 0 and cell["tokens_per_s"] > 0 and 0 <= cell["mfu"] < 1
    assert report["bf16_vs_fp32"]["min_cosine"] > 0.99
