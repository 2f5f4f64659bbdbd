"""The two models the card compares, loaded the way users load them.

The trained model is loaded only with ``SentenceTransformer(path_or_repo_id)``. The base
model is wrapped exactly as training wraps it (EOS appended, BOS kept where the tokenizer
adds one, last-token pooling, normalized), so the card's comparison isolates the training.
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

BASE_MODELS_FILE = Path(__file__).with_name("base_models.json")
CARD_OUTPUTS = ("README.md", "eval_results.png")


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
    if Path(reference).expanduser().exists():
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


def folder_fingerprint(folder: Path, extra: str = "") -> str:
    """Content hash of a model folder (not the card this stage writes into it)."""
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative in CARD_OUTPUTS or relative.startswith("."):
            continue
        digest.update(relative.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def check_eos_appended(model: Any, where: str) -> None:
    """Last-token pooling reads the token at the end: it must be EOS, or the numbers lie."""
    tokenizer = model.tokenizer
    ids = model.preprocess(["check"])["input_ids"][0].tolist()
    if tokenizer.eos_token_id is None or ids[-1] != tokenizer.eos_token_id:
        raise StageError(
            f"{where}: the tokenizer does not append EOS (ids end with {ids[-1]}), so "
            "last-token pooling would read the wrong token"
        )


def load_trained(model_dir: Path, name: str) -> Embedder:
    from sentence_transformers import SentenceTransformer

    if not (model_dir / "modules.json").is_file():
        raise StageError(
            f"{model_dir}: no sentence-transformers model here (modules.json missing); "
            "run the training stage first"
        )
    model = SentenceTransformer(str(model_dir), device="cpu")
    check_eos_appended(model, str(model_dir))
    return Embedder("trained", model, name, folder_fingerprint(model_dir), str(model_dir))


def build_base(reference: str, max_seq_length: int) -> Embedder:
    """Wrap the base decoder like the release: EOS (+BOS where the family adds it), lasttoken."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer

    path = resolve_model(reference)
    # transformers 5 rebuilds the post-processor from both flags: asking for EOS alone
    # drops the BOS a Gemma or Mistral tokenizer adds by default.
    plain = AutoTokenizer.from_pretrained(path)
    first = plain("x").input_ids
    adds_bos = plain.bos_token_id is not None and bool(first) and first[0] == plain.bos_token_id
    transformer = Transformer(
        path,
        max_seq_length=max_seq_length,
        processor_kwargs={"add_eos_token": True, "add_bos_token": adds_bos},
    )
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    check_eos_appended(model, f"base model {reference}")
    wrapping = f"eos+bos={adds_bos};lasttoken;normalize;max_seq_length={max_seq_length}"
    local = Path(path)
    if local.is_dir():
        revision = folder_fingerprint(local, wrapping)
    else:
        commit = getattr(transformer.model.config, "_commit_hash", None) or "main"
        revision = hashlib.sha256(f"{path}@{commit};{wrapping}".encode()).hexdigest()[:16]
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
