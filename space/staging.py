"""Stage the Space repo folder: the app, its settings, a Space card and pinned requirements.

The app itself is copied unchanged; what differs per release (Hub ids, title, limits) goes
into ``settings.json`` beside it, so the file users read on the Hub is the file tested here.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

from kit.cli import StageError
from kit.config import Config

APP_SOURCE = Path(__file__).with_name("app.py")
# What app.py imports, plus the libraries that decide how a model loads; gradio itself is
# installed by the Space from the card's sdk_version.
PINNED_PACKAGES = (
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "torch",
    "datasets",
    "huggingface_hub",
    "pandas",
)
MAX_SHORT_DESCRIPTION = 60


def hub_ids(config: Config) -> tuple[str, str]:
    """The model and dataset repo ids the release pushes, which the Space loads by default."""
    hub = config.hub
    return f"{hub.namespace}/{hub.model_repo}", f"{hub.namespace}/{hub.dataset_repo}"


def installed_version(package: str) -> str:
    """The version in use, without a local build tag (``2.13.0+cpu`` is ``2.13.0`` on PyPI)."""
    try:
        return metadata.version(package).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        raise StageError(f"the Space needs '{package}' installed to pin its version") from None


def requirements_text() -> str:
    lines = [f"{package}=={installed_version(package)}" for package in PINNED_PACKAGES]
    return "\n".join(lines) + "\n"


def settings_for(config: Config) -> dict[str, object]:
    """Defaults the app falls back to when its environment variables are unset."""
    model_id, dataset_id = hub_ids(config)
    space = config.space
    return {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "title": space.title,
        "sample_documents": space.sample_documents,
        "max_documents": space.max_documents,
        "max_chars_per_document": space.max_chars_per_document,
        "max_total_chars": space.max_total_chars,
        "default_top_k": space.default_top_k,
    }


CARD_BODY = """
# {title}

Ranks documents against a query with [{model_id}](https://huggingface.co/{model_id}), a text
embedder fine-tuned on LLM-written data ([{dataset_id}](https://huggingface.co/datasets/{dataset_id}))
following *Improving Text Embeddings with Large Language Models* (Wang et al., 2024).

- **Instruction**: queries are embedded as `Instruct: {{task}}\\nQuery: {{query}}`; pick one
  of the model's own prompts or write a task. Documents carry no instruction.
- **Corpus**: a sample of {sample_documents} documents from the dataset, documents pasted one
  per line, or an uploaded `.txt` (one per line), `.jsonl` (a `text`, `document` or
  `positive` field) or `.csv` (a header with such a column).
- **Limits**: {max_documents:,} documents, {max_chars_per_document:,} characters per
  document, {max_total_chars:,} characters in all. Corpus embeddings are cached by content
  hash, so asking again about the same corpus only embeds the query.
- **API**: `Client("{space_id}").predict(query, instruction, custom_instruction, top_k,
  source, pasted, upload, api_name="/search")` with `source` one of `dataset`, `paste`,
  `upload`.

Settings come from the environment, then `settings.json`: `MODEL_ID`, `DATASET_ID`,
`SAMPLE_DOCUMENTS`, `MAX_DOCUMENTS`, `MAX_CHARS_PER_DOCUMENT`, `MAX_TOTAL_CHARS`,
`DEFAULT_TOP_K`, `SPACE_TITLE`. To run it locally:
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
    model_id, dataset_id = hub_ids(config)
    data = SpaceCardData(
        title=space.title,
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=".".join(platform.python_version_tuple()[:2]),
        app_file="app.py",
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
        space_id=f"{config.hub.namespace}/{config.hub.space_repo}",
        gradio_version=gradio.__version__,
        **{k: v for k, v in settings_for(config).items() if k.startswith(("max_", "sample_"))},
    )
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def stage_space(config: Config, space_dir: Path) -> list[Path]:
    """Write the Space folder; app.py goes last so an interrupted run is redone by make."""
    space_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "README.md": str(space_card(config)),
        "requirements.txt": requirements_text(),
        "settings.json": json.dumps(settings_for(config), indent=2, ensure_ascii=False) + "\n",
    }
    written = []
    for name, text in files.items():
        _write_atomically(space_dir / name, text)
        written.append(space_dir / name)
    handle, temporary = tempfile.mkstemp(dir=space_dir, prefix=".app.py-")
    os.close(handle)
    shutil.copyfile(APP_SOURCE, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, space_dir / "app.py")
    written.append(space_dir / "app.py")
    return written
