"""Build a tiny staged release (dataset, model, Space folders) the way the stages publish them."""

from __future__ import annotations

import shutil
from pathlib import Path

DATASET_ROWS: dict[str, dict[str, list[str]]] = {
    "retrieval": {
        "id": ["r1", "r2", "r3"],
        "task_definition": ["Find recipes"] * 3,
        "language": ["en", "de", "ja"],
        "user_query": ["pasta dinner", "Brot backen", "東京 ラーメン"],
        "positive_document": ["Boil pasta.", "Mehl und Wasser.", "醤油ラーメンの作り方。"],
        "hard_negative_document": ["Pasta history.", "Brot kaufen.", "東京の天気。"],
    },
    "sts": {
        "id": ["s1", "s2"],
        "task_definition": ["Retrieve semantically similar text."] * 2,
        "language": ["en", "fr"],
        "S1": ["a cat sleeps", "il pleut"],
        "S2": ["a cat is asleep", "la pluie tombe"],
        "S3": ["a dog runs", "il fait beau"],
    },
}
SPLITS = ("train", "validation")

SPACE_CORPUS = ["Boil pasta in salted water.", "Bread needs flour and water.", "Cats sleep a lot."]
SPACE_APP = '''"""Tiny retrieval demo: ranks a fixed corpus with the model named by MODEL_ID."""

import os

import gradio as gr
from sentence_transformers import SentenceTransformer

MODEL = SentenceTransformer(os.environ["MODEL_ID"])
CORPUS = {corpus!r}
CORPUS_EMBEDDINGS = MODEL.encode_document(CORPUS)


def search(query: str) -> str:
    scores = MODEL.similarity(MODEL.encode_query([query]), CORPUS_EMBEDDINGS)[0]
    return CORPUS[int(scores.argmax())]


demo = gr.Interface(search, gr.Textbox(), gr.Textbox(), api_name="search")

if __name__ == "__main__":
    demo.launch()
'''
SPACE_README = """---
title: Tiny demo
emoji: 🔎
sdk: gradio
app_file: app.py
pinned: false
---

# Tiny demo
"""
MODEL_CARD = """---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
---

# Tiny embedder
"""
# Files a real build leaves next to the release; none of them may reach the Hub.
JUNK = {
    "model": ("checkpoint-2/trainer_state.json", "checkpoint-2/model.safetensors",
              ".cache/huggingface/download/x.json", "optimizer.pt", "training_args.bin"),
    "space": ("__pycache__/app.cpython-311.pyc", ".gradio/flagged/log.csv"),
    "dataset": (".cache/state.json", "data/retrieval/train.arrow"),
}  # fmt: skip


def dataset_readme(configs: list[str]) -> str:
    blocks = []
    for cfg in configs:
        files = "".join(f"  - split: {s}\n    path: data/{cfg}/{s}-*.parquet\n" for s in SPLITS)
        blocks.append(f"- config_name: {cfg}\n  data_files:\n{files}")
    return "---\nconfigs:\n" + "".join(blocks) + "---\n\n# Tiny synthetic dataset\n"


def write_dataset(folder: Path) -> Path:
    from datasets import Dataset

    for cfg, columns in DATASET_ROWS.items():
        for i, split in enumerate(SPLITS):
            rows = {k: v[i:] for k, v in columns.items()}  # splits differ
            shard = folder / "data" / cfg / f"{split}-00000-of-00001.parquet"
            shard.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_dict(rows).to_parquet(str(shard))
    (folder / "README.md").write_text(dataset_readme(list(DATASET_ROWS)), encoding="utf-8")
    return folder


def write_space(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(SPACE_APP.format(corpus=SPACE_CORPUS), encoding="utf-8")
    (folder / "README.md").write_text(SPACE_README, encoding="utf-8")
    (folder / "requirements.txt").write_text("sentence-transformers\ngradio\n", encoding="utf-8")
    return folder


def write_model(folder: Path, tiny_st_model_dir: Path) -> Path:
    return Path(shutil.copytree(tiny_st_model_dir, folder))


def write_card(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(MODEL_CARD, encoding="utf-8")
    results = folder / ".eval_results" / "mteb.yaml"
    results.parent.mkdir()
    results.write_text("- dataset:\n    id: mteb/sts17-crosslingual-sts\n  value: 80.1\n")
    return folder


def add_junk(build_dir: Path) -> None:
    for kind, paths in JUNK.items():
        for rel in paths:
            path = build_dir / kind / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not for the Hub")


def build_release(build_dir: Path, tiny_st_model_dir: Path) -> Path:
    """``build_dir`` with ``dataset/``, ``model/``, ``card/`` and ``space/`` as the stages
    publish them."""
    write_dataset(build_dir / "dataset")
    write_model(build_dir / "model", tiny_st_model_dir)
    write_card(build_dir / "card")
    write_space(build_dir / "space")
    add_junk(build_dir)
    return build_dir
