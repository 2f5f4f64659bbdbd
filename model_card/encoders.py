"""The two models the card compares, loaded the way users load them.

The trained model is loaded only with ``SentenceTransformer(path_or_repo_id)``. The base
model is wrapped by the kit's embedder recipe, the same function training wraps it with, so
the card's comparison isolates the training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kit.bundled import resolve_model
from kit.cli import StageError
from kit.embedder import RECIPE, build_embedder, check_model_appends_eos
from kit.provenance import content_digest, output_of
from kit.staleness import reference_identity

BASE_MODELS_FILE = Path(__file__).with_name("base_models.json")


@dataclass
class Embedder:
    """A loaded model plus the name and revision its mteb results are cached under."""

    role: str
    model: Any
    cache_name: str
    revision: str
    source: str


@cache
def base_model_table() -> dict[str, dict[str, str]]:
    return json.loads(BASE_MODELS_FILE.read_text(encoding="utf-8"))


def base_model_hub_id(reference: str) -> str | None:
    """The Hub id a card may name as ``base_model`` (``None`` for a local folder)."""
    if reference in base_model_table():
        return base_model_table()[reference]["hub_id"]
    if reference.startswith("local:") or Path(reference).expanduser().exists():
        return None
    return reference


def cache_name(reference: str) -> str:
    """An ``org/name`` for mteb's cache (it refuses names without a slash)."""
    if reference in base_model_table():
        return base_model_table()[reference]["cache_name"]
    path = Path(reference).expanduser()
    if path.exists():
        return f"local/{path.resolve().name}"
    return reference


def load_trained(model_dir: Path, name: str) -> Embedder:
    from sentence_transformers import SentenceTransformer

    if not (model_dir / "modules.json").is_file():
        raise StageError(
            f"{model_dir}: no sentence-transformers model here (modules.json missing); "
            "run the training stage first"
        )
    model = SentenceTransformer(str(model_dir), device="cpu")
    check_model_appends_eos(model, str(model_dir))
    revision = (output_of(model_dir) or content_digest(model_dir))[:16]
    return Embedder("trained", model, name, revision, name)


def build_base(reference: str, max_seq_length: int) -> Embedder:
    """The base decoder wrapped by the release recipe, at the release's max length."""
    path = resolve_model(reference)
    model = build_embedder(path, max_seq_length, device="cpu")
    wrapping = f"{RECIPE};max_seq_length={max_seq_length}"
    if Path(path).is_dir():
        identity = reference_identity(reference)  # a bundled name or a local folder
    else:
        commit = getattr(model[0].model.config, "_commit_hash", None) or "main"
        identity = f"{path}@{commit}"
    revision = hashlib.sha256(f"{identity};{wrapping}".encode()).hexdigest()[:16]
    return Embedder("base", model, cache_name(reference), revision, reference)


def mteb_encoder(embedder: Embedder, prompts: dict[str, str]) -> Any:
    """mteb's own sentence-transformers wrapper, named for the cache, with our prompts.

    The prompts are set after construction because mteb's constructor drops keys named
    after tasks outside its registry, which is what every local task is.
    """
    from mteb.models import SentenceTransformerEncoderWrapper

    encoder = SentenceTransformerEncoderWrapper(embedder.model)
    encoder.mteb_model_meta = encoder.mteb_model_meta.model_copy(
        update={"name": embedder.cache_name, "revision": embedder.revision}
    )
    encoder.model_prompts = dict(prompts)
    return encoder
