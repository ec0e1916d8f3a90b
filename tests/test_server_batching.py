"""The micro-batcher merges concurrent requests into one model call and splits the results back."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from zeroshot.errors import UserError
from zeroshot.server.batching import MicroBatcher


class RecordingModel:
    """Doubles each item; records the batches it was called with and from which thread."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls: list[tuple[object, list[int]]] = []
        self.threads: set[str] = set()
        self.seconds = seconds

    def __call__(self, key, items: list[int]) -> list[int]:
        self.calls.append((key, list(items)))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return [2 * item for item in items]


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_one_call_and_get_their_own_results():
    model = RecordingModel()
    executor = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def scenario():
        batcher = MicroBatcher(model, executor, window_ms=30, max_items=64)
        results = await asyncio.gather(*(batcher.submit("task", [i, 10 * i]) for i in range(8)))
        await batcher.close()
        return results, batcher.stats

    results, stats = run(scenario())
    assert results == [[2 * i, 20 * i] for i in range(8)]
    assert len(model.calls) == 1 and len(model.calls[0][1]) == 16
    assert stats.calls == 1 and stats.requests == 8 and stats.largest_call_requests == 8
    assert model.threads == {"model_0"}


def test_different_keys_are_never_mixed():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, ThreadPoolExecutor(1), window_ms=20)
        results = await asyncio.gather(batcher.submit("a", [1]), batcher.submit("b", [2]),
                                       batcher.submit("a", [3]))
        await batcher.close()
        return results

    assert run(scenario()) == [[2], [4], [6]]
    assert sorted((key, items) for key, items in model.calls) == [("a", [1, 3]), ("b", [2])]


def test_max_items_splits_batches_without_splitting_a_request():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, ThreadPoolExecutor(1), window_ms=20, max_items=4)
        results = await asyncio.gather(*(batcher.submit("k", [i, i, i]) for i in range(3)))
        await batcher.close()
        return results

    assert run(scenario()) == [[2 * i] * 3 for i in range(3)]
    assert [len(items) for _, items in model.calls] == [3, 3, 3]


def test_requests_arriving_during_a_call_form_the_next_batch():
    model = RecordingModel(seconds=0.2)

    async def scenario():
        batcher = MicroBatcher(model, ThreadPoolExecutor(1), window_ms=5)
        first = asyncio.ensure_future(batcher.submit("k", [0]))
        await asyncio.sleep(0.05)  # the first call is running now
        later = await asyncio.gather(*(batcher.submit("k", [i]) for i in range(1, 6)))
        await batcher.close()
        return await first, later

    first, later = run(scenario())
    assert first == [0] and later == [[2 * i] for i in range(1, 6)]
    assert [len(items) for _, items in model.calls] == [1, 5]


def test_an_error_reaches_every_request_of_the_batch_and_the_batcher_keeps_working():
    calls = []

    def flaky(key, items):
        calls.append(items)
        if key == "bad":
            raise UserError("unknown label")
        return items

    async def scenario():
        batcher = MicroBatcher(flaky, ThreadPoolExecutor(1), window_ms=10)
        failures = await asyncio.gather(batcher.submit("bad", [1]), batcher.submit("bad", [2]),
                                        return_exceptions=True)
        after = await batcher.submit("good", [3])
        await batcher.close()
        return failures, after

    failures, after = run(scenario())
    assert all(isinstance(f, UserError) and "unknown label" in str(f) for f in failures)
    assert after == [3]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_misalignment():
    async def scenario():
        batcher = MicroBatcher(lambda key, items: items[:-1], ThreadPoolExecutor(1), window_ms=1)
        try:
            with pytest.raises(RuntimeError, match="1 results for 2 items"):
                await batcher.submit("k", [1, 2])
        finally:
            await batcher.close()

    run(scenario())
