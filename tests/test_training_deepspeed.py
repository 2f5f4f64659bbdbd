"""GradCache + DeepSpeed ZeRO + LoRA + activation checkpointing on CPU (gloo): one process
in-process, and two processes through the torchrun and accelerate relaunches.

Stock CachedMultipleNegativesRankingLoss fails here ("Gradient computed twice for this
partition"), and ZeRO-3 runs elsewhere saved empty LoRA tensors; this run must train and
release exactly the adapter it trained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import write_learnable_dataset
from tests.training_helpers import run_training, training_section

REPO = Path(__file__).resolve().parent.parent


def _forget_deepspeed_process_state(environ: dict[str, str]) -> None:
    """DeepSpeed leaves process-wide state behind (singletons and ACCELERATE_* variables set
    by TrainingArguments); later in-process runs must not see it."""
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)
    unset_hf_deepspeed_config()
    os.environ.clear()
    os.environ.update(environ)


def _zero_training_section(
    tmp_path: Path, base: Path, zero: str, **overrides: object
) -> dict[str, object]:
    """Three checkpointed steps on the learnable task with the repo's ``zero`` config copied."""
    ds_config = tmp_path / f"{zero}.json"
    shutil.copy(REPO / "configs" / "deepspeed" / f"{zero}.json", ds_config)
    return training_section(
        base,
        write_learnable_dataset(tmp_path / "dataset"),
        deepspeed=str(ds_config),
        max_steps=3,
        save_steps=3,
        gradient_checkpointing=True,
        mini_batch_size=4,
        **overrides,
    )


@pytest.mark.slow
def test_zero3_gradcache_lora_checkpointing_releases_the_trained_weights(
    tiny_model_dirs, write_config, tmp_path, monkeypatch
):
    from kit.net import free_port

    launcher_env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for name, value in {**launcher_env, "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DS_BUILD_OPS", "0")
    torch.set_num_threads(1)
    base = tiny_model_dirs["gemma3"]
    section = _zero_training_section(tmp_path, base, "zero3", batch_size=8)
    environ = dict(os.environ)
    try:
        assert run_training(write_config(training=section)) == 0
    finally:
        _forget_deepspeed_process_state(environ)

    record = json.loads((tmp_path / "build" / "model" / "training_record.json").read_text())
    assert record["deepspeed"]["zero_stage"] == 3 and record["steps"] == 3
    assert record["world_size"] == 1
    assert_release_is_base_plus_adapter(tmp_path / "build", base, "checkpoint-3")


@pytest.mark.slow
@pytest.mark.parametrize(("zero", "launcher"), [("zero2", "accelerate"), ("zero3", "torchrun")])
def test_two_processes_under_a_launcher_release_the_trained_weights(
    tiny_model_dirs, write_config, tmp_path, zero, launcher
):
    """The stage relaunches itself under the launcher: two gloo workers, GradCache with
    negatives gathered across both, one release written by rank 0. Under ZeRO-3 every
    forward after training needs both workers too."""
    base = tiny_model_dirs["gemma3"]
    section = _zero_training_section(
        tmp_path, base, zero, batch_size=16, num_processes=2, launcher=launcher
    )
    config = write_config(training=section)
    launcher_vars = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher_vars}
    env.update({"OMP_NUM_THREADS": "1", "DS_BUILD_OPS": "0"})
    result = subprocess.run(
        [sys.executable, "-m", "training", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"relaunching under {launcher} on 2 processes" in result.stderr
    record = json.loads((tmp_path / "build" / "model" / "training_record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 3
    assert record["deepspeed"]["zero_stage"] == int(zero[-1])
    assert isinstance(record["validation_accuracy_after"], float)
    assert_release_is_base_plus_adapter(tmp_path / "build", base, "checkpoint-3")


def assert_release_is_base_plus_adapter(build: Path, base: Path, checkpoint: str) -> None:
    """The released weights are the base with the checkpoint's trained adapter merged in."""
    from peft import LoraConfig, get_peft_model, load_peft_weights, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModel

    released = load_file(build / "model" / "model.safetensors")
    adapter = load_peft_weights(str(build / "checkpoints" / checkpoint))
    lora_b = [value for key, value in adapter.items() if "lora_B" in key]
    assert lora_b and all(value.numel() > 0 for value in adapter.values()), "empty LoRA tensors"
    assert max(float(v.abs().max()) for v in lora_b) > 0, "LoRA B starts at zero: never trained"

    expected = get_peft_model(
        AutoModel.from_pretrained(base),
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
    )
    set_peft_model_state_dict(expected, adapter)
    expected_state = expected.merge_and_unload().state_dict()
    base_state = AutoModel.from_pretrained(base).state_dict()
    changed = 0
    for name, value in released.items():
        torch.testing.assert_close(value, expected_state[name], atol=1e-6, rtol=0)
        changed += int(not torch.equal(value, base_state[name]))
    assert changed >= 10, "the release must differ from the base in every LoRA-targeted layer"
