"""Requests- and tokens-per-minute limits as OpenAI enforces them.

Each limit is a bucket that holds one (simulated) minute of allowance and refills
continuously. A request is admitted only when both buckets hold enough: one request, and
its admission tokens (``answers.admission_tokens``: ``max_tokens`` counts in full, and
nothing is given back when the answer is shorter). Every answer, refusals included,
carries the ``x-ratelimit-*`` headers.

At time scale S the simulator is a server S times faster: a bucket refills S times faster
in real time, and the headers state real-time figures (``x-ratelimit-limit-requests`` is S
times the simulated RPM, resets are real seconds), so a client that paces by the headers
needs to know nothing about the scale.
"""

from __future__ import annotations

import time


def go_duration(seconds: float) -> str:
    """A duration the way OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``,
    ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s" if minutes else f"{rest:.3g}s"


class Bucket:
    """One limit: ``per_minute`` a simulated minute, full at the start."""

    def __init__(self, per_minute: int, time_scale: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute * time_scale / 60.0  # real seconds
        self.header_limit = round(per_minute * time_scale)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Real seconds until ``amount`` fits (0 when it does now)."""
        return max(0.0, min(amount, self.capacity) - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(self.header_limit),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(self.level))),
            f"x-ratelimit-reset-{kind}": go_duration((self.capacity - self.level) / self.rate),
        }


class RateLimiter:
    """The account's RPM and TPM (0: no such limit)."""

    def __init__(self, rpm: int, tpm: int, time_scale: float) -> None:
        self.requests = Bucket(rpm, time_scale) if rpm else None
        self.tokens = Bucket(tpm, time_scale) if tpm else None

    def admit(self, tokens: int) -> tuple[bool, float, dict[str, str]]:
        """(admitted, real seconds to wait when not, headers)."""
        now = time.monotonic()
        buckets = [(b, n) for b, n in ((self.requests, 1), (self.tokens, tokens)) if b]
        for bucket, _ in buckets:
            bucket.refill(now)
        wait = max((bucket.wait_for(amount) for bucket, amount in buckets), default=0.0)
        if wait == 0.0:
            for bucket, amount in buckets:
                bucket.level -= min(amount, bucket.capacity)
        return wait == 0.0, wait, self.headers()

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                headers.update(bucket.headers(kind))
        return headers
