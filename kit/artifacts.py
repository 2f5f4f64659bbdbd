"""The files stages hand each other, as typed records: one name and one reader and writer each.

A later stage learns about its input only from these records (and the artifact's
``provenance.json``, ``kit.staleness``), so the fields here are the whole contract between
stages. Readers ignore keys they do not know (an artifact written by a newer kit still reads)
and name the stage to run again when a key they need is missing.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kit.errors import StageError
from kit.files import atomic_write_json

PROVENANCE_FILE = "provenance.json"
RUN_SUMMARY_FILE = "run.json"
TRAINING_RECORD_FILE = "training_record.json"
RESULTS_FILE = "results.json"

R = TypeVar("R")


class ArtifactError(StageError):
    """An artifact is missing, torn, or written by a kit that did not record what we need."""


def read_record(cls: type[R], path: Path, made_by: str) -> R:
    """``cls`` from the JSON object in ``path``; a one-line error naming ``made_by`` (the
    command that writes it) when the file is missing, torn or lacks a required key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: run {made_by}") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); run {made_by} again") from None
    try:
        return from_dict(cls, data)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: {exc}; run {made_by} again") from None


def from_dict(cls: type[R], data: Any) -> R:
    """Build a (nested) record dataclass from parsed JSON, keeping only the known keys."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        if spec.name in data:
            values[spec.name] = _convert(hints[spec.name], data[spec.name])
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ValueError(f"no {spec.name!r} in the {cls.__name__}")
    return cls(**values)


def _convert(tp: Any, value: Any) -> Any:
    """Nested records become dataclasses again, also inside lists, dicts and optionals."""
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _convert(inner, value)
    if origin is list and args:
        return [_convert(args[0], item) for item in value]
    if origin is dict and len(args) == 2:
        return {key: _convert(args[1], item) for key, item in value.items()}
    return value


def write_record(path: Path, record: Any) -> Path:
    return atomic_write_json(path, dataclasses.asdict(record))


# ---- seeds -> dataset_builder ------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorInfo:
    model: str
    backend: str
    bundled_small_model: bool = False
    mode: str = "live"
    note: str = ""


@dataclass(frozen=True)
class RunSummary:
    """``run.json``: how a seeds run went. Its clock times are the only fields that change
    when a resumed run adds nothing, so they stay out of the run's content digest."""

    run_name: str
    complete: bool
    stopped_reason: str
    generator: GeneratorInfo
    accepted: dict[str, int]
    rejected: dict[str, int]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    acceptance_rate: float
    languages: dict[str, int]
    templates: dict[str, str] = field(default_factory=dict)
    # Which quality gates were on (None: a run from before the summary recorded it).
    gates: dict[str, bool] | None = None
    targets: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    # The documents corpus-grounded rows were written about (``seeds.corpus.Corpus.summary``:
    # source, documents, sha256, languages, license, attribution, and the snapshot file the
    # dataset publishes as its corpus config); None: every row was written from scratch.
    corpus: dict[str, Any] | None = None
    # Accepted corpus-grounded rows per task type (a part of ``accepted``).
    corpus_grounded: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""

    CLOCK_FIELDS: typing.ClassVar[tuple[str, ...]] = ("started_at", "finished_at")

    def content(self) -> dict[str, Any]:
        """Everything but the clock: equal for two runs that asked and accepted the same."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if k not in self.CLOCK_FIELDS}


def write_run_summary(run_dir: Path, summary: RunSummary) -> Path:
    return write_record(run_dir / RUN_SUMMARY_FILE, summary)


def read_run_summary(run_dir: Path) -> RunSummary:
    """run.json is written when a seeds run stops, so without it there is nothing to publish."""
    path = run_dir / RUN_SUMMARY_FILE
    if not path.is_file():
        raise ArtifactError(f"no seeds run at {run_dir}: {path} is missing (run `python -m seeds`)")
    return read_record(RunSummary, path, "`python -m seeds`")


# ---- dataset_builder -> training ---------------------------------------------------------


@dataclass(frozen=True)
class DatasetFacts:
    """What training and the model card learn about a published dataset (its provenance)."""

    repo_id: str
    data_sha256: str
    generator: GeneratorInfo | None
    license: str
    languages: list[str]
    hard_negatives: dict[str, Any] | None = None


# ---- training -> model_card --------------------------------------------------------------


@dataclass(frozen=True)
class ExtraDatasetUse:
    dataset: str
    task_definition: str
    # The rows it was cut to (``max_rows``; 0: all of them).
    max_rows: int = 0


def _shown(label: str, default: Any = dataclasses.MISSING, factory: Any = None) -> Any:
    """A record field the model card shows in its training table, under ``label``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"card": label})
    return field(default=default, metadata={"card": label})


@dataclass(frozen=True, kw_only=True)
class TrainingRecord:
    """``training_record.json``: how the released model was trained, published with it.
    Wall-clock fields stay out of the card, so a re-run gives the same card."""

    base_model: str = _shown("base model")
    dataset: str = _shown("dataset")
    dataset_revision: str = _shown("dataset revision")
    synthetic_rows: str = _shown("synthetic rows used", "all")
    extra_datasets: list[ExtraDatasetUse] = _shown("public datasets added", factory=list)
    train_rows: dict[str, int] = _shown("training rows by shape", factory=dict)
    steps: int = _shown("optimizer steps")
    final_loss: float | None = _shown("final training loss", None)
    max_length: int = _shown("max length (tokens)")
    precision: str = _shown("precision")
    deepspeed: dict[str, Any] | None = _shown("DeepSpeed", None)
    seed: int = _shown("seed")
    kit_version: str = _shown("kit version", "")
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dataset_repo_id: str | None = None
    generator: GeneratorInfo | None = None
    languages: list[str] = field(default_factory=list)
    train_runtime_s: float = 0.0
    matryoshka_dims: list[int] = field(default_factory=list)
    world_size: int = 1
    resumed_from: str | None = None
    decontamination: dict[str, Any] = field(default_factory=dict)
    validation_accuracy_before: float | None = None
    validation_accuracy_after: float | None = None
    validation_accuracy_curve: list[Any] = field(default_factory=list)
    loss_curve: list[Any] = field(default_factory=list)
    negatives_per_anchor_share: float | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    # The GGUF files written beside the safetensors (paths in the model repo).
    gguf_files: list[str] = field(default_factory=list)
    finished_at: str = ""

    def card_rows(self) -> list[tuple[str, Any]]:
        """(label, value as JSON data) of each field the card shows, in the record's order."""
        values = dataclasses.asdict(self)
        return [
            (spec.metadata["card"], values[spec.name])
            for spec in dataclasses.fields(self)
            if "card" in spec.metadata
        ]


def write_training_record(model_dir: Path, record: TrainingRecord) -> Path:
    return write_record(model_dir / TRAINING_RECORD_FILE, record)


def read_training_record(model_dir: Path) -> TrainingRecord:
    return read_record(TrainingRecord, model_dir / TRAINING_RECORD_FILE, "`make train`")


# ---- model_card's evaluation summary -----------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """One model's run of one task (or its cached result), and its compression variants'."""

    main_score: float
    scores_file: str
    evaluation_time_s: float | None = None
    reused: bool = False
    compression: dict[str, ModelRun] | None = None
    compression_time_s: float | None = None


@dataclass(frozen=True)
class TaskSummary:
    name: str
    source: str
    type: str
    dataset: dict[str, Any]
    revision: str | None
    languages: list[str]
    main_score: str
    query_prompt: str
    document_prompt: str
    prompt_source: str
    size: dict[str, Any]
    results: dict[str, ModelRun]
    # The splits and subsets it runs, where they come from, and the benchmark it is part of.
    splits: list[str] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)
    subsets_origin: str = ""
    benchmark: str = ""


@dataclass(frozen=True)
class GgufCheck:
    """One GGUF file served by llama.cpp against the safetensors model: cosine on a sample of
    the evaluation texts, scores per task (x100), speed on the same texts, and the verdict."""

    file: str
    type: str
    bytes: int
    sha256: str
    min_cosine: float
    mean_cosine: float
    texts_compared: int
    scores: dict[str, float]
    score_drops: dict[str, float]
    speedup_vs_torch: float | None
    threads: int
    passed: bool
    rule: str


@dataclass(frozen=True)
class EvaluationResults:
    """``results.json``: every task's scores for the trained model and its base; the card
    and the benchmarks are written from it."""

    mteb_version: str
    models: dict[str, dict[str, str]]
    tasks: list[TaskSummary]
    skipped: list[dict[str, str]] = field(default_factory=list)
    compression: dict[str, Any] | None = None
    gguf: list[GgufCheck] = field(default_factory=list)
    wall_time_s: float = 0.0
    benchmark: str = ""
    # Per model, mteb's "Mean(Task)" and "Mean(TaskType)", and what they are taken over.
    means: dict[str, dict[str, float | None]] = field(default_factory=dict)
    means_scope: str = ""


def write_evaluation_results(eval_dir: Path, results: EvaluationResults) -> Path:
    return write_record(eval_dir / RESULTS_FILE, results)


def read_evaluation_results(eval_dir: Path) -> EvaluationResults:
    return read_record(EvaluationResults, eval_dir / RESULTS_FILE, "`make evaluate`")
