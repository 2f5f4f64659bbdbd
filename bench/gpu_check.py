"""The recipe at real sizes on one GPU: ``python -m bench.gpu_check --out DIR [--tiny]``.

Phases, each in its own ``try`` and each measurement written to ``DIR/gpu_check.json`` as
soon as it is taken, so a failure or a timeout keeps everything measured before it:

- ``environment``: the versions that imported (the carried wheels) and the device.
- ``zero2`` and ``zero3``: a few steps of the training stage itself (``training.run.train``,
  past the entry point, which needs mteb for the release prompts: the device image has no
  mteb) under DeepSpeed ZeRO-2 and ZeRO-3 on one process, each in a child process so one
  DeepSpeed run leaves nothing behind for the next; seconds per step and tokens/s.
- ``bf16_vs_fp32``: bf16 embeddings against fp32 embeddings of the same weights.
- ``loss_steps``: random-weight decoders with the shapes of Gemma 3 270M, Qwen2.5-0.5B and
  Mistral-7B (no weights travel), wrapped by the kit's recipe, LoRA r=16 on all linear
  layers, activation checkpointing, SDPA attention, bf16; for each model and batch size one
  training step of the kit's GradCache loss and of stock
  ``CachedMultipleNegativesRankingLoss`` at max length 512: tokens/s, peak GPU memory, MFU
  (6 x parameters x tokens/s over the GPU's dense bf16 peak), and beside each the training
  plan's FLOPs and memory for that step (``training.plan``), which checks the plan.
- ``evaluation``: the model card's own evaluation of a trained model and its base on the
  device, precision and batch size it picks (``bench/gpu_check_eval.py``); it needs mteb,
  which the carried wheels do not hold yet, and says so when it does not import.

``--tiny`` runs the same code at toy sizes on CPU (a test does), so the script cannot rot
while no GPU is at hand. Another phase drops in as one more entry of ``PHASES``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Dense bf16 peak of an H100/H200 SXM, by the vendor's datasheet.
PEAK_BF16_FLOPS = 989e12
# The device call's limit is 8 minutes; the wheels install first, and the last phase that
# starts must have time to finish.
TIME_BUDGET_S = 360.0
RESULTS_FILE = "gpu_check.json"
LIBRARIES = ("torch", "transformers", "sentence_transformers", "peft", "datasets", "accelerate",
             "deepspeed", "safetensors", "tokenizers", "huggingface_hub", "pyarrow")  # fmt: skip


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
          (256, 1024)),
    Shape("mistral", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                      "vocab_size": 32000, "sliding_window": None}, (256,)),
)  # fmt: skip
TINY_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
              "vocab_size": 400}  # fmt: skip
TINY = tuple(Shape(s.family, {**s.config, **TINY_SIZES}, (8, 16)) for s in REAL)


@dataclass(frozen=True)
class Sizes:
    tiny: bool
    max_length: int
    mini_batch: int
    device: str
    dtype: str

    @classmethod
    def for_run(cls, tiny: bool) -> Sizes:
        import torch

        gpu = torch.cuda.is_available()
        return cls(
            tiny=tiny,
            max_length=32 if tiny else 512,
            mini_batch=4 if tiny else 64,
            device="cuda" if gpu else "cpu",
            dtype="bfloat16" if gpu else "float32",
        )

    @property
    def shapes(self) -> tuple[Shape, ...]:
        return TINY if self.tiny else REAL


class Results:
    """The results file, rewritten whole after every measurement (a rename, never torn)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.report: dict[str, Any] = {**header, "phases": {}}
        self.write()

    def write(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    def phase(self, name: str) -> dict[str, Any]:
        entry = self.report["phases"].setdefault(name, {"status": "running", "results": []})
        self.write()
        return entry

    def add(self, name: str, result: Any) -> None:
        self.report["phases"][name]["results"].append(result)
        self.write()


@dataclass(frozen=True)
class Context:
    """What every phase gets: the sizes, a scratch folder, and when the budget ends."""

    sizes: Sizes
    work: Path
    deadline: float

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline


Phase = Callable[[Context, Callable[[Any], None]], None]


# ---- models -----------------------------------------------------------------------------


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


def _embedder_of_shape(shape: Shape, folder: Path, sizes: Sizes) -> Any:
    """The kit's embedder around a random decoder of ``shape`` built on the device (no disk):
    the recipe's modules and tokenizer come from a toy decoder of the same family."""
    import torch
    from transformers import AutoModel

    from kit.embedder import build_embedder

    toy = next(s for s in TINY if s.family == shape.family)
    model = build_embedder(str(build_model_dir(toy, folder / f"{shape.family}-toy", "float32")),
                           sizes.max_length, device=sizes.device)  # fmt: skip
    config = _config(shape)
    config.eos_token_id = model.tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(sizes.device):
        model[0].model = AutoModel.from_config(config, dtype=getattr(torch, sizes.dtype))
    return model


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


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_memory_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


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


# ---- phases -----------------------------------------------------------------------------


def environment(run: Context, add: Callable[[Any], None]) -> None:
    import importlib

    import torch

    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
            add({"library": name, "version": getattr(module, "__version__", "?")})
        except Exception as exc:  # noqa: BLE001 - a library that fails to import is a finding
            add({"library": name, "error": f"{type(exc).__name__}: {exc}"})
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        add({"device": properties.name, "memory_gb": round(properties.total_memory / 1e9, 1),
             "bf16": torch.cuda.is_bf16_supported()})  # fmt: skip


def loss_steps(run: Context, add: Callable[[Any], None]) -> None:
    """Kit GradCache against stock GradCache, per model and batch, with the plan beside."""
    for shape in run.sizes.shapes:
        if run.out_of_time():
            add({"model": shape.family, "skipped": "time budget"})
            continue
        _loss_cells(shape, run, add)
        _reset_peak()


def _loss_cells(shape: Shape, run: Context, add: Callable[[Any], None]) -> None:
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from training.adapter import add_lora
    from training.loss import BucketedCachedInfoNCELoss
    from training.plan import model_shape

    sizes = run.sizes
    model = _embedder_of_shape(shape, run.work, sizes)
    add_lora(model, 16, 32, 0.0)
    model[0].model.gradient_checkpointing_enable({"use_reentrant": False})
    model.train()
    parameters = sum(p.numel() for p in model.parameters())
    planned = model_shape(model[0].model.get_base_model().config, 16)
    vocab, eos = shape.config["vocab_size"], model.tokenizer.eos_token_id
    losses = {
        "kit GradCache (bucketed, ZeRO-safe)": BucketedCachedInfoNCELoss(
            model, scale=50.0, mini_batch_size=sizes.mini_batch
        ),
        "stock CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss(
            model, scale=50.0, mini_batch_size=sizes.mini_batch
        ),
    }
    for rows in shape.batches:
        features = _batch(rows, sizes.max_length, vocab, eos, sizes.device)
        for name, loss in losses.items():
            cell: dict[str, Any] = {"model": shape.family, "batch": rows, "loss": name}
            if run.out_of_time():
                add({**cell, "skipped": "time budget"})
                continue
            _reset_peak()
            seconds, tokens = step(model, loss, features)
            plan = _plan_of_step(planned, sizes, rows, tokens)
            add({
                **cell, "parameters": parameters, "seconds": round(seconds, 3), "tokens": tokens,
                "tokens_per_s": round(tokens / seconds, 1),
                "peak_memory_gb": _peak_memory_gb(),
                "mfu": round(6 * parameters * tokens / seconds / PEAK_BF16_FLOPS, 4),
                "plan_flops": plan["flops"],
                "plan_utilization": round(plan["flops"] / seconds / PEAK_BF16_FLOPS, 4),
                "plan_memory_gb": plan["memory_gb"],
            })  # fmt: skip
    del model, losses


def _plan_of_step(planned: Any, sizes: Sizes, rows: int, tokens: int) -> dict[str, float]:
    """The training plan's FLOPs and memory for this one-GPU step (weights cast to the
    precision, as DeepSpeed holds them)."""
    from training.plan import Setting, memory_per_rank, step_flops_per_rank

    setting = Setting(
        gpus=1, batch_size=rows, mini_batch_size=sizes.mini_batch, max_length=sizes.max_length,
        mean_tokens=max(1, round(tokens / (3 * rows))), texts_per_row=3,
        precision="bf16" if sizes.dtype == "bfloat16" else "fp32", deepspeed=True,
        zero_stage=0, checkpointing=True, lora_r=16, lora_dropout=0.0,
    )  # fmt: skip
    memory = memory_per_rank(planned, setting)
    return {
        "flops": step_flops_per_rank(planned, setting),
        "memory_gb": round(sum(memory.values()) / 1e9, 2),
    }


def bf16_vs_fp32(run: Context, add: Callable[[Any], None]) -> None:
    """Cosine of bf16 embeddings against fp32 embeddings of the same weights and inputs."""
    import torch

    from kit.embedder import build_embedder

    sizes = run.sizes
    shape = sizes.shapes[0]
    model_dir = build_model_dir(shape, run.work / f"{shape.family}-fp32", "float32")
    model = build_embedder(str(model_dir), sizes.max_length, device=sizes.device).eval()
    features = _batch(16, sizes.max_length, shape.config["vocab_size"],
                      model.tokenizer.eos_token_id, sizes.device)[0]  # fmt: skip
    with torch.no_grad():
        full = model(dict(features))["sentence_embedding"].float()
        model.to(torch.bfloat16)
        half = model(dict(features))["sentence_embedding"].float()
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=1)
    add({"model": shape.family, "min_cosine": round(float(cosine.min()), 5),
         "mean_cosine": round(float(cosine.mean()), 5)})  # fmt: skip


def _zero_phase(stage: int) -> Phase:
    def phase(run: Context, add: Callable[[Any], None]) -> None:
        """The child process's result, or its failure with the end of its output."""
        out = run.work / f"zero{stage}"
        command = [sys.executable, "-m", "bench.gpu_check", "--out", str(out),
                   "--zero-child", str(stage), *(["--tiny"] if run.sizes.tiny else [])]  # fmt: skip
        budget = max(30.0, run.deadline + 60 - time.monotonic())
        repo = Path(__file__).resolve().parent.parent
        result = subprocess.run(command, capture_output=True, text=True, timeout=budget,
                                check=False, cwd=repo)  # fmt: skip
        found = out / RESULTS_FILE
        if result.returncode or not found.is_file():
            raise RuntimeError(f"exit {result.returncode}: {result.stderr[-3000:]}")
        add(json.loads(found.read_text(encoding="utf-8")))

    return phase


def zero_steps(stage: int, sizes: Sizes, out: Path) -> dict[str, Any]:
    """A few steps of the training stage under ZeRO-``stage`` on one process (the child)."""
    from kit.config import load_config
    from kit.staleness import StageRun
    from tests.toml_writer import dump_toml
    from tests.training_fixtures import write_dataset
    from training.arguments import check_settings
    from training.run import DATA_FOLDER, train

    shape = next(s for s in sizes.shapes if s.family == ("gemma3" if sizes.tiny else "qwen2"))
    model_dir = build_model_dir(shape, out / "base", sizes.dtype)
    words = 8 if sizes.tiny else 160
    batch, steps = (16, 2) if sizes.tiny else (64, 4)
    train_rows, validation_rows = _long_rows(0, batch * steps, words), _long_rows(1, 16, words)
    dataset = write_dataset(out / "dataset", train_rows, validation_rows)
    repo = Path(__file__).resolve().parent.parent
    path = out / "zero.toml"
    path.write_text(dump_toml({
        "project": {"build_dir": str(out / "build"), "runs_dir": str(out / "runs")},
        "training": {"base_model": str(model_dir), "dataset": str(dataset),
                     "max_length": sizes.max_length, "batch_size": batch,
                     "mini_batch_size": batch // 4, "max_steps": steps, "save_steps": steps,
                     "warmup_steps": 0, "validation_pairs": 8, "gguf": [],
                     "precision": "bf16" if sizes.device == "cuda" else "fp32",
                     "deepspeed": str(repo / "configs" / "deepspeed" / f"zero{stage}.json")},
    }), encoding="utf-8")  # fmt: skip
    config = load_config(path)
    settings = check_settings(config, {})
    started = time.perf_counter()
    train(config, settings, StageRun.open("training", config), fresh=True)
    record = json.loads((out / "build" / "model" / "training_record.json").read_text())
    groups = config.layout.checkpoint_dir / DATA_FOLDER
    tokens = _trained_tokens(groups, model_dir, config.training.max_length)
    return {"zero_stage": stage, "model": shape.family, "batch": batch, "steps": record["steps"],
            "stage_seconds": round(time.perf_counter() - started, 1),
            "train_seconds": record["train_runtime_s"],
            "seconds_per_step": round(record["train_runtime_s"] / record["steps"], 3),
            "tokens_per_s": round(tokens / record["train_runtime_s"], 1),
            "peak_memory_gb": _peak_memory_gb(), "final_loss": record["final_loss"],
            "checkpoint_mb": _folder_mb(out / "build" / "checkpoints", "checkpoint-*")}  # fmt: skip


def _long_rows(seed: int, count: int, words: int) -> list[dict]:
    """Rows in the unified layout whose texts run to about ``words`` words."""
    import random

    from tests.tiny_models import WORDS
    from tests.training_fixtures import unified_row

    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    return [unified_row(seed * 10_000 + i, text(max(3, words // 8)), text(words), text(words))
            for i in range(count)]  # fmt: skip


def _trained_tokens(groups: Path, model_dir: Path, max_length: int) -> int:
    """Tokens of every training text (one epoch), as the recipe tokenizes them (EOS
    appended, BOS kept where the base adds it)."""
    from transformers import AutoTokenizer

    from kit.embedder import tokenizer_adds_bos
    from training.data import read_groups

    data = read_groups(groups)
    if data is None:
        raise RuntimeError(f"no training groups at {groups}")
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, add_eos_token=True, add_bos_token=tokenizer_adds_bos(str(model_dir))
    )
    texts = [text for group in data.train.values() for column in group.column_names
             for text in group[column]]  # fmt: skip
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return sum(len(row) for row in ids)


def _folder_mb(folder: Path, pattern: str) -> float:
    files = [p for d in folder.glob(pattern) for p in d.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2)


def evaluation(run: Context, add: Callable[[Any], None]) -> None:
    """The model card's evaluation on the device (``bench/gpu_check_eval.py``)."""
    from bench.gpu_check_eval import evaluation_phase

    add(evaluation_phase(run.work / "evaluation", run.sizes.tiny))


PHASES: dict[str, Phase] = {
    "environment": environment,
    "zero2": _zero_phase(2),
    "zero3": _zero_phase(3),
    "bf16_vs_fp32": bf16_vs_fp32,
    "loss_steps": loss_steps,
    "evaluation": evaluation,
}


def run(out: Path, tiny: bool, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every phase (or those in ``only``), in order, each in its own ``try``."""
    import torch

    sizes = Sizes.for_run(tiny)
    context = Context(sizes, out / "work", time.monotonic() + TIME_BUDGET_S)
    context.work.mkdir(parents=True, exist_ok=True)
    results = Results(out / RESULTS_FILE, {
        "device": torch.cuda.get_device_name(0) if sizes.device == "cuda" else "cpu",
        "torch": torch.__version__, "sizes": asdict(sizes), "time_budget_s": TIME_BUDGET_S,
    })  # fmt: skip
    for name, phase in PHASES.items():
        if only and name not in only:
            continue
        entry = results.phase(name)
        if context.out_of_time():
            entry.update(status="skipped", reason="time budget")
            results.write()
            continue
        started = time.perf_counter()
        try:
            phase(context, lambda result, name=name: results.add(name, result))
            entry["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - one phase's failure must keep the others
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000],
                         traceback=traceback.format_exc()[-4000:])  # fmt: skip
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results.write()
        _reset_peak()
    return results.report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (CPU, seconds)")
    parser.add_argument("--only", nargs="*", default=[], choices=list(PHASES))
    parser.add_argument("--zero-child", type=int, choices=(2, 3), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.zero_child:
        result = zero_steps(args.zero_child, Sizes.for_run(args.tiny), args.out)
        (args.out / RESULTS_FILE).write_text(json.dumps(result, indent=2) + "\n")
        return
    report = run(args.out, args.tiny, tuple(args.only))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
