"""The keys embedding servers read from a sentence-transformers folder, written back after save.

sentence-transformers 6 and transformers 5 save less than the servers people deploy with
still read:

- text-embeddings-inference parses ``max_seq_length`` from ``sentence_bert_config.json``
  (ST 6 keeps it in the tokenizer config only), the legacy ``pooling_mode_*`` booleans from
  ``1_Pooling/config.json``, and, for Gemma 3, flat ``rope_theta`` and
  ``rope_local_base_freq`` (transformers 5 writes only a nested ``rope_parameters``);
- vLLM takes the pooling type from the first key of the pooling config whose value is
  ``true``, so the legacy keys go before ``include_prompt``;
- transformers 4 rebuilds the tokenizer's post-processor from ``add_eos_token`` and
  ``add_bos_token`` in ``tokenizer_config.json``; without them it appends no EOS and
  last-token pooling reads a content token.

Each edit only adds keys the current libraries ignore or read the same way, and
:func:`check_reload` proves it: the folder reloads with identical embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.errors import StageError
from kit.files import atomic_write_json, atomic_write_text

ST_CONFIG = "sentence_bert_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
MODEL_CONFIG = "config.json"
# sentence-transformers' legacy names, in the order older readers expect them.
LEGACY_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
# Gemma 3's two RoPE bases: global (full attention) layers and local (sliding) layers.
GEMMA3_ROPE_KEYS = (("rope_theta", "full_attention"), ("rope_local_base_freq", "sliding_attention"))
REFERENCE_TEXTS = (
    "Instruct: Given a question, retrieve passages that answer it\nQuery: how deep is the lake",
    "The lake is 1,642 metres deep at its deepest point.",
    "Ein kurzer Satz auf Deutsch.",
)


class ServingKeysError(StageError):
    """The folder with the serving keys does not embed as the folder without them."""


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def pooling_folder(model_dir: Path) -> Path:
    modules = _read(model_dir / "modules.json")
    found = [m["path"] for m in modules if m["type"].endswith("Pooling")]
    if not found:
        raise ServingKeysError(f"{model_dir}/modules.json lists no Pooling module")
    return model_dir / found[0]


def with_legacy_pooling(config: dict[str, Any]) -> dict[str, Any]:
    """The pooling config with one boolean per legacy mode, placed before ``include_prompt``."""
    modes = config["pooling_mode"]
    modes = {modes} if isinstance(modes, str) else set(modes)
    unknown = modes - {mode for _, mode in LEGACY_POOLING_KEYS}
    if unknown:
        raise ServingKeysError(f"pooling mode {sorted(unknown)} has no legacy key")
    head = {k: v for k, v in config.items() if k == "embedding_dimension" or k == "pooling_mode"}
    legacy = {key: mode in modes for key, mode in LEGACY_POOLING_KEYS}
    tail = {k: v for k, v in config.items() if k not in head and k not in legacy}
    return {**head, **legacy, **tail}


def with_flat_rope(config: dict[str, Any]) -> dict[str, Any]:
    """Gemma 3's nested ``rope_parameters`` also written as the flat keys of transformers 4."""
    nested = config.get("rope_parameters") or {}
    if config.get("model_type") not in ("gemma3_text", "gemma3"):
        return config
    flat = dict(config)
    for key, layer_type in GEMMA3_ROPE_KEYS:
        theta = (nested.get(layer_type) or {}).get("rope_theta")
        if theta is None:
            raise ServingKeysError(f"config.json has no rope_theta for {layer_type} layers")
        flat[key] = theta
    return flat


def adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("x")["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def write_serving_keys(model_dir: Path, model: Any) -> list[str]:
    """Add the keys to the saved folder; returns the files changed."""
    changed = []
    st_config = _read(model_dir / ST_CONFIG)
    st_config["max_seq_length"] = int(model.max_seq_length)
    atomic_write_json(model_dir / ST_CONFIG, st_config)
    changed.append(ST_CONFIG)
    pooling_path = pooling_folder(model_dir) / "config.json"
    # Key order matters to vLLM: written in order, not sorted.
    ordered = json.dumps(with_legacy_pooling(_read(pooling_path)), indent=4) + "\n"
    atomic_write_text(pooling_path, ordered)
    changed.append(pooling_path.relative_to(model_dir).as_posix())
    model_config = _read(model_dir / MODEL_CONFIG)
    flat = with_flat_rope(model_config)
    if flat != model_config:
        atomic_write_json(model_dir / MODEL_CONFIG, flat)
        changed.append(MODEL_CONFIG)
    tokenizer_config = _read(model_dir / TOKENIZER_CONFIG)
    tokenizer_config.update(add_eos_token=True, add_bos_token=adds_bos(model.tokenizer))
    atomic_write_json(model_dir / TOKENIZER_CONFIG, tokenizer_config)
    changed.append(TOKENIZER_CONFIG)
    return changed


def reference_embeddings(model: Any) -> Any:
    return model.encode(list(REFERENCE_TEXTS), convert_to_numpy=True, normalize_embeddings=False)


def check_reload(model_dir: Path, expected: Any) -> float:
    """Reload the folder the way users do and compare with the embeddings before the edit;
    returns the largest absolute difference (0.0 is required)."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    reloaded = SentenceTransformer(str(model_dir), device="cpu")
    difference = float(np.abs(reference_embeddings(reloaded) - expected).max())
    if difference != 0.0:
        raise ServingKeysError(
            f"{model_dir}: the folder with the serving keys embeds differently "
            f"(largest difference {difference:.3g})"
        )
    return difference
