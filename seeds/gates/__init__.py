"""Quality gates: every generated row is measured before seeds accepts it.

Shape checks (``seeds.parsing``) say a row has the right keys; the gates measure what the
row is: content rules (``content``), the language of each text (``language``) and
near-duplicates of rows already kept (``near_duplicates``). A rejected row is kept in the
run's ``rejected/`` shards with its reason, so a rejection can be re-examined later, and
its reason is counted in the ledger and ``run.json``. The gates take batches, so the same
code checks one answer as it arrives, a Batch API output file in chunks spread over
``quality.gate_processes`` processes, and rebuilds its index over a whole run on resume.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from kit.config import QualitySection
from kit.schema import TASK_TABLE, verified_flag
from seeds.gates.content import check_content
from seeds.gates.language import VERIFIED, WRONG, LanguageCheck
from seeds.gates.near_duplicates import NearDuplicateIndex
from seeds.parsing import Rejection
from seeds.templates import Template, load_templates

# Rows per gate call: batched language ID pays numpy's per-call cost once per byte position
# of a chunk, so larger chunks are cheaper per row (bench/gates_bench.py measures it).
CHUNK_ROWS = 1024


@dataclass(frozen=True)
class Candidate:
    """A row that passed the shape checks, about to be judged."""

    task_type: str
    example: dict[str, str]
    placeholders: dict[str, str]
    language: str
    target_language: str | None = None
    prompt: str = ""  # what the generator was asked (its words must not come back as text)
    template: str = ""  # the key of the template that asked (a lane); empty: the task type
    given: tuple[str, ...] = ()  # fields a corpus gave, not written by the generator

    def written(self) -> dict[str, str]:
        return {k: v for k, v in self.example.items() if k not in self.given}

    def language_of(self, text_field: str) -> str | None:
        """The language the field must be written in (``None``: a label, not checked)."""
        side = TASK_TABLE[self.task_type].side_of(text_field)
        if side is None:
            return None
        return self.target_language if side == "target" else self.language


@dataclass
class Verdict:
    """``reason`` is None for a row the gates accept; ``quality`` goes into its record."""

    reason: str | None
    quality: dict[str, Any] = field(default_factory=dict)


class QualityGates:
    """The content and language gates, and the near-duplicate index of the run."""

    def __init__(
        self,
        settings: QualitySection,
        kit_codes: Sequence[str],
        templates: Mapping[str, Template] | None = None,
    ) -> None:
        self.settings = settings
        self.kit_codes = list(kit_codes)
        # The templates say how many words each field was asked for (the length floors).
        self.templates = dict(templates if templates is not None else load_templates())
        self.language = (
            LanguageCheck(kit_codes, settings.language_min_chars, settings.language_min_confidence)
            if settings.language_check
            else None
        )
        self.near_duplicates = (
            NearDuplicateIndex(settings.near_duplicate_threshold, settings.minhash_permutations)
            if settings.near_duplicates
            else None
        )

    def inspect(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        """Content and language verdicts, one per candidate, in order."""
        chunks = [candidates[i : i + CHUNK_ROWS] for i in range(0, len(candidates), CHUNK_ROWS)]
        processes = min(self.settings.gate_processes, len(chunks))
        if processes < 2:
            return [verdict for chunk in chunks for verdict in self._inspect_chunk(chunk)]
        # Spawned, not forked: the run's event loop and client threads must not be copied.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            processes,
            context,
            initializer=_start_worker,
            initargs=(self.settings, self.kit_codes, self.templates),
        ) as pool:
            return [verdict for part in pool.map(_inspect_in_worker, chunks) for verdict in part]

    def _inspect_chunk(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        verdicts = [Verdict(None) for _ in candidates]
        if self.settings.content_rules:
            for candidate, verdict in zip(candidates, verdicts, strict=True):
                languages = {f: candidate.language_of(f) for f in candidate.example}
                template = self.templates[candidate.template or candidate.task_type]
                asked = template.asked_words(candidate.placeholders)
                task = TASK_TABLE[candidate.task_type]
                try:
                    check_content(task, candidate.example, asked, languages, candidate.prompt,
                                  candidate.given)  # fmt: skip
                except Rejection as rejection:
                    verdict.reason = rejection.reason
        if self.language is not None:
            self._judge_languages(candidates, verdicts)
        return verdicts

    def _judge_languages(self, candidates: Sequence[Candidate], verdicts: list[Verdict]) -> None:
        assert self.language is not None
        texts, claims, owners = [], [], []
        for index, candidate in enumerate(candidates):
            for text_field, text in candidate.written().items():
                claimed = candidate.language_of(text_field)
                if claimed is not None and verdicts[index].reason is None:
                    texts.append(text)
                    claims.append(claimed)
                    owners.append((index, text_field))
        by_row: dict[int, dict[str, str]] = {}
        for (index, text_field), outcome in zip(
            owners, self.language.verdicts(texts, claims), strict=True
        ):
            by_row.setdefault(index, {})[text_field] = outcome
        for index, fields in by_row.items():
            candidate = candidates[index]
            verdicts[index].reason = self._language_reason(candidate, fields)
            verdicts[index].quality = {"language": fields} | self._verified(candidate, fields)

    def _verified(self, candidate: Candidate, fields: dict[str, str]) -> dict[str, Any]:
        """Per side, whether any of its texts was confirmed in its language."""
        task = TASK_TABLE[candidate.task_type]
        return {
            verified_flag(side): any(
                v == VERIFIED for f, v in fields.items() if task.side_of(f) == side
            )
            for side in task.sides
        }

    def _language_reason(self, candidate: Candidate, fields: dict[str, str]) -> str | None:
        for text_field, outcome in fields.items():
            if outcome == WRONG:
                return f"wrong_language:{text_field}"
        if self.settings.require_verified_language:
            for flag, verified in self._verified(candidate, fields).items():
                if not verified:
                    return f"unverified_{flag.removesuffix('_verified')}"
        return None

    def admit(self, rows: Sequence[Sequence[str]]) -> list[bool]:
        """Near-duplicate check and indexing, in order (all True when the gate is off)."""
        if self.near_duplicates is None:
            return [True] * len(rows)
        return self.near_duplicates.admit(rows)


_worker_gates: list[QualityGates] = []


def _start_worker(
    settings: QualitySection, kit_codes: list[str], templates: dict[str, Template]
) -> None:
    """A gate process holds the stateless gates; the near-duplicate index stays in the run."""
    _worker_gates.append(
        QualityGates(replace(settings, near_duplicates=False), kit_codes, templates)
    )


def _inspect_in_worker(candidates: Sequence[Candidate]) -> list[Verdict]:
    return _worker_gates[0].inspect(candidates)
