"""Adaptive batching across concurrent requests, with a bounded queue.

Requests put their texts on one queue; a single worker takes everything waiting (up to
`max_batch_size` texts) and runs one forward pass. While a pass runs, new requests pile up and form
the next batch, so the batch size follows the load: one text at a time when idle (no added latency),
full batches under load (throughput). Only when the worker is idle and the queue holds less than a
full batch does it wait, at most `max_wait_ms`, for company.

The queue is bounded in texts (`max_queue`): a request that would overflow it is refused at once with
`Overloaded` (the server answers 503 with Retry-After) instead of waiting longer than anyone would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .encoder import Encoded


class Overloaded(Exception):
    """The queue is full (or the server is draining); retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[Encoded]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the metrics report about batching (the server turns these into Prometheus series)."""

    on_batch: Callable[[int, float], None] = lambda size, seconds: None


class Batcher:
    def __init__(
        self,
        encode: Callable[[list[str]], Encoded],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        stats: BatchStats | None = None,
    ):
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self._worker: asyncio.Task[None] | None = None
        self._stats = stats or BatchStats()
        self.in_flight = 0

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return self._queued

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> Encoded:
        if self._queued + len(texts) > self.max_queue:
            raise Overloaded(f"queue full ({self._queued} of {self.max_queue} texts waiting)")
        future: asyncio.Future[Encoded] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(texts, future))
        self._queued += len(texts)
        self._wakeup.set()
        return await future

    def _take(self) -> list[_Job]:
        """Whole jobs from the front of the queue, up to max_batch_size texts (at least one job)."""
        batch: list[_Job] = []
        size = 0
        while self._jobs:
            job = self._jobs[0]
            if batch and size + len(job.texts) > self.max_batch_size:
                break
            self._jobs.popleft()
            if job.future.cancelled():  # the client went away while it waited
                self._queued -= len(job.texts)
                continue
            batch.append(job)
            size += len(job.texts)
        self._queued -= size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Idle and less than a full batch waiting: give concurrent requests a moment to join.
            if self._queued < self.max_batch_size and self.max_wait > 0:
                deadline = loop.time() + self.max_wait
                while self._queued < self.max_batch_size and loop.time() < deadline:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), deadline - loop.time())
                    except TimeoutError:
                        break
            batch = self._take()
            if not batch:
                continue
            texts = [t for job in batch for t in job.texts]
            self.in_flight = len(texts)
            started = time.perf_counter()
            try:
                encoded = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as exc:  # a failed forward pass fails its requests, not the worker
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.in_flight = 0
            self._stats.on_batch(len(texts), time.perf_counter() - started)
            offset = 0
            for job in batch:
                n = len(job.texts)
                if not job.future.done():
                    job.future.set_result(
                        Encoded(encoded.vectors[offset : offset + n], encoded.tokens[offset : offset + n])
                    )
                offset += n

    def describe(self) -> dict[str, Any]:
        return {"maxBatchSize": self.max_batch_size, "maxWaitMs": self.max_wait * 1000, "maxQueue": self.max_queue}
