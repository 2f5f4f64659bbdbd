"""Benchmark: the staged Space under the 32-user load on each backend, in one run.

The same load as ``bench/space_bench.py`` and ``tests/test_space_load.py`` (32
``gradio_client`` users on loopback, mixed searches and bad inputs, the app run as
``python app.py``), once with sentence-transformers on PyTorch (the peer) and once with the
model's verified Q8_0 GGUF on llama.cpp. The model is a tiny random-weight Gemma 3 with a
Gemma-style tokenizer (``tests/serving_models.py``), so the figures are the cost of each
backend's path per request and its memory, not of a large model's arithmetic.
``python -m bench.space_backends_bench`` prints the section.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.space_bench import LOAD_CACHE_CORPORA, load_run
from kit.config import load_config
from space.staging import stage_space
from tests.serving_models import build_verified_gguf_repo
from tests.space_helpers import LOAD_LIMITS


def run(config_path: str) -> str:
    with tempfile.TemporaryDirectory(prefix="space-backends-") as scratch:
        work = Path(scratch)
        repo = build_verified_gguf_repo(work / "repo")
        space_dir = work / "space"
        stage_space(load_config(config_path), space_dir)
        env = {
            "MODEL_ID": str(repo),
            "DATASET_ID": "",
            "CACHE_CORPORA": str(LOAD_CACHE_CORPORA),
            **{name.upper(): str(value) for name, value in LOAD_LIMITS.items()},
        }
        runs = [
            load_run(name, space_dir, {**env, "BACKEND": backend}, work / f"{backend}.log", False)
            for name, backend in (
                ("sentence-transformers, PyTorch (peer)", "sentence-transformers"),
                ("llama.cpp, GGUF Q8_0", "gguf"),
            )
        ]
    torch_run, gguf_run = runs
    rows = "\n".join(
        f"| {r.name} | {r.answers} | {r.wrong} | {r.per_s:,.1f} | {r.p50_ms:,.0f} | "
        f"{r.p95_ms:,.0f} | {r.rss_growth_mb:,.0f} |"
        for r in runs
    )
    return (
        "## Space: 32 users at once on each backend\n\n"
        "The 32-user load of the section above against the staged app with "
        "`BACKEND=sentence-transformers` and with `BACKEND=gguf`, on a tiny random-weight "
        "Gemma 3 (hidden size 32) and its verified Q8_0 GGUF, concurrency limit 2. "
        f"Load average of the shared machine at the end: {os.getloadavg()[0]:.1f}.\n\n"
        "| backend | answers | wrong | answers/s | p50 ms | p95 ms | RSS growth MB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"{rows}\n\n"
        f"llama.cpp against PyTorch: p50 **{gguf_run.p50_ms / torch_run.p50_ms:.2f}x**, p95 "
        f"**{gguf_run.p95_ms / torch_run.p95_ms:.2f}x**, throughput "
        f"**{gguf_run.per_s / torch_run.per_s:.2f}x**.\n"
    )


if __name__ == "__main__":
    print(run("configs/default.toml"))
