"""Live requests paced to the endpoint's requests- and tokens-per-minute limits.

The server is the judge of what a request costs: OpenAI charges a request against TPM when
it admits it, by the larger of ``max_tokens`` and an estimate from the prompt's characters,
and gives nothing back when the answer is shorter. So the pacer charges the same amount
and never refunds. It sends at a steady rate just under the limit instead of spending a
minute's allowance at once. The first request goes alone: until an answer to it comes back
(or it fails), the other workers wait, so the ``x-ratelimit-*`` headers correct a wrong or
missing configured limit before the run sends more than one request on it. The pacer then
follows the headers as they come (a lower limit, or a nearly empty allowance another client
of the key used up), and after a 429 pauses every worker together, once, for the time the
server asked.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

# Pace at this share of the limit: a little room for clocks and rounding.
HEADROOM = 0.98
# The most a limit may be spent ahead of its steady rate, in seconds of allowance.
BURST_S = 0.5
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def admission_tokens(prompt: str, max_tokens: int) -> int:
    """Tokens the server charges when it admits the request (OpenAI's documented rule)."""
    return max(max_tokens, math.ceil(len(prompt) / 4))


def parse_duration(text: str) -> float | None:
    """Seconds of an ``x-ratelimit-reset-*`` value: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m``."""
    parts = DURATION_PART.findall(text or "")
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, TypeError, ValueError):
        return None


class Allowance:
    """One limit as the client spends it: refilled at the paced rate, at most ``BURST_S``
    seconds of it saved up. ``per_minute`` 0 means no limit is known."""

    def __init__(self, per_minute: int) -> None:
        self.configured = per_minute
        self.per_minute = 0
        self.rate = 0.0
        self.level = 0.0
        self.spent = 0.0  # everything admitted so far
        self.stamp = time.monotonic()
        self.set_limit(per_minute)

    @property
    def known(self) -> bool:
        return self.rate > 0

    @property
    def capacity(self) -> float:
        return self.rate * BURST_S

    def set_limit(self, per_minute: int) -> None:
        """Pace to ``per_minute`` (never above the configured limit, which may be the share
        of a key this run is meant to use)."""
        if self.configured:
            per_minute = min(per_minute, self.configured)
        if per_minute == self.per_minute:
            return
        now = time.monotonic()
        if self.known:
            self._refill(now)
            self.rate = per_minute * HEADROOM / 60.0
            self.level = min(self.level, self.capacity)
        else:
            # The first limit: configured, before any request (the allowance starts full),
            # or from a header, after requests nothing paced (it starts empty, so that the
            # room those took is not spent twice).
            self.rate = per_minute * HEADROOM / 60.0
            self.level = self.capacity if per_minute == self.configured else 0.0
            self.stamp = now
        self.per_minute = per_minute

    def _refill(self, now: float) -> None:
        if self.known:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be spent (a request larger than the saved-up
        allowance waits until the allowance is full)."""
        if not self.known:
            return 0.0
        self._refill(now)
        return max(0.0, min(amount, self.capacity) - self.level) / self.rate

    def spend(self, amount: float) -> None:
        self.spent += amount
        if self.known:
            self.level -= min(amount, self.capacity)

    def at_most(self, remaining: int, spent_then: float, then: float, now: float) -> None:
        """The server had ``remaining`` left when it admitted a request the pacer let go
        at ``then``, when it had spent ``spent_then`` in all: what the pacer let go since
        has come out of it, and what refilled since has gone in. Never believe in more
        than that (another client of the key may be spending too)."""
        if not self.known:
            return
        self._refill(now)
        left = remaining - (self.spent - spent_then) + (now - then) * self.rate
        self.level = min(self.level, left)

    def drain(self) -> None:
        self.level = min(self.level, 0.0)


@dataclass(frozen=True)
class Ticket:
    """What the pacer had admitted, in all, when it admitted one request."""

    requests: float
    tokens: float
    at: float


class Pacer:
    """Shared by every worker of a live run."""

    def __init__(self, requests_per_minute: int, tokens_per_minute: int) -> None:
        self.requests = Allowance(requests_per_minute)
        self.tokens = Allowance(tokens_per_minute)
        self.paused_until = 0.0
        self.pauses = 0
        self._turn = asyncio.Lock()
        self._probe_sent = False
        self._first_answer = asyncio.Event()

    async def admit(self, tokens: int) -> Ticket:
        """Wait for this request's turn: after the first request's answer, after any pause,
        when both limits have room."""
        if self._probe_sent:
            await self._first_answer.wait()
        self._probe_sent = True
        async with self._turn:
            while True:
                now = time.monotonic()
                wait = max(
                    self.paused_until - now,
                    self.requests.wait(1, now),
                    self.tokens.wait(tokens, now),
                )
                if wait <= 0:
                    self.requests.spend(1)
                    self.tokens.spend(tokens)
                    return Ticket(self.requests.spent, self.tokens.spent, now)
                await asyncio.sleep(wait)

    def attempt_ended(self) -> None:
        """An attempt got an answer or failed: the workers held back by the first request
        may go."""
        self._first_answer.set()

    def observe(self, headers: Mapping[str, str], ticket: Ticket) -> None:
        """Follow the limits and what is left of them, from the headers of the answer to
        the request of ``ticket``."""
        now = time.monotonic()
        for kind, allowance, spent in (
            ("requests", self.requests, ticket.requests),
            ("tokens", self.tokens, ticket.tokens),
        ):
            limit = _header_int(headers, f"x-ratelimit-limit-{kind}")
            if limit:
                allowance.set_limit(limit)
            remaining = _header_int(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is not None:
                allowance.at_most(remaining, spent, ticket.at, now)

    def rate_limited(self, pause_s: float) -> None:
        """A 429: every worker waits ``pause_s``; 429s that come together pause once."""
        until = time.monotonic() + pause_s
        if until > self.paused_until:
            if self.paused_until < time.monotonic():
                self.pauses += 1
            self.paused_until = until
        self.requests.drain()
        self.tokens.drain()
