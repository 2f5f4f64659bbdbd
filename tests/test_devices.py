"""Device, precision and batch choice, tested on CPU with torch's device probes patched."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import StageError
from kit.config import EvaluationSection
from kit.devices import (
    CPU_BATCH,
    choose_device,
    encode_kwargs,
    fit_batch,
    model_config,
    plan_encoding,
)

GIB = 1 << 30


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend CUDA has ``count`` GPUs with ``free`` bytes each (bf16 unless told)."""
    import torch

    def make(count: int, free: int = 100 * GIB, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (free, 2 * free))

    return make


def _mistral_config() -> object:
    from transformers import MistralConfig

    return MistralConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32)


def _bert_config() -> object:
    from transformers import BertConfig

    return BertConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16)


def test_without_cuda_everything_stays_on_the_cpu_in_fp32(gpus) -> None:
    gpus(0)
    device = choose_device()
    assert (device.device, device.pool_devices) == ("cpu", ())
    plan = fit_batch(plan_encoding(device, "auto", 0, _mistral_config()), _mistral_config(), 512)
    assert (plan.device, plan.dtype, plan.batch_size) == ("cpu", "float32", CPU_BATCH)
    assert plan.describe() == (
        "cpu, float32, batch 32 (device auto: no CUDA device, so cpu; fp32 on cpu; "
        "batch 32 off a GPU)"
    )


def test_one_gpu_runs_a_decoder_in_bf16_with_a_batch_fitted_to_its_memory(gpus) -> None:
    gpus(1, free=100 * GIB)
    device = choose_device()
    assert (device.device, device.pool_devices) == ("cuda:0", ())
    plan = fit_batch(plan_encoding(device, "auto", 0, _mistral_config()), _mistral_config(), 512)
    assert plan.dtype == "bfloat16"
    # 2 bytes x 512 tokens x (2 x 14336 + 4 x 4096 + 32 heads x 512) = 63 MB a sequence:
    # half of 100 GiB holds 812 of them, so the largest power of two below is 512.
    assert plan.batch_size == 512
    assert "bf16 for a decoder on a GPU" in plan.reason
    assert encode_kwargs(plan) == {"batch_size": 512}


def test_an_encoder_stays_fp32_and_a_gpu_without_bf16_gets_fp16(gpus) -> None:
    gpus(1)
    assert plan_encoding(choose_device(), "auto", 0, _bert_config()).dtype == "float32"
    gpus(1, bf16=False)
    plan = plan_encoding(choose_device(), "auto", 0, _mistral_config())
    assert plan.dtype == "float16" and "without bf16" in plan.reason


def test_several_gpus_each_encode_in_a_process_of_their_own(gpus) -> None:
    gpus(4)
    device = choose_device()
    assert device.pool_devices == ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
    assert device.reason == "auto: 4 GPUs, one encoding process each"
    plan = plan_encoding(device, "auto", 64, _mistral_config())
    pool = {"processes": []}
    assert encode_kwargs(plan, pool) == {"batch_size": 64, "pool": pool}


def test_configured_settings_win_and_a_missing_gpu_is_one_line(gpus) -> None:
    gpus(2)
    device = choose_device("cuda:0,cuda:1")
    assert (device.device, device.pool_devices, device.reason) == (
        "cuda:0", ("cuda:0", "cuda:1"), "configured"
    )
    plan = fit_batch(plan_encoding(device, "fp32", 16, _mistral_config()), _mistral_config(), 512)
    assert (plan.dtype, plan.batch_size) == ("float32", 16)
    with pytest.raises(StageError, match=r"^evaluation.device: cuda:3 is not available here "
                                         r"\(2 CUDA devices\)$"):  # fmt: skip
        choose_device("cuda:3")
    gpus(0)
    with pytest.raises(StageError, match=r"^evaluation.device: cuda is not available here"):
        choose_device("cuda")


def test_the_evaluation_loads_each_model_as_planned(
    tiny_st_model_dir: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    """The plan is applied, not only written: bf16 asked on the CPU loads bf16 weights,
    for the trained model as users load it and for the base wrapped by the recipe."""
    import torch

    from model_card.encoders import build_base, load_trained

    settings = EvaluationSection(device="cpu", precision="bf16", batch_size=4)
    assert model_config(str(tiny_st_model_dir)).model_type == "gemma3_text"
    trained = load_trained(tiny_st_model_dir, "acme/tiny", settings)
    base = build_base(str(tiny_model_dirs["gemma3"]), 32, settings)
    for embedder in (trained, base):
        assert {p.dtype for p in embedder.model.parameters()} == {torch.bfloat16}
        assert embedder.plan.describe() == (
            "cpu, bfloat16, batch 4 (device configured; configured; batch configured)"
        )
        assert embedder.model.encode(["a query"]).shape == (1, 32)
    assert trained.revision == trained.digest and trained.revision_source == "content digest"
