"""Micro-batching: many concurrent requests, one model call.

By default the batcher never waits to fill a batch (``max_wait_ms`` makes it wait that long at most,
or until the batch is full). While the model is busy, new requests queue; when it is
free, everything queued (up to ``max_batch``) goes in together. So a lone message runs at once, and
under load the batch grows by itself. The model runs in worker threads, off the event loop: one by
default, or ``concurrency`` batches in flight at once, each on its own share of the CPU cores.

The same batcher writes the conversation log: there ``fn`` commits a whole batch of exchanges in
one transaction, and each request resolves only after that commit, so a reply is never
acknowledged before its exchange is on disk.

``max_queue`` bounds the wait: requests that come faster than the model answers would otherwise queue without end,
every one waiting as long as the queue is, until each customer's turn gave up. A request to shed past it is refused
at once (:meth:`refuse_when_full`), and the ones queued keep their wait. Another reads the conversations the turns start from, one
store query a batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """A request refused rather than queued behind ``max_queue`` others (:meth:`MicroBatcher.submit`)."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(f"{max_queue} requests are waiting for the model already")
        self.max_queue = max_queue


class MicroBatcher(Generic[T, R]):
    """Runs ``fn`` over batches of submitted items in ``concurrency`` worker threads.

    ``executor`` lets a caller share its own single thread (the store's, whose SQLite connection
    must not be used from two threads at once); otherwise the batcher owns one. ``on_batch`` is
    told each batch's size and the seconds ``fn`` took, for /metrics.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 64, max_wait_ms: float = 0.0,
                 executor: Executor | None = None, name: str = "deskbot-model", concurrency: int = 1,
                 max_queue: int | None = None) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_wait = max_wait_ms / 1000
        self.concurrency = concurrency if executor is None else 1
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=name)
        self.on_batch: Callable[[int, float], None] | None = None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def refuse_when_full(self) -> None:
        """:class:`QueueFull` where ``max_queue`` requests wait already: called right before :meth:`submit`, with no
        await between, for a request to shed rather than queue."""
        if self.max_queue is not None and self.queue_depth >= self.max_queue:
            raise QueueFull(self.max_queue)

    async def submit(self, item: T) -> R:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _call(self, items: list[T]) -> Sequence[R]:
        started = time.perf_counter()
        results = await asyncio.get_running_loop().run_in_executor(self._executor, self.fn, items)
        if self.on_batch:
            self.on_batch(len(items), time.perf_counter() - started)
        return results

    async def _run(self) -> None:
        assert self._queue is not None
        free = asyncio.Semaphore(self.concurrency)
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while True:
                await free.acquire()  # a batch is formed only once a worker can take it, so it grows under load
                batch = [await self._queue.get()]
                if self.max_wait:
                    await self._fill(batch, asyncio.get_running_loop().time() + self.max_wait)
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled requests
                if not batch:
                    free.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._serve(batch))
                batch = []  # the task answers it now
                self._in_flight.add(task)
                task.add_done_callback(lambda done: (self._in_flight.discard(done), free.release()))
        except asyncio.CancelledError:  # closed while forming a batch: its requests are cancelled, not left waiting
            _cancel(batch)
            raise

    async def _fill(self, batch: list[tuple[T, asyncio.Future[R]]], deadline: float) -> None:
        """Adds requests to ``batch`` as they arrive, until it is full or ``deadline`` passes:
        a batch that fills early goes to the model at once rather than after the whole wait."""
        assert self._queue is not None
        try:
            async with asyncio.timeout_at(deadline):
                while len(batch) < self.max_batch:
                    batch.append(await self._queue.get())
        except TimeoutError:
            pass

    async def _serve(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._outcomes([item for item, _ in batch])
        except asyncio.CancelledError:  # closed mid-batch: its requests are cancelled, not left waiting
            _cancel(batch)
            raise
        for (_, future), (result, error) in zip(batch, outcomes):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

    async def _outcomes(self, items: list[T]) -> list[tuple[R | None, BaseException | None]]:
        """Each item's result or error."""
        try:
            results = await self._call(items)
            if len(results) != len(items):  # or the requests left over would wait for ever
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
            return [(r, None) for r in results]
        except Exception:
            # One bad item must not fail the others: retry one by one to find it.
            outcomes: list[tuple[R | None, BaseException | None]] = []
            for item in items:
                try:
                    outcomes.append(((await self._call([item]))[0], None))
                except Exception as exc:
                    outcomes.append((None, exc))
            return outcomes

    async def close(self) -> None:
        """Stop; a request still queued, or in a batch cut short, is cancelled rather than left waiting."""
        for task in [self._worker, *self._in_flight]:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        if self._owns_executor:
            self._executor.shutdown(wait=True)


def _cancel(batch: list[tuple[T, asyncio.Future[R]]]) -> None:
    for _, future in batch:
        future.cancel()
