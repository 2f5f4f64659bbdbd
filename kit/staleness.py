"""Whether a stage must run: decided in one place, for the stages, make and ``python -m kit plan``.

A stage is current when the provenance it would record now equals the ``provenance.json`` in
the folder it publishes: the same code (its package with its data files, and every kit module
it imports), the same library versions, the same config sections and the same input content.
Inputs are content digests (an upstream artifact's published digest, an evaluation set's
files), never clock times, so a seeds run that adds nothing leaves everything after it current.

Light on purpose (standard library and kit only, no torch): every stage asks before it
imports its heavy modules, so a no-op ``make release`` takes seconds.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kit
from kit.artifacts import PROVENANCE_FILE, RUN_SUMMARY_FILE
from kit.bundled import bundled_identity
from kit.config import AUTO_DEEPSPEED, CORPUS_SUFFIXES, Config, section_digest
from kit.evalsets import data_fingerprint, resolve_path
from kit.files import digest_files, sha256_file
from kit.provenance import (
    Provenance,
    content_digest,
    output_of,
    read_provenance,
    remove_provenance,
    write_provenance,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("kit", "seeds", "dataset_builder", "training", "model_card", "space", "release")
# A dataset folder's files that hold its rows (a folder made elsewhere has no provenance).
DATA_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl", ".csv", ".gz")
HUB_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class StageSpec:
    """A stage: the config sections it reads, the folder it publishes, where its inputs
    come from, and the make target that runs it."""

    name: str
    sections: tuple[str, ...]
    output: str
    upstream: tuple[str, ...]
    inputs: Callable[[Config], dict[str, Any]]
    target: str

    def folder(self, config: Config) -> Path:
        return getattr(config.layout, self.output)


@dataclass(frozen=True)
class Decision:
    stage: str
    current: bool
    reason: str


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB_DEFAULT_ENDPOINT).rstrip("/")


def release_target(token_env: str) -> str:
    """``stage`` without a token, else ``push-<endpoint hash>``: a token set later, or
    another Hub, makes the release run again."""
    if not os.environ.get(token_env, "").strip():
        return "stage"
    return "push-" + hashlib.sha256(hub_endpoint().encode()).hexdigest()[:12]


# ---- what a stage's output depends on -----------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    """Every module named by an absolute import in a file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (REPO_ROOT.joinpath(*parts).with_suffix(".py"),
                      REPO_ROOT.joinpath(*parts, "__init__.py")):  # fmt: skip
        if candidate.is_file():
            return candidate
    return None


def _package_files(package: str) -> list[Path]:
    """The stage's own files: code and the data it ships (templates, evaluation sets...)."""
    return sorted(
        path
        for path in (REPO_ROOT / package).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not path.name.startswith(".")
        and not path.name.endswith(".pyc")
    )


@cache
def code_files(package: str) -> tuple[Path, ...]:
    """The package's files and the kit modules it imports, transitively."""
    files = _package_files(package)
    seen = {REPO_ROOT / "kit" / "__init__.py"}
    todo = [path for path in files if path.suffix == ".py"]
    while todo:
        for name in _imported_modules(todo.pop()):
            if name.split(".")[0] != "kit":
                continue
            found = _module_file(name)
            if found is not None and found not in seen:
                seen.add(found)
                todo.append(found)
    return tuple(sorted(set(files) | seen))


@cache
def code_digests(package: str) -> dict[str, str]:
    return {
        path.relative_to(REPO_ROOT).as_posix(): sha256_file(path) for path in code_files(package)
    }


@cache
def library_versions(package: str) -> dict[str, str]:
    """The installed versions of the distributions the code imports (a new library can
    change what the stage makes)."""
    owners = importlib.metadata.packages_distributions()
    tops = set()
    for path in code_files(package):
        if path.suffix == ".py":
            tops.update(name.split(".")[0] for name in _imported_modules(path))
    found = {}
    for top in sorted(tops - set(sys.stdlib_module_names) - set(OWN_PACKAGES)):
        for distribution in owners.get(top, ()):
            try:
                found[distribution.lower()] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def reference_identity(reference: str) -> str:
    """A model named in the config, by content where it is local: a folder this kit made by
    its published digest, any other folder by its files; a bundled model by its package's
    version; a Hub id by itself."""
    if not reference:
        return ""
    bundled = bundled_identity(reference)
    if bundled is not None:
        return bundled
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return output_of(folder) or digest_files(folder, [p for p in folder.rglob("*")
                                                           if p.is_file()])  # fmt: skip
    return reference


def dataset_identity(source: str) -> str:
    """A dataset by the content of its rows: a folder this kit made by the data digest its
    provenance publishes (its card may change without its rows), another local folder by its
    data files, a Hub id (or ``none``) by itself."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return source
    provenance = read_provenance(folder)
    if provenance is not None and provenance.finished and provenance.facts.get("data_sha256"):
        return str(provenance.facts["data_sha256"])
    data = [p for p in folder.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES
            and p.name != PROVENANCE_FILE]  # fmt: skip
    return digest_files(folder, data)


def held_out_digests(config: Config) -> dict[str, Any]:
    held_out = config.held_out
    return {
        "local": {task.name: data_fingerprint(task) for task in held_out.local_tasks},
        "registry": [dataclasses.asdict(task) for task in held_out.registry_tasks],
        "benchmark": held_out.benchmark,
    }


def artifact_identity(folder: Path) -> str:
    """A stage's folder by its published digest; one with no finished provenance (a stage
    that stopped, or a folder made by hand) by its files."""
    if not folder.is_dir():
        return ""
    return output_of(folder) or content_digest(folder)


def run_identity(run_dir: Path) -> str:
    """A seeds run by its published digest; a run with no finished provenance (stopped, or
    written elsewhere) by its raw shards and summary."""
    files = [*run_dir.glob("raw/*.jsonl"), run_dir / RUN_SUMMARY_FILE]
    return output_of(run_dir) or digest_files(run_dir, [p for p in files if p.is_file()])


def corpus_identity(config: Config) -> str:
    """The documents of corpus mode by content: a local file or folder by its document files,
    a Hub dataset by its id and split."""
    corpus = config.generation.corpus
    if not corpus.active:
        return ""
    if corpus.hub_dataset:
        return f"{corpus.hub_dataset}@{corpus.hub_split}"
    root = resolve_path(corpus.path)
    files = [root] if root.is_file() else [
        p for p in root.rglob("*") if p.is_file() and p.name.endswith(CORPUS_SUFFIXES)
    ]
    return digest_files(root.parent if root.is_file() else root, files)


def _seeds_inputs(config: Config) -> dict[str, Any]:
    return {"corpus": corpus_identity(config)}


def _dataset_inputs(config: Config) -> dict[str, Any]:
    dataset, mining = config.dataset, config.dataset.hard_negatives
    return {
        "raw_run": run_identity(config.layout.run_dir),
        "repo_id": config.hub.repo_id("dataset"),
        "held_out": held_out_digests(config) if dataset.decontaminate else None,
        "miner": reference_identity(mining.embedder) if mining.active else None,
    }


def training_source(config: Config) -> str:
    """The dataset training reads: ``training.dataset``, else the dataset stage's folder."""
    return config.training.dataset or str(config.layout.dataset_dir)


def _training_inputs(config: Config) -> dict[str, Any]:
    training = config.training
    return {
        "dataset": dataset_identity(training_source(config)),
        "extra_datasets": [dataset_identity(extra.path) for extra in training.extra_datasets],
        "held_out": (
            held_out_digests(config)
            if training.decontaminate and training.extra_datasets
            else None
        ),
        "base_model": reference_identity(training.base_model),
        "deepspeed": _deepspeed_identity(training.deepspeed),
    }


def pushed_model(config: Config) -> str | None:
    """The model repo's commit the release pushed this very model folder in, if it did: the
    card then labels its results with the Hub revision a reader can look up."""
    layout = config.layout
    provenance = read_provenance(layout.release_dir)
    if provenance is None or not provenance.finished or not provenance.facts.get("model"):
        return None
    if provenance.inputs.get("model") != artifact_identity(layout.model_dir):
        return None
    return str(provenance.facts["model"])


def _deepspeed_identity(setting: str) -> dict[str, str] | None:
    """The ZeRO config files training may read, by content (``auto``: both it picks from)."""
    if not setting:
        return None
    files = list(AUTO_DEEPSPEED.values()) if setting == "auto" else [Path(setting).expanduser()]
    return {path.name: sha256_file(path) for path in files if path.is_file()}


def _model_card_inputs(config: Config) -> dict[str, Any]:
    return {
        "model": artifact_identity(config.layout.model_dir),
        "repo_ids": [config.hub.repo_id("model"), config.hub.repo_id("dataset")],
        "eval_sets": {t.name: data_fingerprint(t) for t in config.evaluation.local_tasks},
        "base_model": reference_identity(config.evaluation.base_model),
        "pushed_model": pushed_model(config),
    }


def _space_inputs(config: Config) -> dict[str, Any]:
    """The repo ids, and the model card's GGUF verdicts (they pick the Space's backend)."""
    verdicts = config.layout.card_dir / "gguf" / "verification.json"
    return {
        "repo_ids": [config.hub.repo_id(kind) for kind in ("model", "dataset", "space")],
        "gguf_verification": sha256_file(verdicts) if verdicts.is_file() else "",
    }


def _release_inputs(config: Config) -> dict[str, Any]:
    layout = config.layout
    return {
        "dataset": artifact_identity(layout.dataset_dir),
        "model": artifact_identity(layout.model_dir),
        "card": artifact_identity(layout.card_dir),
        "space": artifact_identity(layout.space_dir),
        "target": release_target(config.hub.token_env),
    }


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("seeds", ("generator", "generation", "quality"), "run_dir", (),
                  _seeds_inputs, "make generate"),
        StageSpec("dataset_builder", ("dataset",), "dataset_dir", ("seeds",), _dataset_inputs,
                  "make dataset"),
        StageSpec("training", ("training",), "model_dir", ("dataset_builder",), _training_inputs,
                  "make train"),
        StageSpec("model_card", ("evaluation",), "card_dir", ("training",), _model_card_inputs,
                  "make evaluate"),
        StageSpec("space", ("space",), "space_dir", ("model_card",), _space_inputs,
                  "make space"),
        StageSpec("release", ("hub",), "release_dir",
                  ("dataset_builder", "training", "model_card", "space"), _release_inputs,
                  "make release"),
    )  # fmt: skip
}


def expected_provenance(name: str, config: Config) -> Provenance:
    """What the stage would record if it ran now (before its output exists)."""
    spec = STAGES[name]
    return Provenance(
        stage=name,
        code=code_digests(name),
        libraries=library_versions(name),
        sections={section: section_digest(config, section) for section in spec.sections},
        inputs=spec.inputs(config),
        kit_version=kit.__version__,
    )


# ---- the decision -------------------------------------------------------------------------


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _listed(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def why_stale(found: Provenance | None, expected: Provenance) -> str | None:
    """Why an artifact with provenance ``found`` is not what the stage would make now
    (``None``: it is)."""
    if found is None:
        return "not made yet (no provenance.json)"
    if not found.finished:
        stopped = found.facts.get("stopped_reason")
        return "the last run did not finish" + (f" (stopped: {stopped})" if stopped else "")
    if found.stage != expected.stage:
        return f"the folder holds the output of {found.stage}"
    if changed := _changed(found.code, expected.code):
        return f"code changed: {_listed(changed)}"
    if changed := _changed(found.libraries, expected.libraries):
        return f"library versions changed: {_listed(changed)}"
    if changed := _changed(found.sections, expected.sections):
        return "config changed: " + _listed([f"[{name}]" for name in changed])
    if changed := _changed(found.inputs, expected.inputs):
        return f"input changed: {_listed(changed)}"
    return None


def decide(name: str, config: Config, expected: Provenance | None = None) -> Decision:
    expected = expected or expected_provenance(name, config)
    reason = why_stale(read_provenance(STAGES[name].folder(config)), expected)
    return Decision(name, reason is None, reason or "up to date")


def plan(config: Config) -> list[Decision]:
    """Every stage in order: up to date, runs (and why), or waits on a stage that runs (it
    then runs only if that stage's output changes)."""
    decisions: list[Decision] = []
    may_run: set[str] = set()
    for name, spec in STAGES.items():
        decision = decide(name, config)
        waiting = [up for up in spec.upstream if up in may_run]
        if decision.current and waiting:
            decision = Decision(
                name, False, f"after {_listed(waiting)}: runs if what it reads changes"
            )
        if not decision.current:
            may_run.add(name)
        decisions.append(decision)
    return decisions


# ---- a stage's run ------------------------------------------------------------------------


@dataclass
class StageRun:
    """A stage that was found stale (or forced) and is running: it clears its provenance
    before it changes its folder and publishes the new one when it is done."""

    name: str
    config: Config
    expected: Provenance
    decision: Decision

    @classmethod
    def open(cls, name: str, config: Config) -> StageRun:
        expected = expected_provenance(name, config)
        return cls(name, config, expected, decide(name, config, expected))

    @property
    def folder(self) -> Path:
        return STAGES[self.name].folder(self.config)

    def begin(self) -> None:
        remove_provenance(self.folder)

    def publish(
        self,
        facts: dict[str, Any] | None = None,
        output: str | None = None,
        finished: bool = True,
        leave_out: tuple[str, ...] = (),
    ) -> Provenance:
        """Write the provenance last; ``output`` defaults to the folder's content digest."""
        folder = self.folder
        digest = output if output is not None else content_digest(folder, leave_out)
        provenance = dataclasses.replace(
            self.expected, output=digest, finished=finished, facts=facts or {}
        )
        write_provenance(folder, provenance)
        return provenance
