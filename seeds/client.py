"""Talking to an OpenAI-compatible endpoint: requests paced to its limits (``seeds.pacing``),
bounded retries with backoff and jitter that honour Retry-After, a stop with one line when
the account has no credit, and the response_format fallback chain
json_schema -> json_object -> text."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import openai

from kit.config import GeneratorSection
from kit.retry import backoff_delay
from seeds.pacing import Pacer, admission_tokens
from seeds.plan import WorkItem

FORMAT_CHAIN = ("json_schema", "json_object", "text")
FATAL_STATUS = {401, 403, 404}
FORMAT_STATUS = {400, 422}
POOL_CONNECTIONS = 32


class EndpointFatal(RuntimeError):
    """The endpoint refuses every request (bad key, unknown model, wrong URL)."""

    reason = "endpoint_error"


class QuotaExhausted(EndpointFatal):
    """A 429 ``insufficient_quota``: the account has no credit, and retrying cannot help."""

    reason = "insufficient_quota"


QUOTA_MESSAGE = (
    "the endpoint's account has no credit left (HTTP 429 insufficient_quota); add credit or "
    "raise its spending limit, then run the same command again to resume"
)


def is_quota_error(exc: openai.APIStatusError) -> bool:
    return exc.status_code == 429 and "insufficient_quota" in (exc.code or "", exc.type or "")


@dataclass(frozen=True)
class Completion:
    """What came back for one successful HTTP call."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    response_format: str
    attempt: int
    batch_id: str | None = None  # the Batch API batch that answered it


class ResponseFormats:
    """The response_format in use; in ``auto`` a 400/422 moves every later request down the
    chain once."""

    def __init__(self, configured: str, local: bool) -> None:
        self.mode = FORMAT_CHAIN[0] if configured == "auto" else configured
        self.can_fall_back = configured == "auto"
        self.local = local

    def fall_back(self, failed_mode: str) -> bool:
        if not self.can_fall_back or failed_mode == FORMAT_CHAIN[-1]:
            return False
        if self.mode == failed_mode:
            self.mode = FORMAT_CHAIN[FORMAT_CHAIN.index(failed_mode) + 1]
        return True

    def payload(self, mode: str, item: WorkItem) -> dict[str, Any] | None:
        """llama.cpp's server takes a schema inside json_object; OpenAI wants json_schema."""
        if mode == "text":
            return None
        if self.local:
            return {"type": "json_object", "schema": item.schema}
        if mode == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": f"{item.kind}_{item.task_type}", "schema": item.schema,
                            "strict": True},
        }  # fmt: skip


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                continue
    return None


class Endpoint:
    """One AsyncOpenAI client shared by all workers (its own retries off: every attempt is
    reported to ``on_attempt``, the ledger, with its outcome). Requests go through the SDK's
    ``post`` with a prebuilt body, as the SDK documents for custom requests."""

    def __init__(
        self,
        settings: GeneratorSection,
        base_url: str | None,
        api_key: str,
        local: bool,
        on_attempt: Callable[[WorkItem, dict[str, Any]], None],
    ) -> None:
        self.settings = settings
        # httpx's pool scans all its connections for every request, so many connections in one
        # pool cost CPU per request: spread them over pools of at most POOL_CONNECTIONS.
        pools = math.ceil(max(settings.concurrency, 1) / POOL_CONNECTIONS)
        per_pool = math.ceil(max(settings.concurrency, 1) / pools)
        self.clients = [self._client(base_url, api_key, per_pool) for _ in range(pools)]
        self.client = self.clients[0]
        self._busy = [0] * pools
        self.formats = ResponseFormats(settings.response_format, local)
        self.on_attempt = on_attempt
        self.rng = random.Random()
        self.pacer = Pacer(settings.requests_per_minute, settings.tokens_per_minute)

    def _client(self, base_url: str | None, api_key: str, connections: int) -> openai.AsyncOpenAI:
        limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=self.settings.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=limits, timeout=self.settings.timeout_s
            ),
        )

    def request_body(self, item: WorkItem, mode: str) -> dict[str, Any]:
        """The chat-completions body (also the Batch API line body)."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": item.prompt}],
            "temperature": self.settings.temperature,
            "top_p": self.settings.top_p,
            "max_tokens": self.settings.max_tokens,
        }
        response_format = self.formats.payload(mode, item)
        if response_format is not None:
            body["response_format"] = response_format
        return body

    async def complete(self, item: WorkItem) -> Completion | None:
        """The first successful completion, or None when the item's retries ran out."""
        attempt = 0
        charge = admission_tokens(item.prompt, self.settings.max_tokens)
        while True:
            mode = self.formats.mode
            ticket = await self.pacer.admit(charge)
            started = time.monotonic()
            try:
                response = await self._post(item, mode)
            except openai.APIStatusError as exc:
                status = exc.status_code
                self.pacer.observe(exc.response.headers, ticket)
                if is_quota_error(exc):
                    self._report(item, attempt, mode, started, "failed", "insufficient_quota",
                                 status)  # fmt: skip
                    raise QuotaExhausted(QUOTA_MESSAGE) from None
                if status in FATAL_STATUS:
                    self._report(item, attempt, mode, started, "failed", f"http_{status}", status)
                    raise EndpointFatal(
                        f"the endpoint answered HTTP {status}: {exc.message}"
                    ) from None
                if status in FORMAT_STATUS and self.formats.fall_back(mode):
                    self._report(
                        item, attempt, mode, started, "format_fallback", f"http_{status}", status
                    )
                    continue
                retry_after = retry_after_seconds(exc.response.headers)
                reason = f"http_{status}"
                retryable = status in (408, 409, 429) or status >= 500
            except openai.APITimeoutError:
                status, retry_after, reason, retryable = None, None, "timeout", True
            except openai.APIConnectionError:
                status, retry_after, reason, retryable = None, None, "connection_error", True
            else:
                self.pacer.observe(response.headers, ticket)
                return self._completion(response, mode, started, attempt)
            finally:
                # After the answer's headers are read: the workers waiting on the first
                # request go with the corrected limits.
                self.pacer.attempt_ended()
            if not retryable or attempt >= self.settings.max_retries:
                self._report(item, attempt, mode, started, "failed", reason, status)
                return None
            self._report(item, attempt, mode, started, "retry", reason, status)
            delay = backoff_delay(
                attempt, self.settings.backoff_base_s, self.settings.backoff_max_s,
                retry_after, self.rng,
            )  # fmt: skip
            if status == 429:
                # The account's limit, not this request's fault: every worker waits, once.
                self.pacer.rate_limited(retry_after if retry_after is not None else delay)
            else:
                await asyncio.sleep(delay)
            attempt += 1

    async def _post(self, item: WorkItem, mode: str) -> httpx2.Response:
        pool = self._busy.index(min(self._busy))  # the least busy pool always has room
        self._busy[pool] += 1
        try:
            return await self.clients[pool].post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body=self.request_body(item, mode),
                options={"headers": {"X-Seeds-Item": item.item_id}},
            )
        finally:
            self._busy[pool] -= 1

    def _completion(
        self, response: httpx2.Response, mode: str, started: float, attempt: int
    ) -> Completion:
        """Read the answer as plain JSON: the body is already built and the reply is judged
        by seeds itself, so the SDK's typed request/response models would only cost CPU."""
        try:
            data = json.loads(response.content)
        except ValueError:
            data = {}
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        choices = data.get("choices") or [{}]
        return Completion(
            text=(choices[0].get("message") or {}).get("content") or "",
            finish_reason=choices[0].get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.monotonic() - started,
            response_format=mode,
            attempt=attempt,
        )

    def _report(
        self, item: WorkItem, attempt: int, mode: str, started: float, outcome: str,
        reason: str, status: int | None,
    ) -> None:  # fmt: skip
        self.on_attempt(
            item,
            {
                "attempt": attempt,
                "outcome": outcome,
                "reason": reason,
                "status": status,
                "response_format": mode,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency_s": round(time.monotonic() - started, 4),
            },
        )

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
