"""A fault-injecting OpenAI-compatible server for the seeds tests and benchmark.

Served by the simulator's small HTTP/1.1 server (``seeds.simulator.http``), cheap in CPU
next to the client it measures. Where the simulator keeps to what OpenAI does, this one
breaks answers on purpose: it answers chat completions with JSON built from the request's
schema (or the prompt's key list), injects the faults it is told to at the rates it is
told, and logs every request so tests can count exactly. It also implements the Files and
Batches endpoints used by the OpenAI Batch API.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from seeds.simulator.answers import GROUNDED_DOCUMENT, LEADS_BACK
from seeds.simulator.http import Request, Response, serve_forever
from seeds.simulator.http import ServerThread as HttpServerThread
from seeds.simulator.server import parse_multipart

TRANSPORT_FAULTS = ("429", "500", "timeout")
CONTENT_FAULTS = ("malformed", "truncated", "wrong_keys", "duplicate", "prose")
# Answers with the right keys whose content is degenerate: the quality gates' business.
GATE_FAULTS = ("placeholder", "markup", "too_short")
# A corpus-grounded answer whose query has nothing to do with its document.
GROUNDED_FAULTS = ("off_topic",)
PROMPT_KEY = re.compile(r'^- "(\w+)":', re.MULTILINE)


@dataclass
class Served:
    """One chat request as the server saw it."""

    item: str | None
    kind: str
    fault: str
    status: int
    at: float
    content: str | None = None


@dataclass
class FakeLLM:
    """Behaviour knobs; ``faults`` maps a fault name to its probability per request, and
    ``first_faults`` are served, in order, to the first example requests."""

    latency_s: float = 0.0
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: str = "0.05"
    hang_s: float = 4.0
    unsupported_formats: tuple[str, ...] = ()
    first_faults: tuple[str, ...] = ()
    brainstorm_style: str = "json"
    batch_delay_s: float = 0.0
    require_key: str | None = None
    # Answers depend on the request alone, not on the order requests arrive in, so two runs
    # of the same plan (one of them killed and resumed) get the same answers.
    by_request: bool = False
    log: list[Served] = field(default_factory=list)
    batches_created: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.counter = itertools.count()
        self.valid_contents: dict[tuple[str, ...], list[str]] = {}

    # ---- chat -------------------------------------------------------------------------
    def _pick_fault(self, content_allowed: bool) -> str:
        if content_allowed and self.first_faults:
            fault, self.first_faults = self.first_faults[0], self.first_faults[1:]
            return fault
        roll = self.rng.random()
        names = TRANSPORT_FAULTS + (
            CONTENT_FAULTS + GATE_FAULTS + GROUNDED_FAULTS if content_allowed else ()
        )
        for name in names:
            rate = self.faults.get(name, 0.0)
            if roll < rate:
                return name
            roll -= rate
        return "none"

    @staticmethod
    def _keys(body: dict[str, Any]) -> list[str]:
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
        if schema:
            return list(schema["required"])
        prompt = body["messages"][-1]["content"]
        keys = PROMPT_KEY.findall(prompt)
        return keys or ["tasks"]

    def _content(self, keys: list[str], prompt: str) -> str:
        if self.by_request:
            n = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=3).digest(), "big")
        else:
            n = next(self.counter)
        if keys == ["better"]:  # the judge always prefers the first candidate
            return json.dumps({"better": "A"})
        if keys == ["tasks"]:
            count = int(m.group(1)) if (m := re.search(r"List (\d+)", prompt)) else 5
            tasks = [f"Find documents about subject {n}-{i} for a reader." for i in range(count)]
            if self.brainstorm_style == "python_list":
                return "Here you go: [" + ", ".join(f"'{t}'" for t in tasks) + "]"
            if self.brainstorm_style == "numbered":
                return "Tasks:\n" + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(tasks))
            return json.dumps({"tasks": tasks})
        answer = {k: self._text(k, n, prompt) for k in keys}
        if document := GROUNDED_DOCUMENT.search(prompt):
            # Every other word of the document's start: it leads back to the document without
            # quoting four words of it in a row.
            hint = " ".join(document.group(1).split()[:16:2])
            answer.update((k, f"{hint} {answer[k]}") for k in LEADS_BACK if k in answer)
        return json.dumps(answer)

    @staticmethod
    def _text(key: str, n: int, prompt: str) -> str:
        """As many words as the prompt asks this field for, unique to this answer."""
        asked = re.search(r"about (\d+) words", prompt) or re.search(
            r"text of at least (\d+) words", prompt
        )
        if key in ("label", "misleading_label"):
            count = 2
        elif key == "user_query":
            count = 12
        elif asked and key not in ("S1", "S2", "S3"):
            count = int(asked.group(1)) * 3 // 10  # just over the content rule's floor
        else:
            count = 30 if key in ("input", "positive_document") and "long" in prompt else 10
        words = (hashlib.blake2b(f"{n}/{key}/{i}".encode(), digest_size=4).hexdigest()
                 for i in range(count))  # fmt: skip
        return f"{key.replace('_', ' ')} answer {n}: " + " ".join(words) + "."

    def chat(self, body: dict[str, Any], item: str | None) -> tuple[int, dict[str, str], Any]:
        """Status, extra headers and JSON payload for one chat request (no waiting)."""
        keys = self._keys(body)
        kind = {"tasks": "brainstorm", "better": "judge"}.get(keys[0], "generate")
        fmt = (body.get("response_format") or {}).get("type", "text")
        if fmt in self.unsupported_formats:
            self.log.append(Served(item, kind, "format_refused", 400, time.monotonic()))
            error = {"message": f"response_format {fmt} is not supported", "type": "invalid"}
            return 400, {}, {"error": error}
        fault = self._pick_fault(content_allowed=kind == "generate")
        if fault in ("429", "500"):
            self.log.append(Served(item, kind, fault, int(fault), time.monotonic()))
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            return int(fault), headers, {"error": {"message": f"injected {fault}"}}
        prompt = body["messages"][-1]["content"]
        content = base = self._content(keys, prompt)
        finish = "stop"
        if fault == "malformed":
            content = content.replace('": "', '" "', 1)
        elif fault == "truncated":
            content, finish = content[: len(content) // 2], "length"
        elif fault == "wrong_keys":
            content = json.dumps({f"{k}_x": v for k, v in json.loads(content).items()})
        elif fault == "duplicate":
            earlier = self.valid_contents.get(tuple(keys))
            if earlier:
                content = "  " + self.rng.choice(earlier).replace(" ", "   ") + "\n"
            else:
                fault = "none"
        elif fault == "prose":
            content = f"Sure! Here is the example:\n```json\n{content}\n```\nHope it helps."
        elif fault == "off_topic":
            content = self._content(keys, "no document")
            if not GROUNDED_DOCUMENT.search(prompt):
                fault, content = "none", base
        elif fault in GATE_FAULTS:
            fields = json.loads(content)
            first = next(iter(fields))
            fields[first] = {
                "placeholder": f"{{language}} {fields[first]}",
                "markup": f"<p>{fields[first]}</p>",
                "too_short": "x",
            }[fault]
            content = json.dumps(fields)
        if fault in ("none", "prose"):
            self.valid_contents.setdefault(tuple(keys), []).append(base)
        self.log.append(Served(item, kind, fault, 200, time.monotonic(), content))
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {}, {
            "id": f"chatcmpl-{next(self.counter)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage,
        }  # fmt: skip

    # ---- files and batches ------------------------------------------------------------
    def _file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-{next(self.counter)}"
        self.files[file_id] = {
            "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": filename, "purpose": purpose, "status": "processed", "data": data,
        }  # fmt: skip
        return {k: v for k, v in self.files[file_id].items() if k != "data"}

    async def _run_batch(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        await asyncio.sleep(self.batch_delay_s / 2)
        batch["status"] = "in_progress"
        out, errors = [], []
        for line in self.files[batch["input_file_id"]]["data"].decode().splitlines():
            request = json.loads(line)
            status, _, payload = self.chat(request["body"], request["custom_id"])
            if self.log[-1].fault == "timeout":
                status, payload = 500, {"error": {"message": "injected timeout"}}
                self.log[-1].status = 500
            row = {"id": f"batch_req_{next(self.counter)}", "custom_id": request["custom_id"],
                   "response": {"status_code": status, "request_id": "r", "body": payload},
                   "error": None}  # fmt: skip
            (out if status == 200 else errors).append(json.dumps(row))
        await asyncio.sleep(self.batch_delay_s / 2)
        if out:
            batch["output_file_id"] = self._file("\n".join(out).encode(), "batch_output", "o")["id"]
        if errors:
            batch["error_file_id"] = self._file("\n".join(errors).encode(), "batch_output", "e")[
                "id"
            ]
        batch["status"] = "completed"
        batch["completed_at"] = int(time.time())

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        batch_id = f"batch_{next(self.counter)}"
        self.batches_created.append(batch_id)
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
            "created_at": int(time.time()), "status": "validating",
            "metadata": body.get("metadata"),
        }  # fmt: skip
        asyncio.get_running_loop().create_task(self._run_batch(batch_id))
        return self.batches[batch_id]

    # ---- HTTP -------------------------------------------------------------------------
    async def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if self.require_key and headers.get("authorization") != f"Bearer {self.require_key}":
            return 401, {}, {"error": {"message": "bad key"}}
        if method == "POST" and path.endswith("/chat/completions"):
            status, extra, payload = self.chat(json.loads(body), headers.get("x-seeds-item"))
            if self.log[-1].fault == "timeout":
                await asyncio.sleep(self.hang_s)
            elif self.latency_s:
                await asyncio.sleep(self.latency_s)
            return status, extra, payload
        if method == "GET" and path.endswith("/models"):
            model = {"id": "fake", "object": "model", "created": 0, "owned_by": "tests"}
            return 200, {}, {"object": "list", "data": [model]}
        if method == "POST" and path.endswith("/files"):
            fields = parse_multipart(headers["content-type"], body)
            data, purpose = fields["file"][0], fields["purpose"][0].decode()
            return 200, {}, self._file(data, purpose, "upload.jsonl")
        if method == "GET" and "/files/" in path:
            file_id = path.split("/files/")[1].split("/")[0]
            if path.endswith("/content"):
                return (
                    200,
                    {"Content-Type": "application/octet-stream"},
                    self.files[file_id]["data"],
                )
            return 200, {}, {k: v for k, v in self.files[file_id].items() if k != "data"}
        if method == "POST" and path.endswith("/batches"):
            return 200, {}, self._create_batch(json.loads(body))
        if method == "GET" and path.endswith("/batches"):
            newest = [self.batches[b] for b in reversed(self.batches_created)]
            return 200, {}, {"object": "list", "data": newest, "has_more": False}
        if method == "GET" and "/batches/" in path:
            return 200, {}, self.batches[path.split("/batches/")[1]]
        return 404, {}, {"error": {"message": f"no route {method} {path}"}}

    async def handle(self, request: Request) -> Response:
        status, extra, payload = await self.route(
            request.method, request.path, request.headers, request.body
        )
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return Response(status, {k.lower(): v for k, v in extra.items()}, data)

    # ---- counting helpers for tests ---------------------------------------------------
    def faults_served(self, kind: str = "generate") -> Counter[str]:
        return Counter(s.fault for s in self.log if s.kind == kind)


class ServerThread(HttpServerThread):
    """Runs a ``FakeLLM`` on 127.0.0.1 in a background thread; ``url`` is its base URL."""

    def __init__(self, fake: FakeLLM) -> None:
        self.fake = fake
        super().__init__(fake.handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(serve_forever(FakeLLM(latency_s=args.latency).handle, args.port))
