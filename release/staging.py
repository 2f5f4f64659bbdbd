"""Which files make up each Hub repo, assembled from the stages that made them, and the listing
printed before (or instead of) a push.

Each repo is put together in ``build/release/<kind>`` from the folders the stages published
(hard links, so nothing is copied): the dataset repo is the dataset stage's folder, the model
repo is the training stage's model folder plus the model_card stage's card folder, and the
Space repo is the space stage's folder. Each repo has an allow-list: only files a user of that
repo needs are published, so checkpoints, caches and stray files never leave the machine by
accident.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects
from tqdm import tqdm

from kit.artifacts import PROVENANCE_FILE
from kit.cli import StageError
from kit.config import REPO_KINDS, Config
from kit.files import TEMP_PREFIX

ALLOW_PATTERNS: dict[str, tuple[str, ...]] = {
    "dataset": ("README.md", "data/*.parquet", "*.png", PROVENANCE_FILE),
    "model": (
        "README.md",
        "*.json",  # config, tokenizer, modules, pooling, record, provenance, results/**
        "*.safetensors",
        "gguf/*.gguf",  # llama.cpp files (training.gguf), verified in gguf/verification.json
        "tokenizer.model",
        "*.txt",  # merges.txt / vocab.txt of BPE and WordPiece tokenizers
        "*.jinja",  # chat templates saved next to the tokenizer
        "*.png",
    ),
    "space": ("README.md", "*.py", "requirements.txt", "*.json", "*.jsonl", "*.csv"),
}
IGNORED_FOLDERS = (
    "checkpoint-*",
    "checkpoints",
    "runs",
    "logs",
    "wandb",
    "__pycache__",
    "flagged",
    ".*",  # .cache, .git, .gradio, .ipynb_checkpoints, ...
)
IGNORE_PATTERNS = tuple(p for d in IGNORED_FOLDERS for p in (f"{d}/*", f"*/{d}/*"))
# Hidden folders the Hub reads: the model card's evaluation results (huggingface_hub's
# EvalResultEntry files), which the ``.*`` ignore above would leave out.
HUB_FOLDERS: dict[str, tuple[str, ...]] = {"model": (".eval_results/*.yaml",)}
REQUIRED_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "dataset": (("README.md", "README.md"), ("data/*.parquet", "a Parquet shard under data/")),
    "model": (
        ("modules.json", "modules.json"),
        ("config_sentence_transformers.json", "config_sentence_transformers.json"),
        ("*.safetensors", "*.safetensors weights"),
        ("README.md", "the model card README.md"),
    ),
    "space": (
        ("app.py", "app.py"),
        ("README.md", "README.md"),
        ("requirements.txt", "requirements.txt"),
    ),
}
PRODUCED_BY = {"dataset": "make dataset", "model": "make evaluate", "space": "make space"}


@dataclass(frozen=True)
class Source:
    """A stage's folder that a repo takes its files from; only the repo's first source
    contributes its ``provenance.json`` (the model repo carries training's)."""

    layout_field: str
    made_by: str
    with_provenance: bool


REPO_SOURCES: dict[str, tuple[Source, ...]] = {
    "dataset": (Source("dataset_dir", "make dataset", True),),
    "model": (Source("model_dir", "make train", True), Source("card_dir", "make evaluate", False)),
    "space": (Source("space_dir", "make space", True),),
}


@dataclass(frozen=True)
class StagedFile:
    path_in_repo: str
    local_path: Path
    size: int


@dataclass(frozen=True)
class RepoPlan:
    """One repo to publish: where it goes and the allow-listed files staged for it."""

    kind: str
    repo_id: str
    folder: Path
    files: tuple[StagedFile, ...]
    left_out: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def is_managed(self, path_in_repo: str) -> bool:
        """Whether a path falls under this repo's allow-list (so the release owns it remotely)."""
        return is_published(self.kind, path_in_repo)


def is_published(kind: str, path_in_repo: str) -> bool:
    if list(filter_repo_objects([path_in_repo], allow_patterns=list(HUB_FOLDERS.get(kind, ())))):
        return True
    kept = filter_repo_objects(
        [path_in_repo],
        allow_patterns=list(ALLOW_PATTERNS[kind]),
        ignore_patterns=list(IGNORE_PATTERNS),
    )
    return bool(list(kept))


def _source_files(kind: str, source: Source, folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise StageError(f"{kind} folder {folder} does not exist: run `{source.made_by}` first")
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not path.name.startswith(TEMP_PREFIX)
        and (source.with_provenance or path.relative_to(folder).as_posix() != PROVENANCE_FILE)
    }


def _link(source: Path, target: Path) -> None:
    """``target`` becomes ``source`` (a hard link; a copy across file systems), in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{TEMP_PREFIX}{target.name}")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copy2(source, temporary)
    os.replace(temporary, target)


def assemble_repo(kind: str, repo_id: str, config: Config) -> RepoPlan:
    """Put the repo together in ``release_dir/<kind>`` from its sources; fail if one is
    incomplete. Files of an earlier assembly that no source has any more are removed."""
    layout = config.layout
    wanted: dict[str, Path] = {}
    for source in REPO_SOURCES[kind]:
        for name, path in _source_files(kind, source, getattr(layout, source.layout_field)).items():
            wanted[name] = path  # a later source wins: the card over a README in the model
    folder = layout.release_dir / kind
    files, left_out = [], []
    for name, path in wanted.items():
        if is_published(kind, name):
            target = folder / name
            if not (target.is_file() and os.path.samefile(path, target)):
                _link(path, target)
            files.append(StagedFile(name, target, target.stat().st_size))
        else:
            left_out.append(name)
    if folder.is_dir():
        kept = {f.path_in_repo for f in files}
        for old in folder.rglob("*"):
            if old.is_file() and old.relative_to(folder).as_posix() not in kept:
                old.unlink()
    names = [f.path_in_repo for f in files]
    for pattern, what in REQUIRED_FILES[kind]:
        if not list(filter_repo_objects(names, allow_patterns=pattern)):
            raise StageError(
                f"{kind} repo has no {what}: run `{PRODUCED_BY[kind]}` first"
            )
    return RepoPlan(kind, repo_id, folder, tuple(files), tuple(left_out))


def plan_release(config: Config) -> list[RepoPlan]:
    """The three repos of a release, assembled, in push order (data before the model that
    cites it)."""
    return [assemble_repo(kind, config.hub.repo_id(kind), config) for kind in REPO_KINDS]


def human_size(num_bytes: int) -> str:
    return tqdm.format_sizeof(num_bytes, suffix="B", divisor=1024)


def describe(plans: list[RepoPlan], endpoint: str, private: bool) -> str:
    """The what-would-be-pushed listing: repos, files and sizes."""
    visibility = "private" if private else "public"
    lines = []
    for plan in plans:
        lines.append(
            f"{plan.kind:<8} {repo_url(endpoint, plan.kind, plan.repo_id)} ({visibility}) "
            f"from {plan.folder}: {len(plan.files)} files, {human_size(plan.total_bytes)}"
        )
        width = max(len(f.path_in_repo) for f in plan.files)
        lines.extend(f"    {f.path_in_repo:<{width}}  {human_size(f.size):>8}" for f in plan.files)
        if plan.left_out:
            shown = ", ".join(plan.left_out[:5]) + (" ..." if len(plan.left_out) > 5 else "")
            lines.append(
                f"    not published (outside the allow-list): {len(plan.left_out)}: {shown}"
            )
    return "\n".join(lines)


def repo_url(endpoint: str, kind: str, repo_id: str) -> str:
    """The repo's page on the Hub, with the Hub's own prefix for its kind (``datasets/``...)."""
    return f"{endpoint}/{constants.REPO_TYPES_URL_PREFIXES.get(kind, '')}{repo_id}"
