"""One backoff rule for every retry loop the kit owns (the generator endpoint, Hub commits)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Full-jitter exponential backoff; a server's Retry-After is a floor, never cut short."""
    delay = rng.uniform(0, min(cap, base * 2**attempt))
    if retry_after is not None:
        delay = max(delay, retry_after) + rng.uniform(0, base)
    return delay


def call_with_retries(
    action: Callable[[], T],
    retries: int,
    is_transient: Callable[[BaseException], bool],
    what: str,
    base: float = 1.0,
    cap: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action``; retry it after a transient failure, at most ``retries`` times."""
    rng = random.Random()
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == retries or not is_transient(exc):
                raise
            wait = backoff_delay(attempt, base, cap, None, rng)
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, describe(exc), attempt + 1,
                retries, wait,
            )  # fmt: skip
            sleep(wait)
    raise AssertionError("unreachable")


def describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__
