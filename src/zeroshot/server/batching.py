"""A micro-batcher: requests that arrive together share one batched model call.

Each request submits a few items (texts, images) under a key that says which calls may be merged
(same labels, same templates...). One coroutine per batcher waits `window_ms` after the first request,
takes every waiting request with that key (up to `max_items`), runs one call in the model's executor,
and hands each request its own slice of the results. While that call runs, newly arriving requests
queue up and form the next batch, so under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchStats:
    """Counters that show whether batching happens (reported by `/v1/info`)."""

    calls: int = 0  # batched model calls made
    requests: int = 0  # requests served by those calls
    items: int = 0
    largest_call_requests: int = 0  # most requests merged into one call

    def as_dict(self) -> dict[str, float]:
        return {"calls": self.calls, "requests": self.requests, "items": self.items,
                "largest_call_requests": self.largest_call_requests,
                "mean_requests_per_call": round(self.requests / self.calls, 3) if self.calls else 0.0}


@dataclass
class _Pending:
    key: Hashable
    items: Sequence[Any]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Merge concurrent `submit` calls with equal keys into single `run_batch(key, items)` calls.

    `run_batch` runs in `executor` (give a model's single worker thread, so the model is never used by
    two threads at once) and must return one result per item, in order.
    """

    def __init__(self, run_batch: Callable[[Hashable, list[Any]], Sequence[Any]], executor: Executor,
                 window_ms: float = 5.0, max_items: int = 64, name: str = "batcher") -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.window_s = window_ms / 1000
        self.max_items = max_items
        self.name = name
        self.stats = BatchStats()
        self._pending: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Results for `items`, computed in a batch with whatever else arrives within the window."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._serve(), name=self.name)
        request = _Pending(key, list(items), loop.create_future())
        self._pending.append(request)
        self._wakeup.set()
        return await request.future

    async def close(self) -> None:
        """Stop the worker; waiting requests get a `RuntimeError`."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for request in self._pending:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()

    async def _serve(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.window_s:
                await asyncio.sleep(self.window_s)
            batch = self._take_batch()
            if not self._pending:
                self._wakeup.clear()
            if not batch:
                continue
            items = [item for request in batch for item in request.items]
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, batch[0].key, items)
                if len(results) != len(items):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
            except Exception as exc:  # every request of the batch shares the failure
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self._record(batch, len(items))
            start = 0
            for request in batch:
                stop = start + len(request.items)
                if not request.future.done():  # a cancelled request (client went away) is skipped
                    request.future.set_result(list(results[start:stop]))
                start = stop

    def _take_batch(self) -> list[_Pending]:
        """The oldest request, plus every later one with its key that still fits in `max_items`."""
        self._pending = [request for request in self._pending if not request.future.done()]
        if not self._pending:
            return []
        key = self._pending[0].key
        batch, rest, count = [], [], 0
        for request in self._pending:
            if request.key == key and (not batch or count + len(request.items) <= self.max_items):
                batch.append(request)
                count += len(request.items)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _record(self, batch: list[_Pending], items: int) -> None:
        self.stats.calls += 1
        self.stats.requests += len(batch)
        self.stats.items += items
        self.stats.largest_call_requests = max(self.stats.largest_call_requests, len(batch))
