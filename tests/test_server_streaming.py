"""Token streams cross from the model's thread to the event loop, and stop when the client goes away."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from zeroshot.errors import UserError
from zeroshot.server.streaming import iterate_in_executor, primed, sse_event


def test_items_arrive_in_order_from_the_worker_thread():
    executor = ThreadPoolExecutor(1)

    async def collect():
        return [item async for item in iterate_in_executor(executor, lambda: iter(["a", "b", "c"]))]

    assert asyncio.run(collect()) == ["a", "b", "c"]


def test_a_consumer_that_leaves_stops_the_producer_and_frees_the_thread():
    produced = []

    def slow_tokens():
        for i in range(100):
            produced.append(i)
            time.sleep(0.01)
            yield str(i)

    executor = ThreadPoolExecutor(1)

    async def read_two_then_leave():
        stream = await primed(iterate_in_executor(executor, slow_tokens))
        seen = [await anext(stream), await anext(stream)]
        await stream.aclose()  # what Starlette does when the client disconnects
        return seen

    assert asyncio.run(read_two_then_leave()) == ["0", "1"]
    executor.submit(lambda: None).result(timeout=5)  # the thread is free again
    assert len(produced) < 10  # it did not decode the remaining 90 tokens for nobody


def test_an_error_before_the_first_item_is_raised_by_primed():
    def refuse():
        raise UserError("num_beams > 1 cannot stream")
        yield  # pragma: no cover

    async def start():
        await primed(iterate_in_executor(ThreadPoolExecutor(1), refuse))

    with pytest.raises(UserError, match="cannot stream"):
        asyncio.run(start())


def test_sse_event_format():
    assert sse_event({"text": "hé\n"}) == 'data: {"text": "hé\\n"}\n\n'
    assert sse_event({"x": 1}, event="done") == 'event: done\ndata: {"x": 1}\n\n'
    assert sse_event("[DONE]") == "data: [DONE]\n\n"
