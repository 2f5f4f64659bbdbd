"""Write the release folder: merged weights, EOS-appending tokenizer, prompts, record.

The merged model is rebuilt from the base weights on disk plus the trained adapter state,
not taken from the live training object: under ZeRO-3 the live base weights are partition
shards, and reading them is how other projects saved empty or base-equal models.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from typing import Any

import kit
from kit.artifacts import TRAINING_RECORD_FILE, TrainingRecord, write_training_record
from kit.embedder import build_embedder
from kit.staleness import StageRun
from training.gguf import GGUF_FOLDER, export_gguf
from training.model import add_lora, merge_lora
from training.serving import check_reload, reference_embeddings, write_serving_keys


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
    merge_lora(model)
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
    finished = dataclasses.replace(record, kit_version=kit.__version__, finished_at=_now())
    write_training_record(out_dir, finished)
    stage.publish()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
