"""One typed, validated config for every stage.

Each section is a frozen dataclass; a field's ``metadata`` may carry ``choices`` or a
``range`` (inclusive, either bound ``None``). Loading rejects unknown keys, wrong types,
out-of-range values and missing files with a ``ConfigError`` that names the file and the
key, so the CLI can print one line and exit 2 before any work starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.bundled import BundledModelError, check_model_reference

TASK_TYPES = ("short_long", "long_short", "short_short", "long_long", "sts", "bitext")


class ConfigError(ValueError):
    """A config problem, worded for one line on the terminal."""


def _choice(*values: str, default: str) -> Any:
    return field(default=default, metadata={"choices": values})


def _ranged(default: float, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"range": (low, high)})


@dataclass(frozen=True)
class ProjectSection:
    """Where a release lives on disk."""

    name: str = "synthembed"
    runs_dir: str = "runs"
    build_dir: str = "build"


@dataclass(frozen=True)
class HubSection:
    """Target repositories; the token comes from the environment only."""

    namespace: str = "synthembed"
    dataset_repo: str = "synthembed-data"
    model_repo: str = "synthembed-embedder"
    space_repo: str = "synthembed-demo"
    private: bool = False
    tag: str = ""
    token_env: str = "HF_TOKEN"
    commit_retries: int = _ranged(3, 0, 10)


@dataclass(frozen=True)
class GeneratorSection:
    """The LLM endpoint that writes the synthetic data."""

    backend: str = _choice("local", "openai", default="local")
    base_url: str = ""
    model: str = "SmolLM2-135M-Instruct"
    api_key_env: str = "OPENAI_API_KEY"
    local_model: str = "bundled:smollm2-135m-instruct"
    mode: str = _choice("live", "batch", default="live")
    response_format: str = _choice("auto", "json_schema", "json_object", "text", default="auto")
    concurrency: int = _ranged(8, 1, 4096)
    max_retries: int = _ranged(6, 0, 50)
    timeout_s: float = _ranged(120.0, 0.1, 3600.0)
    requests_per_minute: int = _ranged(0, 0, None)
    tokens_per_minute: int = _ranged(0, 0, None)
    temperature: float = _ranged(1.0, 0.0, 2.0)
    top_p: float = _ranged(1.0, 0.0, 1.0)
    max_tokens: int = _ranged(1024, 16, 32768)
    price_prompt_per_1k: float = _ranged(0.0, 0.0, None)
    price_completion_per_1k: float = _ranged(0.0, 0.0, None)
    backoff_base_s: float = _ranged(1.0, 0.0, 600.0)
    backoff_max_s: float = _ranged(60.0, 0.0, 3600.0)
    batch_poll_s: float = _ranged(30.0, 0.01, 3600.0)
    batch_completion_window: str = "24h"
    batch_max_rounds: int = _ranged(5, 1, 100)
    local_context: int = _ranged(2048, 256, 131072)
    local_startup_timeout_s: float = _ranged(180.0, 1.0, 3600.0)


@dataclass(frozen=True)
class GenerationSection:
    """What to generate: mix, sizes, budget."""

    run_name: str = "default"
    seed: int = 0
    targets: dict[str, int] = field(
        default_factory=lambda: {
            "short_long": 167,
            "long_short": 122,
            "sts": 99,
            "bitext": 89,
            "long_long": 17,
            "short_short": 13,
        }
    )
    tasks_per_brainstorm: int = _ranged(20, 1, 200)
    examples_per_task: float = _ranged(3.3, 0.1, 1000.0)
    languages: str = _choice("xlmr", "english", default="xlmr")
    min_chars: int = _ranged(1, 0, None)
    max_chars: int = _ranged(20000, 1, None)
    budget_tokens: int = _ranged(0, 0, None)
    budget_usd: float = _ranged(0.0, 0.0, None)
    max_requests_per_target: float = _ranged(3.0, 1.0, 100.0)


@dataclass(frozen=True)
class DatasetSection:
    """How the raw run becomes a Hub dataset."""

    validation_fraction: float = _ranged(0.1, 0.0, 0.9)
    license: str = "apache-2.0"
    pretty_name: str = "Synthetic multilingual embedding corpus"
    max_shard_rows: int = _ranged(100_000, 1, None)


@dataclass(frozen=True)
class TrainingSection:
    """The E5-mistral recipe; the defaults are the paper's values."""

    base_model: str = "bundled:gemma-3-270m"
    # Empty: the dataset stage's folder from the layout; else a local folder or a Hub id.
    dataset: str = ""
    max_length: int = _ranged(512, 8, 32768)
    batch_size: int = _ranged(2048, 2, None)
    mini_batch_size: int = _ranged(32, 1, None)
    learning_rate: float = _ranged(1e-4, 0.0, 1.0)
    warmup_steps: int = _ranged(100, 0, None)
    weight_decay: float = _ranged(0.1, 0.0, 1.0)
    epochs: float = _ranged(1.0, 0.01, 100.0)
    max_steps: int = _ranged(-1, -1, None)
    scale: float = _ranged(50.0, 0.0, None)
    lora_r: int = _ranged(16, 1, 1024)
    lora_alpha: int = _ranged(32, 1, 4096)
    lora_dropout: float = _ranged(0.1, 0.0, 1.0)
    gradient_checkpointing: bool = True
    precision: str = _choice("auto", "bf16", "fp16", "fp32", default="auto")
    length_bucketing: bool = True
    deepspeed: str = ""
    launcher: str = _choice("none", "torchrun", "accelerate", default="none")
    num_processes: int = _ranged(1, 1, 4096)
    seed: int = 42
    save_steps: int = _ranged(500, 1, None)
    extra_datasets: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluationSection:
    """Which tasks the card reports; local folders work offline."""

    local_tasks: list[dict[str, Any]] = field(default_factory=list)
    mteb_tasks: list[str] = field(default_factory=list)
    batch_size: int = _ranged(32, 1, None)
    evaluate_base: bool = True
    max_corpus: int = _ranged(0, 0, None)
    model_license: str = "other"


@dataclass(frozen=True)
class SpaceSection:
    """The demo Space and its public-use limits."""

    title: str = "Synthetic embedder demo"
    emoji: str = "🔎"
    short_description: str = "Search a corpus with an LLM-based text embedder"
    license: str = "apache-2.0"
    sample_documents: int = _ranged(200, 0, 100_000)
    max_documents: int = _ranged(2000, 1, 1_000_000)
    max_chars_per_document: int = _ranged(4000, 1, 1_000_000)
    max_total_chars: int = _ranged(2_000_000, 1, None)
    default_top_k: int = _ranged(5, 1, 50)


@dataclass(frozen=True)
class Config:
    """The whole release; ``path`` is the file it came from (for messages and hashes)."""

    project: ProjectSection = field(default_factory=ProjectSection)
    hub: HubSection = field(default_factory=HubSection)
    generator: GeneratorSection = field(default_factory=GeneratorSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    space: SpaceSection = field(default_factory=SpaceSection)
    path: Path = Path("<defaults>")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
            tp, getattr(tp, "__name__", str(tp))
        )
    if origin is dict:
        return "a table"
    if origin is list:
        return "a list"
    return str(tp)


def _check_value(where: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported union type")
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {
            _check_value(f"{where}.{k}", key_tp, k): _check_value(f"{where}.{k}", val_tp, v)
            for k, v in value.items()
        }
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_value(f"{where}[{i}]", item_tp, v) for i, v in enumerate(value)]
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _build_section(source: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {name}.{unknown[0]} (allowed: {', '.join(sorted(fields))})"
        )
    values = {}
    for key, value in raw.items():
        where = f"{source}: {name}.{key}"
        checked = _check_value(where, hints[key], value)
        meta = fields[key].metadata
        if "choices" in meta and checked not in meta["choices"]:
            raise ConfigError(
                f"{where}: {checked!r} is not one of {', '.join(map(repr, meta['choices']))}"
            )
        if "range" in meta:
            low, high = meta["range"]
            if (low is not None and checked < low) or (high is not None and checked > high):
                bounds = f"{'-inf' if low is None else low} .. {'inf' if high is None else high}"
                raise ConfigError(f"{where}: {checked!r} is outside the allowed range {bounds}")
        values[key] = checked
    return cls(**values)


def _validate_cross_fields(source: str, config: Config) -> None:
    unknown_types = sorted(set(config.generation.targets) - set(TASK_TYPES))
    if unknown_types:
        raise ConfigError(
            f"{source}: generation.targets.{unknown_types[0]} is not a task type "
            f"(allowed: {', '.join(TASK_TYPES)})"
        )
    negative = [k for k, v in config.generation.targets.items() if v < 0]
    if negative:
        raise ConfigError(f"{source}: generation.targets.{negative[0]} must be >= 0")
    if config.generation.min_chars > config.generation.max_chars:
        raise ConfigError(f"{source}: generation.min_chars must be <= generation.max_chars")
    if config.training.batch_size % config.training.mini_batch_size:
        raise ConfigError(
            f"{source}: training.mini_batch_size={config.training.mini_batch_size} must divide "
            f"training.batch_size={config.training.batch_size}"
        )
    try:
        check_model_reference(config.training.base_model)
    except BundledModelError as exc:
        raise ConfigError(f"{source}: training.base_model: {exc}") from None
    if config.training.deepspeed:
        ds = resolve_path(config.training.deepspeed)
        if not ds.is_file():
            raise ConfigError(f"{source}: training.deepspeed: file not found: {ds}")
    for i, task in enumerate(config.evaluation.local_tasks):
        _validate_local_task(f"{source}: evaluation.local_tasks[{i}]", task)
    for i, extra in enumerate(config.training.extra_datasets):
        for key in ("path", "task_definition"):
            if key not in extra:
                raise ConfigError(f"{source}: training.extra_datasets[{i}] is missing '{key}'")


LOCAL_TASK_KEYS: dict[str, type] = {
    "name": str,
    "type": str,
    "path": str,
    "instruction": str,
    "languages": str,
    "corpus_path": str,
    "max_queries": int,
    "max_corpus": int,
    "max_pairs": int,
}


def _validate_local_task(where: str, task: dict[str, Any]) -> None:
    unknown = sorted(set(task) - set(LOCAL_TASK_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]} (allowed: {', '.join(LOCAL_TASK_KEYS)})"
        )
    for key in ("name", "type", "path"):
        if key not in task:
            raise ConfigError(f"{where}: missing required key '{key}'")
    for key, value in task.items():
        _check_value(f"{where}.{key}", LOCAL_TASK_KEYS[key], value)
    if task["type"] not in ("retrieval", "sts"):
        raise ConfigError(f"{where}.type: {task['type']!r} is not one of 'retrieval', 'sts'")


def resolve_path(value: str) -> Path:
    """Relative config paths are taken from the working directory (the repo root under make)."""
    return Path(value).expanduser().resolve()


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name != "path"
}


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config; raise ``ConfigError`` naming file and key."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(f"{source}: config file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section [{unknown[0]}] (allowed: {', '.join(SECTIONS)})"
        )
    sections = {
        name: _build_section(source, name, cls, raw.get(name, {})) for name, cls in SECTIONS.items()
    }
    config = Config(**sections, path=path)
    _validate_cross_fields(source, config)
    return config
