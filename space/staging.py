"""Stage the Space repo folder: the app's modules, its settings, a Space card and pinned
requirements.

The files of ``space/demo/`` are copied unchanged; what differs per release (Hub ids, title,
limits) goes into ``settings.json`` beside them, so the files users read on the Hub are the
files tested here. Every file is written under a temporary name in the Space folder and then
renamed, and ``app.py`` comes last: ``make`` watches it, so an interrupted staging is redone.
"""

from __future__ import annotations

import importlib
import json
import platform
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from types import ModuleType

from huggingface_hub import SpaceCard, SpaceCardData

from kit.cli import StageError
from kit.config import Config
from kit.files import atomic_write_bytes

DEMO_DIR = Path(__file__).with_name("demo")
APP_FILE = "app.py"
# What the app imports with each backend, plus the libraries that decide how a model loads;
# gradio itself is installed by the Space from the card's sdk_version. The GGUF backend needs
# no torch: on a CPU Space, torch from PyPI is the CUDA build with its NVIDIA packages.
PINNED_PACKAGES = {
    "sentence-transformers": (
        "sentence-transformers",
        "transformers",
        "tokenizers",
        "torch",
        "datasets",
        "huggingface_hub",
        "pandas",
    ),
    "gguf": ("xllamacpp", "huggingface_hub", "datasets", "pandas", "numpy"),
}
BACKEND_TEXT = {
    "gguf": "the model's GGUF file that passed the model card's check, served by llama.cpp "
    "(xllamacpp), with no PyTorch installed",
    "sentence-transformers": "sentence-transformers on PyTorch (CPU)",
}
# Written by the model_card stage beside the GGUF files: each file's check and verdict.
GGUF_VERIFICATION = "gguf/verification.json"
MAX_SHORT_DESCRIPTION = 60


def demo_files() -> list[Path]:
    """The Space's own files, ``app.py`` last (caches and hidden files are not part of it)."""
    files = [
        path
        for path in DEMO_DIR.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix != ".pyc"
    ]
    return sorted(files, key=lambda path: (path.name == APP_FILE, path.name))


def demo_settings() -> ModuleType:
    """The app's own settings module (standard library only), read to stage its values; in
    the Space it is the top-level ``settings``."""
    return importlib.import_module("space.demo.settings")


def installed_version(package: str) -> str:
    """The version in use, without a local build tag (``2.13.0+cpu`` is ``2.13.0`` on PyPI)."""
    try:
        return metadata.version(package).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        raise StageError(f"the Space needs '{package}' installed to pin its version") from None


def requirements_text(backend: str) -> str:
    lines = [f"{package}=={installed_version(package)}" for package in PINNED_PACKAGES[backend]]
    return "\n".join(lines) + "\n"


def verified_gguf_files(config: Config) -> list[str]:
    """The GGUF files the model_card stage found to embed as the safetensors do."""
    path = config.layout.card_dir / GGUF_VERIFICATION
    if not path.is_file():
        return []
    return [entry["file"] for entry in json.loads(path.read_text(encoding="utf-8"))
            if entry.get("passed")]  # fmt: skip


def space_backend(config: Config) -> str:
    """``gguf`` or ``sentence-transformers``: ``[space] backend`` unless it is ``auto``, then
    ``gguf`` exactly when the model repo has a GGUF file that passed its check."""
    chosen = config.space.backend
    if chosen == "auto":
        return "gguf" if verified_gguf_files(config) else "sentence-transformers"
    if chosen == "gguf" and not verified_gguf_files(config):
        raise StageError(
            "space.backend is gguf but the model has no GGUF file that passed its check "
            f"({config.layout.card_dir / GGUF_VERIFICATION}; run `make evaluate` with "
            "evaluation.gguf_check = true)"
        )
    return chosen


def settings_for(config: Config, backend: str = "sentence-transformers") -> dict[str, object]:
    """The app's defaults for this release: Hub ids, title, and every ``[space]`` limit the
    app has a setting for. Checked by the app's own ``Settings``, so a value the app would
    refuse stops the staging instead of the Space."""
    settings = demo_settings()
    values: dict[str, object] = {
        "model_id": config.hub.repo_id("model"),
        "dataset_id": config.hub.repo_id("dataset"),
        "space_title": config.space.title,
        "backend": backend,
    }
    for spec in fields(settings.Settings):
        if spec.name not in values and hasattr(config.space, spec.name):
            values[spec.name] = getattr(config.space, spec.name)
    try:
        settings.Settings(**values)
    except settings.SettingsError as exc:
        raise StageError(f"the Space would refuse its settings: {exc}") from None
    return values


def environment_variables() -> list[str]:
    """Every variable the app reads, one per setting."""
    settings = demo_settings()
    return [settings.env_name(spec.name) for spec in fields(settings.Settings)]


CARD_BODY = """
# {title}

Ranks documents against a query with [{model_id}](https://huggingface.co/{model_id}), a text
embedder fine-tuned on LLM-written data ([{dataset_id}](https://huggingface.co/datasets/{dataset_id}))
following *Improving Text Embeddings with Large Language Models* (Wang et al., 2024).

- **Embeddings**: {backend_text}.
- **Instruction**: queries are embedded as `Instruct: {{task}}\\nQuery: {{query}}`; pick one
  of the model's own prompts or write a task. Documents carry no instruction.
- **Corpus**: a sample of {sample_documents} documents from the dataset (its `corpus`
  config of real documents when it has one, else its rows' positives), documents pasted one
  per line, or an uploaded `.txt` (one per line), `.jsonl` (a `text`, `document` or
  `positive` field) or `.csv` (a header with such a column).
- **Limits**: {max_documents:,} documents, {max_chars_per_document:,} characters per
  document, {max_total_chars:,} characters in all. Corpus embeddings are cached by content
  hash, so asking again about the same corpus only embeds the query.
- **API**: `Client("{space_id}").predict(query, instruction, custom_instruction, top_k,
  source, pasted, upload, api_name="/search")` with `source` one of `dataset`, `paste`,
  `upload`.

Settings come from the environment, then `settings.json`: {variables}. To run it locally:
`pip install gradio=={gradio_version} -r requirements.txt && MODEL_ID=path/to/model python app.py`.
"""


def space_card(config: Config) -> SpaceCard:
    """The Space README: YAML the Hub reads (sdk, version, linked repos) and a short guide."""
    import gradio

    space = config.space
    if len(space.short_description) > MAX_SHORT_DESCRIPTION:
        raise StageError(
            f"space.short_description has {len(space.short_description)} characters; "
            f"the Hub allows {MAX_SHORT_DESCRIPTION}"
        )
    model_id, dataset_id = config.hub.repo_id("model"), config.hub.repo_id("dataset")
    backend = space_backend(config)
    data = SpaceCardData(
        title=space.title,
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=".".join(platform.python_version_tuple()[:2]),
        app_file=APP_FILE,
        license=space.license,
        models=[model_id],
        datasets=[dataset_id],
        emoji=space.emoji,
        colorFrom="indigo",
        colorTo="blue",
        pinned=False,
        short_description=space.short_description,
        tags=["sentence-transformers", "text-embeddings", "retrieval"],
    )
    body = CARD_BODY.format(
        title=space.title,
        model_id=model_id,
        dataset_id=dataset_id,
        space_id=config.hub.repo_id("space"),
        gradio_version=gradio.__version__,
        backend_text=BACKEND_TEXT[backend],
        variables=", ".join(f"`{name}`" for name in environment_variables()),
        **{k: v for k, v in settings_for(config, backend).items()
           if k.startswith(("max_", "sample_"))},  # fmt: skip
    )
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def stage_space(config: Config, space_dir: Path) -> list[Path]:
    """Write the Space folder; a module no longer in the app is removed so it is not pushed."""
    space_dir.mkdir(parents=True, exist_ok=True)
    backend = space_backend(config)
    settings = settings_for(config, backend)
    sources = demo_files()
    generated = {
        "README.md": str(space_card(config)),
        "requirements.txt": requirements_text(backend),
        "settings.json": json.dumps(settings, indent=2, ensure_ascii=False) + "\n",
    }
    for stale in space_dir.glob("*.py"):
        if stale.name not in {source.name for source in sources}:
            stale.unlink()
    written = []
    for name, text in generated.items():
        atomic_write_bytes(space_dir / name, text.encode("utf-8"))
        written.append(space_dir / name)
    for source in sources:
        atomic_write_bytes(space_dir / source.name, source.read_bytes())
        written.append(space_dir / source.name)
    return written
