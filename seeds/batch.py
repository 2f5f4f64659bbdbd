"""OpenAI Batch API mode: upload one JSONL of requests per round, create a batch, poll it,
download and judge the results. Every submitted batch id is written down first, so a killed
run picks its batches up again instead of paying for them twice."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from seeds.client import Completion, Endpoint
from seeds.engine import BRAINSTORM_ROUNDS, SeedRun
from seeds.plan import WorkItem
from seeds.store import read_jsonl, utc_now

TERMINAL = {"completed", "failed", "expired", "cancelled"}
CHAT_ENDPOINT = "/v1/chat/completions"


class BatchRunner:
    """Submits and collects batches; ``run`` owns every decision about the answers."""

    def __init__(self, run: SeedRun, endpoint: Endpoint) -> None:
        self.run = run
        self.endpoint = endpoint
        self.client = endpoint.client
        self.path = run.store.batches_path
        self.settings = endpoint.settings

    def _open_batches(self) -> list[dict[str, Any]]:
        """Submitted batches never ingested, from ``batches.jsonl``."""
        submitted: dict[str, dict[str, Any]] = {}
        for line in read_jsonl(self.path):
            if line["state"] == "submitted":
                submitted[line["batch_id"]] = line
            else:
                submitted.pop(line["batch_id"], None)
        return list(submitted.values())

    def _note(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({**row, "at": utc_now()}, ensure_ascii=False) + "\n")

    async def submit(self, items: list[WorkItem]) -> dict[str, Any]:
        mode = self.endpoint.formats.mode
        lines = [
            json.dumps(
                {
                    "custom_id": item.item_id,
                    "method": "POST",
                    "url": CHAT_ENDPOINT,
                    "body": self.endpoint.request_body(item, mode),
                },
                ensure_ascii=False,
            )
            for item in items
        ]
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        name = f"{self.run.gen.run_name}-{items[0].kind}-{utc_now()}.jsonl"
        uploaded = await self.client.files.create(file=(name, payload), purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT_ENDPOINT,
            completion_window=self.settings.batch_completion_window,
            metadata={"run_name": self.run.gen.run_name, "kind": items[0].kind},
        )
        row = {
            "state": "submitted",
            "batch_id": batch.id,
            "input_file_id": uploaded.id,
            "response_format": mode,
            "items": [
                {k: v for k, v in asdict(item).items() if k not in ("prompt", "schema")}
                for item in items
            ],
        }
        self._note(row)
        return row

    async def collect(self, row: dict[str, Any]) -> None:
        """Poll until the batch ends, then judge its answers like live ones, all at once."""
        batch = await self.client.batches.retrieve(row["batch_id"])
        while batch.status not in TERMINAL:
            await asyncio.sleep(self.settings.batch_poll_s)
            batch = await self.client.batches.retrieve(row["batch_id"])
        items = {i["item_id"]: WorkItem(prompt="", schema={}, **i) for i in row["items"]}
        answered: set[str] = set()
        generations: list[tuple[WorkItem, Completion]] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self.client.files.content(file_id)
                for line in content.content.decode("utf-8").splitlines():
                    if line.strip():
                        item, completion = self._answer(
                            items, json.loads(line), row["response_format"]
                        )
                        answered.add(item.item_id)
                        if completion is not None:
                            generations.append((item, completion))
        self.run.handle_generations(generations)
        for item_id, item in items.items():
            if item_id not in answered:
                self._failed(item, f"batch_{batch.status}", None, row["response_format"])
        for item in items.values():
            if item.kind == "generate":
                self.run.finished(item)
        self._note({"state": "ingested", "batch_id": row["batch_id"], "status": batch.status})

    def _answer(
        self, items: dict[str, WorkItem], line: dict[str, Any], mode: str
    ) -> tuple[WorkItem, Completion | None]:
        """The line's item, and its completion when it is a generation still to judge
        (brainstorms and failures are settled here, one at a time)."""
        item = items[line["custom_id"]]
        if item.item_id in self.run.store.finished_ids | self.run.store.brainstorm_done:
            return item, None  # judged before a kill interrupted this batch's ingestion
        response = line.get("response") or {}
        status = response.get("status_code")
        body = response.get("body") or {}
        if status != 200 or line.get("error") or not body.get("choices"):
            error = (line.get("error") or {}).get("code") or f"http_{status}"
            self._failed(item, str(error), status, mode)
            return item, None
        usage = body.get("usage") or {}
        choice = body["choices"][0]
        completion = Completion(
            text=(choice.get("message") or {}).get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=0.0,
            response_format=mode,
            attempt=0,
        )
        if item.kind == "brainstorm":
            self.run.handle_brainstorm(item, completion)
            return item, None
        return item, completion

    def _failed(self, item: WorkItem, reason: str, status: int | None, mode: str) -> None:
        self.run.tried_this_session.add(item.item_id)
        self.run.log_attempt(
            item,
            {
                "attempt": 0, "outcome": "failed", "reason": reason, "status": status,
                "response_format": mode, "prompt_tokens": 0, "completion_tokens": 0,
                "latency_s": None,
            },
        )  # fmt: skip

    async def run_all(self) -> None:
        for row in self._open_batches():
            for raw in row["items"]:
                self.run.tried_this_session.add(raw["item_id"])
                if raw["kind"] == "generate":
                    self.run.started(WorkItem(prompt="", schema={}, **raw))
            await self.collect(row)
        for round_index in range(BRAINSTORM_ROUNDS):
            items = self.run.pending_brainstorms(round_index)
            if not items or not self.run.may_start_request():
                break
            for item in items:
                self.run.tried_this_session.add(item.item_id)
            await self.collect(await self.submit(items))
        for _ in range(self.settings.batch_max_rounds):
            items = []
            while (item := self.run.next_generation_item()) is not None:
                self.run.started(item)
                items.append(item)
            if not items:
                break
            await self.collect(await self.submit(items))


async def run_batch(run: SeedRun, endpoint: Endpoint) -> None:
    try:
        await BatchRunner(run, endpoint).run_all()
    finally:
        await endpoint.close()
