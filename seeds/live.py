"""Live mode: a fixed pool of workers keeps ``concurrency`` requests in flight, each worker
pulling the next planned item as soon as its previous one is done. The endpoint paces them
to the account's limits; the budget holds each request's worst case until it settles."""

from __future__ import annotations

import asyncio
import signal

from seeds.client import QUOTA_MESSAGE, Completion, Endpoint, QuotaExhausted
from seeds.engine import BRAINSTORM_ROUNDS, SeedRun
from seeds.plan import WorkItem


async def _ask(run: SeedRun, endpoint: Endpoint, item: WorkItem) -> Completion | None:
    """The item's completion (None when its retries ran out). An empty account stops the
    run; requests already in flight still land."""
    try:
        return await endpoint.complete(item)
    except QuotaExhausted:
        run.stop(QuotaExhausted.reason)
        return None


async def _brainstorm(run: SeedRun, endpoint: Endpoint) -> None:
    semaphore = asyncio.Semaphore(endpoint.settings.concurrency)

    async def one(item: WorkItem) -> None:
        async with semaphore:
            if not run.may_start_request() or not run.reserve(item):
                run.out_of_budget()
                return
            try:
                completion = await _ask(run, endpoint, item)
            finally:
                run.release(item.item_id)
            if completion is None:
                run.tried_this_session.add(item.item_id)
            else:
                run.handle_brainstorm(item, completion)

    for round_index in range(BRAINSTORM_ROUNDS):
        items = run.pending_brainstorms(round_index)
        if not items or not run.may_start_request():
            return
        await asyncio.gather(*(one(item) for item in items))


async def _judge(run: SeedRun, endpoint: Endpoint, request: WorkItem) -> None:
    """Ask the judge about a held row; a stop leaves the row held for the next run."""
    if not run.may_start_request() or not run.reserve(request):
        run.out_of_budget()
        return
    try:
        completion = await _ask(run, endpoint, request)
    finally:
        run.release(request.item_id)
    if run.stopped_reason != QuotaExhausted.reason:
        run.handle_judgement(request, completion)


async def _generate(run: SeedRun, endpoint: Endpoint) -> None:
    changed = asyncio.Condition()

    async def worker() -> None:
        while True:
            item = run.next_generation_item()
            if item is None:
                if run.inflight_total == 0:
                    return
                async with changed:
                    await changed.wait()
                continue
            run.started(item)
            try:
                completion = await _ask(run, endpoint, item)
                outcome = None if completion is None else run.handle_generation(item, completion)
                if isinstance(outcome, WorkItem):
                    await _judge(run, endpoint, outcome)
            finally:
                run.finished(item)
                async with changed:
                    changed.notify_all()

    await asyncio.gather(*(worker() for _ in range(endpoint.settings.concurrency)))


async def run_live(run: SeedRun, endpoint: Endpoint) -> None:
    """Brainstorm, then generate. A first SIGTERM/SIGINT stops new requests and lets in-flight
    ones land; a second one stops at once."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if run.stopped_reason == "interrupted" and main_task is not None:
            main_task.cancel()  # second signal: stop waiting for in-flight requests
        run.stop("interrupted")

    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
            handled.append(sig)
        except (RuntimeError, ValueError, NotImplementedError):
            pass  # not the main thread: the caller owns signals
    try:
        await _brainstorm(run, endpoint)
        for request in run.held_judge_requests():
            await _judge(run, endpoint, request)
        await _generate(run, endpoint)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await endpoint.close()
    if run.stopped_reason == QuotaExhausted.reason:
        raise QuotaExhausted(QUOTA_MESSAGE)
