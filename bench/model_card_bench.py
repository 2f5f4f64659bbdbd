"""Benchmark: evaluation time on the shared XQuAD-de and STS17 en-en sets, its scaling with
corpus size, and the mteb encode path against sentence-transformers' own ``encode``.

The model is the trained one under the layout's ``model_dir`` when it exists, else the
config's base model wrapped as an untrained embedder the way the stage wraps it. Nothing is
cached, so every figure is a fresh evaluation.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

from kit.config import load_config
from kit.evalsets import LocalTask
from model_card.encoders import Embedder, build_base, load_trained, mteb_encoder
from model_card.tasks import EvalTask, local_eval_task

EVALDATA = Path(__file__).resolve().parent.parent / "model_card" / "evaldata"
XQUAD = str(EVALDATA / "xquad" / "de")
STS17 = str(EVALDATA / "sts17" / "en-en.tsv")
XQUAD_INSTRUCTION = "Given a question, find the Wikipedia paragraph that answers it"
STS_INSTRUCTION = "Retrieve semantically similar text."


def _model(config_path: str) -> tuple[Embedder, str]:
    config = load_config(config_path)
    model_dir = config.layout.model_dir
    if (model_dir / "modules.json").is_file():
        trained = load_trained(model_dir, "bench/trained", config.evaluation)
        return trained, f"trained model `{model_dir}`"
    base = build_base(config.training.base_model, config.training.max_length, config.evaluation)
    return base, f"`{config.training.base_model}` wrapped untrained (no trained model found)"


def _evaluate(embedder: Embedder, task: EvalTask, batch_size: int) -> tuple[float, float]:
    import mteb

    encoder = mteb_encoder(embedder, task.prompts())
    start = time.perf_counter()
    result = mteb.evaluate(
        encoder,
        task.task,
        cache=None,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False,
        co2_tracker=False,
    )
    return time.perf_counter() - start, float(result.task_results[0].get_score())


def _texts(task: EvalTask) -> list[tuple[str, list[str]]]:
    """The texts the task encodes, with the prompt each group gets."""
    task.task.load_data()
    split = task.task.dataset["default"]["test"]
    prompts = task.prompts()
    if task.type == "STS":
        return [(prompts[task.name], list(split["sentence1"]) + list(split["sentence2"]))]
    return [
        (prompts[f"{task.name}-query"], list(split["queries"]["text"])),
        (prompts[f"{task.name}-document"], list(split["corpus"]["text"])),
    ]


def _plain_encode(embedder: Embedder, task: EvalTask, batch_size: int) -> tuple[float, int]:
    """sentence-transformers alone on the same texts and prompts: the peer of the mteb path."""
    groups = _texts(task)
    task.task.unload_data()
    start = time.perf_counter()
    for prompt, texts in groups:
        embedder.model.encode(texts, prompt=prompt, batch_size=batch_size, show_progress_bar=False)
    elapsed = time.perf_counter() - start
    tokens = sum(
        int(embedder.model.preprocess([prompt + t for t in texts])["attention_mask"].sum())
        for prompt, texts in groups
    )
    return elapsed, tokens


def _task(name: str, entry: dict[str, Any]) -> EvalTask:
    return local_eval_task(LocalTask(name=name, **entry))


def run(
    config_path: str,
    corpus_sizes: tuple[int, ...] = (10, 20, 40),
    queries: int = 10,
    sts_pairs: int = 40,
    batch_size: int = 16,
) -> str:
    embedder, label = _model(config_path)
    rows = []
    for size in corpus_sizes:
        task = _task(
            f"XQuAD-de-{size}",
            {
                "type": "retrieval",
                "path": XQUAD,
                "instruction": XQUAD_INSTRUCTION,
                "languages": "deu-Latn",
                "max_corpus": size,
                "max_queries": queries,
            },
        )
        rows.append(("XQuAD-de", task, *_evaluate(embedder, task, batch_size)))
        rows[-1] += _plain_encode(embedder, task, batch_size)
    sts = _task(
        "STS17-en-en",
        {
            "type": "sts",
            "path": STS17,
            "instruction": STS_INSTRUCTION,
            "languages": "eng-Latn",
            "max_pairs": sts_pairs,
        },
    )
    rows.append(("STS17 en-en", sts, *_evaluate(embedder, sts, batch_size)))
    rows[-1] += _plain_encode(embedder, sts, batch_size)

    lines = [
        "## model_card: mteb evaluation time",
        "",
        f"Model: {label}, max_seq_length {embedder.model.max_seq_length}, batch size "
        f"{batch_size}, encoding on {embedder.plan.describe() if embedder.plan else '-'}, "
        f"CPU: {platform.processor() or platform.machine()}. Each row is one "
        "fresh `mteb.evaluate` (no result cache): data loading, encoding, scoring.",
        "",
        "| set | queries / pairs | documents | tokens | mteb evaluate (s) | tokens/s | score |",
        "|---|---|---|---|---|---|---|",
    ]
    comparisons = []
    for name, task, seconds, score, plain_s, tokens in rows:
        comparisons.append((name, task, seconds, plain_s))
        size = task.size
        first = size.get("queries", size.get("pairs"))
        docs = size.get("corpus", "—")
        lines.append(
            f"| {name} | {first} | {docs} | {tokens} | {seconds:.1f} | "
            f"{tokens / seconds:.0f} | {task.main_score} {score * 100:.2f} |"
        )
    lines += [
        "",
        "Encode path: the same texts and prompts through sentence-transformers' own "
        "`model.encode` (the peer), timed right after each mteb evaluation, against the "
        "whole mteb evaluation (ratio = mteb / peer).",
        "",
        "| set | documents | sentence-transformers encode (s) | mteb evaluate (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, task, seconds, plain_s in comparisons:
        docs = task.size.get("corpus", "—")
        lines.append(
            f"| {name} | {docs} | {plain_s:.1f} | {seconds:.1f} | {seconds / plain_s:.2f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.model_card_bench")
    parser.add_argument("--config", default="configs/default.toml")
    parser.add_argument("--sizes", default="10,20,40", help="XQuAD corpus sizes")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--sts-pairs", type=int, default=40)
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(run(args.config, sizes, args.queries, args.sts_pairs))
