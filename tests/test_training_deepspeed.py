"""GradCache + DeepSpeed ZeRO + LoRA + activation checkpointing on CPU (gloo): one process,
two processes through the torchrun and accelerate relaunches, and two "nodes"
of one process each under an outside torchrun with a rendezvous on loopback.

Stock CachedMultipleNegativesRankingLoss fails here ("Gradient computed twice for this
partition"), and ZeRO-3 runs elsewhere saved empty LoRA tensors; these runs must train and
release exactly the adapter they trained, keep checkpoints the size of that adapter and its
optimizer state, and resume to the same weights.
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
from tests.training_helpers import training_section

REPO = Path(__file__).resolve().parent.parent
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _zero_training_section(
    tmp_path: Path, base: Path, zero: str, **overrides: object
) -> dict[str, object]:
    """Checkpointed steps on the learnable task with the repo's ``zero`` config copied."""
    ds_config = tmp_path / f"{zero}.json"
    shutil.copy(REPO / "configs" / "deepspeed" / f"{zero}.json", ds_config)
    settings = {"max_steps": 3, "save_steps": 3, **overrides}
    return training_section(
        base,
        write_learnable_dataset(tmp_path / "dataset"),
        deepspeed=str(ds_config),
        gradient_checkpointing=True,
        mini_batch_size=4,
        **settings,
    )


def _stage(config: Path) -> None:
    """One run of ``python -m training`` (one DeepSpeed process: each run in a process of its
    own, since DeepSpeed keeps its process groups for the life of a process)."""
    result = _run([sys.executable, "-m", "training", "--config", str(config)], _stage_env())
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def wide_base(tmp_path_factory) -> Path:
    """A decoder whose frozen weights outweigh an r=2 adapter about 30 times."""
    from tests.tiny_models import build_tiny_decoder

    return build_tiny_decoder("qwen2", tmp_path_factory.mktemp("wide") / "qwen2", hidden_size=96)


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_zero_checkpoints_hold_the_adapter_and_resume_to_the_same_weights(
    wide_base, write_config, tmp_path, zero
):
    """A checkpoint holds the adapter, its optimizer state and the trainer state: no frozen
    weight, and no more bytes than the adapter and its optimizer state need. A run killed
    after checkpoint-2 resumes from it and releases what the uninterrupted run released."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from training.plan import model_shape

    section = _zero_training_section(tmp_path, wide_base, zero, max_steps=4, save_steps=2,
                                     lora_r=2, lora_alpha=4)  # fmt: skip
    config = write_config(training=section)
    _stage(config)
    build = tmp_path / "build"
    record = json.loads((build / "model" / "training_record.json").read_text())
    assert record["deepspeed"]["zero_stage"] == int(zero[-1]) and record["steps"] == 4
    assert record["checks"]["repeated_texts_in_gathered_steps"] == 0
    assert_release_is_base_plus_adapter(build, wide_base, "checkpoint-4", lora_r=2)

    checkpoint = build / "checkpoints" / "checkpoint-2"
    shape = model_shape(AutoConfig.from_pretrained(wide_base), lora_r=2)
    (states,) = checkpoint.glob("global_step2/*model_states.pt")
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]
    assert module and all("lora_" in name for name in module), "a frozen weight was saved"
    size = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
    adapter = 4 * shape.lora_parameters  # fp32
    # The adapter file, the engine's copy of the adapter, fp32 master and Adam's two moments,
    # plus files of fixed size (trainer state, RNG state, DeepSpeed's recovery scripts).
    assert size <= adapter * (1 + 1 + 3) + 128 * 2**10, size
    assert size < 4 * shape.parameters / 3, "a third of the frozen base's bytes"

    uninterrupted = load_file(build / "model" / "model.safetensors")
    shutil.rmtree(build / "checkpoints" / "checkpoint-4")
    shutil.rmtree(build / "model")
    _stage(config)
    record = json.loads((build / "model" / "training_record.json").read_text())
    assert record["resumed_from"] == "checkpoint-2" and record["steps"] == 4
    resumed = load_file(build / "model" / "model.safetensors")
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, atol=1e-5, rtol=0)


def _stage_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update({"OMP_NUM_THREADS": "1", "DS_BUILD_OPS": "0"})
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def two_process_runs(tiny_model_dirs, tmp_path_factory) -> dict[str, Path]:
    """The stage relaunching itself under each launcher: two gloo workers on one node."""
    from tests.toml_writer import dump_toml

    runs = {}
    for zero, launcher in (("zero2", "accelerate"), ("zero3", "torchrun")):
        root = tmp_path_factory.mktemp(f"{zero}-{launcher}")
        # Validation every 2 steps: under ZeRO-3 it embeds between training steps.
        section = _zero_training_section(
            root, tiny_model_dirs["gemma3"], zero, batch_size=16, num_processes=2,
            launcher=launcher, eval_steps=2,
        )  # fmt: skip
        config = root / "config.toml"
        project = {"runs_dir": str(root / "runs"), "build_dir": str(root / "build")}
        config.write_text(dump_toml({"project": project, "training": section}), encoding="utf-8")
        result = _run([sys.executable, "-m", "training", "--config", str(config)], _stage_env())
        assert result.returncode == 0, result.stderr[-4000:]
        assert f"relaunching under {launcher} on 2 processes" in result.stderr
        runs[zero] = root
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_two_processes_under_a_launcher_release_the_trained_weights(
    two_process_runs, tiny_model_dirs, zero
):
    """Two gloo workers, GradCache with negatives gathered across both, one release written
    by rank 0. Under ZeRO-3 every forward after training needs both workers too."""
    build = two_process_runs[zero] / "build"
    record = json.loads((build / "model" / "training_record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 3
    assert record["deepspeed"]["zero_stage"] == int(zero[-1])
    assert isinstance(record["validation_accuracy_after"], float)
    assert [step for step, _ in record["validation_accuracy_curve"]] == [2]
    assert record["checks"]["repeated_texts_in_gathered_steps"] == 0
    assert_release_is_base_plus_adapter(build, tiny_model_dirs["gemma3"], "checkpoint-3")


@pytest.mark.slow
def test_two_nodes_under_an_outside_torchrun_equal_one_node_of_the_same_batch(
    two_process_runs, tiny_model_dirs, tmp_path
):
    """``torchrun --nnodes=2 --node_rank=0/1 --rdzv-endpoint=127.0.0.1:PORT`` on this machine,
    one process per "node", gloo: the same global batch as the one-node run with two
    processes, so the same steps and the same release; no text twice in a gathered step."""
    from safetensors.torch import load_file

    from kit.net import free_port
    from tests.toml_writer import dump_toml

    section = _zero_training_section(
        tmp_path, tiny_model_dirs["gemma3"], "zero3", batch_size=16, num_processes=1, nnodes=2,
        eval_steps=2,
    )  # fmt: skip
    config = tmp_path / "config.toml"
    project = {"runs_dir": str(tmp_path / "runs"), "build_dir": str(tmp_path / "build")}
    config.write_text(dump_toml({"project": project, "training": section}), encoding="utf-8")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
             "--nproc_per_node=1", f"--rdzv-endpoint={endpoint}", "-m", "training",
             "--config", str(config)],
            cwd=REPO, env=_stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=900) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-4000:]
    build = tmp_path / "build"
    record = json.loads((build / "model" / "training_record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 3
    assert record["checks"]["repeated_texts_in_gathered_steps"] == 0
    one_node = two_process_runs["zero3"] / "build"
    single = json.loads((one_node / "model" / "training_record.json").read_text())
    assert record["loss_curve"] == single["loss_curve"]
    released = load_file(build / "model" / "model.safetensors")
    for name, value in load_file(one_node / "model" / "model.safetensors").items():
        torch.testing.assert_close(released[name], value, atol=1e-6, rtol=0)


def assert_release_is_base_plus_adapter(
    build: Path, base: Path, checkpoint: str, lora_r: int = 16
) -> None:
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
        LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear"),
    )
    set_peft_model_state_dict(expected, adapter)
    expected_state = expected.merge_and_unload().state_dict()
    base_state = AutoModel.from_pretrained(base).state_dict()
    changed = 0
    for name, value in released.items():
        torch.testing.assert_close(value, expected_state[name], atol=1e-6, rtol=0)
        changed += int(not torch.equal(value, base_state[name]))
    assert changed >= 10, "the release must differ from the base in every LoRA-targeted layer"
