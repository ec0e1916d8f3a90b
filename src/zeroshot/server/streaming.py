"""Carry a model's token stream from its worker thread to an HTTP response as server-sent events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any

from fastapi.responses import StreamingResponse

_END = object()


async def iterate_in_executor(executor: Executor,
                              make_iterator: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Items of `make_iterator()`, produced on `executor`'s thread and delivered to the event loop.

    When the consumer stops early (client disconnected), the producer stops at its next item and
    frees the model's thread for the next request.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # handed to the consumer, who raises it
            loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, _END)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = loop.run_in_executor(executor, produce)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        if producer.done():
            producer.exception()  # fetched so asyncio does not log it as never retrieved


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def primed(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`stream` with its first item already fetched, so that errors raised before any output (bad
    options, model not loadable) become ordinary 4xx/5xx responses instead of a broken stream."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _from_items([])
    return _chain(first, stream)


async def _from_items(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:  # closing the chain (client gone) closes the source now, not whenever it is collected
        await rest.aclose()


def sse_event(data: Any, event: str | None = None) -> str:
    """One server-sent event with JSON `data` (or raw text for a `str` such as OpenAI's `[DONE]`)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """A `text/event-stream` response that proxies do not buffer."""
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
