"""Accepted raw rows as rows of each published config: the one projection the export uses."""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from kit.schema import (
    PROVENANCE_COLUMNS,
    ROLES,
    TASK_TABLE,
    TYPE_CONFIGS,
    UNIFIED_CONFIG,
    config_columns,
    cross_lingual_types,
    features_for,
)


class MinedNegatives(Protocol):
    """What projection needs of the mined negatives (``dataset_builder.hard_negatives``
    builds them, and projects raw rows itself, so this module cannot import it)."""

    count: int

    def columns(self, ids: pa.Array) -> dict[str, pa.Array]: ...


def project_table(
    config_name: str, table: pa.Table, mined: MinedNegatives | None = None
) -> pa.Table:
    """Raw rows (the scan's columns) as rows of ``config_name``, typed by its features; the
    unified config gets the ``mined`` negatives of its rows."""
    example = table["example"]
    if config_name == UNIFIED_CONFIG:
        task_type = table["task_type"]
        columns = {name: table[name] for name in ("id", "task_type", "task_definition", "language")}
        for role in ROLES:
            column = pa.nulls(table.num_rows, pa.string())
            for task in TASK_TABLE.values():
                if (field := task.field_for(role)) is not None:
                    native = pc.struct_field(example, field)
                    column = pc.if_else(pc.equal(task_type, task.name), native, column)
            columns[role] = column
        cross_lingual = pc.is_in(task_type, value_set=pa.array(cross_lingual_types(), pa.string()))
        columns["target_language"] = pc.if_else(cross_lingual, table["target_language"], None)
        columns.update((name, table[name]) for name in PROVENANCE_COLUMNS[1:])
        if mined is not None:
            columns.update(mined.columns(table["id"]))
    else:
        native = config_columns(config_name)
        columns = {
            name: pc.struct_field(example, name) if name not in table.column_names else table[name]
            for name in native
        }
    count = mined.count if mined is not None and config_name == UNIFIED_CONFIG else 0
    return pa.table(columns, schema=features_for(config_name, count).arrow_schema)


def select_rows(
    config_name: str,
    table: pa.Table,
    held_out: pa.Array,
    split: str,
    mined: MinedNegatives | None = None,
) -> pa.Table:
    """The rows of a scan batch that belong to ``config_name`` and ``split``, projected."""
    mask = held_out if split == "validation" else pc.invert(held_out)
    if config_name != UNIFIED_CONFIG:
        mask = pc.and_(mask, pc.equal(table["task_type"], TYPE_CONFIGS[config_name]))
    return project_table(config_name, table.filter(mask), mined)
