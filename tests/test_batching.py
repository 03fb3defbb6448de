"""The micro-batcher: no wait when idle, growing batches under load, failures kept to their own request."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.batching import MicroBatcher, QueueFull


class Recorder:
    """A model stand-in that records its batches and can be held busy."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.calls = threading.Semaphore(0)  # released as each batch enters the model

    def __call__(self, items: list[str]) -> list[str]:
        self.calls.release()
        self.gate.wait()
        time.sleep(self.delay)
        if "boom" in items:
            raise ValueError("bad item")
        self.batches.append(list(items))
        return [item.upper() for item in items]


async def entered(model: Recorder) -> None:
    """Wait until a batch is inside ``model``."""
    assert await asyncio.to_thread(model.calls.acquire, timeout=5), "no batch reached the model"


async def queued(batcher: MicroBatcher, texts: str | list[str]) -> list[asyncio.Future]:
    """Submit ``texts`` and wait until each is in the batcher's queue."""
    depth = batcher.queue_depth + len(texts)
    futures = [asyncio.ensure_future(batcher.submit(t)) for t in texts]
    async with asyncio.timeout(5):
        while batcher.queue_depth < depth:
            await asyncio.sleep(0)
    return futures


async def queue_behind_busy_model(batcher: MicroBatcher, model: Recorder,
                                  texts: list[str]) -> tuple[asyncio.Future, list[asyncio.Future]]:
    """Hold the model busy on one request, then queue ``texts`` behind it."""
    model.gate.clear()
    blocker = asyncio.ensure_future(batcher.submit("x"))
    await entered(model)
    return blocker, await queued(batcher, texts)


async def test_lone_request_runs_at_once_and_in_order() -> None:
    model = Recorder()
    batcher = MicroBatcher(model)
    started = time.perf_counter()
    assert await batcher.submit("hi") == "HI"
    assert time.perf_counter() - started < 0.5
    assert model.batches == [["hi"]]
    await batcher.close()


async def test_requests_queued_while_busy_share_one_batch() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=8)
    first, rest = await queue_behind_busy_model(batcher, model, list("bcdefghijk"))
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert results == [x.upper() for x in "xbcdefghijk"]
    assert [len(b) for b in model.batches] == [1, 8, 2]
    await batcher.close()


async def test_with_two_workers_a_second_batch_runs_while_the_first_is_busy() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, concurrency=2)
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit("a"))
    await entered(model)
    second = asyncio.ensure_future(batcher.submit("b"))  # the second worker is free: taken at once
    await entered(model)
    assert batcher.queue_depth == 0
    waiting = await queued(batcher, "cde")  # both busy: these wait and batch
    model.gate.set()
    assert await asyncio.gather(first, second, *waiting) == list("ABCDE")
    # a and b ran side by side, then c, d and e as one batch (the threads may record them in any order)
    assert sorted(model.batches) == [["a"], ["b"], ["c", "d", "e"]]
    await batcher.close()


async def test_a_failing_item_fails_only_its_own_request() -> None:
    model = Recorder()
    batcher = MicroBatcher(model)
    blocker, futures = await queue_behind_busy_model(batcher, model, ["ok", "boom", "fine"])
    model.gate.set()
    await blocker
    assert await futures[0] == "OK"
    with pytest.raises(ValueError, match="bad item"):
        await futures[1]
    assert await futures[2] == "FINE"
    await batcher.close()


async def test_cancelled_requests_are_not_computed() -> None:
    model = Recorder()
    batcher = MicroBatcher(model)
    blocker, (gone, kept) = await queue_behind_busy_model(batcher, model, ["gone", "kept"])
    gone.cancel()
    model.gate.set()
    await blocker
    assert await kept == "KEPT"
    assert ["kept"] in model.batches and all("gone" not in b for b in model.batches)
    await batcher.close()


async def test_a_request_that_times_out_is_dropped_and_the_others_are_answered() -> None:
    model = Recorder()
    batcher = MicroBatcher(model)
    blocker, (kept,) = await queue_behind_busy_model(batcher, model, ["kept"])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(batcher.submit("late"), timeout=0.05)
    model.gate.set()
    await blocker
    assert await kept == "KEPT"
    assert all("late" not in b for b in model.batches)
    await batcher.close()


async def test_past_max_queue_a_request_to_shed_is_refused_at_once_and_one_that_waits_is_queued() -> None:
    """Requests that come faster than the model answers queued without end, each waiting as long as the queue was."""
    model = Recorder()
    batcher = MicroBatcher(model, max_queue=2)
    batcher.refuse_when_full()  # room
    blocker, kept = await queue_behind_busy_model(batcher, model, ["a", "b"])
    with pytest.raises(QueueFull, match="2 requests are waiting for the model already"):
        batcher.refuse_when_full()
    (waits,) = await queued(batcher, ["waits"])  # a request not to shed queues past the bound
    model.gate.set()
    await blocker
    assert [await f for f in (*kept, waits)] == ["A", "B", "WAITS"]
    batcher.refuse_when_full()  # drained: room again
    await batcher.close()


async def test_a_bounded_wait_gathers_requests_arriving_within_it() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, max_wait_ms=150)
    first = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0.02)
    assert await asyncio.gather(first, batcher.submit("b")) == ["A", "B"]
    assert model.batches == [["a", "b"]]
    await batcher.close()


async def test_a_bounded_wait_ends_when_the_batch_is_full() -> None:
    model = Recorder()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=5_000)
    started = time.perf_counter()
    assert await asyncio.gather(batcher.submit("a"), batcher.submit("b")) == ["A", "B"]
    assert time.perf_counter() - started < 2  # not the 5 s wait
    assert model.batches == [["a", "b"]]
    await batcher.close()


async def test_closing_during_a_bounded_wait_cancels_the_waiting_request() -> None:
    batcher = MicroBatcher(Recorder(), max_wait_ms=5_000)
    [waiting] = await queued(batcher, ["a"])
    async with asyncio.timeout(5):
        while batcher.queue_depth:  # taken off the queue: "a" is in the forming batch, waiting for company
            await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):  # not left waiting: a request the close forgets fails here, not hangs
        await asyncio.wait_for(waiting, 5)


async def test_batches_are_reported_and_a_shared_executor_outlives_the_batcher() -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1)
    model = Recorder(delay=0.01)
    batcher = MicroBatcher(model, executor=executor)
    seen: list[tuple[int, float]] = []
    batcher.on_batch = lambda size, seconds: seen.append((size, seconds))
    await batcher.submit("a")
    await batcher.close()
    assert len(seen) == 1 and seen[0][0] == 1 and seen[0][1] >= 0.01
    assert executor.submit(lambda: "still open").result() == "still open"
    executor.shutdown()


async def test_close_cancels_the_requests_it_cuts_short() -> None:
    """Nobody waits for ever on a closed batcher: the batch in flight and the queue behind it are cancelled."""
    model = Recorder(delay=0.3)
    batcher = MicroBatcher(model, max_batch=2)
    waiting = [asyncio.ensure_future(batcher.submit(str(n))) for n in range(5)]
    await entered(model)  # the first batch is in the model, the rest queue
    await batcher.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)


async def test_a_batch_short_of_results_leaves_no_request_waiting() -> None:
    """A batch function that drops a result must not leave that customer's request hanging."""
    batches: list[list[str]] = []

    def drops_the_last(items: list[str]) -> list[str]:
        batches.append(list(items))
        return [item.upper() for item in items][: max(1, len(items) - 1)]

    batcher = MicroBatcher(drops_the_last, max_batch=8)
    blocker = asyncio.ensure_future(batcher.submit("x"))
    queued = [asyncio.ensure_future(batcher.submit(t)) for t in "abc"]
    results = await asyncio.wait_for(asyncio.gather(blocker, *queued), timeout=5)
    assert results == ["X", "A", "B", "C"]  # retried one by one, where each gets its own result
    assert any(len(batch) > 1 for batch in batches)
    await batcher.close()
