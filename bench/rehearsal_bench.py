"""A paper-scale rehearsal: the seeds part of ``configs/e5-mistral.toml`` (its mix, languages,
limits, prices and budget) against the limits-faithful simulator, live and through the
Batch API, killed with SIGKILL about halfway and run again to the end.

Measured: wall time (real, and simulated at the simulator's time scale), peak RSS of the
seeds process and of its gate processes, the ledger's size, requests per accepted row, the
resume time (from the restart to the first request the simulator sees, which is all the
time spent reading the run back) and, on the simulator's side, requests answered twice
(paid twice). Not part of ``make bench``: ``python -m bench --only rehearsal`` (sizes in
``SYNTHEMBED_REHEARSAL``, e.g. ``batch:50000,batch:500000,live:50000``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bench.servers import REPO, simulator_stats, start
from tests.toml_writer import dump_toml

PAPER = REPO / "configs" / "e5-mistral.toml"
PAPER_ROWS = 507_000
DEFAULT_PLAN = "batch:50000,batch:150000,batch:500000,live:25000,live:50000"
KEY_ENV = "REHEARSAL_API_KEY"
READ_BACK = re.compile(r"in ([0-9.]+) s \(([0-9.]+) s of CPU\)$")
# Live: TPM binds (2M tokens a simulated minute, 2,048 admitted a request: 977 requests a
# minute); at this scale that is ~65 requests a real second, which the kit keeps up with on
# 2 cores beside the simulator. Batch: a simulated minute a real tenth of a second.
LIVE_SCALE = 4.0
BATCH_SCALE = 600.0
BATCH_RPM = 50_000  # requests a batch answers per simulated minute
ENQUEUED_TOKENS = 40_000_000  # the account's enqueued-token limit for the model
LAUNCH = (
    "import resource, runpy, sys\n"
    "def peak():\n"
    "    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    print(f'PEAK_RSS_KB {me}', file=sys.stderr, flush=True)\n"
    "import atexit; atexit.register(peak)\n"
    "sys.argv = ['seeds', *sys.argv[1:]]\n"
    "runpy.run_module('seeds', run_name='__main__')\n"
)


def start_simulator(mode: str, folder: Path) -> tuple[subprocess.Popen, str]:
    scale = LIVE_SCALE if mode == "live" else BATCH_SCALE
    return start(
        "seeds.simulator", "--time-scale", str(scale), "--rpm", "10000", "--tpm", "2000000",
        "--latency-s", "8", "--batch-rpm", str(BATCH_RPM), "--batch-enqueued-tokens",
        str(ENQUEUED_TOKENS), "--data-dir", str(folder),
    )  # fmt: skip


def rehearsal_config(folder: Path, url: str, mode: str, rows: int) -> Path:
    """The paper config's seeds sections, aimed at the simulator, scaled to ``rows``."""
    paper = tomllib.loads(PAPER.read_text(encoding="utf-8"))
    share = rows / PAPER_ROWS
    scale = LIVE_SCALE if mode == "live" else BATCH_SCALE
    generator = {
        **paper["generator"], "base_url": url, "api_key_env": KEY_ENV, "mode": mode,
        "server": "openai", "batch_poll_s": 1.0,
        "requests_per_minute": int(paper["generator"]["requests_per_minute"] * scale),
        "tokens_per_minute": int(paper["generator"]["tokens_per_minute"] * scale),
        "batch_enqueued_tokens": ENQUEUED_TOKENS,
    }  # fmt: skip
    generation = {**paper["generation"], "run_name": f"{mode}-{rows}"}
    targets = paper["generation"]["targets"]
    generation["targets"] = {task: math.ceil(n * share) for task, n in targets.items()}
    generation["budget_usd"] = paper["generation"]["budget_usd"] * share
    sections = {
        "project": {"runs_dir": str(folder / "runs"), "build_dir": str(folder / "build")},
        "generator": generator,
        "generation": generation,
        "quality": paper.get("quality", {}),
    }
    path = folder / "rehearsal.toml"
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


class RowCounter:
    """Accepted rows so far, reading only what the shards gained since the last look."""

    def __init__(self, raw: Path) -> None:
        self.raw = raw
        self.offsets: dict[Path, int] = {}
        self.rows = 0

    def count(self) -> int:
        for shard in sorted(self.raw.glob("shard-*.jsonl")):
            with shard.open("rb") as handle:
                handle.seek(self.offsets.get(shard, 0))
                data = handle.read()
            self.offsets[shard] = self.offsets.get(shard, 0) + len(data)
            self.rows += data.count(b"\n")
        return self.rows


def launch(config: Path) -> subprocess.Popen:
    env = {**os.environ, KEY_ENV: "rehearsal-key"}
    command = [sys.executable, "-c", LAUNCH, "--config", str(config), "--no-progress"]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def read_back_s(stderr: str) -> tuple[float, float]:
    """The resumed run's own figures for reading the run back (``seeds.store``): wall and
    CPU seconds."""
    line = next(x for x in stderr.splitlines() if "read back" in x)
    wall, cpu = READ_BACK.search(line).groups()
    return float(wall), float(cpu)


def peak_rss_gb(stderr: str) -> float:
    line = next(x for x in stderr.splitlines() if x.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) / 2**20


def rehearse(mode: str, rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        folder = Path(tmp)
        simulator, url = start_simulator(mode, folder / "simulator")
        try:
            result = _rehearse(folder, url, mode, rows)
        finally:
            simulator.terminate()
            simulator.wait(30)
        keep = os.environ.get("SYNTHEMBED_REHEARSAL_KEEP")
        if keep:  # the run folder, to read it back with another version of the kit
            shutil.move(folder / "runs" / f"{mode}-{rows}", Path(keep) / f"{mode}-{rows}")
        return result


def _rehearse(folder: Path, url: str, mode: str, rows: int) -> dict:
    config = rehearsal_config(folder, url, mode, rows)
    run = folder / "runs" / f"{mode}-{rows}"
    counter = RowCounter(run / "raw")
    started = time.perf_counter()
    process = launch(config)
    while counter.count() < rows // 2 and process.poll() is None:
        time.sleep(0.5)
    killed_at = counter.count()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first_part = time.perf_counter() - started
    before = simulator_stats(url)["requests"]

    restarted = time.perf_counter()
    process = launch(config)
    resume_s = None
    while process.poll() is None:
        if resume_s is None and simulator_stats(url)["requests"] > before:
            resume_s = time.perf_counter() - restarted
        time.sleep(0.25)
    _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the resumed run failed: {err[-2000:]}")
    second_part = time.perf_counter() - restarted
    final = simulator_stats(url)
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    ledger = run / "ledger.jsonl"
    accepted = sum(summary["accepted"].values())
    rss = peak_rss_gb(err)
    read_back, read_back_cpu = read_back_s(err)
    twice = final["chat"]["answered_twice"] + final["batches"]["answered_twice"]
    scale = LIVE_SCALE if mode == "live" else BATCH_SCALE
    wall = first_part + second_part
    return {
        "mode": mode, "rows": rows, "accepted": accepted, "complete": summary["complete"],
        "stopped": summary["stopped_reason"], "killed_at": killed_at, "wall_s": wall,
        "simulated_h": wall * scale / 3600, "resume_s": resume_s, "read_back_s": read_back,
        "read_back_cpu_s": read_back_cpu, "rss_gb": rss, "ledger_mb": ledger.stat().st_size / 1e6,
        "ledger_lines": summary["requests"], "per_row": summary["requests"] / max(accepted, 1),
        "twice": twice, "cost": summary["cost_usd"],
    }  # fmt: skip


def run(config_path: str) -> str:
    plan = os.environ.get("SYNTHEMBED_REHEARSAL", DEFAULT_PLAN)
    rows = []
    for entry in plan.split(","):
        mode, size = entry.split(":")
        print(f"rehearsal {mode} {size}", flush=True)
        r = rehearse(mode, int(size))
        rows.append(
            f"| {r['mode']} | {r['rows']:,} | {r['accepted']:,} ({r['stopped']}) | "
            f"{r['killed_at']:,} | {r['read_back_s']:.0f} ({r['read_back_cpu_s']:.0f} CPU) | "
            f"{r['resume_s']:.0f} | {r['wall_s'] / 60:.1f} | "
            f"{r['simulated_h']:.1f} | {r['rss_gb']:.2f} | "
            f"{r['ledger_mb']:.0f} MB, {r['ledger_lines']:,} lines | {r['per_row']:.3f} | "
            f"{r['twice']} | ${r['cost']:,.0f} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(
        [
            "## seeds: paper-scale rehearsal",
            "",
            f"Sizes: `SYNTHEMBED_REHEARSAL={plan}`.",
            "",
            "The seeds sections of `configs/e5-mistral.toml` (task mix, 93 languages, "
            "gpt-4o prices, budget, max_tokens 2048, limits 10,000 RPM / 2M TPM) scaled to the "
            "row count, against `seeds.simulator` in its own process: live at time scale "
            f"{LIVE_SCALE:g}, batch at {BATCH_SCALE:g} with batches answered at "
            f"{BATCH_RPM:,} requests a simulated minute and an enqueued-token limit of "
            f"{ENQUEUED_TOKENS:,}. Each run is killed with SIGKILL once about half its rows "
            "are accepted, then run again to the end. Read back = the resumed run's own "
            "figure for reading the run folder back (shards, ledger, near-duplicate index), "
            "in wall and CPU seconds (on a shared machine the wall time includes waiting for "
            "a core); "
            "working again = from the restart (Python's start included) to the first request "
            "the simulator sees, which includes judging again the answers of a batch whose "
            "ingestion the kill interrupted. RSS = peak of the seeds process (its two gate "
            "processes are apart). Paid twice = requests the simulator answered twice.",
            "",
            "| mode | rows asked | accepted | killed at | read back s | working again s | "
            "wall min (real) | simulated h | peak RSS GB | ledger | requests / row | "
            "paid twice | cost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(run(sys.argv[1] if len(sys.argv) > 1 else "configs/default.toml"))
