"""Benchmark: build a synthetic raw run into the Hub dataset folder (Parquet for 7 configs x 2
splits, plots, card) against the plain peer ``load_dataset("json", data_files=...)`` +
``to_parquet`` on the same shards, each in a fresh subprocess (wall time, peak RSS).

``python -m bench.dataset_bench --sizes 100000 500000`` runs the large case too; the default
(``run``) does 100k only, to stay within a few minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import full_run
from tests.dataset_raw import synthesize, write_run
from tests.toml_writer import dump_toml

DEFAULT_SIZES = (100_000,)
REPO_ROOT = Path(__file__).resolve().parent.parent
USAGE = (
    "import resource, sys; u = resource.getrusage(resource.RUSAGE_SELF); "
    "print('USAGE', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr)"
)
BASELINE = """
import sys
from datasets import load_dataset
shards, cache, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
load_dataset("json", data_files=shards, split="train", cache_dir=cache).to_parquet(out)
"""


def measure(args: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one fresh Python process running ``args``;
    CPU time is the steadier figure when other work shares the cores."""
    code = f"import atexit, runpy, sys\natexit.register(lambda: exec({USAGE!r}))\n"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + args[0], *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    usage = next(line.split() for line in done.stderr.splitlines() if line.startswith("USAGE"))
    return wall, float(usage[2]), int(usage[1]) / 1024


def bench_size(root: Path, rows: int) -> dict[str, float]:
    run_dir = root / "runs" / "bench"
    shards = max(1, rows // 50_000)
    write_run(run_dir, synthesize(rows, seed=1), shards=shards)
    raw_bytes = sum(p.stat().st_size for p in (run_dir / "raw").glob("*.jsonl"))
    config = root / "config.toml"
    config.write_text(
        dump_toml(
            {
                "project": {"runs_dir": str(root / "runs"), "build_dir": str(root / "build")},
                "generation": {"run_name": "bench"},
            }
        ),
        encoding="utf-8",
    )
    ours = measure(
        [
            "sys.argv[0] = 'dataset_builder'; "
            "runpy.run_module('dataset_builder', run_name='__main__')",
            "--config",
            str(config),
            "--force",
        ]
    )
    shard_list = ",".join(str(p) for p in sorted((run_dir / "raw").glob("*.jsonl")))
    peer = measure([BASELINE, shard_list, str(root / "json-cache"), str(root / "peer.parquet")])
    return {
        "rows": rows,
        "raw_mb": raw_bytes / 2**20,
        "ours_s": ours[0],
        "ours_cpu_s": ours[1],
        "ours_mb": ours[2],
        "peer_s": peer[0],
        "peer_cpu_s": peer[1],
        "peer_mb": peer[2],
    }


def render(results: list[dict[str, float]]) -> str:
    lines = [
        "### dataset_builder: raw run -> Hub dataset folder",
        "",
        "Ours: `python -m dataset_builder --force` (validate, dedupe, split by task definition, "
        "7 configs x 2 splits of Parquet, 3 PNG plots, card). Peer: "
        '`load_dataset("json", data_files=shards).to_parquet(...)` on the same shards (one '
        "table, no validation, no card). Each in a fresh process; wall time includes imports; "
        "CPU and peak RSS are the process's getrusage (ru_utime+ru_stime, ru_maxrss). The "
        "2-core machine is shared, so wall times carry noise; CPU time is the steadier figure.",
        "",
        "| raw rows | raw MiB | ours wall s | peer wall s | wall ratio | ours CPU s | peer CPU s "
        "| CPU ratio | ours peak RSS MiB | peer peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['raw_mb']:.0f} | {r['ours_s']:.1f} | {r['peer_s']:.1f} | "
            f"{r['ours_s'] / r['peer_s']:.2f}x | {r['ours_cpu_s']:.1f} | {r['peer_cpu_s']:.1f} | "
            f"{r['ours_cpu_s'] / r['peer_cpu_s']:.2f}x | {r['ours_mb']:.0f} | {r['peer_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run(config_path: str, sizes: tuple[int, ...] | None = None) -> str:
    """The Markdown section; ``config_path`` is unused (the benchmark synthesizes its own run).

    ``SYNTHEMBED_BENCH_FULL=1`` adds the 500k case to show memory staying flat as it grows.
    """
    if sizes is None:
        sizes = (*DEFAULT_SIZES, 500_000) if full_run() else DEFAULT_SIZES
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="dataset-bench-") as tmp:
            results.append(bench_size(Path(tmp), rows))
            print(json.dumps(results[-1]), flush=True)
    return render(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.dataset_bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    print(run("", tuple(parser.parse_args().sizes)))
