"""Write the release folder: merged weights, EOS-appending tokenizer, prompts, record.

The merged model is rebuilt from the base weights on disk plus the trained adapter state,
not taken from the live training object: under ZeRO-3 the live base weights are partition
shards, and reading them is how other projects saved empty or base-equal models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kit
from kit.embedder import build_embedder
from kit.files import atomic_write_json
from kit.provenance import write_provenance
from training.model import add_lora, merge_lora

RECORD_FILE = "training_record.json"


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


def save_release(
    model: Any, out_dir: Path, record: dict[str, Any], provenance: dict[str, Any]
) -> None:
    """Save safetensors, tokenizer and prompts; the record is written last, as the done-marker.

    A kill at any point before the record lands leaves a folder without a record, which the
    next run (and every reader) treats as unfinished.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RECORD_FILE).unlink(missing_ok=True)
    model.save(str(out_dir), safe_serialization=True, create_model_card=False)
    write_provenance(out_dir, provenance)
    record = {**record, "kit_version": kit.__version__, "finished_at": _now()}
    atomic_write_json(out_dir / RECORD_FILE, record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
