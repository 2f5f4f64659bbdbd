"""The Files and Batch APIs: uploads kept on disk, and batches that go through every state
OpenAI documents.

A batch is validated (at most ``max_requests`` lines and ``max_bytes``, one model, and room
under the model's enqueued-token limit, else it fails), then answered line by line at
``rpm`` requests a simulated minute, then finalized. It ends completed, failed,
expired (its window ran out: what was answered is in the output file, the rest in the
error file as ``batch_expired``) or cancelled (what was answered is kept). Some lines can be
answered with a server error, in the error file. Output files are written to disk and
served in chunks, so a client meets files of realistic size.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seeds.simulator.answers import Writer, prompt_tokens

OPEN = ("validating", "in_progress", "finalizing", "cancelling")
WINDOWS = {"24h": 24 * 3600.0}


@dataclass
class BatchSettings:
    """Limits and pace of the Batch API; times in simulated seconds."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    enqueued_tokens: int = 0  # per model, across open batches; 0: no limit
    rpm: int = 20_000
    validate_s: float = 60.0
    finalize_s: float = 60.0
    error_share: float = 0.0  # lines answered with HTTP 500, into the error file
    outcomes: list[str] = field(default_factory=list)  # forced ends, batch by batch


class Files:
    """Uploaded and generated files, kept in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    def new_id(self) -> str:
        return f"file-{next(self.ids):06d}"

    def path(self, file_id: str) -> Path:
        return self.folder / file_id

    def register(self, file_id: str, purpose: str, filename: str) -> dict[str, Any]:
        self.meta[file_id] = {
            "id": file_id, "object": "file", "bytes": self.path(file_id).stat().st_size,
            "created_at": int(time.time()), "filename": filename, "purpose": purpose,
            "status": "processed",
        }  # fmt: skip
        return self.meta[file_id]

    def add(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = self.new_id()
        self.path(file_id).write_bytes(data)
        return self.register(file_id, purpose, filename)

    def delete(self, file_id: str) -> None:
        self.meta.pop(file_id)
        self.path(file_id).unlink(missing_ok=True)


class Batches:
    """Every batch of the account; ``answer`` writes one chat completion body."""

    def __init__(
        self,
        settings: BatchSettings,
        files: Files,
        writer: Writer,
        answer: Callable[[dict[str, Any]], dict[str, Any]],
        time_scale: float,
        seed: int,
    ) -> None:
        self.settings = settings
        self.files = files
        self.writer = writer
        self.answer = answer
        self.scale = time_scale
        self.rng = random.Random(seed)
        self.ids = itertools.count(1)
        self.batches: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, int] = {}  # batch id -> enqueued tokens while open
        self.answered: list[str] = []  # custom ids answered 200, in order
        self.tasks: set[asyncio.Task] = set()

    def enqueued(self, model: str) -> int:
        return sum(n for b, n in self.tokens.items() if self.batches[b].get("model") == model)

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = body.get("input_file_id", "")
        if file_id not in self.files.meta:
            return 404, {"error": {"message": f"No such File object: {file_id}",
                                   "type": "invalid_request_error", "code": None}}  # fmt: skip
        batch_id = f"batch_{next(self.ids):06d}"
        now = int(time.time())
        window = body.get("completion_window", "24h")
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
            "input_file_id": file_id, "completion_window": window, "status": "validating",
            "created_at": now, "expires_at": now + int(WINDOWS.get(window, 86400) / self.scale),
            "metadata": body.get("metadata"), "errors": None, "output_file_id": None,
            "error_file_id": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }  # fmt: skip
        outcome = self.settings.outcomes.pop(0) if self.settings.outcomes else "completed"
        task = asyncio.get_running_loop().create_task(self._run(batch_id, outcome))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return 200, self.batches[batch_id]

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
        return batch

    def listing(self, after: str | None, limit: int) -> dict[str, Any]:
        """Newest first, with the ``after`` cursor of the real API."""
        ids = sorted(self.batches, reverse=True)
        if after in self.batches:
            ids = ids[ids.index(after) + 1 :]
        page = [self.batches[b] for b in ids[:limit]]
        return {"object": "list", "data": page, "has_more": len(ids) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}  # fmt: skip

    async def _sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(simulated_s / self.scale)

    def _end(self, batch: dict[str, Any], status: str) -> None:
        batch["status"] = status
        batch[f"{status}_at"] = int(time.time())
        self.tokens.pop(batch["id"], None)

    def _fail(self, batch: dict[str, Any], code: str, message: str) -> None:
        error = {"code": code, "message": message, "param": None, "line": None}
        batch["errors"] = {"object": "list", "data": [error]}
        self._end(batch, "failed")

    def _requests(self, batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.files.path(batch["input_file_id"]).open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def _validate(self, batch: dict[str, Any], outcome: str) -> bool:
        """Check the input file in one pass; False once the batch failed."""
        limits = self.settings
        if outcome == "failed":
            self._fail(batch, "simulated_failure", "The batch failed (simulated).")
            return False
        if self.files.path(batch["input_file_id"]).stat().st_size > limits.max_bytes:
            self._fail(batch, "file_too_large", f"The input file is larger than the "
                       f"{limits.max_bytes} maximum for a batch.")  # fmt: skip
            return False
        count, tokens, models, ids = 0, 0, set(), set()
        for request in self._requests(batch):
            count += 1
            tokens += prompt_tokens(request["body"])
            models.add(request["body"].get("model"))
            ids.add(request["custom_id"])
        if count > limits.max_requests:
            self._fail(batch, "too_many_requests", f"The input file has {count} requests; a "
                       f"batch takes at most {limits.max_requests}.")  # fmt: skip
            return False
        if len(models) != 1 or len(ids) != count:
            self._fail(batch, "invalid_file", "A batch needs one model and unique custom_id.")
            return False
        batch["model"] = models.pop()
        room = limits.enqueued_tokens - self.enqueued(batch["model"])
        if limits.enqueued_tokens and tokens > room:
            self._fail(batch, "token_limit_exceeded", f"Enqueued token limit reached for "
                       f"{batch['model']} in organization org-simulated. Limit: "
                       f"{limits.enqueued_tokens} enqueued tokens. Please try again once some "
                       "in_progress batches have been completed.")  # fmt: skip
            return False
        self.tokens[batch["id"]] = tokens
        batch["request_counts"]["total"] = count
        return True

    async def _run(self, batch_id: str, outcome: str) -> None:
        batch = self.batches[batch_id]
        await self._sleep(self.settings.validate_s)
        if batch["status"] == "cancelling":
            self._end(batch, "cancelled")
            return
        if not self._validate(batch, outcome):
            return
        batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
        files = {"output_file_id": self.files.new_id(), "error_file_id": self.files.new_id()}
        answers, failures, expired = await self._answer_all(batch, files, outcome)
        if batch["status"] == "in_progress":
            batch["status"], batch["finalizing_at"] = "finalizing", int(time.time())
            await self._sleep(self.settings.finalize_s)
        for key, file_id in files.items():
            if self.files.path(file_id).stat().st_size:
                batch[key] = self.files.register(file_id, "batch_output", f"{batch_id}.jsonl")["id"]
            else:
                self.files.path(file_id).unlink()
        batch["request_counts"].update(completed=answers, failed=failures)
        cancelled = batch["status"] == "cancelling"
        self._end(batch, "cancelled" if cancelled else "expired" if expired else "completed")

    async def _answer_all(
        self, batch: dict[str, Any], files: dict[str, str], outcome: str
    ) -> tuple[int, int, bool]:
        """Answer at the batch pace until done or cancelled; once the window has run out (or
        halfway, for a forced expiry) the rest go to the error file as ``batch_expired``.
        Returns the numbers of answers and errors, and whether the batch expired."""
        per_request = 60.0 / (self.settings.rpm * self.scale)
        half = batch["request_counts"]["total"] // 2
        started = time.monotonic()
        answers = failures = 0
        expired = False
        with (
            self.files.path(files["output_file_id"]).open("w", encoding="utf-8") as output,
            self.files.path(files["error_file_id"]).open("w", encoding="utf-8") as errors,
        ):
            for index, request in enumerate(self._requests(batch)):
                if outcome == "cancelled" and index >= half:
                    batch["status"] = "cancelling"
                if batch["status"] != "in_progress":
                    break  # cancelled: what was answered is kept
                late = time.time() >= batch["expires_at"]
                expired = expired or late or (outcome == "expired" and index >= half)
                if expired:
                    errors.write(_expired_line(request["custom_id"]))
                    failures += 1
                    continue
                line, ok = self._line(batch["id"], index, request)
                (output if ok else errors).write(line)
                answers, failures = answers + ok, failures + (not ok)
                if index % 200 == 199:
                    wait = started + (index + 1) * per_request - time.monotonic()
                    await asyncio.sleep(max(0.0, wait))
        return answers, failures, expired

    def _line(self, batch_id: str, index: int, request: dict[str, Any]) -> tuple[str, bool]:
        """One output line, or an error-file line for a request the server failed."""
        line: dict[str, Any] = {"id": f"batch_req_{batch_id}_{index}",
                                "custom_id": request["custom_id"], "error": None}  # fmt: skip
        if self.rng.random() < self.settings.error_share:
            body = {"error": {"message": "The server had an error processing your request.",
                              "type": "server_error", "code": None}}  # fmt: skip
            line["response"] = {"status_code": 500, "request_id": line["id"], "body": body}
            return json.dumps(line) + "\n", False
        line["response"] = {"status_code": 200, "request_id": line["id"],
                            "body": self.answer(request["body"])}  # fmt: skip
        self.answered.append(request["custom_id"])
        return json.dumps(line, ensure_ascii=False) + "\n", True


def _expired_line(custom_id: str) -> str:
    error = {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }
    return json.dumps({"id": None, "custom_id": custom_id, "response": None,
                       "error": error}) + "\n"  # fmt: skip
