"""The two models the card compares, loaded the way users load them, on the hardware at hand.

The trained model is loaded only with ``SentenceTransformer(path_or_repo_id)``. The base
model is wrapped by the kit's embedder recipe, the same function training wraps it with, so
the card's comparison isolates the training. Each is loaded on the device, in the precision
and with the batch size ``kit.devices`` picks for it, and its mteb results are labelled with
the revision a reader can look up: the model repo's Hub commit that holds these exact files
when there is one, else the folder's content digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kit.bundled import resolve_model
from kit.cli import StageError
from kit.config import EvaluationSection
from kit.devices import EncodePlan, choose_device, fit_batch, model_config, plan_encoding
from kit.embedder import RECIPE, build_embedder, check_model_appends_eos
from kit.files import sha256_file
from kit.provenance import content_digest, output_of
from kit.staleness import hub_endpoint, reference_identity

log = logging.getLogger(__name__)
BASE_MODELS_FILE = Path(__file__).with_name("base_models.json")
# The model folder's files left out when it is compared with the Hub: the repo's README is
# the card this stage writes, not the one sentence-transformers saved with the model.
NOT_COMPARED = ("README.md",)


@dataclass
class Embedder:
    """A loaded model, how it encodes, and the name and revision its results are cached under."""

    role: str
    model: Any
    cache_name: str
    revision: str
    source: str
    plan: EncodePlan | None = None
    # Where the revision comes from: a Hub commit, or the content digest.
    revision_source: str = "content digest"
    digest: str = ""


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


def _plan(settings: EvaluationSection, path: str) -> tuple[EncodePlan, Any]:
    config = model_config(path)
    device = choose_device(settings.device)
    return plan_encoding(device, settings.precision, settings.batch_size, config), config


def _git_blob_id(path: Path) -> str:
    from huggingface_hub.utils.sha import git_hash

    return git_hash(path.read_bytes())


def hub_revision(repo_id: str, model_dir: Path, token: str | None) -> str | None:
    """The newest commit of ``repo_id`` that changed any of the model's files, when the Hub
    holds exactly these files (compared by sha256, or git blob id for small files): from that
    commit on, a reader downloads this model. ``None`` when the Hub cannot be asked, or the
    repo is missing or holds other files."""
    from huggingface_hub import HfApi, constants

    if constants.is_offline_mode():
        return None
    files = sorted(
        p for p in model_dir.rglob("*")
        if p.is_file() and p.name not in NOT_COMPARED and not p.name.startswith(".")
    )  # fmt: skip
    paths = [p.relative_to(model_dir).as_posix() for p in files]
    try:
        found = HfApi(endpoint=hub_endpoint(), token=token).get_paths_info(
            repo_id, paths, expand=True, repo_type="model"
        )
    except Exception as exc:  # noqa: BLE001 - any failure means no Hub revision; logged
        log.info("no Hub revision for %s (%s): results are labelled by content", repo_id,
                 type(exc).__name__)  # fmt: skip
        return None
    remote = {info.path: info for info in found}
    commits = []
    for path, name in zip(files, paths, strict=True):
        info = remote.get(name)
        if info is None or info.last_commit is None:
            return None
        same = (info.lfs.sha256 == sha256_file(path)) if info.lfs else (
            info.blob_id == _git_blob_id(path)
        )
        if not same:
            return None
        commits.append((info.last_commit.date, info.last_commit.oid))
    return max(commits)[1] if commits else None


def load_trained(
    model_dir: Path, name: str, settings: EvaluationSection, token_env: str = "HF_TOKEN"
) -> Embedder:
    from sentence_transformers import SentenceTransformer

    if not (model_dir / "modules.json").is_file():
        raise StageError(
            f"{model_dir}: no sentence-transformers model here (modules.json missing); "
            "run the training stage first"
        )
    plan, config = _plan(settings, str(model_dir))
    model = SentenceTransformer(
        str(model_dir), device=plan.device, model_kwargs={"dtype": plan.torch_dtype}
    )
    check_model_appends_eos(model, str(model_dir))
    plan = fit_batch(plan, config, model.max_seq_length)
    digest = (output_of(model_dir) or content_digest(model_dir))[:16]
    commit = hub_revision(name, model_dir, os.environ.get(token_env) or None)
    if commit:
        return Embedder("trained", model, name, commit, name, plan, f"Hub commit of {name}", digest)
    return Embedder("trained", model, name, digest, name, plan, digest=digest)


def build_base(
    reference: str, max_seq_length: int, settings: EvaluationSection | None = None
) -> Embedder:
    """The base decoder wrapped by the release recipe, at the release's max length."""
    settings = settings or EvaluationSection(device="cpu")
    path = resolve_model(reference)
    plan, config = _plan(settings, path)
    model = build_embedder(path, max_seq_length, device=plan.device, dtype=plan.torch_dtype)
    plan = fit_batch(plan, config, max_seq_length)
    wrapping = f"{RECIPE};max_seq_length={max_seq_length}"
    if Path(path).is_dir():
        identity = reference_identity(reference)  # a bundled name or a local folder
    else:
        commit = getattr(model[0].model.config, "_commit_hash", None) or "main"
        identity = f"{path}@{commit}"
    revision = hashlib.sha256(f"{identity};{wrapping}".encode()).hexdigest()[:16]
    return Embedder("base", model, cache_name(reference), revision, reference, plan,
                    digest=revision)  # fmt: skip


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
