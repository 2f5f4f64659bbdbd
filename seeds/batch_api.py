"""The Batch API's control calls, each retried with backoff on the failures a day-long batch
meets (5xx, 429, timeouts, dropped connections, a download cut short), so one network error
does not end a run. Output files are streamed to disk and checked against their size. A
batch is never created twice for one input file: before creating one, the account's recent
batches are searched for it (a create whose answer was lost, or a kill, left it there)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import openai
from openai.types import Batch

from kit.config import GeneratorSection
from kit.retry import backoff_delay
from seeds.client import QUOTA_MESSAGE, EndpointFatal, QuotaExhausted, is_quota_error

T = TypeVar("T")
log = logging.getLogger("seeds")
CHAT_ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
LIST_PAGE = 100
CLOCK_SKEW_S = 300  # batches created this long before our note may still be ours


class IncompleteDownload(RuntimeError):
    """A file arrived shorter than the API says it is."""


class BatchApiDown(EndpointFatal):
    """A control call kept failing after every retry."""


_TRANSPORT = (openai.APIConnectionError, httpx2.TransportError, IncompleteDownload)


def _transient(exc: BaseException) -> float | None | bool:
    """False for a failure retrying cannot fix; else the server's Retry-After (or None)."""
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
            return False
        value = exc.response.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
    return None if isinstance(exc, _TRANSPORT) else False


class BatchApi:
    def __init__(self, client: openai.AsyncOpenAI, settings: GeneratorSection) -> None:
        self.client = client
        self.settings = settings
        self.rng = random.Random()

    async def call(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """``action()``, retried ``max_retries`` times on a transient failure."""
        settings = self.settings
        for attempt in range(settings.max_retries + 1):
            try:
                return await action()
            except (openai.APIError, *_TRANSPORT) as exc:
                if isinstance(exc, openai.APIStatusError) and is_quota_error(exc):
                    raise QuotaExhausted(QUOTA_MESSAGE) from None
                retry_after = _transient(exc)
                if retry_after is False:
                    raise EndpointFatal(f"the Batch API refused {what}: {_describe(exc)}") from None
                if attempt == settings.max_retries:
                    raise BatchApiDown(
                        f"the Batch API kept failing on {what} ({_describe(exc)}); run the same "
                        "command again to resume (batches in flight are picked up by id)"
                    ) from None
                wait = backoff_delay(
                    attempt, settings.backoff_base_s, settings.backoff_max_s, retry_after, self.rng
                )
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, _describe(exc),
                            attempt + 1, settings.max_retries, wait)  # fmt: skip
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def has_batch_api(self) -> bool:
        """Whether the endpoint serves the Batch API at all (vLLM and llama.cpp do not)."""
        try:
            await self.call("a look at the batch list", lambda: self.client.batches.list(limit=1))
        except EndpointFatal as exc:
            if "HTTP 404" in str(exc) or "HTTP 405" in str(exc):
                return False
            raise
        return True

    async def upload(self, path: Path) -> str:
        uploaded = await self.call(
            f"the upload of {path.name}",
            lambda: self.client.files.create(file=path, purpose="batch"),
        )
        return uploaded.id

    async def find(self, input_file_id: str, since: float) -> Batch | None:
        """The batch made from ``input_file_id`` since ``since`` (a Unix time), if any; a
        failed one (refused, nothing answered or paid) does not count."""
        page = await self.client.batches.list(limit=LIST_PAGE)
        while True:
            for batch in page.data:
                if batch.input_file_id == input_file_id and batch.status != "failed":
                    return batch
                if batch.created_at < since - CLOCK_SKEW_S:
                    return None
            if not page.has_next_page():
                return None
            page = await page.get_next_page()

    async def create(self, input_file_id: str, since: float, metadata: dict[str, str]) -> Batch:
        """A batch for the file: the one already made from it, or a new one."""

        async def once() -> Batch:
            found = await self.find(input_file_id, since)
            if found is not None:
                return found
            return await self.client.batches.create(
                input_file_id=input_file_id,
                endpoint=CHAT_ENDPOINT,
                completion_window=self.settings.batch_completion_window,
                metadata=metadata,
            )

        return await self.call(f"the creation of a batch for {input_file_id}", once)

    async def retrieve(self, batch_id: str) -> Batch:
        return await self.call(
            f"polling {batch_id}", lambda: self.client.batches.retrieve(batch_id)
        )

    async def download(self, file_id: str, target: Path) -> None:
        """Stream the file to ``target`` (through a ``.part`` file, renamed when whole)."""
        info = await self.call(
            f"the size of {file_id}", lambda: self.client.files.retrieve(file_id)
        )
        part = target.with_name(target.name + ".part")

        async def fetch() -> None:
            async with self.client.files.with_streaming_response.content(file_id) as response:
                with part.open("wb") as handle:
                    async for chunk in response.iter_bytes():
                        handle.write(chunk)
            if part.stat().st_size != info.bytes:
                raise IncompleteDownload(f"{part.stat().st_size} of {info.bytes} bytes")
            part.replace(target)

        await self.call(f"the download of {file_id}", fetch)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__


def batch_errors(batch: Batch) -> list[str]:
    """The codes of a failed batch's errors (``token_limit_exceeded``, ...)."""
    data: list[Any] = (batch.errors.data or []) if batch.errors else []
    return [error.code or "" for error in data]
