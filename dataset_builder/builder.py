"""The dataset's schema and its ``datasets`` builder: every other module takes columns from here.

One config per task type with the type's native fields, plus ``default``, the unified
(query, positive, negative) view that training reads. The builder reads a seeds run through a
``RunScan`` (validated rows spooled as Arrow), and ``select_rows`` is the one projection both
the builder and the Parquet export use, so the published rows are the builder's rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.builder import Key

if TYPE_CHECKING:
    from dataset_builder.raw_run import RunScan

SPLITS = ("train", "validation")

# config name -> (task type, native fields); the order of the fields is the column order.
TYPE_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "retrieval": ("short_long", ("user_query", "positive_document", "hard_negative_document")),
    "classification": ("long_short", ("input_text", "label", "misleading_label")),
    "short_short": ("short_short", ("input", "positive_document")),
    "long_long": ("long_long", ("input", "positive_document")),
    "sts": ("sts", ("S1", "S2", "S3")),
    "bitext": ("bitext", ("S1", "S2", "S3")),
}
CONFIG_NAMES = (*TYPE_CONFIGS, "default")
NATIVE_FIELDS = dict(TYPE_CONFIGS.values())

# task type -> the native fields that become (query, positive, negative) in ``default``.
UNIFIED_MAPPING: dict[str, tuple[str, str, str | None]] = {
    "short_long": ("user_query", "positive_document", "hard_negative_document"),
    "long_short": ("input_text", "label", "misleading_label"),
    "short_short": ("input", "positive_document", None),
    "long_long": ("input", "positive_document", None),
    "sts": ("S1", "S2", "S3"),
    "bitext": ("S1", "S2", "S3"),
}
PROVENANCE_COLUMNS = ("target_language", "generator_model", "template_id", "template_sha256")

CITATION = """@article{wang2024improving,
  title={Improving Text Embeddings with Large Language Models},
  author={Wang, Liang and Yang, Nan and Huang, Xiaolong and Yang, Linjun and
          Majumder, Rangan and Wei, Furu},
  journal={arXiv preprint arXiv:2401.00368},
  year={2024}
}"""
DESCRIPTION = (
    "LLM-synthesized training data for text embeddings in the style of Wang et al. (2024): "
    "six task types, many languages, one example per brainstormed task."
)
HOMEPAGE = "https://arxiv.org/abs/2401.00368"


def _strings(names: tuple[str, ...]) -> dict[str, datasets.Value]:
    return {name: datasets.Value("string") for name in names}


def features_for(config_name: str) -> datasets.Features:
    """The published columns of one config; every value is a (nullable) string."""
    if config_name == "default":
        return datasets.Features(
            _strings(
                ("id", "task_type", "task_definition", "language", "query", "positive", "negative")
            )
            | _strings(PROVENANCE_COLUMNS)
        )
    task_type, native = TYPE_CONFIGS[config_name]
    languages = ("language", "target_language") if task_type == "bitext" else ("language",)
    return datasets.Features(_strings(("id", "task_definition", *languages, *native)))


def project_table(config_name: str, table: pa.Table) -> pa.Table:
    """Accepted raw rows (the scan's columns) as rows of ``config_name``, typed by its features."""
    example = table["example"]
    if config_name == "default":
        columns = {
            "id": table["id"],
            "task_type": table["task_type"],
            "task_definition": table["task_definition"],
            "language": table["language"],
        }
        task_type = table["task_type"]
        for position, role in enumerate(("query", "positive", "negative")):
            column = pa.nulls(table.num_rows, pa.string())
            for name, fields in UNIFIED_MAPPING.items():
                if fields[position] is not None:
                    column = pc.if_else(
                        pc.equal(task_type, name),
                        pc.struct_field(example, fields[position]),
                        column,
                    )
            columns[role] = column
        bitext = pc.equal(task_type, "bitext")
        columns["target_language"] = pc.if_else(bitext, table["target_language"], None)
        columns.update((name, table[name]) for name in PROVENANCE_COLUMNS[1:])
    else:
        task_type, native = TYPE_CONFIGS[config_name]
        names = ("id", "task_definition", "language")
        names += ("target_language",) if task_type == "bitext" else ()
        columns = {name: table[name] for name in names}
        columns.update((name, pc.struct_field(example, name)) for name in native)
    return pa.table(columns, schema=features_for(config_name).arrow_schema)


@dataclass
class SynthEmbedConfig(datasets.BuilderConfig):
    """``run_dir``: the seeds run; ``validation_fraction``: share of task definitions held out."""

    run_dir: str = ""
    validation_fraction: float = 0.1


class SynthEmbed(datasets.GeneratorBasedBuilder):
    """Reads a seeds run; ``scan`` lets several configs share one pass over the raw shards."""

    BUILDER_CONFIG_CLASS = SynthEmbedConfig
    BUILDER_CONFIGS = [
        SynthEmbedConfig(name=name, description=f"Task type {TYPE_CONFIGS[name][0]}, native fields")
        for name in TYPE_CONFIGS
    ] + [SynthEmbedConfig(name="default", description="All task types as query/positive/negative")]
    DEFAULT_CONFIG_NAME = "default"
    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args: Any, scan: RunScan | None = None, **kwargs: Any) -> None:
        self._scan = scan
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=features_for(self.config.name),
            citation=CITATION,
            homepage=HOMEPAGE,
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        # Imported here: the reader takes its field lists from this module.
        from dataset_builder.raw_run import scan_run

        if self._scan is None:
            if not self.config.run_dir:
                raise ValueError("SynthEmbed needs run_dir=<seeds run folder>")
            self._spool = tempfile.TemporaryDirectory(prefix="synthembed-scan-")
            self._scan = scan_run(Path(self.config.run_dir), Path(self._spool.name))
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in SPLITS
        ]

    def _generate_examples(self, split: str) -> Iterator[tuple[Key, dict]]:
        assert self._scan is not None, "_split_generators sets the scan"
        for number, table in enumerate(iter_config_tables(self._scan, self.config, split)):
            for row, example in enumerate(table.to_pylist()):
                yield Key(number, row), example


def select_rows(config_name: str, table: pa.Table, held_out: pa.Array, split: str) -> pa.Table:
    """The rows of a scan batch that belong to ``config_name`` and ``split``, projected."""
    mask = held_out if split == "validation" else pc.invert(held_out)
    if config_name != "default":
        mask = pc.and_(mask, pc.equal(table["task_type"], TYPE_CONFIGS[config_name][0]))
    return project_table(config_name, table.filter(mask))


def iter_config_tables(scan: RunScan, config: SynthEmbedConfig, split: str) -> Iterator[pa.Table]:
    """The rows of one config and split, batch by batch, in raw order."""
    from dataset_builder.splits import validation_keys

    keys = validation_keys(scan, config.validation_fraction)
    for batch in scan.batches():
        table = pa.Table.from_batches([batch])
        held_out = pc.is_in(table["group_key"], value_set=keys)
        selected = select_rows(config.name, table, held_out, split)
        if selected.num_rows:
            yield selected
