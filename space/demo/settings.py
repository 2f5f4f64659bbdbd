"""The Space's settings, declared once: environment first, then ``settings.json``, then defaults.

Each field's environment variable is its name in capitals (``model_id`` is ``MODEL_ID``), so
a new setting cannot be forgotten in one of several lists. The staging step writes
``settings.json`` beside this file from the release config. A setting that cannot be used
raises :class:`SettingsError`; only the app's entry point turns it into a message and an
exit code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

SETTINGS_FILE = Path(__file__).with_name("settings.json")
# How embeddings are computed: the model's verified GGUF on llama.cpp when the repo has one
# (auto), always that (gguf), or sentence-transformers on PyTorch.
BACKEND_AUTO, BACKEND_GGUF, BACKEND_TORCH = "auto", "gguf", "sentence-transformers"
BACKENDS = (BACKEND_AUTO, BACKEND_GGUF, BACKEND_TORCH)


class SettingsError(ValueError):
    """A setting the Space cannot start with; its message names the variable or file."""


def _at_least(default: int, low: int) -> Any:
    return field(default=default, metadata={"min": low})


@dataclass(frozen=True)
class Settings:
    """Where the model and sample corpus come from, the limits a public Space needs, and how
    much work and memory the server allows itself."""

    model_id: str = ""
    dataset_id: str = ""
    space_title: str = "Text embedder demo"
    backend: str = field(default=BACKEND_AUTO, metadata={"choices": BACKENDS})
    sample_documents: int = _at_least(200, 0)
    max_documents: int = _at_least(2000, 1)
    max_chars_per_document: int = _at_least(4000, 1)
    max_total_chars: int = _at_least(2_000_000, 1)
    default_top_k: int = _at_least(5, 1)
    # Searches run at once: one per vCPU of a free CPU Space (see app.serve).
    concurrency_limit: int = _at_least(2, 1)
    # The corpus embedding cache keeps at most this many corpora and this many megabytes.
    cache_corpora: int = _at_least(8, 1)
    cache_megabytes: int = _at_least(256, 1)

    def __post_init__(self) -> None:
        for spec in fields(self):
            problem = _problem(spec, getattr(self, spec.name))
            if problem:
                raise SettingsError(f"{env_name(spec.name)} {problem}")


def env_name(field_name: str) -> str:
    """The environment variable of a setting."""
    return field_name.upper()


def _problem(spec: Field, value: Any) -> str | None:
    """Why ``value`` cannot be this setting, or ``None``."""
    if isinstance(spec.default, str):
        if not isinstance(value, str):
            return f"must be text, got {value!r}"
        choices = spec.metadata.get("choices")
        if choices and value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, got {value!r}"
    low = spec.metadata["min"]
    if value < low:
        wanted = "positive" if low == 1 else f"{low} or more"
        return f"must be {wanted}, got {value}"
    return None


def _from_file(settings_file: Path) -> dict[str, Any]:
    """The staged values, each checked here so a bad one names the file, not a variable."""
    if not settings_file.is_file():
        return {}
    try:
        staged = json.loads(settings_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{settings_file} is not valid JSON: {exc}") from None
    if not isinstance(staged, dict):
        raise SettingsError(f"{settings_file} must hold a JSON object of settings")
    specs = {spec.name: spec for spec in fields(Settings)}
    for key, value in staged.items():
        if key not in specs:
            raise SettingsError(
                f"{settings_file}: unknown setting {key!r} (known: {', '.join(specs)})"
            )
        problem = _problem(specs[key], value)
        if problem:
            raise SettingsError(f"{settings_file}: {key} {problem}")
    return staged


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Variables that are set, parsed to the field's type; the empty string counts as set."""
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        raw = environ.get(env_name(spec.name))
        if raw is None:
            continue
        if isinstance(spec.default, str):
            values[spec.name] = raw
            continue
        try:
            values[spec.name] = int(raw)
        except ValueError:
            raise SettingsError(
                f"{env_name(spec.name)} must be a whole number, got {raw!r}"
            ) from None
    return values


def load_settings(
    environ: Mapping[str, str] = os.environ, settings_file: Path = SETTINGS_FILE
) -> Settings:
    """Environment first, then the staged ``settings.json``, then the built-in defaults.

    ``DATASET_ID=`` (set, but empty) turns the dataset sample off.
    """
    return Settings(**{**_from_file(settings_file), **_from_environment(environ)})
