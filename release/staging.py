"""Which staged files make up each Hub repo, and the listing printed before (or instead of) a push.

Each repo has an allow-list: only files a user of that repo needs are published, so training
checkpoints, caches and stray files in ``build/`` never leave the machine by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects
from tqdm import tqdm

from kit.cli import StageError
from kit.config import REPO_KINDS, Config
from kit.paths import layout

ALLOW_PATTERNS: dict[str, tuple[str, ...]] = {
    "dataset": ("README.md", "data/*.parquet", "*.png", "provenance.json"),
    "model": (
        "README.md",
        "*.json",  # config, tokenizer, modules, pooling, record, provenance, results/**
        "*.safetensors",
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
    kept = filter_repo_objects(
        [path_in_repo],
        allow_patterns=list(ALLOW_PATTERNS[kind]),
        ignore_patterns=list(IGNORE_PATTERNS),
    )
    return bool(list(kept))


def plan_repo(kind: str, repo_id: str, folder: Path) -> RepoPlan:
    """Collect the allow-listed files of one staged folder; fail if the folder is incomplete."""
    if not folder.is_dir():
        raise StageError(f"{kind} folder {folder} does not exist: run `{PRODUCED_BY[kind]}` first")
    files, left_out = [], []
    for local in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = local.relative_to(folder).as_posix()
        if is_published(kind, rel):
            files.append(StagedFile(rel, local, local.stat().st_size))
        else:
            left_out.append(rel)
    names = [f.path_in_repo for f in files]
    for pattern, what in REQUIRED_FILES[kind]:
        if not list(filter_repo_objects(names, allow_patterns=pattern)):
            raise StageError(
                f"{kind} folder {folder} has no {what}: run `{PRODUCED_BY[kind]}` first"
            )
    return RepoPlan(kind, repo_id, folder, tuple(files), tuple(left_out))


def plan_release(config: Config, config_path: str | Path) -> list[RepoPlan]:
    """The three repos of a release, in push order (data before the model that cites it)."""
    places = layout(str(config_path))
    return [
        plan_repo(kind, config.hub.repo_id(kind), Path(places[f"{kind}_dir"]))
        for kind in REPO_KINDS
    ]


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
