"""Corpus statistics gathered during the scan, columnar: counts and text lengths, no texts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kit.schema import ROLES, TASK_TABLE, cross_lingual_types, verified_flag


def _counts(*columns: pa.Array) -> Counter:
    """Value counts of one column, or of tuples across several."""
    names = [f"c{i}" for i in range(len(columns))]
    counted = (
        pa.table(dict(zip(names, columns, strict=True)))
        .group_by(names)
        .aggregate([([], "count_all")])
    )
    keys = zip(*(counted[name].to_pylist() for name in names), strict=True)
    return Counter(
        {
            key if len(columns) > 1 else key[0]: n
            for key, n in zip(keys, counted["count_all"].to_pylist(), strict=True)
        }
    )


@dataclass
class CorpusStats:
    """Lengths are in characters, which mean the same in every script (words do not)."""

    by_type: Counter[str] = field(default_factory=Counter)
    by_language: Counter[str] = field(default_factory=Counter)
    # Rows whose language the language gate confirmed (source side; bitext targets apart).
    verified_languages: Counter[str] = field(default_factory=Counter)
    verified_targets: Counter[str] = field(default_factory=Counter)
    by_type_language: Counter[tuple[str, str]] = field(default_factory=Counter)
    target_languages: Counter[str] = field(default_factory=Counter)
    generator_models: Counter[str] = field(default_factory=Counter)
    templates: dict[str, set[str]] = field(default_factory=dict)
    lengths: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)

    def add_table(self, table: pa.Table) -> None:
        """Count an accepted batch (raw columns)."""
        task_type = table["task_type"]
        self.by_type.update(_counts(task_type))
        self.by_language.update(_counts(table["language"]))
        quality = table["quality"]
        verified = pc.fill_null(pc.struct_field(quality, verified_flag("source")), False)
        self.verified_languages.update(_counts(pc.filter(table["language"], verified)))
        target_verified = pc.fill_null(pc.struct_field(quality, verified_flag("target")), False)
        self.by_type_language.update(_counts(task_type, table["language"]))
        cross_lingual = pc.is_in(task_type, value_set=pa.array(cross_lingual_types(), pa.string()))
        self.target_languages.update(_counts(pc.filter(table["target_language"], cross_lingual)))
        verified_target = pc.and_(cross_lingual, target_verified)
        self.verified_targets.update(_counts(pc.filter(table["target_language"], verified_target)))
        self.generator_models.update(_counts(table["generator_model"]))
        for template, sha in _counts(table["template_id"], table["template_sha256"]):
            self.templates.setdefault(template, set()).add(sha)
        example = table["example"]
        for name in pc.unique(task_type).to_pylist():
            of_type = pc.equal(task_type, name)
            for role in ROLES:
                native = TASK_TABLE[name].field_for(role)
                if native is not None:
                    texts = pc.filter(pc.struct_field(example, native), of_type)
                    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
                    self.lengths.setdefault((name, role), []).append(lengths.astype(np.uint32))

    def merge(self, other: CorpusStats) -> None:
        for mine, theirs in (
            (self.by_type, other.by_type),
            (self.by_language, other.by_language),
            (self.verified_languages, other.verified_languages),
            (self.verified_targets, other.verified_targets),
            (self.by_type_language, other.by_type_language),
            (self.target_languages, other.target_languages),
            (self.generator_models, other.generator_models),
        ):
            mine.update(theirs)
        for template, hashes in other.templates.items():
            self.templates.setdefault(template, set()).update(hashes)
        for key, chunks in other.lengths.items():
            self.lengths.setdefault(key, []).extend(chunks)

    def length_array(self, task_type: str, role: str) -> np.ndarray:
        chunks = self.lengths.get((task_type, role))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.uint32)

    def languages(self) -> list[str]:
        """Every language code that appears, source or target, sorted."""
        return sorted(set(self.by_language) | set(self.target_languages))

    def verified(self) -> list[str]:
        """The languages the language gate confirmed in at least one row, sorted."""
        return sorted(set(self.verified_languages) | set(self.verified_targets))

    def unverified(self) -> list[str]:
        """Languages rows claim that the gate never confirmed."""
        return sorted(set(self.languages()) - set(self.verified()))
