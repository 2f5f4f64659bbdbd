"""One typed, validated config for every stage.

Each section is a frozen dataclass; a field's ``metadata`` may carry ``choices`` or a
``range`` (inclusive, either bound ``None``). Loading rejects unknown keys, wrong types,
out-of-range values and missing files with a ``ConfigError`` that names the file and the
key, so the CLI can print one line and exit 2 before any work starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.bundled import BUNDLED_PREFIX, GEMMA_NAME, BundledModelError, check_model_reference
from kit.evalsets import EvalSetError, LocalTask, RegistryTask, check_shape, resolve_path
from kit.schema import GROUNDED_TYPES, TASK_TYPES

REPO_KINDS = ("dataset", "model", "space")
# The file types llama.cpp's converter writes (``--outtype``).
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
GGUF_DEFAULT_TYPES = ("f16", "q8_0")
# The ZeRO configs ``training.deepspeed = "auto"`` picks from, by stage.
AUTO_DEEPSPEED = {
    stage: Path(__file__).resolve().parent.parent / "configs" / "deepspeed" / f"zero{stage}.json"
    for stage in (2, 3)
}


# The document files corpus mode reads (``[generation.corpus] path``).
CORPUS_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".parquet")
# Tokens of a corpus prompt besides its document (instructions and chat framing), generously.
CORPUS_PROMPT_TOKENS = 320


class ConfigError(ValueError):
    """A config problem, worded for one line on the terminal."""


def _choice(*values: str, default: str) -> Any:
    return field(default=default, metadata={"choices": values})


def _ranged(default: float, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"range": (low, high)})


def _this_machine(default: Any, **metadata: Any) -> Any:
    """A setting that says where this machine takes part (a node's rank, a host address),
    not what is made: left out of the section's digest, so every node shares one."""
    return field(default=default, metadata={"this_machine": True, **metadata})


@dataclass(frozen=True)
class ProjectSection:
    """Where a release lives on disk."""

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

    def repo_id(self, kind: str) -> str:
        """``namespace/name`` of the dataset, model or Space repo of this release."""
        name = {"dataset": self.dataset_repo, "model": self.model_repo, "space": self.space_repo}
        return f"{self.namespace}/{name[kind]}"


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
    # Batch API prices; negative: half the live prices above, as OpenAI and Azure charge.
    batch_price_prompt_per_1k: float = _ranged(-1.0, -1.0, None)
    batch_price_completion_per_1k: float = _ranged(-1.0, -1.0, None)
    backoff_base_s: float = _ranged(1.0, 0.0, 600.0)
    backoff_max_s: float = _ranged(60.0, 0.0, 3600.0)
    # What serves base_url: "auto" asks the endpoint itself whether it has a Batch API
    # before a batch run pays for anything; vLLM and llama.cpp servers have none.
    server: str = _choice("auto", "openai", "azure", "vllm", "llama.cpp", default="auto")
    batch_poll_s: float = _ranged(30.0, 0.01, 3600.0)
    batch_completion_window: str = "24h"
    batch_max_rounds: int = _ranged(10, 1, 100)
    # One Batch API input file holds at most this many requests and bytes (the APIs take
    # 50,000 and 200 MB); a round is split into as many files as it needs.
    batch_max_requests: int = _ranged(50_000, 1, None)
    batch_max_bytes: int = _ranged(190 * 1024 * 1024, 1024, None)
    # Prompt tokens the account may have queued in open batches of this model (the
    # "enqueued token" limit on the account's limits page); 0: unknown, learned from refusals.
    batch_enqueued_tokens: int = _ranged(0, 0, None)
    local_context: int = _ranged(2048, 256, 131072)
    local_startup_timeout_s: float = _ranged(180.0, 1.0, 3600.0)

    def prices(self) -> tuple[float, float]:
        """Price per 1k prompt and completion tokens in this mode (a batch price left unset
        is half the live one)."""
        if self.mode != "batch":
            return self.price_prompt_per_1k, self.price_completion_per_1k
        prompt, completion = self.batch_price_prompt_per_1k, self.batch_price_completion_per_1k
        return (
            prompt if prompt >= 0 else self.price_prompt_per_1k / 2,
            completion if completion >= 0 else self.price_completion_per_1k / 2,
        )


@dataclass(frozen=True)
class CorpusSection:
    """``[generation.corpus]``: documents the generator writes rows about (corpus-grounded
    synthesis). Each row's positive is the document itself, so the rows teach the model the
    user's own documents; ``targets`` says how many rows of each grounded type to keep."""

    # A local folder or file of .txt (one document per file), .jsonl(.gz) or .parquet files
    # (one document per row), or ``hub_dataset``: a Hub dataset id read with load_dataset.
    path: str = ""
    hub_dataset: str = ""
    hub_split: str = "train"
    text_column: str = "text"
    # Optional columns: a row without an id gets its file and row number, one without a
    # language gets the one py3langid finds.
    id_column: str = "id"
    title_column: str = "title"
    language_column: str = "language"
    targets: dict[str, int] = field(default_factory=dict)
    # The hard negative of a retrieval row: written by the generator, or the nearest other
    # document that the judge says answers the query worse (needs quality.judge).
    negatives: str = _choice("written", "neighbour", default="written")
    # The consistency gate keeps a row whose document ranks in the top k for its query.
    gate_top_k: int = _ranged(10, 1, 1000)
    # "bm25" (bm25s), or a sentence-transformers model (folder or Hub id) to rank with.
    ranker: str = "bm25"
    # Longer documents are refused before anything is asked: the prompt must leave room for
    # the answer in the generator's context.
    max_document_tokens: int = _ranged(1024, 16, 131072)
    # Where the corpus comes from, for the dataset card (its rows carry corpus text).
    license: str = ""
    attribution: str = ""

    @property
    def active(self) -> bool:
        return bool(self.path or self.hub_dataset) and any(self.targets.values())


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
    # Keep only these ISO 639-1 codes of the mix (weights renormalized); empty: all of it.
    language_subset: list[str] = field(default_factory=list)
    # Ask for only some of a template's placeholder values, e.g.
    # {"short_long.num_words" = ["50", "100"]} (each a subset of the template's own values).
    placeholder_subsets: dict[str, list[str]] = field(default_factory=dict)
    min_chars: int = _ranged(1, 0, None)
    max_chars: int = _ranged(20000, 1, None)
    budget_tokens: int = _ranged(0, 0, None)
    budget_usd: float = _ranged(0.0, 0.0, None)
    max_requests_per_target: float = _ranged(3.0, 1.0, 100.0)
    corpus: CorpusSection = field(default_factory=CorpusSection)


@dataclass(frozen=True)
class QualitySection:
    """Gates every generated row passes before seeds accepts it (counted by reason)."""

    language_check: bool = True
    # A text shorter than this, or identified with less confidence, is "unverified".
    language_min_chars: int = _ranged(10, 1, None)
    language_min_confidence: float = _ranged(0.7, 0.0, 1.0)
    # Also reject a row none of whose texts could be verified in its claimed language.
    require_verified_language: bool = False
    content_rules: bool = True
    near_duplicates: bool = True
    near_duplicate_threshold: float = _ranged(0.8, 0.0, 1.0)
    minhash_permutations: int = _ranged(128, 16, 1024)
    # Processes that share the content and language gates of a large batch of answers (a
    # Batch API output file); a live run judges each answer in-process as it arrives.
    gate_processes: int = _ranged(2, 1, 64)
    # Ask the generator whether the positive fits the query better than the negative.
    judge: bool = False
    judge_action: str = _choice("drop", "swap", default="drop")
    # Corpus-grounded rows: keep one only if its document ranks in generation.corpus.gate_top_k
    # for its query among the whole corpus.
    consistency_check: bool = True


@dataclass(frozen=True)
class HardNegativesSection:
    """``[dataset.hard_negatives]``: extra negatives mined with sentence-transformers'
    ``mine_hard_negatives`` for the query/positive task types (NV-Retriever's TopK-PercPos)."""

    enabled: bool = False
    # The model to mine with: a trained embedder (a sentence-transformers model, loaded as it
    # is). Mining stays off while none is named (an untrained base model's nearest neighbours
    # are noise); ``config_notes`` says so.
    embedder: str = ""
    # Mined negatives per row, beside the generated one; the paper trained on one negative.
    num_negatives: int = _ranged(1, 1, 64)
    # Skip candidates scoring above positive - |positive| * relative_margin (95% at 0.05);
    # in [0, 1), checked with the cross-field rules since the ranges here are inclusive.
    relative_margin: float = 0.05
    max_length: int = _ranged(512, 8, 32768)
    batch_size: int = _ranged(32, 1, None)

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.embedder)


@dataclass(frozen=True)
class DatasetSection:
    """How the raw run becomes a Hub dataset."""

    validation_fraction: float = _ranged(0.1, 0.0, 0.9)
    license: str = "apache-2.0"
    pretty_name: str = "Synthetic multilingual embedding corpus"
    max_shard_rows: int = _ranged(100_000, 1, None)
    # Drop rows that share an n-gram of this many words with a held-out set (``Config.held_out``).
    decontaminate: bool = True
    decontamination_ngram: int = _ranged(13, 3, 100)
    hard_negatives: HardNegativesSection = field(default_factory=HardNegativesSection)


@dataclass(frozen=True)
class ExtraDataset:
    """A labelled public set trained on beside the synthetic data, read with ``load_dataset``.

    Its rows get ``task_definition`` as their instruction; the column keys name its columns
    (``negative_column = ""`` for a set without hard negatives).
    """

    path: str = field(default="", metadata={"required": True})
    task_definition: str = field(default="", metadata={"required": True})
    config: str = "default"
    split: str = "train"
    # A split of it to add to the validation pairs as well (empty: none).
    validation_split: str = ""
    query_column: str = "query"
    positive_column: str = "positive"
    negative_column: str = "negative"
    # Train on at most this many of its rows (0: all of them), the same rows whatever the
    # training seed: a large public set would otherwise leave the synthetic rows a sliver of
    # each batch.
    max_rows: int = _ranged(0, 0)


@dataclass(frozen=True)
class TrainingSection:
    """The E5-mistral recipe; the defaults are the paper's values."""

    base_model: str = "bundled:gemma-3-270m"
    # Empty: the dataset stage's folder from the layout; else a local folder or a Hub id.
    dataset: str = ""
    # Which of its rows train: all, only those written about a corpus document ("corpus"),
    # or only those written from scratch ("scratch").
    synthetic_rows: str = _choice("all", "corpus", "scratch", default="all")
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
    # Also train the first d values of the embedding as an embedding of its own
    # (MatryoshkaLoss), for each d listed; the full width is always trained. Empty: off.
    matryoshka_dims: list[int] = field(default_factory=list)
    # A ZeRO config file, or "auto": ZeRO-2 when a GPU holds the bf16 base and a rank's
    # working set, else ZeRO-3 (the stage says which and why).
    deepspeed: str = ""
    launcher: str = _choice("none", "torchrun", "accelerate", default="none")
    # Processes per node; the world is nnodes x num_processes. node_rank and rdzv_endpoint
    # (node 0's host:port) may also come from PET_NODE_RANK and PET_RDZV_ENDPOINT.
    num_processes: int = _ranged(1, 1, 4096)
    nnodes: int = _ranged(1, 1, 4096)
    node_rank: int = _this_machine(0, range=(0, 4095))
    rdzv_endpoint: str = _this_machine("")
    seed: int = 42
    save_steps: int = _ranged(50, 1, None)
    # Diagnostics: validation pairs scored (accuracy@1), and every how many steps (0: only
    # before and after training).
    validation_pairs: int = _ranged(512, 2, None)
    eval_steps: int = _ranged(0, 0, None)
    extra_datasets: list[ExtraDataset] = field(default_factory=list)
    # The public sets above are checked against the held-out sets like the synthetic rows.
    decontaminate: bool = True
    decontamination_ngram: int = _ranged(13, 3, 100)
    # GGUF files of the release for llama.cpp (and Ollama, LM Studio), one per type listed,
    # written by llama.cpp's own converter; empty: none.
    gguf: list[str] = field(default_factory=lambda: list(GGUF_DEFAULT_TYPES))


@dataclass(frozen=True)
class EvaluationSection:
    """Which tasks the card reports; local folders work offline."""

    local_tasks: list[LocalTask] = field(default_factory=list)
    # An mteb benchmark run as it is defined, e.g. "MTEB(eng, v2)": its tasks, splits and
    # language subsets (``mteb.get_benchmark``). Empty: none.
    benchmark: str = ""
    # More registry tasks: a name, or a table naming the subsets or languages to run.
    mteb_tasks: list[RegistryTask] = field(default_factory=list)
    # "auto": as sentence-transformers picks (CUDA when present, every GPU of it), else CPU;
    # or a device ("cpu", "cuda:1") or several GPUs ("cuda:0,cuda:1").
    device: str = "auto"
    # "auto": bf16 for a decoder on a GPU (fp16 where the GPU lacks bf16), else fp32.
    precision: str = _choice("auto", "fp32", "bf16", "fp16", default="auto")
    # Texts per batch; 0: picked per model (32 on CPU, sized to the free memory on a GPU).
    batch_size: int = _ranged(0, 0, None)
    evaluate_base: bool = True
    # The base to compare with; empty: the training record's (a local folder must be named
    # here, since a published record holds no path of the build machine).
    base_model: str = ""
    model_license: str = "other"
    # The card's table of smaller vectors (each width below, at fp32) and int8 and binary
    # vectors, for the trained model, derived from the embeddings already computed. Empty
    # widths: the Matryoshka widths it was trained at, else 1/2, 1/4 and 1/8 of its own.
    compression: bool = True
    compression_dims: list[int] = field(default_factory=list)
    # Serve each GGUF file of the model with llama.cpp and compare it with the safetensors
    # model on the tasks above (cosine, scores, speed); the card and the Space use the verdict.
    gguf_check: bool = True


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
    # How the Space embeds: auto (the model's GGUF on llama.cpp when one passed the model
    # card's check, else sentence-transformers), gguf, or sentence-transformers.
    backend: str = _choice("auto", "gguf", "sentence-transformers", default="auto")


@dataclass(frozen=True)
class Layout:
    """Where each stage publishes: one folder per stage, written by that stage only."""

    run_dir: Path  # seeds: raw shards, ledger, run.json
    build_dir: Path
    dataset_dir: Path  # dataset_builder: the dataset repo
    checkpoint_dir: Path  # training: resumable checkpoints, never published
    model_dir: Path  # training: the sentence-transformers folder
    mining_cache_dir: Path  # dataset_builder: embeddings of mined texts, by miner and text
    eval_dir: Path  # model_card: mteb's result cache and results.json
    card_dir: Path  # model_card: the model card, its plot and the staged mteb results
    space_dir: Path  # space: the Space repo
    release_dir: Path  # release: the three repos as they are pushed


@dataclass(frozen=True)
class HeldOut:
    """The evaluation sets no training text may overlap: declared once, in ``[evaluation]``."""

    local_tasks: tuple[LocalTask, ...]
    registry_tasks: tuple[RegistryTask, ...]
    benchmark: str = ""


@dataclass(frozen=True)
class Config:
    """The whole release; ``path`` is the file it came from (for messages and hashes)."""

    project: ProjectSection = field(default_factory=ProjectSection)
    hub: HubSection = field(default_factory=HubSection)
    generator: GeneratorSection = field(default_factory=GeneratorSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    quality: QualitySection = field(default_factory=QualitySection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    space: SpaceSection = field(default_factory=SpaceSection)
    path: Path = Path("<defaults>")

    @property
    def layout(self) -> Layout:
        build = Path(self.project.build_dir)
        return Layout(
            run_dir=Path(self.project.runs_dir) / self.generation.run_name,
            build_dir=build,
            dataset_dir=build / "dataset",
            checkpoint_dir=build / "checkpoints",
            model_dir=build / "model",
            mining_cache_dir=build / "mining-cache",
            eval_dir=build / "eval",
            card_dir=build / "card",
            space_dir=build / "space",
            release_dir=build / "release",
        )

    @property
    def held_out(self) -> HeldOut:
        """What the dataset and training stages keep out of the data; a stage that reads it
        records the sets' content digests among its inputs."""
        evaluation = self.evaluation
        return HeldOut(
            tuple(evaluation.local_tasks), tuple(evaluation.mteb_tasks), evaluation.benchmark
        )


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
    if dataclasses.is_dataclass(tp):
        bare_name = getattr(tp, "BARE_NAME", None)
        if bare_name and isinstance(value, str):
            value = {bare_name: value}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build_entry(where, tp, value)
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


def _checked_fields(where: str, cls: type, raw: dict[str, Any], unknown_key: str) -> dict:
    """Type, choice and range checks of every key of a table; ``unknown_key`` words the error
    for a key the dataclass does not have."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(unknown_key.format(key=unknown[0]) + f" (allowed: {', '.join(fields)})")
    values = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        checked = _check_value(at, hints[key], value)
        meta = fields[key].metadata
        if "choices" in meta and checked not in meta["choices"]:
            raise ConfigError(
                f"{at}: {checked!r} is not one of {', '.join(map(repr, meta['choices']))}"
            )
        if "range" in meta:
            low, high = meta["range"]
            if (low is not None and checked < low) or (high is not None and checked > high):
                bounds = f"{'-inf' if low is None else low} .. {'inf' if high is None else high}"
                raise ConfigError(f"{at}: {checked!r} is outside the allowed range {bounds}")
        values[key] = checked
    return values


def _build_entry(where: str, cls: type, raw: dict[str, Any]) -> Any:
    """One entry of a list of tables (a local task, an extra dataset), validated once."""
    values = _checked_fields(where, cls, raw, f"{where}: unknown key {{key}}")
    for f in dataclasses.fields(cls):
        if f.metadata.get("required") and f.name not in values:
            raise ConfigError(f"{where}: missing required key '{f.name}'")
    return cls(**values)


def _build_section(source: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    where = f"{source}: {name}"
    return cls(**_checked_fields(where, cls, raw, f"{source}: unknown key {name}.{{key}}"))


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
    generator = config.generator
    if generator.mode == "batch" and generator.server in ("vllm", "llama.cpp"):
        raise ConfigError(
            f"{source}: generator.mode = 'batch': a {generator.server} server has no Batch "
            "API; use mode = 'live'"
        )
    _validate_corpus(source, config)
    if config.generation.min_chars > config.generation.max_chars:
        raise ConfigError(f"{source}: generation.min_chars must be <= generation.max_chars")
    if config.training.batch_size % config.training.mini_batch_size:
        raise ConfigError(
            f"{source}: training.mini_batch_size={config.training.mini_batch_size} must divide "
            f"training.batch_size={config.training.batch_size}"
        )
    _validate_dims(source, "training.matryoshka_dims", config.training.matryoshka_dims)
    _validate_gguf_types(source, config.training.gguf)
    _validate_dims(source, "evaluation.compression_dims", config.evaluation.compression_dims)
    for key, reference in (
        ("training.base_model", config.training.base_model),
        ("dataset.hard_negatives.embedder", config.dataset.hard_negatives.embedder),
    ):
        try:
            check_model_reference(reference)
        except BundledModelError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None
    miner = config.dataset.hard_negatives.embedder
    if miner and (why := _not_an_embedder(miner)):
        raise ConfigError(f"{source}: dataset.hard_negatives.embedder: {why}")
    margin = config.dataset.hard_negatives.relative_margin
    if not 0.0 <= margin < 1.0:
        raise ConfigError(
            f"{source}: dataset.hard_negatives.relative_margin: {margin!r} must be at least 0.0 "
            "and below 1.0"
        )
    if config.training.deepspeed not in ("", "auto"):
        ds = resolve_path(config.training.deepspeed)
        if not ds.is_file():
            raise ConfigError(f"{source}: training.deepspeed: file not found: {ds}")
    _validate_local_tasks(source, config.evaluation.local_tasks)
    _validate_evaluation_device(source, config.evaluation.device)
    for i, extra in enumerate(config.training.extra_datasets):
        where = f"{source}: training.extra_datasets[{i}].path"
        looks_local = extra.path.startswith((".", "/", "~")) or extra.path.count("/") > 1
        if looks_local and not resolve_path(extra.path).is_dir():
            raise ConfigError(f"{where}: not a folder: {extra.path}")


def _validate_corpus(source: str, config: Config) -> None:
    corpus = config.generation.corpus
    where = f"{source}: generation.corpus"
    unknown = sorted(set(corpus.targets) - set(GROUNDED_TYPES))
    if unknown:
        raise ConfigError(
            f"{where}.targets.{unknown[0]}: a corpus grounds only {', '.join(GROUNDED_TYPES)}"
        )
    if any(n < 0 for n in corpus.targets.values()):
        raise ConfigError(f"{where}.targets: every target must be >= 0")
    if corpus.path and corpus.hub_dataset:
        raise ConfigError(f"{where}: give path or hub_dataset, not both")
    if any(corpus.targets.values()) and not (corpus.path or corpus.hub_dataset):
        raise ConfigError(f"{where}.targets: name the documents in path or hub_dataset")
    if corpus.path and not resolve_path(corpus.path).exists():
        raise ConfigError(f"{where}.path: not found: {corpus.path}")
    quality = config.quality
    if corpus.active and corpus.negatives == "neighbour" and not (
        quality.judge and quality.judge_action == "drop"
    ):
        raise ConfigError(
            f"{where}.negatives = 'neighbour' takes the judge's word that the neighbour does "
            "not answer the query: set quality.judge = true and quality.judge_action = 'drop'"
        )
    generator = config.generator
    room = generator.local_context - generator.max_tokens - CORPUS_PROMPT_TOKENS
    if corpus.active and generator.backend == "local" and corpus.max_document_tokens > room:
        raise ConfigError(
            f"{where}.max_document_tokens = {corpus.max_document_tokens}: the local "
            f"generator's context ({generator.local_context} tokens) leaves {room} for a "
            f"document after the prompt and max_tokens ({generator.max_tokens})"
        )


def _validate_gguf_types(source: str, types: list[str]) -> None:
    for i, name in enumerate(types):
        if name not in GGUF_TYPES:
            raise ConfigError(
                f"{source}: training.gguf[{i}]: {name!r} is not a GGUF type llama.cpp's "
                f"converter writes ({', '.join(GGUF_TYPES)})"
            )
        if types.index(name) != i:
            raise ConfigError(f"{source}: training.gguf[{i}]: {name!r} is listed twice")


def _validate_dims(source: str, key: str, dims: list[int]) -> None:
    """Embedding widths: positive and listed once (the model's width is checked when the
    model is at hand)."""
    for i, dim in enumerate(dims):
        if dim < 1:
            raise ConfigError(f"{source}: {key}[{i}]: {dim} is not a positive width")
        if dim in dims[:i]:
            raise ConfigError(f"{source}: {key}[{i}]: {dim} is listed twice")


def _not_an_embedder(reference: str) -> str | None:
    """Why a model cannot mine: an untrained base, or a folder that is no
    sentence-transformers model (a Hub id is checked when it is loaded)."""
    if reference == f"{BUNDLED_PREFIX}{GEMMA_NAME}":
        return f"{reference} is an untrained base decoder, not a trained embedder"
    folder = Path(reference).expanduser()
    if folder.is_dir() and not (folder / "modules.json").is_file():
        return (
            f"{reference} is not a sentence-transformers model (no modules.json): mining "
            "needs a trained embedder"
        )
    return None


def _validate_evaluation_device(source: str, device: str) -> None:
    """``auto``, one device, or several GPUs (each runs its own encoding process)."""
    parts = [part.strip() for part in device.split(",")]
    single = len(parts) == 1 and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", parts[0])
    several = len(parts) > 1 and all(re.fullmatch(r"cuda:\d+", part) for part in parts)
    if not (single or several):
        raise ConfigError(
            f"{source}: evaluation.device: {device!r} is not 'auto', 'cpu', 'mps', 'cuda', "
            "'cuda:N' or a list of GPUs such as 'cuda:0,cuda:1'"
        )


def _validate_local_tasks(source: str, tasks: list[LocalTask]) -> None:
    """Names are unique and every set is there with the right shape: seconds, not minutes."""
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        where = f"{source}: evaluation.local_tasks[{i}]"
        if task.name in seen:
            raise ConfigError(f"{where}.name: {task.name!r} is used twice")
        seen.add(task.name)
        if task.type != "retrieval" and (task.max_queries or task.max_corpus or task.corpus_path):
            raise ConfigError(
                f"{where}: max_queries, max_corpus and corpus_path apply to retrieval; "
                "use max_pairs"
            )
        if task.type == "retrieval" and task.max_pairs:
            raise ConfigError(f"{where}: max_pairs applies to sts and bitext; use max_queries")
        try:
            check_shape(task)
        except EvalSetError as exc:
            raise ConfigError(f"{where}.path: {exc}") from None


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


def config_notes(config: Config) -> list[str]:
    """Settings that are valid but do less than they seem to: said by ``python -m kit`` and
    by the stage they concern."""
    mining = config.dataset.hard_negatives
    if mining.enabled and not mining.embedder:
        return [
            "dataset.hard_negatives: mining is off, since no trained embedder is named in "
            "dataset.hard_negatives.embedder (an untrained base model's nearest neighbours "
            "are noise, not hard negatives)"
        ]
    return []


def section_digest(config: Config, name: str) -> str:
    """SHA-256 of one section's resolved values: what a stage's output depends on."""
    section = getattr(config, name)
    values = dataclasses.asdict(section)
    for spec in dataclasses.fields(section):
        if spec.metadata.get("this_machine"):
            del values[spec.name]
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
