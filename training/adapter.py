"""LoRA on the wrapped decoder, its weights on disk, and the merged release folder.

The wrapping itself is the kit's embedder recipe (``kit.embedder``), shared with the model
card's base comparison and the dataset stage's negative mining. The merged model is rebuilt
from the base weights on disk plus the trained adapter state, not taken from the live
training object: under ZeRO-3 the live base weights are partition shards, and reading them
is how other projects saved empty or base-equal models.
"""

from __future__ import annotations

import dataclasses
import shutil
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kit
from kit.artifacts import TRAINING_RECORD_FILE, TrainingRecord, write_training_record
from kit.embedder import build_embedder
from kit.staleness import StageRun
from training.gguf import GGUF_FOLDER, export_gguf
from training.serving import check_reload, reference_embeddings, write_serving_keys

# The file names PEFT writes and reads, so a checkpoint loads with ``load_peft_weights``.
ADAPTER_FILE = "adapter_model.safetensors"


def add_lora(model: Any, r: int, alpha: int, dropout: float) -> None:
    """Wrap the inner decoder in a PEFT LoRA model on all linear layers (frozen base)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear")
    model[0].model = get_peft_model(model[0].model, config)


def lora_state_dict(model: Any) -> dict[str, Any]:
    """The trained adapter weights (CPU copies), gathered first when ZeRO-3 partitioned them."""
    from peft import get_peft_model_state_dict

    peft_model = model[0].model
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    with _gathered(params):
        state = get_peft_model_state_dict(peft_model)
        return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _gathered(params: list[Any]) -> Any:
    if not any(hasattr(p, "ds_id") for p in params):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def save_adapter(model: Any, state: dict[str, Any], folder: Path) -> None:
    """The adapter as PEFT saves it (weights and ``adapter_config.json``), nothing else."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model[0].model.peft_config["default"].save_pretrained(str(folder))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / ADAPTER_FILE),
              metadata={"format": "pt"})  # fmt: skip


def merged_embedder(
    base_path: str,
    max_length: int,
    prompts: dict[str, str],
    lora: dict[str, Any],
    adapter_state: dict[str, Any],
) -> Any:
    """A fresh embedder on the base weights with the trained adapter folded in."""
    from peft import set_peft_model_state_dict

    model = build_embedder(base_path, max_length, prompts)
    add_lora(model, lora["r"], lora["alpha"], lora["dropout"])
    result = set_peft_model_state_dict(model[0].model, adapter_state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"adapter state does not fit the base model: {unexpected[:3]}")
    model[0].model = model[0].model.merge_and_unload()
    return model


def save_release(model: Any, stage: StageRun, record: TrainingRecord) -> None:
    """Save safetensors, tokenizer and prompts, the keys serving engines read, the GGUF
    files, then the record, then the provenance.

    The old provenance goes first: a kill at any point before the new one lands leaves a
    folder that the next run (and every reader) treats as unfinished.
    """
    from sentence_transformers import SentenceTransformer

    out_dir = stage.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    stage.begin()
    (out_dir / TRAINING_RECORD_FILE).unlink(missing_ok=True)
    model.save(str(out_dir), safe_serialization=True, create_model_card=False)
    saved = reference_embeddings(SentenceTransformer(str(out_dir), device="cpu"))
    write_serving_keys(out_dir, model)
    check_reload(out_dir, saved)
    shutil.rmtree(out_dir / GGUF_FOLDER, ignore_errors=True)
    ggufs = export_gguf(out_dir, stage.config.training.gguf, stage.config.hub.model_repo)
    record = dataclasses.replace(
        record, gguf_files=[path.relative_to(out_dir).as_posix() for path in ggufs]
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    finished = dataclasses.replace(record, kit_version=kit.__version__, finished_at=now)
    write_training_record(out_dir, finished)
    stage.publish()
