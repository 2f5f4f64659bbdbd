"""The simulated endpoint: routes, the account's limits and credit, and the faults it is
told to inject. Everything it did is counted (``stats``, also served at
``GET /v1/simulator/stats``) so that tests and benchmarks can check a client against it."""

from __future__ import annotations

import asyncio
import json
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seeds.simulator.answers import Writer, admission_tokens
from seeds.simulator.batches import Batches, BatchSettings, Files
from seeds.simulator.http import Request, Response
from seeds.simulator.limits import RateLimiter

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
READ_CHUNK = 1 << 20


@dataclass
class SimulatorSettings:
    """What the account allows and how the server misbehaves; times in simulated seconds
    (``time_scale`` simulated seconds pass per real second)."""

    time_scale: float = 1.0
    rpm: int = 0  # requests per minute; 0: no limit
    tpm: int = 0  # tokens per minute, max_tokens counted at admission; 0: no limit
    latency_s: float = 2.0
    slow_share: float = 0.0  # answers that take slow_latency_s instead
    slow_latency_s: float = 60.0
    error_every: int = 0  # every N-th request starts a burst of error_burst 5xx answers
    error_burst: int = 3
    drop_share: float = 0.0  # requests handled, then the connection closed unanswered
    quota_requests: int = -1  # requests admitted before the account runs out of credit
    cut_downloads: int = 0  # the first N file downloads stop halfway
    no_batch_api: bool = False  # answer like vLLM or llama.cpp: no /files, no /batches
    seed: int = 0
    batch: BatchSettings = field(default_factory=BatchSettings)


def _error(
    status: int, message: str, kind: str, code: str | None = None, **headers: str
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(status, dict(headers), json.dumps(body).encode())


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, headers or {}, json.dumps(payload, ensure_ascii=False).encode())


class Simulator:
    """One account on one server; ``handle`` answers one HTTP request."""

    def __init__(self, settings: SimulatorSettings, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="simulator-")
        folder = Path(data_dir or self._tmp.name)
        folder.mkdir(parents=True, exist_ok=True)
        self.limiter = RateLimiter(settings.rpm, settings.tpm, settings.time_scale)
        self.writer = Writer(settings.seed)
        self.files = Files(folder)
        self.batches = Batches(settings.batch, self.files, self.writer, self.writer.completion,
                               settings.time_scale, settings.seed)  # fmt: skip
        self.quota_left = settings.quota_requests
        self.requests = 0
        self.burst_left = 0
        self.downloads = 0
        self.fault_rng = random.Random(settings.seed + 1)
        # (real seconds since start, item, status) of every chat request
        self.chat_log: list[tuple[float, str | None, int]] = []
        self.timeline: dict[int, list[int]] = {}  # real second -> [admitted, tokens, 429s]
        self.control: Counter[str] = Counter()  # non-chat requests by "METHOD route status"

    # ---- the account ------------------------------------------------------------------
    def simulated_seconds(self) -> float:
        return (time.monotonic() - self.started) * self.settings.time_scale

    def _tick(self, admitted: int, tokens: int, limited: int) -> None:
        second = self.timeline.setdefault(int(time.monotonic() - self.started), [0, 0, 0])
        second[0] += admitted
        second[1] += tokens
        second[2] += limited

    def _out_of_credit(self) -> Response | None:
        if self.quota_left == 0:
            return _error(429, "You exceeded your current quota, please check your plan and "
                          "billing details.", "insufficient_quota", "insufficient_quota",
                          **{"x-should-retry": "false"})  # fmt: skip
        if self.quota_left > 0:
            self.quota_left -= 1
        return None

    # ---- HTTP -------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path = request.path.removeprefix("/v1")
        if path == "/simulator/stats":  # the observer's window: no faults, not counted
            return _json(self.stats())
        self.requests += 1
        if self.settings.error_every and self.requests % self.settings.error_every == 0:
            self.burst_left = self.settings.error_burst
        if self.burst_left:
            self.burst_left -= 1
            response = _error(500, "The server had an error while processing your request.",
                              "server_error")  # fmt: skip
        else:
            response = await self._route(request.method, path, request)
        if path != "/chat/completions":
            route = re.sub(r"/(file|batch)[-_]\w+", r"/{\1}", path)
            self.control[f"{request.method} {route} {response.status}"] += 1
        if self.settings.drop_share and self.fault_rng.random() < self.settings.drop_share:
            response.drop = True
        return response

    async def _route(self, method: str, path: str, request: Request) -> Response:
        if method == "POST" and path == "/chat/completions":
            return await self.chat(request)
        if method == "GET" and path == "/models":
            owner = "vllm" if self.settings.no_batch_api else "system"
            return _json(
                {
                    "object": "list",
                    "data": [
                        {"id": "simulated", "object": "model", "created": 0, "owned_by": owner}
                    ],
                }
            )
        if self.settings.no_batch_api or not path.startswith(("/files", "/batches")):
            return Response(404, {}, b'{"detail":"Not Found"}')
        return self._files_and_batches(method, path, request)

    def _files_and_batches(self, method: str, path: str, request: Request) -> Response:
        parts = path.strip("/").split("/")
        if parts[0] == "files":
            if method == "POST" and len(parts) == 1:
                return self._upload(request)
            if parts[1] not in self.files.meta:
                return _error(404, f"No such File object: {parts[1]}", "invalid_request_error")
            if method == "DELETE":
                self.files.delete(parts[1])
                return _json({"id": parts[1], "object": "file", "deleted": True})
            if len(parts) == 3 and parts[2] == "content":
                return self._download(parts[1])
            return _json(self.files.meta[parts[1]])
        if method == "POST" and len(parts) == 1:
            refused = self._out_of_credit()
            if refused:
                return refused
            status, payload = self.batches.create(json.loads(request.body))
            return _json(payload, status)
        if method == "GET" and len(parts) == 1:
            limit = int(request.query.get("limit", 20))
            return _json(self.batches.listing(request.query.get("after"), limit))
        if parts[1] not in self.batches.batches:
            return _error(404, f"No batch found with id '{parts[1]}'.", "invalid_request_error")
        if method == "POST" and parts[-1] == "cancel":
            return _json(self.batches.cancel(parts[1]))
        return _json(self.batches.batches[parts[1]])

    def _upload(self, request: Request) -> Response:
        if len(request.body) > MAX_UPLOAD_BYTES:
            return _error(413, "File is too large.", "invalid_request_error")
        fields = parse_multipart(request.headers.get("content-type", ""), request.body)
        purpose = fields.get("purpose", (b"", ""))[0].decode()
        data, filename = fields.get("file", (b"", "upload.jsonl"))
        return _json(self.files.add(data, purpose, filename))

    def _download(self, file_id: str) -> Response:
        self.downloads += 1
        size = self.files.meta[file_id]["bytes"]
        cut = size // 2 if self.downloads <= self.settings.cut_downloads else None
        headers = {"content-type": "application/octet-stream"}
        return Response(200, headers, _read_chunks(self.files.path(file_id)), size, cut_at=cut)

    async def chat(self, request: Request) -> Response:
        body = json.loads(request.body)
        item = request.headers.get("x-seeds-item")
        at = time.monotonic() - self.started
        refused = self._out_of_credit()
        if refused:
            self.chat_log.append((at, item, 429))
            return refused
        tokens = admission_tokens(body)
        admitted, wait, headers = self.limiter.admit(tokens)
        if not admitted:
            if self.quota_left >= 0:
                self.quota_left += 1  # a refused request costs no credit
            self._tick(0, 0, 1)
            self.chat_log.append((at, item, 429))
            short_of_tokens = self.limiter.tokens and self.limiter.tokens.wait_for(tokens)
            kind = "tokens" if short_of_tokens else "requests"
            retry = {"retry-after-ms": str(max(1, round(wait * 1000))),
                     "retry-after": f"{wait:.3f}"}  # fmt: skip
            return _error(429, f"Rate limit reached for simulated model on {kind} per min. "
                          f"Please try again in {wait * 1000:.0f}ms.", kind,
                          "rate_limit_exceeded", **headers, **retry)  # fmt: skip
        self._tick(1, tokens, 0)
        settings = self.settings
        slow = settings.slow_share and self.fault_rng.random() < settings.slow_share
        await asyncio.sleep((settings.slow_latency_s if slow else settings.latency_s)
                            / settings.time_scale)  # fmt: skip
        self.chat_log.append((at, item, 200))
        return _json(self.writer.completion(body), headers=headers)

    # ---- what happened ----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        statuses = Counter(status for _, _, status in self.chat_log)
        answered = Counter(item for _, item, status in self.chat_log if status == 200 and item)
        in_batches = Counter(self.batches.answered)
        batch_states = Counter(b["status"] for b in self.batches.batches.values())
        return {
            "simulated_s": round(self.simulated_seconds(), 3),
            "requests": self.requests,
            "chat": {"requests": len(self.chat_log), "by_status": dict(statuses),
                     "answered_twice": sum(1 for n in answered.values() if n > 1)},
            "timeline": sorted([second, *values] for second, values in self.timeline.items()),
            "batches": {"created": len(self.batches.batches),
                        "by_status": dict(batch_states),
                        "answered": len(self.batches.answered),
                        "answered_twice": sum(1 for n in in_batches.values() if n > 1)},
            "control": dict(self.control),
        }  # fmt: skip

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str]]:
    """Form fields of a multipart body: name -> (value, filename)."""
    boundary = content_type.split("boundary=")[-1].strip('"').encode()
    fields = {}
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, value = part.split(b"\r\n\r\n", 1)
        name = re.search(rb'name="([^"]+)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name:
            value = value[:-2] if value.endswith(b"\r\n") else value
            fields[name.group(1).decode()] = (value, filename.group(1).decode() if filename else "")
    return fields
