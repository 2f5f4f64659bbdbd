"""OpenAI Batch API mode, at any scale.

Each round (brainstorms, then generations) is written to input files within the API's
limits (``batch_files``) and submitted as the model's enqueued-token limit allows. Every
batch is polled; when it ends, its output and error files are streamed to disk and judged
in chunks. Items a batch did not answer (it failed, expired, was cancelled or refused) go
into the next round under the same ids, at no cost; items answered with an error are asked
again up to ``max_retries`` times. A round is cut to what the budget covers, and says so.

Each step is written to the journal (``batches.jsonl``) before the next one starts, so a
killed run resumes each file where it was: an input file is uploaded only if it never was,
a batch in flight is polled by its id (or found by its input file when the kill came while
it was being created), and an output file already on disk is not fetched again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kit.errors import StageError
from kit.schema import TASK_TYPES
from seeds.batch_api import CHAT_ENDPOINT, TERMINAL, BatchApi, batch_errors
from seeds.batch_files import Splitter, read_manifest, write_round
from seeds.client import Completion, Endpoint
from seeds.engine import BRAINSTORM_ROUNDS, SeedRun
from seeds.plan import WorkItem, lane_of, slot_of
from seeds.store import read_jsonl, utc_now

log = logging.getLogger("seeds")
# Answers judged at once: the gates' process pool starts once per chunk, memory stays bounded.
INGEST_CHUNK = 50_000
# Error codes of requests a batch never ran (nothing was paid for them).
UNSENT = frozenset({"batch_expired", "batch_cancelled"})
REFUSED = "token_limit_exceeded"
NO_BATCH_API = (
    "generator.mode = 'batch': the endpoint at {url} has no Batch API (vLLM and llama.cpp "
    "servers have none); use mode = 'live'"
)


class Journal:
    """``batches.jsonl``: one line per step of an input file's life, appended before the
    next step starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, name: str, state: str, **fields: Any) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            row = {"file": name, "state": state, **fields, "at": utc_now()}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def open_files(self) -> list[dict[str, Any]]:
        """Files not yet ingested, each with every fact its lines recorded."""
        files: dict[str, dict[str, Any]] = {}
        for row in read_jsonl(self.path):
            if "file" in row:
                files.setdefault(row["file"], {}).update(row)
        return [state for state in files.values() if state["state"] != "ingested"]


class BatchRunner:
    """Submits, follows and ingests batches; ``run`` owns every decision about answers."""

    def __init__(self, run: SeedRun, endpoint: Endpoint) -> None:
        self.run = run
        self.endpoint = endpoint
        self.settings = endpoint.settings
        self.api = BatchApi(endpoint.client, self.settings)
        self.journal = Journal(run.store.batches_path)
        self.folder = run.store.run_dir / "batches"
        self.requeue: dict[str, WorkItem] = {}  # generation items to ask again, by id
        self.attempts: dict[str, int] = {}

    # ---- rounds ------------------------------------------------------------------------
    async def run_all(self) -> None:
        await self._check_endpoint()
        await self._drive(self._resume())
        for round_index in range(BRAINSTORM_ROUNDS):
            items = self.run.pending_brainstorms(round_index)
            if not items or not self.run.may_start_request():
                break
            await self._round(iter(self._affordable(items)), "brainstorm")
        for _ in range(self.settings.batch_max_rounds):
            if not self.run.may_start_request():
                break
            self.run.short_of = None
            wanted = sum(max(0, self.run.need(t)) for t in TASK_TYPES)
            asked = await self._round(self._generation_items(), "generate")
            if self.run.short_of is not None:
                log.warning(self.run.budget_cut_line(asked, wanted))
            if not asked:
                self.run.out_of_budget()
                break

    async def _check_endpoint(self) -> None:
        if self.settings.server not in ("openai", "azure") and not await self.api.has_batch_api():
            raise StageError(NO_BATCH_API.format(url=self.endpoint.client.base_url))

    def _affordable(self, items: list[WorkItem]) -> list[WorkItem]:
        """The brainstorms of a round the budget covers."""
        self.run.short_of = None
        kept = [item for item in items if self.run.reserve(item)]
        if self.run.short_of is not None:
            log.warning(self.run.budget_cut_line(len(kept), len(items)))
            self.run.out_of_budget()
        self.run.tried_this_session.update(item.item_id for item in kept)
        return kept

    def _generation_items(self) -> Iterator[WorkItem]:
        """This round's generation requests, one at a time: the ones to ask again first,
        then new ones, as far as the targets need and the budget covers."""
        run = self.run
        for item_id, item in list(self.requeue.items()):
            if run.need(lane_of(item_id)) <= 0:
                del self.requeue[item_id]
                continue
            item = self._rebuilt(item)
            if not run.reserve(item):
                return
            del self.requeue[item_id]
            run.started(item)
            yield item
        while (item := run.next_generation_item()) is not None:
            run.started(item)
            yield item

    def _rebuilt(self, item: WorkItem) -> WorkItem:
        """The item with its prompt again (a pure function of its slot and task)."""
        task = [item.task_definition] if item.task_definition else []
        return self.run.item_for(lane_of(item.item_id), slot_of(item.item_id), task)

    async def _round(self, items: Iterator[WorkItem], kind: str) -> int:
        """Write the items to input files and see every one of them through; the count."""
        mode = self.endpoint.formats.mode
        stem = f"{kind}-{utc_now().replace(':', '').replace('-', '').replace('.', '')}"

        def line(item: WorkItem) -> bytes:
            request = {"custom_id": item.item_id, "method": "POST", "url": CHAT_ENDPOINT,
                       "body": self.endpoint.request_body(item, mode)}  # fmt: skip
            return (json.dumps(request, ensure_ascii=False) + "\n").encode("utf-8")

        splitter = Splitter(self.settings.batch_max_requests, self.settings.batch_max_bytes)
        files = write_round(self.folder, stem, items, line, splitter, mode)
        states = []
        for prepared in files:
            fields = {k: v for k, v in asdict(prepared).items() if k != "name"}
            self.journal.note(prepared.name, "prepared", **fields)
            states.append({"file": prepared.name, "state": "prepared", **fields})
        await self._drive(states)
        return sum(f.requests for f in files)

    # ---- files in flight ---------------------------------------------------------------
    def _resume(self) -> list[dict[str, Any]]:
        """Files a killed run left open; their items are in flight again."""
        states = self.journal.open_files()
        keep = set()
        for state in states:
            suffixes = (".jsonl", ".items.jsonl", ".output.jsonl", ".error.jsonl")
            keep.update(f"{state['file']}{suffix}" for suffix in suffixes)
            state["resumed"] = True
            for item in read_manifest(self.folder / f"{state['file']}.items.jsonl").values():
                self.run.tried_this_session.add(item.item_id)
                if item.kind == "generate":
                    self.run.started(item)
        for leftover in self.folder.glob("*") if self.folder.is_dir() else ():
            if leftover.name not in keep:
                leftover.unlink()  # written by a run killed before the journal named it
        return states

    async def _drive(self, states: list[dict[str, Any]]) -> None:
        """Submit as the enqueued-token limit allows, poll, ingest each batch as it ends."""
        for state in [s for s in states if s["state"] == "downloaded"]:
            await self._ingest(state)
        waiting = ("prepared", "uploaded", "creating", "refused")
        pending = deque(s for s in states if s["state"] in waiting)
        running = {s["file"]: s for s in states if s["state"] == "submitted"}
        refused = False  # wait for a batch to end before submitting again
        while pending or running:
            while pending and not refused and self._fits(pending[0], running):
                state = pending.popleft()
                await self._submit(state)
                running[state["file"]] = state
            await asyncio.sleep(self.settings.batch_poll_s)
            for name, state in list(running.items()):
                batch = await self.api.retrieve(state["batch_id"])
                if batch.status not in TERMINAL:
                    continue
                del running[name]
                refused = False
                if batch.status == "failed" and REFUSED in batch_errors(batch):
                    if not running:
                        raise StageError(
                            f"the endpoint refused a batch of {state['requests']:,} requests "
                            "as more than its enqueued-token limit; lower "
                            "generator.batch_max_requests"
                        )
                    log.info("%s: over the enqueued-token limit; again once a batch ends", name)
                    self.journal.note(name, "refused", batch_id=batch.id)
                    state["state"] = "refused"
                    pending.appendleft(state)
                    refused = True
                    continue
                await self._finish(state, batch)

    def _fits(self, state: dict[str, Any], running: dict[str, dict[str, Any]]) -> bool:
        limit = self.settings.batch_enqueued_tokens
        queued = sum(s["tokens"] for s in running.values())
        return not limit or not running or queued + state["tokens"] <= limit

    async def _submit(self, state: dict[str, Any]) -> None:
        name = state["file"]
        if state["state"] == "prepared":
            state["file_id"] = await self.api.upload(self.folder / f"{name}.jsonl")
            self.journal.note(name, "uploaded", file_id=state["file_id"])
        if state["state"] != "creating":
            state["since"] = time.time()
            self.journal.note(name, "creating", since=state["since"])
        metadata = {"run_name": self.run.gen.run_name, "file": name}
        batch = await self.api.create(state["file_id"], state["since"], metadata)
        state.update(state="submitted", batch_id=batch.id)
        self.journal.note(name, "submitted", batch_id=batch.id)
        (self.folder / f"{name}.jsonl").unlink(missing_ok=True)

    async def _finish(self, state: dict[str, Any], batch: Any) -> None:
        name = state["file"]
        outputs = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = getattr(batch, key)
            if file_id:
                target = self.folder / f"{name}.{key.removesuffix('_file_id')}.jsonl"
                if not target.exists():
                    await self.api.download(file_id, target)
                outputs[key] = target.name
        counts = batch.request_counts
        log.info("batch %s (%s): %s, %s of %s requests answered", batch.id, name, batch.status,
                 counts.completed if counts else 0, state["requests"])  # fmt: skip
        state.update(state="downloaded", status=batch.status, outputs=outputs, resumed=False)
        self.journal.note(name, "downloaded", status=batch.status, outputs=outputs)
        await self._ingest(state)

    # ---- answers -----------------------------------------------------------------------
    async def _ingest(self, state: dict[str, Any]) -> None:
        """Judge a batch's answers in chunks; items it did not answer go back in the queue.
        After a kill mid-way, lines already settled are skipped, not counted again."""
        name, batch_id = state["file"], state["batch_id"]
        manifest = self.folder / f"{name}.items.jsonl"
        items = read_manifest(manifest)
        logged = self._ledgered(batch_id) if state.get("resumed") else set()
        answered: set[str] = set()
        chunk: list[tuple[WorkItem, Completion]] = []
        for output in state["outputs"].values():
            with (self.folder / output).open(encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    item = items[row["custom_id"]]
                    if self._answer(item, row, batch_id, state["response_format"], logged, chunk):
                        answered.add(item.item_id)
                    if len(chunk) >= INGEST_CHUNK:
                        self.run.handle_generations(chunk)
                        chunk = []
            await asyncio.sleep(0)
        self.run.handle_generations(chunk)
        for item_id, item in items.items():
            if item_id not in answered and item.kind == "generate" and not self._settled(item):
                self.requeue[item_id] = item
            if item.kind == "generate":
                self.run.finished(item)
            else:
                self.run.release(item_id)
        self.journal.note(name, "ingested", batch_id=batch_id, status=state["status"])
        for path in (manifest, *(self.folder / o for o in state["outputs"].values())):
            path.unlink(missing_ok=True)

    def _settled(self, item: WorkItem) -> bool:
        store = self.run.store
        return item.item_id in store.finished_ids or item.item_id in store.brainstorm_done

    def _answer(
        self,
        item: WorkItem,
        row: dict[str, Any],
        batch_id: str,
        mode: str,
        logged: set[str],
        chunk: list[tuple[WorkItem, Completion]],
    ) -> bool:
        """Settle one line (a generation's answer joins ``chunk``); False for a request the
        batch never ran."""
        response = row.get("response") or {}
        code = (row.get("error") or {}).get("code")
        if not response and (code in UNSENT or code is None):
            return False
        if item.item_id in logged or self._settled(item):
            return True
        status, body = response.get("status_code"), response.get("body") or {}
        attempt = self.attempts.get(item.item_id, 0)
        if status != 200 or not body.get("choices"):
            self._failed(item, status, code or (body.get("error") or {}).get("code"), attempt,
                         batch_id, mode)  # fmt: skip
            return True
        usage, choice = body.get("usage") or {}, body["choices"][0]
        completion = Completion(
            text=(choice.get("message") or {}).get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=0.0,
            response_format=mode,
            attempt=attempt,
            batch_id=batch_id,
        )
        if item.kind == "brainstorm":
            self.run.handle_brainstorm(item, completion)
        else:
            chunk.append((item, completion))
        return True

    def _failed(
        self, item: WorkItem, status: int | None, code: str | None, attempt: int, batch_id: str,
        mode: str,
    ) -> None:  # fmt: skip
        """A request the batch answered with an error: asked again while retries last."""
        retryable = status is None or status in (408, 409, 429) or status >= 500
        again = item.kind == "generate" and retryable and attempt < self.settings.max_retries
        if again:
            self.attempts[item.item_id] = attempt + 1
            self.requeue[item.item_id] = item
        self.run.log_attempt(
            item,
            {
                "attempt": attempt, "outcome": "retry" if again else "failed",
                "reason": code or f"http_{status}", "status": status, "response_format": mode,
                "prompt_tokens": 0, "completion_tokens": 0, "latency_s": None,
                "batch_id": batch_id,
            },
        )  # fmt: skip

    def _ledgered(self, batch_id: str) -> set[str]:
        """Items of this batch the ledger already settled (before a kill)."""
        marker = f'"batch_id": "{batch_id}"'
        done = set()
        with self.run.store.ledger_path.open(encoding="utf-8") as handle:
            for line in handle:
                if marker in line:
                    done.add(json.loads(line)["item_id"])
        return done


async def run_batch(run: SeedRun, endpoint: Endpoint) -> None:
    try:
        await BatchRunner(run, endpoint).run_all()
    finally:
        await endpoint.close()
