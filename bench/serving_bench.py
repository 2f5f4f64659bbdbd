"""Benchmark: the default model served from its GGUF files by llama.cpp against
sentence-transformers in fp32, on 2 CPU threads each, in one run.

1. Encode throughput for queries (with the query prompt) and for documents of exactly 512
   tokens: torch fp32 (the peer), GGUF f16 and GGUF Q8_0 through llama.cpp's
   ``/v1/embeddings``.
2. Quality on the default evaluation tasks: each GGUF through the model_card stage's own
   check (``model_card.gguf_check``) against the torch model's scores from the same run.

The model is the trained one in the layout's ``model_dir`` when it exists, else the bundled
Gemma 3 270M wrapped by the release recipe (untrained), saved at ``max_seq_length`` 512 and
converted with the release's converter.
``python -m bench.serving_bench --config configs/default.toml`` prints the section.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

from kit.artifacts import GgufCheck

THREADS = 2
MAX_TOKENS = 512
QUERIES = 64
DOCUMENTS = 16
TYPES = ("f16", "q8_0")
GOAL_SPEEDUP = 2.0  # Q8_0 against torch fp32, per CPU second
QUERY_TEXTS = (
    "how tall is the highest mountain in the country",
    "wann wurde die Brücke über den Fluss gebaut",
    "best time of year to visit the old harbour",
    "quelle est la population de la ville",
)


class Rate(NamedTuple):
    wall: float
    cpu: float


def _model_folder(config_path: str, work: Path) -> tuple[Path, str]:
    from kit.bundled import resolve_model
    from kit.config import load_config
    from kit.embedder import build_embedder

    model_dir = load_config(config_path).layout.model_dir
    if (model_dir / "modules.json").is_file():
        return model_dir, f"the trained model in `{model_dir}`"
    prompts = {"query": "Instruct: Given a question, retrieve passages that answer it\nQuery: "}
    model = build_embedder(resolve_model("bundled:gemma-3-270m"), MAX_TOKENS, prompts, "cpu")
    model.save(str(work / "gemma"))
    return work / "gemma", "bundled Gemma 3 270M wrapped by the release recipe (untrained)"


def _documents(tokenizer) -> list[str]:
    """Texts of exactly ``MAX_TOKENS`` tokens with BOS and EOS."""
    words = (
        "The river crosses the old town, passes the market and the station, and floods "
        "the lower streets every spring when the snow melts in the mountains."
    ).split()
    texts = []
    for i in range(DOCUMENTS):
        ids = tokenizer(" ".join(words * 40) + f" {i}", add_special_tokens=False)["input_ids"]
        texts.append(tokenizer.decode(ids[: MAX_TOKENS - 2]))
    return texts


def _rate(fn, texts: list[str], batch: int) -> Rate:
    """Texts per wall second and per CPU second of this process (xllamacpp's server runs in
    its threads), so other jobs on the shared cores weigh less on the second."""
    fn(texts[:2])
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        fn(texts[i : i + batch])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Rate(len(texts) / wall, len(texts) / cpu)


def throughput(folder: Path, files: dict[str, Path]) -> dict[str, dict[str, Rate]]:
    import torch
    from sentence_transformers import SentenceTransformer

    from kit.llama_embed import embed, embedding_server

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = MAX_TOKENS
    prompt = model.prompts.get("query", "")
    queries = [prompt + QUERY_TEXTS[i % len(QUERY_TEXTS)] + f" {i}" for i in range(QUERIES)]
    documents = _documents(model.tokenizer)
    rates = {"torch fp32": {
        "queries": _rate(lambda t: model.encode(t, batch_size=16), queries, 16),
        "documents": _rate(lambda t: model.encode(t, batch_size=4), documents, 4),
    }}  # fmt: skip
    for kind, path in files.items():
        with embedding_server(path, MAX_TOKENS, THREADS, parallel=16) as url:
            rates[f"GGUF {kind}"] = {
                "queries": _rate(lambda t, u=url: embed(u, t, MAX_TOKENS), queries, 16),
                "documents": _rate(lambda t, u=url: embed(u, t, MAX_TOKENS), documents, 4),
            }
    return rates


def quality(config_path: str, folder: Path, files: dict[str, Path], work: Path) -> tuple:
    from kit.config import load_config
    from model_card.encoders import load_trained
    from model_card.evaluation import evaluate_model
    from model_card.gguf_check import check_file
    from model_card.stage import collect_tasks

    config = load_config(config_path)
    tasks, _ = collect_tasks(config)
    trained = load_trained(folder, "bench/served", config.evaluation)
    runs = evaluate_model(trained, tasks, work / "eval", config.evaluation.batch_size, True)
    scores = {name: round(run.main_score * 100, 2) for name, run in runs.items()}
    root = next(iter(files.values())).parents[1]  # the folder the files were written into
    checks = [check_file(path, root, trained, tasks, scores) for path in files.values()]
    return scores, checks


def run(config_path: str) -> str:
    from training.gguf import export_gguf

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder, described = _model_folder(config_path, work)
        started = time.perf_counter()
        copy = work / "converted"
        copy.mkdir()
        for path in folder.iterdir():
            if path.name != "gguf":
                (copy / path.name).symlink_to(path.resolve())
        written = export_gguf(copy, list(TYPES), "model")
        convert_s = time.perf_counter() - started
        files = {kind: path for kind, path in zip(TYPES, written, strict=True)}
        rates = throughput(folder, files)
        print(f"throughput (texts per wall s, per CPU s): {rates}", flush=True)
        scores, checks = quality(config_path, folder, files, work)
    return section(described, rates, scores, checks, convert_s)


def instruction_sets() -> str:
    """What each engine's kernels were built for: a wheel built for fewer CPU instructions
    than the machine has is slower for that reason alone."""
    import torch
    import xllamacpp

    features = xllamacpp.get_system_info().split("CPU :", 1)[-1].split("|")
    enabled = [f.split("=")[0].strip() for f in features if f.strip().endswith("= 1")]
    return (
        f"torch {torch.__version__} runs its {torch.backends.cpu.get_cpu_capability()} kernels; "
        f"xllamacpp {version('xllamacpp')}'s llama.cpp was built with {', '.join(enabled)}"
    )


def section(described, rates, scores, checks, convert_s) -> str:
    peer = rates["torch fp32"]
    lines = [
        "## Serving: GGUF through llama.cpp against sentence-transformers",
        "",
        f"Model: {described}. {THREADS} CPU threads each; queries carry the query prompt; "
        f"documents are {MAX_TOKENS} tokens. GGUF files written by the release's converter "
        f"in {convert_s:.0f} s (both). Load average of the shared machine at the end: "
        f"{os.getloadavg()[0]:.1f} (llama.cpp's threads spin while they wait for each other, "
        "so other work on the cores slows it more than torch).",
        "",
        f"Instruction sets: {instruction_sets()}.",
        "",
        "Per CPU second: texts over the CPU time of this process (torch's threads, or the "
        "in-process llama.cpp server's); per wall second: texts over elapsed time.",
        "",
        "| engine | queries / CPU s | × torch | queries/s | × torch | "
        f"{MAX_TOKENS}-token documents / CPU s | × torch | documents/s | × torch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rate in rates.items():
        cells = [
            f"{value:.{2 if kind == 'documents' else 1}f} | {value / base:.2f}"
            for kind in ("queries", "documents")
            for value, base in (
                (rate[kind].cpu, peer[kind].cpu),
                (rate[kind].wall, peer[kind].wall),
            )
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    names = list(scores)
    lines += ["", "Quality on the default tasks (×100, same run):", "",
              "| engine | size | min / mean cosine | " + " | ".join(names) + " | check |",
              "|---|---:|---|" + "---:|" * len(names) + "---|",
              "| torch fp32 | — | 1 / 1 | " + " | ".join(f"{scores[n]:.2f}" for n in names)
              + " | reference |"]  # fmt: skip
    for check in checks:
        lines.append(
            f"| GGUF {check.type} | {check.bytes / 2**20:,.0f} MiB | {check.min_cosine:.5f} / "
            f"{check.mean_cosine:.5f} | "
            + " | ".join(f"{check.scores[n]:.2f} ({-check.score_drops[n]:+.2f})" for n in names)
            + f" | {'passed' if check.passed else 'failed'}: {check.rule} |"
        )
    return "\n".join([*lines, "", goal_verdict(rates, checks)]) + "\n"


def goal_verdict(rates: dict[str, dict[str, Rate]], checks: list[GgufCheck]) -> str:
    """The issue's goal for Q8_0, judged on this run's figures: its speed against torch, and
    the model card's own verdict on its scores (no task more than ``MAX_SCORE_DROP`` lower)."""
    from model_card.gguf_check import MAX_SCORE_DROP

    peer, q8 = rates["torch fp32"], rates["GGUF q8_0"]
    (check,) = [c for c in checks if c.type == "q8_0"]
    speed = {kind: q8[kind].cpu / peer[kind].cpu for kind in ("queries", "documents")}
    met = min(speed.values()) >= GOAL_SPEEDUP and check.passed
    return (
        f"Goal (Q8_0 at least {GOAL_SPEEDUP:g}x torch fp32 per CPU second, within "
        f"{MAX_SCORE_DROP:g} point on every task): **{'met' if met else 'not met'}**: "
        f"{speed['queries']:.2f}x on queries, {speed['documents']:.2f}x on documents, "
        f"largest score drop {max(check.score_drops.values()):+.2f}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serving_bench")
    parser.add_argument("--config", default="configs/default.toml")
    print(run(parser.parse_args().config))


if __name__ == "__main__":
    main()
