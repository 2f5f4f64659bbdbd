"""The run's state machine, shared by live and batch modes: which item to ask for next, what
to do with an answer, when to stop, and the summary in ``run.json``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tqdm import tqdm

from kit.artifacts import GeneratorInfo, RunSummary
from kit.config import Config
from kit.schema import TASK_TABLE, TASK_TYPES, gates_on, raw_record
from seeds.client import Completion
from seeds.consistency import ConsistencyGate
from seeds.corpus import Corpus
from seeds.gates import Candidate, QualityGates, Verdict
from seeds.judge import judge_item, load_judge_prompt, positive_wins, swapped
from seeds.languages import LanguageSampler
from seeds.parsing import (
    Rejection,
    check_repeats,
    dedup_key,
    extract_json_object,
    parse_task_list,
    validate_example,
)
from seeds.plan import (
    WorkItem,
    brainstorm_item,
    brainstorms_needed,
    corpus_item,
    generation_item,
    generation_item_id,
    grounded_text,
    lane_of,
    slot_of,
)
from seeds.store import RunStore, utc_now
from seeds.templates import TASK_DEFINITION_KEY, Template, corpus_lane

BRAINSTORM_ROUNDS = 3
# Tokens the chat format adds to a prompt (a few per message, and the reply's start).
PROMPT_FRAMING_TOKENS = 8


def candidate(item: WorkItem, example: dict[str, str], given: dict[str, str]) -> Candidate:
    """The row as the gates see it: what the corpus ``given`` is not the generator's text, so
    it is neither gated nor part of the prompt a text must not echo."""
    prompt = item.prompt
    for text in given.values():
        prompt = prompt.replace(text, "")
    return Candidate(
        item.task_type, example, item.placeholders, item.language or "", item.target_language,
        prompt, lane_of(item.item_id), tuple(given),
    )  # fmt: skip


class SeedRun:
    """Decides and records; never talks to the network itself."""

    def __init__(
        self,
        config: Config,
        store: RunStore,
        templates: dict[str, Template],
        backend: str,
        bundled_small_model: bool,
        gates: QualityGates,
        progress: bool = True,
        corpus: Corpus | None = None,
        consistency: ConsistencyGate | None = None,
    ) -> None:
        self.config = config
        self.gen = config.generation
        self.store = store
        self.templates = templates
        self.backend = backend
        self.bundled_small_model = bundled_small_model
        self.gates = gates
        self.judge_prompt = load_judge_prompt() if config.quality.judge else None
        self.sampler = LanguageSampler(self.gen.languages, self.gen.language_subset)
        self.corpus = corpus
        self.consistency = consistency
        # Lanes: each task type written from scratch, and each grounded type of the corpus.
        self.targets = {t: self.gen.targets.get(t, 0) for t in TASK_TYPES}
        if corpus is not None:
            self.targets |= {corpus_lane(t): n for t, n in self.gen.corpus.targets.items()}
        self.caps = {
            t: math.ceil(n * self.gen.max_requests_per_target) for t, n in self.targets.items()
        }
        self.inflight = dict.fromkeys(self.targets, 0)
        self.next_slot = dict.fromkeys(self.targets, 0)
        self.tried_this_session: set[str] = set()
        self.stopped_reason: str | None = None
        self.prices = config.generator.prices()
        # Worst cases of the requests in flight, held against the budget until they settle.
        self.reserved: dict[str, tuple[int, float]] = {}
        self.reserved_tokens = 0
        self.reserved_usd = 0.0
        self.short_of: str | None = None  # the budget that refused a request, and what it
        self.short_left: float = 0  # had left (reserves aside) when it did
        self.bar = tqdm(
            total=sum(self.targets.values()),
            initial=sum(min(store.totals.lanes[t], n) for t, n in self.targets.items()),
            desc="seeds",
            unit="ex",
            disable=not progress,
            dynamic_ncols=True,
        )
        self._ledger_recovered_records()

    def _ledger_recovered_records(self) -> None:
        for record in self.store.unledgered:
            item = WorkItem(record["id"], "generate", record["task_type"], "", {})
            usage = record["usage"]
            self.log_attempt(
                item,
                {
                    "attempt": None,
                    "outcome": "accepted",
                    "reason": "recovered_from_shard",
                    "status": 200,
                    "response_format": None,
                    "prompt_tokens": usage["prompt_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "latency_s": None,
                },
            )
        self.store.unledgered = []

    # ---- budget and stopping -------------------------------------------------------------
    def budget_reason(self) -> str | None:
        totals = self.store.totals
        if self.gen.budget_tokens and totals.tokens >= self.gen.budget_tokens:
            return "budget_tokens"
        if self.gen.budget_usd and totals.cost_usd >= self.gen.budget_usd:
            return "budget_usd"
        return None

    def worst_case(self, item: WorkItem) -> tuple[int, float]:
        """Tokens and cost a request can come to at most: its prompt counted generously (a
        token per 3 bytes, plus the chat framing) and a full ``max_tokens`` answer."""
        prompt = math.ceil(len(item.prompt.encode("utf-8")) / 3) + PROMPT_FRAMING_TOKENS
        completion = self.config.generator.max_tokens
        return prompt + completion, self.cost(prompt, completion)

    def reserve(self, item: WorkItem) -> bool:
        """Set aside the item's worst case, or say no when the budget cannot cover it on
        top of what is spent and already set aside (``short_of`` names the budget)."""
        if not (self.gen.budget_tokens or self.gen.budget_usd):
            return True
        tokens, usd = self.worst_case(item)
        totals = self.store.totals
        if self.gen.budget_tokens and (
            totals.tokens + self.reserved_tokens + tokens > self.gen.budget_tokens
        ):
            self.short_of, self.short_left = "budget_tokens", self.gen.budget_tokens - totals.tokens
            return False
        if self.gen.budget_usd and totals.cost_usd + self.reserved_usd + usd > self.gen.budget_usd:
            self.short_of, self.short_left = "budget_usd", self.gen.budget_usd - totals.cost_usd
            return False
        self.reserved[item.item_id] = (tokens, usd)
        self.reserved_tokens += tokens
        self.reserved_usd += usd
        return True

    def release(self, item_id: str) -> None:
        """The request is settled: its real cost is in the ledger now."""
        tokens, usd = self.reserved.pop(item_id, (0, 0.0))
        self.reserved_tokens -= tokens
        self.reserved_usd -= usd

    def out_of_budget(self) -> bool:
        """No request fits the budget, and none in flight can free any of it: stop."""
        if self.short_of is not None and not self.reserved:
            self.stop(self.short_of)
        return self.stopped_reason is not None

    def budget_cut_line(self, asked: int, wanted: int) -> str:
        """The one line that says a batch round was cut to what the budget covers."""
        if self.short_of == "budget_usd":
            left = f"${self.short_left:,.2f} of ${self.gen.budget_usd:,.2f}"
        else:
            left = f"{self.short_left:,} of {self.gen.budget_tokens:,} tokens"
        return (
            f"{self.short_of}: this batch round is cut to {asked:,} of {wanted:,} requests, "
            f"as many as the {left} left pay for if every answer takes max_tokens"
        )

    def stop(self, reason: str) -> None:
        if self.stopped_reason is None:
            self.stopped_reason = reason

    def may_start_request(self) -> bool:
        if self.stopped_reason is None and (reason := self.budget_reason()):
            self.stop(reason)
        return self.stopped_reason is None

    # ---- brainstorm ----------------------------------------------------------------------
    def pending_brainstorms(self, round_index: int) -> list[WorkItem]:
        """Brainstorms still missing; each later round adds fresh ids for the failed ones."""
        items = []
        for task_type, template in self.templates.items():
            if not template.asymmetric:
                continue
            needed = brainstorms_needed(
                self.targets[task_type], self.gen.examples_per_task, self.gen.tasks_per_brainstorm
            )
            planned = needed * (round_index + 1)
            ids = [f"brainstorm-{task_type}-{k:05d}" for k in range(planned)]
            done = sum(1 for i in ids if i in self.store.brainstorm_done)
            missing = needed - done
            for k in range(planned):
                if missing <= 0:
                    break
                if (
                    ids[k] not in self.store.brainstorm_done
                    and ids[k] not in self.tried_this_session
                ):
                    items.append(brainstorm_item(template, k, self.gen.tasks_per_brainstorm))
                    missing -= 1
        return items

    def handle_brainstorm(self, item: WorkItem, completion: Completion) -> None:
        self.tried_this_session.add(item.item_id)
        try:
            tasks = parse_task_list(completion.text)
            added = self.store.add_tasks(item.item_id, item.task_type, tasks)
            self._ledger(item, completion, "accepted", f"{len(added)} new tasks")
        except Rejection as rejection:
            self._ledger(item, completion, "rejected", rejection.reason)

    # ---- generation scheduling -----------------------------------------------------------
    def need(self, lane: str) -> int:
        return self.targets.get(lane, 0) - self.store.totals.lanes[lane] - self.inflight[lane]

    def _has_tasks(self, lane: str) -> bool:
        return not self.templates[lane].asymmetric or bool(self.store.task_pools.get(lane))

    def _free_slot(self, lane: str) -> int | None:
        slot = self.next_slot[lane]
        while slot < self.caps[lane]:
            item_id = generation_item_id(lane, slot)
            if item_id not in self.store.finished_ids and item_id not in self.tried_this_session:
                self.next_slot[lane] = slot
                return slot
            slot += 1
        self.next_slot[lane] = slot
        return None

    def item_for(self, lane: str, slot: int, tasks: list[str] | None = None) -> WorkItem:
        """The request of a lane's slot (``tasks``: the pool to draw the definition from)."""
        template = self.templates[lane]
        if self.corpus is not None and lane != template.task_type:
            return corpus_item(template, slot, self.gen.seed, self.corpus)
        pool = self.store.task_pools.get(lane, []) if tasks is None else tasks
        per_task = self.gen.examples_per_task if tasks is None else 1.0
        return generation_item(template, slot, self.gen.seed, self.sampler, pool, per_task)

    def next_generation_item(self) -> WorkItem | None:
        """The lane furthest behind its target gets the next slot, so a stop keeps the mix."""
        if not self.may_start_request():
            return None
        candidates = [t for t in self.targets if self.need(t) > 0 and self._has_tasks(t)]
        candidates.sort(
            key=lambda t: (self.store.totals.lanes[t] + self.inflight[t]) / self.targets[t]
        )
        for lane in candidates:
            slot = self._free_slot(lane)
            if slot is None:
                continue
            item = self.item_for(lane, slot)
            if not self.reserve(item):
                self.out_of_budget()
                return None  # asked again once a request in flight frees its reserve
            self.tried_this_session.add(item.item_id)
            return item
        return None

    def started(self, item: WorkItem) -> None:
        self.inflight[lane_of(item.item_id)] += 1
        self._refresh()

    def finished(self, item: WorkItem) -> None:
        self.inflight[lane_of(item.item_id)] -= 1
        self.release(item.item_id)
        self._refresh()

    @property
    def inflight_total(self) -> int:
        return sum(self.inflight.values())

    # ---- answers -------------------------------------------------------------------------
    def handle_generation(self, item: WorkItem, completion: Completion) -> bool | WorkItem:
        """Validate, gate, dedup, store; True when accepted, or the judge request to send
        when the row waits for the judge (it is held, so a kill does not lose it)."""
        return self.handle_generations([(item, completion)])[0]

    def handle_generations(
        self, answers: Sequence[tuple[WorkItem, Completion]]
    ) -> list[bool | WorkItem]:
        """``handle_generation`` for many answers at once, in order: a Batch API output file
        is gated in large batches (and on several processes) instead of one row per call."""
        outcomes: list[bool | WorkItem] = [False] * len(answers)
        rows = []
        for index, (item, completion) in enumerate(answers):
            parsed = self._parsed(item, completion)
            if parsed is not None:
                rows.append((index, *parsed))
        if self.consistency is not None:
            rows = self._consistent(answers, rows)
        verdicts = self.gates.inspect([candidate(item, ex, given) for _, item, ex, given in rows])
        for (index, item, example, _), verdict in zip(rows, verdicts, strict=True):
            outcomes[index] = self._settle(item, answers[index][1], example, verdict)
        return outcomes

    def _parsed(
        self, item: WorkItem, completion: Completion
    ) -> tuple[WorkItem, dict[str, str], dict[str, str]] | None:
        """The item (with the task definition a corpus answer names), the answer's example in
        its type's fields, and what the corpus gave it; None once rejected."""
        try:
            if completion.finish_reason == "length":
                raise Rejection("truncated")
            answer = validate_example(
                self.templates[lane_of(item.item_id)],
                extract_json_object(completion.text),
                self.gen.min_chars,
                self.gen.max_chars,
            )
            if item.document_id is None:
                return item, answer, {}
            return self._grounded(item, answer)
        except Rejection as rejection:
            self._ledger(item, completion, "rejected", rejection.reason)
            return None

    def _grounded(
        self, item: WorkItem, answer: dict[str, str]
    ) -> tuple[WorkItem, dict[str, str], dict[str, str]]:
        """A corpus answer as a row of its type: the document (or its sentence) in its field,
        the generator's fields in theirs; the negative stays empty until a neighbour fills it."""
        assert self.corpus is not None
        task = TASK_TABLE[item.task_type]
        document = self.corpus.by_id(item.document_id or "")
        text = grounded_text(item.task_type, document, slot_of(item.item_id), self.gen.seed)
        given = {task.document_field or "": text}
        definition = answer.pop(TASK_DEFINITION_KEY, None) or item.task_definition
        example = {name: answer.get(name, given.get(name, "")) for name in task.field_names}
        check_repeats(task, {k: v for k, v in example.items() if v}, gated=False)
        return replace(item, task_definition=definition), example, given

    def _consistent(
        self,
        answers: Sequence[tuple[WorkItem, Completion]],
        rows: list[tuple[int, WorkItem, dict[str, str], dict[str, str]]],
    ) -> list[tuple[int, WorkItem, dict[str, str], dict[str, str]]]:
        """The consistency gate over the corpus rows of a batch, at once; a row whose negative
        the corpus gives gets its nearest other document."""
        assert self.consistency is not None
        grounded = [row for row in rows if row[1].document_id is not None]
        verdicts = self.consistency.check([(item, example) for _, item, example, _ in grounded])
        kept_ids = set()
        for (index, item, example, given), verdict in zip(grounded, verdicts, strict=True):
            if verdict.reason is not None:
                record = self.record(item, self.templates[lane_of(item.item_id)],
                                     answers[index][1], example, {})  # fmt: skip
                self.store.reject(record, verdict.reason)
                self._ledger(item, answers[index][1], "rejected", verdict.reason)
                continue
            example.update(verdict.filled)
            given.update(verdict.filled)
            kept_ids.add(index)
        return [row for row in rows if row[1].document_id is None or row[0] in kept_ids]

    def _settle(
        self, item: WorkItem, completion: Completion, example: dict[str, str], verdict: Verdict
    ) -> bool | WorkItem:
        key = dedup_key(example)
        if self.store.is_duplicate(key):
            self._ledger(item, completion, "rejected", "duplicate")
            return False
        record = self.record(item, self.templates[lane_of(item.item_id)], completion, example,
                             verdict.quality)  # fmt: skip
        reason = verdict.reason
        if reason is None and not self.gates.admit([list(example.values())])[0]:
            reason = "near_duplicate"
        if reason is not None:
            self.store.reject(record, reason)
            self._ledger(item, completion, "rejected", reason)
            return False
        judging = self._judge_request(record)
        if judging is not None:
            self.store.hold(record, key)
            return judging
        self._accept(record, key)
        self._ledger(item, completion, "accepted", "")
        return True

    def _judge_request(self, record: dict[str, Any]) -> WorkItem | None:
        if self.judge_prompt is None:
            return None
        item = WorkItem(record["id"], "generate", record["task_type"], "", {},
                        task_definition=record["task_definition"])  # fmt: skip
        return judge_item(self.judge_prompt, item, record["example"], self.gen.seed)

    def held_judge_requests(self) -> list[WorkItem]:
        """Judge requests of rows a killed run held: asked again, the rows are not."""
        return [request for r in self.store.held.values() if (request := self._judge_request(r))]

    def handle_judgement(self, request: WorkItem, completion: Completion | None) -> bool:
        """Accept, swap or drop the held row the judge answered about; True when kept."""
        record_id = request.item_id.removeprefix("judge-")
        record, key = self.store.held[record_id], self.store.held_keys[record_id]
        if completion is None:  # the judge could not be reached: keep the row, say so
            verdict = "unavailable"
        else:
            try:
                wins = positive_wins(completion.text, record_id, self.gen.seed)
                verdict = "positive" if wins else "negative"
            except Rejection as rejection:
                verdict = rejection.reason
            self._ledger(request, completion, "accepted", verdict)
        record = {**record, "quality": {**record["quality"], "judge": verdict}}
        if verdict == "negative" and self.config.quality.judge_action == "drop":
            self.store.reject(record, "judge_rejected")
            self._ledger_record(record, "rejected", "judge_rejected")
            self.store.release(record_id)
            return False
        if verdict == "negative":
            record["example"] = swapped(record["task_type"], record["example"])
            record["quality"]["judge"] = "swapped"
        self._accept(record, key)
        self._ledger_record(record, "accepted", "")
        self.store.release(record_id)
        return True

    def _accept(self, record: dict[str, Any], key: str) -> None:
        self.store.accept(record, key)
        self.bar.update(1)

    def _ledger_record(self, record: dict[str, Any], outcome: str, reason: str) -> None:
        """The generation request's ledger line, written once its row is settled."""
        item = WorkItem(record["id"], "generate", record["task_type"], "", {})
        usage = record["usage"]
        self.log_attempt(
            item,
            {
                "attempt": record.get("attempt"), "outcome": outcome, "reason": reason,
                "status": 200, "response_format": record.get("response_format"),
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"], "latency_s": None,
            },
        )  # fmt: skip

    def record(
        self,
        item: WorkItem,
        template: Template,
        completion: Completion,
        example: dict[str, str],
        quality: dict[str, Any],
    ) -> dict[str, Any]:
        return raw_record(
            {
                "id": item.item_id,
                "task_type": item.task_type,
                "task_definition": item.task_definition,
                "language": item.language,
                "target_language": item.target_language,
                "placeholders": item.placeholders,
                "template_id": template.template_id,
                "template_sha256": template.sha256,
                "generator_model": self.config.generator.model,
                "generator_backend": self.backend,
                "usage": {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                },
                "example": example,
                "quality": quality,
                "document_id": item.document_id,
            }
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """At this mode's prices (the Batch API's are half the live ones unless set)."""
        prompt_price, completion_price = self.prices
        return prompt_tokens / 1000 * prompt_price + completion_tokens / 1000 * completion_price

    def _ledger(self, item: WorkItem, completion: Completion, outcome: str, reason: str) -> None:
        fields = {
            "attempt": completion.attempt,
            "outcome": outcome,
            "reason": reason,
            "status": 200,
            "response_format": completion.response_format,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "latency_s": round(completion.latency_s, 4),
        }
        if completion.batch_id is not None:
            fields["batch_id"] = completion.batch_id
        self.log_attempt(item, fields)

    def log_attempt(self, item: WorkItem, fields: dict[str, Any]) -> None:
        """The one way a request reaches the ledger (called by the endpoint for errors)."""
        entry = {
            "at": utc_now(),
            "item_id": item.item_id,
            "kind": item.kind,
            "task_type": item.task_type,
            **fields,
            "cost_usd": self.cost(fields["prompt_tokens"], fields["completion_tokens"]),
        }
        self.store.log_request(entry)
        self._refresh()

    def _refresh(self) -> None:
        totals = self.store.totals
        self.bar.set_postfix(
            rejected=sum(totals.rejected.values()),
            inflight=self.inflight_total,
            tokens=totals.tokens,
            cost=f"${totals.cost_usd:.4f}",
            refresh=False,
        )

    # ---- summary -------------------------------------------------------------------------
    def complete(self) -> bool:
        return all(self.store.totals.lanes[t] >= n for t, n in self.targets.items())

    def summary(self) -> RunSummary:
        totals = self.store.totals
        complete = self.complete()
        reason = self.stopped_reason or ("targets_reached" if complete else "attempts_exhausted")
        return RunSummary(
            run_name=self.gen.run_name,
            complete=complete,
            stopped_reason=reason,
            generator=GeneratorInfo(
                model=self.config.generator.model,
                backend=self.backend,
                bundled_small_model=self.bundled_small_model,
                mode=self.config.generator.mode,
                note=(
                    "very small bundled model (SmolLM2-135M-Instruct): examples show the "
                    "pipeline working, not paper quality"
                    if self.bundled_small_model
                    else ""
                ),
            ),
            templates={t.template_id: t.sha256 for t in self.templates.values()},
            gates=gates_on(self.config.quality),
            targets=self.targets,
            accepted={t: totals.accepted[t] for t in TASK_TYPES},
            rejected=dict(sorted(totals.rejected.items())),
            requests=totals.requests,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            cost_usd=round(totals.cost_usd, 6),
            acceptance_rate=round(totals.acceptance_rate(), 4),
            started_at=self.store.started_at,
            finished_at=utc_now(),
            languages=dict(totals.languages.most_common()),
            seed=self.gen.seed,
            corpus=self.corpus.summary() if self.corpus is not None else None,
            corpus_grounded={
                t: totals.lanes[corpus_lane(t)] for t in self.gen.corpus.targets
            } if self.corpus is not None else {},
        )

    def close(self) -> None:
        self._refresh()
        self.bar.close()
