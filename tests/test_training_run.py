"""The training stage end to end on a tiny decoder: learning, export, resume, bad inputs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from kit.embedder import build_embedder
from kit.instructions import release_prompts
from tests.training_fixtures import write_learnable_dataset
from tests.training_helpers import run_training, training_section

RECORD_FIELDS = {
    "base_model",
    "dataset",
    "dataset_revision",
    "hyperparameters",
    "seed",
    "steps",
    "train_runtime_s",
    "final_loss",
    "kit_version",
    "finished_at",
    "max_length",
    "precision",
    "deepspeed",
    "world_size",
}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def trained(tiny_model_dirs, tmp_path_factory) -> dict[str, Path]:
    """One short real run of ``python -m training`` on the learnable task (about 20 s)."""
    from tests.toml_writer import dump_toml

    root = tmp_path_factory.mktemp("trained")
    dataset = write_learnable_dataset(root / "dataset")
    config = root / "config.toml"
    config.write_text(
        dump_toml(
            {
                "project": {"build_dir": str(root / "build"), "runs_dir": str(root / "runs")},
                "training": training_section(tiny_model_dirs["gemma3"], dataset, eval_steps=6),
            }
        ),
        encoding="utf-8",
    )
    assert run_training(config) == 0
    return {"root": root, "config": config, "model": root / "build" / "model"}


def test_training_raises_validation_retrieval_accuracy(trained):
    record = json.loads((trained["model"] / "training_record.json").read_text())
    assert record["validation_accuracy_after"] >= record["validation_accuracy_before"] + 0.3


def test_release_folder_is_a_plain_sentence_transformer(trained, tiny_model_dirs):
    from sentence_transformers import SentenceTransformer

    folder = trained["model"]
    assert (folder / "model.safetensors").is_file()
    assert not (folder / "adapter_config.json").exists()
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
        "Transformer",
        "Pooling",
        "Normalize",
    ]
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "lasttoken" or pooling.get("pooling_mode_lasttoken")
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    prompts = st_config["prompts"]
    assert prompts["document"] == ""
    assert prompts["Retrieval-query"].startswith("Instruct: ")
    assert prompts == release_prompts()  # the kit's one instruction table, nothing else
    model = SentenceTransformer(str(folder))
    assert model.tokenizer("ocean")["input_ids"][-1] == model.tokenizer.eos_token_id
    base = build_embedder(str(tiny_model_dirs["gemma3"]), 96, release_prompts())
    texts = ["search river", "ocean mountain city"]
    trained_emb = model.encode(texts, convert_to_tensor=True)
    assert (trained_emb - base.encode(texts, convert_to_tensor=True)).abs().max() > 1e-2


def test_training_record_has_the_agreed_fields(trained):
    record = json.loads((trained["model"] / "training_record.json").read_text())
    assert RECORD_FIELDS <= set(record)
    assert record["steps"] == 18 and record["final_loss"] < 1.0
    assert record["dataset_revision"].startswith("sha256:")
    assert record["synthetic_rows"] == "all" and "synthetic_rows" not in record["hyperparameters"]
    assert record["hyperparameters"]["temperature"] == pytest.approx(0.02)
    assert record["hyperparameters"]["lora_r"] == 16
    assert record["precision"] == "fp32" and record["deepspeed"] is None
    assert record["train_rows"] == {"with_negative": 48, "without_negative": 48}
    assert [step for step, _ in record["validation_accuracy_curve"]] == [6, 12, 18]
    assert record["validation_accuracy_curve"][-1][1] == record["validation_accuracy_after"]
    assert [step for step, _ in record["loss_curve"]] == list(range(1, 19))
    # 16-row batches; rows with a hard negative see 31 negatives, rows without 15 of 31.
    share = record["negatives_per_anchor_share"]
    assert share["min"] == round(15 / 31, 4) and 15 / 31 < share["mean"] <= 1.0
    checks = record["checks"]
    assert checks["merged_equals_adapter_min_cosine"] > 0.9999 and checks["pools_eos"] is True
    assert checks["mean_pairwise_cosine_after"] < 0.99  # not collapsed


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dirs, write_config, tmp_path):
    """As if killed between checkpoint-2 and checkpoint-4: the re-run resumes from step 2
    and ends where the uninterrupted run ended."""
    from safetensors.torch import load_file

    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["qwen2"], dataset, save_steps=2, max_steps=4)
    config = write_config(training=section)
    assert run_training(config) == 0
    checkpoints, model_dir = tmp_path / "build" / "checkpoints", tmp_path / "build" / "model"
    assert (checkpoints / "checkpoint-2" / "adapter_model.safetensors").is_file()
    uninterrupted = load_file(model_dir / "model.safetensors")
    shutil.rmtree(checkpoints / "checkpoint-4")
    shutil.rmtree(model_dir)
    assert run_training(config) == 0
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["resumed_from"] == "checkpoint-2"
    assert record["steps"] == 4
    resumed = load_file(model_dir / "model.safetensors")
    assert all(torch.allclose(uninterrupted[n], resumed[n], atol=1e-5) for n in uninterrupted)


def test_a_run_killed_after_its_last_checkpoint_trains_no_further(
    tiny_model_dirs, write_config, tmp_path
):
    """Killed while the release was being written, after the final checkpoint: the re-run
    exports that checkpoint as it is (the same steps and weights), with no extra step."""
    from safetensors.torch import load_file

    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["qwen2"], dataset, save_steps=2, max_steps=2)
    config = write_config(training=section)
    assert run_training(config) == 0
    model_dir = tmp_path / "build" / "model"
    first = load_file(model_dir / "model.safetensors")
    curve = json.loads((model_dir / "training_record.json").read_text())["loss_curve"]
    shutil.rmtree(model_dir)
    assert run_training(config) == 0
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["resumed_from"] == "checkpoint-2"
    assert record["steps"] == 2 and record["loss_curve"] == curve
    again = load_file(model_dir / "model.safetensors")
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_checkpoints_of_other_settings_are_never_resumed(
    tiny_model_dirs, write_config, tmp_path, caplog
):
    """A changed [training] section (here the seed) trains from step 0: its final checkpoint
    must not be exported under the new settings, and the old checkpoints are gone."""
    from safetensors.torch import load_file

    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["qwen2"], dataset, save_steps=2, max_steps=2)
    assert run_training(write_config(training=section)) == 0
    model_dir, checkpoints = tmp_path / "build" / "model", tmp_path / "build" / "checkpoints"
    first = load_file(model_dir / "model.safetensors")
    first_state = json.loads((checkpoints / "checkpoint-2" / "trainer_state.json").read_text())
    caplog.set_level(logging.WARNING, logger="training.checkpoints")
    assert run_training(write_config(training={**section, "seed": 7})) == 0
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["resumed_from"] is None and record["seed"] == 7 and record["steps"] == 2
    assert (
        f"{checkpoints} holds checkpoints of another run (config changed: [training]): removed"
        in caplog.text
    )
    state = json.loads((checkpoints / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["log_history"] != first_state["log_history"]  # written by the new run
    again = load_file(model_dir / "model.safetensors")
    assert any(not torch.equal(first[name], again[name]) for name in first)


def test_a_matryoshka_run_records_its_widths(tiny_model_dirs, write_config, tmp_path):
    """The stock trainer runs MatryoshkaLoss around the kit's loss, one mini-batch per batch
    (the one-forward path); the record names the widths the card will report."""
    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(
        tiny_model_dirs["qwen2"], dataset, mini_batch_size=16, max_steps=2, matryoshka_dims=[8]
    )
    assert run_training(write_config(training=section)) == 0
    record = json.loads((tmp_path / "build" / "model" / "training_record.json").read_text())
    assert record["matryoshka_dims"] == [32, 8]
    assert record["hyperparameters"]["matryoshka_dims"] == [8]
    assert record["hyperparameters"]["loss"].startswith("MatryoshkaLoss over ")
    assert record["steps"] == 2 and all(loss > 0 for _, loss in record["loss_curve"])


# Bad input: each fails before training starts, with one clear line, and loses nothing.


@pytest.fixture
def previous_release(tmp_path) -> Path:
    model_dir = tmp_path / "build" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "training_record.json").write_text('{"previous": true}')
    return model_dir


def _assert_failed_cleanly(code: int, capsys, message: str, previous_release: Path) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err[-1]
    assert (previous_release / "training_record.json").read_text() == '{"previous": true}'
    assert not (previous_release.parent / "checkpoints").exists()


def test_base_model_without_eos_is_refused(
    tiny_model_dirs, write_config, tmp_path, capsys, previous_release
):
    from transformers import AutoModel, AutoTokenizer

    no_eos = tmp_path / "no-eos"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["qwen2"])
    tokenizer.eos_token = None
    tokenizer.pad_token = None
    tokenizer.save_pretrained(no_eos)
    AutoModel.from_pretrained(tiny_model_dirs["qwen2"]).save_pretrained(no_eos)
    dataset = write_learnable_dataset(tmp_path / "dataset")
    config = write_config(training=training_section(no_eos, dataset))
    _assert_failed_cleanly(run_training(config), capsys, "has no EOS token", previous_release)


def test_dataset_missing_columns_is_refused(
    tiny_model_dirs, write_config, tmp_path, capsys, previous_release
):
    dataset = write_learnable_dataset(tmp_path / "dataset", drop=("negative", "task_definition"))
    config = write_config(training=training_section(tiny_model_dirs["gemma3"], dataset))
    _assert_failed_cleanly(
        run_training(config),
        capsys,
        "missing column(s) task_definition, negative",
        previous_release,
    )


def test_bf16_on_a_cpu_without_it_is_refused(
    tiny_model_dirs, write_config, tmp_path, capsys, previous_release, monkeypatch
):
    import training.arguments

    monkeypatch.setattr(training.arguments, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["gemma3"], dataset, precision="bf16")
    config = write_config(training=section)
    _assert_failed_cleanly(run_training(config), capsys, "does not support bf16", previous_release)


def test_launcher_with_another_process_count_is_refused(
    tiny_model_dirs, write_config, tmp_path, capsys, previous_release, monkeypatch
):
    """Started by an outside ``torchrun --nproc_per_node=3`` with num_processes = 1, every
    worker would take the whole batch: the global batch would silently triple."""
    for name, value in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "3"}.items():
        monkeypatch.setenv(name, value)
    dataset = write_learnable_dataset(tmp_path / "dataset")
    config = write_config(training=training_section(tiny_model_dirs["gemma3"], dataset))
    _assert_failed_cleanly(
        run_training(config),
        capsys,
        "the launcher started 3 processes but training.num_processes is 1",
        previous_release,
    )


def test_a_half_written_checkpoint_is_skipped_and_an_unfinished_release_is_redone(
    tiny_model_dirs, write_config, tmp_path
):
    """A kill while the trainer writes checkpoint-6 leaves it without its state file or with
    a cut weights file: the run resumes from checkpoint-4. A kill before the release's
    provenance lands leaves an unfinished release: the next run exports it again."""
    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["qwen2"], dataset, save_steps=2, max_steps=6)
    second = write_config(training=section)
    assert run_training(second) == 0
    checkpoints, model_dir = tmp_path / "build" / "checkpoints", tmp_path / "build" / "model"
    newest = checkpoints / "checkpoint-6" / "adapter_model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    shutil.rmtree(model_dir)
    assert run_training(second) == 0
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["resumed_from"] == "checkpoint-4" and record["steps"] == 6
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-4", "checkpoint-6",
    ]  # fmt: skip
    # Killed after the record, before the provenance: not up to date, so the same config
    # runs again (from checkpoint-6, the last step: exported with no further training).
    (model_dir / "provenance.json").unlink()
    assert run_training(second) == 0
    again = json.loads((model_dir / "training_record.json").read_text())
    assert again["resumed_from"] == "checkpoint-6" and again["finished_at"] >= record["finished_at"]
    # A finished release with the same inputs is not trained again.
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert run_training(second) == 0
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 10}, "must divide"),
        (
            {"matryoshka_dims": [16, 64]},
            "training.matryoshka_dims: 64 is wider than the base model's embedding dimension 32",
        ),
        (  # 48 rows with a negative and 48 without: a batch of 128 fits neither group
            {"batch_size": 128, "mini_batch_size": 16},
            "training.batch_size=128 is larger than every group of training rows of one shape "
            "(with_negative: 48, without_negative: 48); lower it or add rows",
        ),
    ],
    ids=["batch-not-divisible", "matryoshka-too-wide", "batch-larger-than-every-group"],
)
def test_a_training_setting_the_data_or_model_cannot_meet_is_refused(
    tiny_model_dirs, write_config, tmp_path, capsys, previous_release, overrides, message
):
    dataset = write_learnable_dataset(tmp_path / "dataset")
    section = training_section(tiny_model_dirs["gemma3"], dataset, **overrides)
    _assert_failed_cleanly(
        run_training(write_config(training=section)), capsys, message, previous_release
    )
