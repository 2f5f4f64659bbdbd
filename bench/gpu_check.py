"""The recipe at real sizes on one GPU: ``python -m bench.gpu_check --out DIR [--tiny]``.

Random-weight decoders built from the configurations of Gemma 3 270M, Qwen2.5-0.5B and
Mistral-7B (no weights travel: only their shapes), wrapped by the kit's embedder recipe, with
LoRA r=16 on all linear layers, activation checkpointing, SDPA attention and bf16. For each
model and batch size, one training step of the kit's GradCache loss and of stock
``CachedMultipleNegativesRankingLoss`` at max length 512: tokens/s, peak GPU memory and MFU
(6 x parameters x tokens per second, over the GPU's dense bf16 peak). Then bf16 embeddings
against fp32 ones, and, when ``deepspeed`` imports, a few steps of the training stage under
ZeRO-3 on one GPU. ``--tiny`` runs the same code at toy sizes on CPU in seconds (a test does),
so the script cannot rot while no GPU is at hand. Figures go to ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Dense bf16 peak of an H100/H200 SXM, by the vendor's datasheet.
PEAK_BF16_FLOPS = 989e12
TIME_BUDGET_S = 420.0


@dataclass(frozen=True)
class Shape:
    family: str
    config: dict[str, Any]
    batches: tuple[int, ...]


REAL = (
    Shape("gemma3", {"hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18,
                     "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
                     "vocab_size": 262144, "sliding_window": 512}, (256, 1024, 2048)),
    Shape("qwen2", {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                    "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936},
          (256, 1024, 2048)),
    Shape("mistral", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                      "vocab_size": 32000, "sliding_window": None}, (256,)),
)  # fmt: skip
TINY = tuple(
    Shape(shape.family, {**shape.config, "hidden_size": 64, "intermediate_size": 128,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
                         "head_dim": 16, "vocab_size": 400}, (8, 16))
    for shape in REAL
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    max_length: int
    mini_batch: int
    device: str
    dtype: str


def _config(shape: Shape) -> Any:
    from transformers import Gemma3TextConfig, MistralConfig, Qwen2Config

    cls = {"gemma3": Gemma3TextConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
    return cls[shape.family](max_position_embeddings=4096, attn_implementation="sdpa",
                             tie_word_embeddings=True, **shape.config)  # fmt: skip


def build_model_dir(shape: Shape, folder: Path, dtype: str) -> Path:
    """A random-weight decoder of the shape, saved with a locally trained tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import FAMILIES, train_tokenizer

    tokenizer = train_tokenizer(FAMILIES[shape.family])
    config = _config(shape)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _batch(rows: int, max_length: int, vocab: int, eos: int, device: str) -> list[dict]:
    """Three columns (anchor, positive, negative) of random ids with lengths spread over
    [max_length / 8, max_length], EOS last, padded on the right."""
    import torch

    generator = torch.Generator().manual_seed(rows)
    columns = []
    for _ in range(3):
        shortest = max(2, max_length // 8)
        lengths = torch.randint(shortest, max_length + 1, (rows,), generator=generator)
        ids = torch.randint(5, vocab, (rows, max_length), generator=generator)
        mask = torch.arange(max_length)[None, :] < lengths[:, None]
        ids[torch.arange(rows), lengths - 1] = eos
        columns.append(
            {"input_ids": (ids * mask).to(device), "attention_mask": mask.long().to(device)}
        )
    return columns


def step(model: Any, loss: Any, features: list[dict]) -> tuple[float, int]:
    """One forward and backward; the seconds it took and the real tokens it embedded."""

    model.zero_grad(set_to_none=True)
    _synchronize()
    started = time.perf_counter()
    value = loss(features, None)
    value.backward()
    _synchronize()
    tokens = sum(int(f["attention_mask"].sum()) for f in features)
    return time.perf_counter() - started, tokens


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_memory_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure_shape(shape: Shape, folder: Path, sizes: Sizes, deadline: float) -> list[dict]:
    import torch
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from kit.embedder import build_embedder
    from training.loss import BucketedCachedInfoNCELoss
    from training.model import add_lora

    model_dir = build_model_dir(shape, folder / shape.family, sizes.dtype)
    model = build_embedder(str(model_dir), sizes.max_length, device=sizes.device)
    model[0].model.to(getattr(torch, sizes.dtype))
    add_lora(model, 16, 32, 0.0)
    model[0].model.gradient_checkpointing_enable({"use_reentrant": False})
    model.train()
    parameters = sum(p.numel() for p in model.parameters())
    vocab, eos = shape.config["vocab_size"], model.tokenizer.eos_token_id
    losses = {
        "kit GradCache (bucketed, ZeRO-safe)": BucketedCachedInfoNCELoss(
            model, scale=50.0, mini_batch_size=sizes.mini_batch
        ),
        "stock CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss(
            model, scale=50.0, mini_batch_size=sizes.mini_batch
        ),
    }
    cells = []
    for rows in shape.batches:
        features = _batch(rows, sizes.max_length, vocab, eos, sizes.device)
        for name, loss in losses.items():
            if time.monotonic() > deadline:
                cells.append({"model": shape.family, "batch": rows, "loss": name,
                              "skipped": "time budget"})  # fmt: skip
                continue
            _reset_peak()
            seconds, tokens = step(model, loss, features)
            cells.append({
                "model": shape.family, "parameters": parameters, "batch": rows, "loss": name,
                "seconds": round(seconds, 3), "tokens": tokens,
                "tokens_per_s": round(tokens / seconds, 1),
                "peak_memory_mb": _peak_memory_mb(),
                "mfu": round(6 * parameters * tokens / seconds / PEAK_BF16_FLOPS, 4),
            })  # fmt: skip
    del model, losses
    return cells


def precision_agreement(shape: Shape, folder: Path, sizes: Sizes) -> dict[str, float]:
    """Cosine of bf16 embeddings against fp32 embeddings of the same weights and inputs."""
    import torch

    from kit.embedder import build_embedder

    model_dir = build_model_dir(shape, folder / f"{shape.family}-fp32", "float32")
    model = build_embedder(str(model_dir), sizes.max_length, device=sizes.device).eval()
    features = _batch(16, sizes.max_length, shape.config["vocab_size"],
                      model.tokenizer.eos_token_id, sizes.device)[0]  # fmt: skip
    with torch.no_grad():
        full = model(dict(features))["sentence_embedding"].float()
        model.to(torch.bfloat16)
        half = model(dict(features))["sentence_embedding"].float()
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=1)
    return {
        "min_cosine": round(float(cosine.min()), 5),
        "mean_cosine": round(float(cosine.mean()), 5),
    }


def zero3_steps(shape: Shape, folder: Path, sizes: Sizes) -> dict[str, Any]:
    """A few steps of the training stage's own ``train`` under DeepSpeed ZeRO-3 on one
    process (called past the stage's entry point, which needs mteb for the release prompts:
    the device image has no mteb, and it is too large to carry)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"deepspeed does not import here ({exc})"}
    from argparse import Namespace

    from datasets import Dataset

    from kit.config import load_config
    from kit.staleness import StageRun
    from tests.toml_writer import dump_toml
    from tests.training_fixtures import phrase_rows
    from training.data import TrainingData, pairs
    from training.run import train

    model_dir = build_model_dir(shape, folder / "zero3-base", sizes.dtype)
    repo = Path(__file__).resolve().parent.parent
    path = folder / "zero3.toml"
    path.write_text(dump_toml({
        "project": {"build_dir": str(folder / "zero3-build"), "runs_dir": str(folder / "runs")},
        "training": {"base_model": str(model_dir), "max_length": 64, "batch_size": 16,
                     "mini_batch_size": 8, "max_steps": 3, "warmup_steps": 0,
                     "precision": "bf16" if sizes.device == "cuda" else "fp32",
                     "deepspeed": str(repo / "configs" / "deepspeed" / "zero3.json")},
    }), encoding="utf-8")  # fmt: skip
    config = load_config(path)
    data = TrainingData(
        train=pairs(Dataset.from_list(phrase_rows(0, 96, seed=1))),
        validation=pairs(Dataset.from_list(phrase_rows(1000, 32, 2, False))),
        source="fixture",
        revision="fixture",
    )
    stage = StageRun.open("training", config)
    started = time.perf_counter()
    train(config, Namespace(fresh=True), data, str(model_dir), {}, config.training.precision,
          16, stage, ())  # fmt: skip
    record = json.loads((folder / "zero3-build" / "model" / "training_record.json").read_text())
    return {"seconds": round(time.perf_counter() - started, 1), "steps": record.get("steps"),
            "final_loss": record.get("final_loss"),
            "accuracy_after": record.get("validation_accuracy_after")}  # fmt: skip


def run(
    out: Path, tiny: bool, zero3: bool, families: tuple[str, ...] = ("gemma3", "qwen2", "mistral")
) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.is_available()
    sizes = Sizes(
        max_length=32 if tiny else 512,
        mini_batch=4 if tiny else 64,
        device="cuda" if gpu else "cpu",
        dtype="bfloat16" if gpu else "float32",
    )
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    shapes = [shape for shape in (TINY if tiny else REAL) if shape.family in families]
    deadline = time.monotonic() + TIME_BUDGET_S
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "torch": torch.__version__, "sizes": sizes.__dict__, "cells": [],
    }  # fmt: skip
    for shape in shapes:
        report["cells"] += measure_shape(shape, work, sizes, deadline)
        _reset_peak()
    report["bf16_vs_fp32"] = precision_agreement(shapes[0], work, sizes) if gpu or tiny else {}
    report["zero3"] = zero3_steps(shapes[0], work, sizes) if zero3 else {"skipped": "not asked"}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (CPU, seconds)")
    parser.add_argument("--no-zero3", action="store_true", help="leave the DeepSpeed run out")
    parser.add_argument("--models", nargs="*", default=["gemma3", "qwen2", "mistral"])
    args = parser.parse_args()
    report = run(args.out, args.tiny, not args.no_zero3, tuple(args.models))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
