"""The training plan against what tiny CPU runs really do: the adapter the model trains, the
tensors a layer keeps for backward, and the FLOPs of a GradCache step; and the plan of the
paper configuration."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest
import torch

from tests.toml_writer import dump_toml
from training.plan import (
    Setting,
    activation_values_per_token_layer,
    linear_flops_per_token,
    memory_per_rank,
    model_shape,
    plan_text,
    zero_stage_for,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", ["gemma3", "qwen2", "mistral"])
def test_the_plan_counts_the_parameters_the_model_trains(tiny_model_dirs, family):
    from transformers import AutoConfig

    from kit.embedder import build_embedder
    from training.adapter import add_lora

    base = tiny_model_dirs[family]
    shape = model_shape(AutoConfig.from_pretrained(base), lora_r=16)
    model = build_embedder(str(base), 32)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    add_lora(model, 16, 32, 0.0)
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    assert shape.lora_parameters == sum(p.numel() for p in lora if p.requires_grad)
    assert shape.largest_lora_tensor == max(p.numel() for p in lora)


def _saved_values_per_token(config, layers: int, dropout: float, tokens: int) -> float:
    """Values a LoRA'd decoder of ``layers`` layers keeps for backward per token, parameters
    left out, counted by autograd's own saved-tensor hooks (fp32: 4 bytes a value)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    config.num_hidden_layers = layers
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModel.from_config(config),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"),
    ).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(5, config.vocab_size, (4, tokens // 4))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return sum(saved.values()) / 4 / tokens


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize(("hidden", "intermediate"), [(64, 256), (128, 384)])
def test_activations_per_layer_match_what_a_layer_saves(hidden, intermediate, dropout):
    """One layer's share (two layers minus one), within 10% of the plan's formula."""
    from transformers import MistralConfig

    def config() -> MistralConfig:
        return MistralConfig(hidden_size=hidden, intermediate_size=intermediate,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                             vocab_size=100, attn_implementation="sdpa")  # fmt: skip

    tokens = 128
    one_layer = _saved_values_per_token(config(), 2, dropout, tokens) - _saved_values_per_token(
        config(), 1, dropout, tokens
    )
    shape = model_shape(config(), lora_r=4)
    planned = activation_values_per_token_layer(shape, 4, dropout)
    assert planned == pytest.approx(one_layer, rel=0.10)


def test_linear_flops_match_a_counted_gradcache_step(tmp_path):
    """One step of the kit's GradCache loss (several mini-batches, activation checkpointing)
    on rows with no padding: the products of the linear layers that torch's FLOP counter
    sees are the plan's count, within 2% (the plan also counts input gradients of the first
    layer's projections, which read the frozen embeddings and need none)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig

    from kit.embedder import build_embedder
    from tests.tiny_models import build_tiny_decoder
    from training.adapter import add_lora
    from training.loss import BucketedCachedInfoNCELoss

    base = build_tiny_decoder("mistral", tmp_path / "deep", num_layers=8)
    model = build_embedder(str(base), 64)
    add_lora(model, 16, 32, 0.0)
    model[0].model.activation_checkpointing_enable({"use_reentrant": False})
    model.train()
    rows, length = 8, 16
    generator = torch.Generator().manual_seed(0)
    features = [
        {"input_ids": torch.randint(5, 300, (rows, length), generator=generator),
         "attention_mask": torch.ones(rows, length, dtype=torch.long)}
        for _ in range(3)
    ]  # fmt: skip
    loss = BucketedCachedInfoNCELoss(model, scale=50.0, mini_batch_size=2)
    with FlopCounterMode(display=False) as counter:
        loss(features, None).backward()
    counts = counter.get_flop_counts()["Global"]
    linear = sum(count for op, count in counts.items() if str(op).split(".")[1] in ("mm", "addmm"))
    shape = model_shape(AutoConfig.from_pretrained(base), lora_r=16)
    setting = Setting(gpus=1, batch_size=rows, mini_batch_size=2, max_length=length,
                      mean_tokens=length, texts_per_row=3, precision="fp32", deepspeed=False,
                      zero_stage=0, checkpointing=True, lora_r=16, lora_dropout=0.0)  # fmt: skip
    assert setting.passes == 4
    planned = linear_flops_per_token(shape, setting.passes) * rows * 3 * length
    assert linear == pytest.approx(planned, rel=0.02)


def _mistral_7b(folder: Path) -> Path:
    """Mistral-7B's shape (transformers' MistralConfig defaults are that model's)."""
    from transformers import MistralConfig

    MistralConfig().save_pretrained(folder)
    return folder


def test_the_paper_plan_on_8_and_16_h100(tmp_path, capsys):
    from kit.cli import run_command
    from training.__main__ import add_arguments
    from training.plan import main

    base = _mistral_7b(tmp_path / "mistral-7b")
    # The paper config with its folders in tmp_path: a dataset this checkout built (say by
    # `make release`) must not stand in for the paper's 500k rows.
    sections = tomllib.loads((REPO / "configs" / "e5-mistral.toml").read_text(encoding="utf-8"))
    sections["project"] = {"runs_dir": str(tmp_path / "runs"), "build_dir": str(tmp_path / "b")}
    config = tmp_path / "e5-mistral.toml"
    config.write_text(dump_toml(sections), encoding="utf-8")
    outputs = {}
    for gpus in (8, 16):
        argv = ["--config", str(config), "--plan", "--gpu", "H100",
                "--gpus", str(gpus), "--base-config", str(base)]  # fmt: skip
        assert run_command("training", main, argv, add_arguments) == 0
        outputs[gpus] = capsys.readouterr().out
    for gpus, text in outputs.items():
        assert f"on {gpus} x H100 (80 GB, 989 TFLOP/s bf16 dense)" in text
        assert "7.11B parameters" in text and "LoRA r=16 on all linear layers: 41.9M" in text
        assert "auto: ZeRO-2: the base (14.2 GB)" in text
        assert "tokens/step    3,145,728" in text
        assert "= 245 steps" in text and "a checkpoint every 25 steps" in text
    assert "256 rows per rank" in outputs[8] and "128 rows per rank" in outputs[16]


def test_zero3_is_picked_when_a_rank_cannot_hold_the_base(tmp_path):
    from transformers import MistralConfig

    big = MistralConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8)  # fmt: skip
    shape = model_shape(big, lora_r=16)
    setting = Setting(gpus=8, batch_size=2048, mini_batch_size=32, max_length=512,
                      mean_tokens=512, texts_per_row=3, precision="bf16", deepspeed=True,
                      zero_stage=2, checkpointing=True, lora_r=16, lora_dropout=0.1)  # fmt: skip
    stage, reason = zero_stage_for(shape, setting, gpu_memory=80e9)
    assert stage == 3 and reason.startswith("ZeRO-3: a rank under ZeRO-2 would need")
    three = memory_per_rank(shape, Setting(**{**setting.__dict__, "zero_stage": 3}))
    assert three["base weights"] < memory_per_rank(shape, setting)["base weights"] / 4


def test_the_plan_refuses_an_unknown_gpu_and_a_base_it_cannot_read(tmp_path, write_config):
    from kit.cli import StageError
    from kit.config import load_config

    config = load_config(write_config(training={"base_model": "someone/not-cached"}))
    args = argparse.Namespace(gpu="X9", gpus=1, mfu=0.4, rows=0, mean_tokens=0, negatives=1,
                              base_config="")  # fmt: skip
    with pytest.raises(StageError, match="--gpu X9: unknown; pick one of A100-40GB, A100, "):
        plan_text(config, args)
    args.gpu = "H100"
    with pytest.raises(StageError, match="found none for 'someone/not-cached'"):
        plan_text(config, args)
