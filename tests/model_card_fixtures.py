"""Tiny BEIR and STS files, and a model folder shaped like the training stage's output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WORDS = "river mountain ocean city music sport weather science history".split()


def write_beir(folder: Path, n_docs: int = 12, n_queries: int = 8) -> Path:
    """Query i is relevant to document i; documents beyond the queries are distractors."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(n_docs):
            text = f"the {WORDS[i % 9]} text {i} about the {WORDS[(i * 5) % 9]}"
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(n_queries):
            handle.write(json.dumps({"_id": f"q{i}", "text": f"find {WORDS[i % 9]} {i}"}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for i in range(n_queries):
            handle.write(f"q{i}\td{i}\t1\n")
    return folder


def write_sts(path: Path, n_pairs: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["sentence1\tsentence2\tscore"]
    for i in range(n_pairs):
        lines.append(f"the {WORDS[i % 9]} is here\ta {WORDS[(i * 2) % 9]} is there\t{i % 5}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_model_folder(st_model_dir: Path, model_dir: Path, base_model: str | None) -> Path:
    """Copy the tiny sentence-transformers model and give it a training record."""
    shutil.copytree(st_model_dir, model_dir)
    record = {
        "dataset": "build/dataset",
        "dataset_revision": "abc123",
        "hyperparameters": {"learning_rate": 0.0001, "batch_size": 8, "lora_r": 16},
        "seed": 42,
        "steps": 3,
        "train_runtime_s": 1.5,
        "final_loss": 2.125,
        "kit_version": "0.1.0",
        "finished_at": "2026-11-25T19:00:00+00:00",
        "max_length": 64,
        "precision": "fp32",
        "deepspeed": None,
        "base_model": base_model or "",
    }
    (model_dir / "training_record.json").write_text(json.dumps(record), encoding="utf-8")
    return model_dir
