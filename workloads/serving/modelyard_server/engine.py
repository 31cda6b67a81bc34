"""The model owner: one process per device holds the model and runs every forward pass.

Front processes send it jobs (channel.py): token ids already in shared memory, a slot number on a
socket. It merges whatever jobs are waiting, from every front, into one forward pass, bounded by
`max_batch_size` texts and `max_batch_tokens` padded tokens (rows x longest row), so long texts make
smaller batches instead of running out of device memory. While a pass runs the next jobs pile up, so
the batch follows the load; only when idle with less than a full batch does it wait, at most
`max_wait_ms`, for company. With `instances` > 1 (the server's --model_instances) up to that many
passes run at once, each on its own thread over the one copy of the model; this loop's thread keeps
receiving jobs, starts a pass whenever an instance is free, and sends the results when a pass ends.

With a cache (`cache_bytes`, cache.py), each row of a job is looked up as it arrives: the rows held are
copied into the job's output at once, only the others join a pass, and a job whose every row is held is
answered before any pass. Each computed row is then held for the next text that tokenizes the same.

A failed pass is retried job by job, so one job's failure never fails another's. The process exits
when every front has closed its socket: the supervisor stops the fronts first, they answer what they
hold, and the model goes last.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cache as embedding_cache
from .channel import DONE, FAILED, JOB, MESSAGE, READY, OwnerLoad, SlotBlock
from .dispatch import FLUSH_SECONDS, Pace
from .stopping import STOP_SIGNALS
from .tokenizer import Tokens

log = logging.getLogger("modelyard_server.engine")


@dataclass(frozen=True)
class EngineSettings:
    model_name: str
    model_dir: Path
    dimensions: int
    max_batch_size: int
    max_batch_tokens: int
    max_wait_ms: float
    #: Benchmarks only: answer a constant unit vector instead of running the model (no torch loaded), so
    #: what is measured is the server's own cost per request.
    constant: bool = False
    device: str | None = None
    #: Forward passes that may run at once, each on its own thread over the one copy of the model (what
    #: Triton calls an instance group): on a CPU, single-threaded passes side by side get more out of the
    #: cores than one pass spread over them; on a GPU, one.
    instances: int = 1
    #: torch threads per pass (None: torch's default, every core).
    threads: int | None = None
    #: The embedding cache's byte budget (cache.py); 0: no cache.
    cache_bytes: int = 0


@dataclass
class _Job:
    front: int
    slot: int
    texts: int
    tokens: int
    #: Rows to compute: `compute` of them, the longest `width` tokens; `rows` their indices in the slot when the
    #: cache held the others (None: every row), `keys` their cache keys (None: no cache).
    compute: int
    width: int
    arrived: float
    rows: np.ndarray | None = None
    keys: list[bytes] | None = None


def constant_forward(dimensions: int, max_batch_size: int) -> Callable[[Tokens], np.ndarray]:
    rows = np.full((max_batch_size, dimensions), 1 / np.sqrt(dimensions), dtype=np.float32)

    def forward(tokens: Tokens) -> np.ndarray:
        return rows[: len(tokens.lengths)]

    return forward


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        blocks: list[SlotBlock],
        sockets: list[socket.socket],
        forward: Callable[[Tokens], np.ndarray],
        load: OwnerLoad | None = None,
    ):
        from . import metrics

        self.settings = settings
        #: The texts held to compute and the pace they are computed at, published to the fronts (None: not).
        self.load = load
        self.held = 0
        self.pace = Pace()
        self.blocks = blocks
        self.sockets = sockets
        self.forward = forward
        self.pending: deque[_Job] = deque()
        self.pending_texts = 0
        self.selector = selectors.DefaultSelector()
        for i, sock in enumerate(sockets):
            self.selector.register(sock, selectors.EVENT_READ, i)
        self.open = set(range(len(sockets)))
        self.idle = settings.instances  # instances not running a pass
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.finished: queue.SimpleQueue[tuple[list[tuple[_Job, np.ndarray | None]], list[tuple[float, int]]]] = (
            queue.SimpleQueue()
        )
        if settings.instances > 1:  # passes on threads, which wake this loop when they end
            self.pool = concurrent.futures.ThreadPoolExecutor(settings.instances, thread_name_prefix="pass")
            self.wake_r, self.wake_w = socket.socketpair()
            self.wake_r.setblocking(False)
            self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.tally = metrics.Tally()
        self.flushed_at = 0.0
        self.shown_depth = -1
        self.cache: embedding_cache.EmbeddingCache | None = None
        if settings.cache_bytes:
            self.cache = embedding_cache.EmbeddingCache(settings.cache_bytes, settings.dimensions)
            self.cache_hits = metrics.CACHE_TEXTS.labels(settings.model_name, "hit")
            self.cache_misses = metrics.CACHE_TEXTS.labels(settings.model_name, "miss")
            self.cache_bytes = metrics.CACHE_BYTES.labels(settings.model_name)
            self.shown_cache = -1
        self.batch_size = metrics.BATCH_SIZE.labels(settings.model_name)
        self.predict_seconds = metrics.FORWARD.labels(settings.model_name)
        self.queue_depth = metrics.QUEUE_DEPTH.labels(settings.model_name)

    def _send(self, front: int, kind: int, slot: int = 0, texts: int = 0) -> None:
        if front in self.open:
            try:
                self.sockets[front].send(MESSAGE.pack(kind, slot, texts, 0))
            except OSError:
                self._close(front)

    def _close(self, front: int) -> None:
        if front in self.open:
            self.open.discard(front)
            self.selector.unregister(self.sockets[front])
            self.sockets[front].close()
            dropped = [j for j in self.pending if j.front == front]
            for job in dropped:
                self.pending.remove(job)
                self.pending_texts -= job.compute
                self.held = max(0, self.held - job.compute)

    def _receive(self, front: int) -> None:
        sock = self.sockets[front]
        while True:
            try:
                data = sock.recv(MESSAGE.size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(front)
                return
            kind, slot, texts, tokens = MESSAGE.unpack(data)
            if kind != JOB:
                continue
            lengths = self.blocks[front].lengths[slot][:texts]
            if self.cache is None:
                job: _Job | None = _Job(front, slot, texts, tokens, texts, int(lengths.max()), time.perf_counter())
            else:
                job = self._look_up(front, slot, texts, tokens, lengths)
            if job is None:
                continue
            self.pending.append(job)
            self.pending_texts += job.compute
            self.held += job.compute
            self.pace.sent(time.perf_counter())
            self._publish()

    def _answered(self, texts: int) -> None:
        """`texts` of a job computed (or failed): counted in the pace and no longer held. Rows the cache answers
        are neither held nor counted: the pace is the model's, what admission can count on for texts unseen."""
        self.held = max(0, self.held - texts)
        self.pace.answered(time.perf_counter(), texts, self.held > 0)
        self._publish()

    def _publish(self) -> None:
        if self.load is not None:
            self.load.publish(self.held, self.pace.per_second)

    def _look_up(self, front: int, slot: int, texts: int, tokens: int, lengths: np.ndarray) -> _Job | None:
        """The job of the rows the cache does not hold (the others copied into its output), or None when it
        holds them all and the job has been answered."""
        assert self.cache is not None
        ids = self.blocks[front].ids[slot]
        ends = np.cumsum(lengths, dtype=np.int64).tolist()
        starts = [0, *ends[:-1]]
        keys = [embedding_cache.key(ids[a:b]) for a, b in zip(starts, ends, strict=True)]
        misses = self.cache.fill(keys, self.blocks[front].out[slot])
        hits = texts - len(misses)
        if hits:
            self.tally.inc(self.cache_hits, hits)
        if misses:
            self.tally.inc(self.cache_misses, len(misses))
        if not misses:
            self._send(front, DONE, slot, texts)
            return None
        if hits == 0:
            return _Job(front, slot, texts, tokens, texts, int(lengths.max()), time.perf_counter(), keys=keys)
        rows = np.asarray(misses, np.int64)
        width = int(lengths[rows].max())
        chosen = [keys[i] for i in misses]
        return _Job(front, slot, texts, tokens, len(misses), width, time.perf_counter(), rows, chosen)

    def _take(self) -> list[_Job]:
        """Jobs from the front of the queue within the text and padded-token budgets (at least one)."""
        s = self.settings
        batch: list[_Job] = []
        texts = width = 0
        while self.pending:
            job = self.pending[0]
            wider = max(width, job.width)
            if batch and (texts + job.compute > s.max_batch_size or (texts + job.compute) * wider > s.max_batch_tokens):
                break
            self.pending.popleft()
            batch.append(job)
            texts += job.compute
            width = wider
        self.pending_texts -= texts
        return batch

    def _job_tokens(self, job: _Job) -> Tokens:
        """The token ids of the rows `job` computes."""
        block = self.blocks[job.front]
        lengths = block.lengths[job.slot][: job.texts]
        ids = block.ids[job.slot][: job.tokens]
        if job.rows is None:
            return Tokens(ids, lengths)
        ends = np.cumsum(lengths, dtype=np.int64)
        starts = ends - lengths
        return Tokens(np.concatenate([ids[starts[r] : ends[r]] for r in job.rows.tolist()]), lengths[job.rows])

    def _tokens(self, batch: list[_Job]) -> Tokens:
        if len(batch) == 1:
            return self._job_tokens(batch[0])
        held = [self._job_tokens(j) for j in batch]
        return Tokens(np.concatenate([t.ids for t in held]), np.concatenate([t.lengths for t in held]))

    def _compute(self, batch: list[_Job]) -> tuple[list[tuple[_Job, np.ndarray | None]], list[tuple[float, int]]]:
        """Vectors for each job of `batch` (None for a job that fails alone), and the seconds and texts of
        each forward pass that succeeded. Reads only this batch's slots: safe on a worker thread beside
        other passes."""
        started = time.perf_counter()
        try:
            vectors = np.asarray(self.forward(self._tokens(batch)))
        except Exception:
            if len(batch) == 1:
                log.exception("forward pass failed (%d texts from front %d)", batch[0].texts, batch[0].front)
                return [(batch[0], None)], []
            # Find the job that fails; the others are answered.
            results: list[tuple[_Job, np.ndarray | None]] = []
            passes: list[tuple[float, int]] = []
            for job in batch:
                done, timed = self._compute([job])
                results += done
                passes += timed
            return results, passes
        seconds = time.perf_counter() - started
        results = []
        offset = 0
        for job in batch:
            results.append((job, vectors[offset : offset + job.compute]))
            offset += job.compute
        return results, [(seconds, offset)]

    def _deliver(self, results: list[tuple[_Job, np.ndarray | None]], passes: list[tuple[float, int]]) -> None:
        for seconds, texts in passes:
            self.tally.observe(self.predict_seconds, seconds)
            self.tally.observe(self.batch_size, texts)
        for job, vectors in results:
            self._answered(job.compute)
            if vectors is None:
                self._send(job.front, FAILED, job.slot, job.texts)
                continue
            out = self.blocks[job.front].out[job.slot]
            if job.rows is None:
                out[: job.texts] = vectors
            else:
                out[job.rows] = vectors
            self._send(job.front, DONE, job.slot, job.texts)
            if self.cache is not None and job.keys is not None:
                self.cache.put(job.keys, vectors)

    def _run(self, batch: list[_Job]) -> None:
        """One pass: here, or on an idle instance's thread when there are several."""
        if self.pool is None:
            self._deliver(*self._compute(batch))
            return
        self.idle -= 1
        self.pool.submit(self._pass, batch)

    def _pass(self, batch: list[_Job]) -> None:
        """On an instance's thread: one pass, handed back to the loop, which is woken."""
        try:
            done = self._compute(batch)
        except Exception:
            log.exception("pass failed")
            done = ([(job, None) for job in batch], [])
        self.finished.put(done)
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")

    def _collect(self) -> bool:
        """Deliver the passes that ended (on the loop's thread); whether any did."""
        with contextlib.suppress(BlockingIOError):
            self.wake_r.recv(4096)
        any_ended = False
        while True:
            try:
                results, passes = self.finished.get_nowait()
            except queue.Empty:
                return any_ended
            self.idle += 1
            any_ended = True
            self._deliver(results, passes)

    def serve(self) -> None:
        for front in list(self.open):
            self._send(front, READY)
        s = self.settings
        max_wait = s.max_wait_ms / 1000
        just_ran = False  # a pass just ended: run what waits at once
        while self.open or self.idle < s.instances:
            if not self.pending:
                just_ran = False  # idle: the next job may wait for company
            timeout: float | None = None
            if self.pending and self.idle:
                if just_ran or self.pending_texts >= s.max_batch_size or max_wait <= 0:
                    timeout = 0
                else:
                    timeout = max(0.0, self.pending[0].arrived + max_wait - time.perf_counter())
            dirty = (
                self.tally.counts
                or self.tally.histograms
                or self.shown_depth != self.pending_texts
                or (self.cache is not None and self.shown_cache != self.cache.held_bytes)
            )
            if dirty:
                timeout = FLUSH_SECONDS if timeout is None else min(timeout, FLUSH_SECONDS)
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    just_ran = self._collect() or just_ran
                else:
                    self._receive(key.data)
            if dirty and time.perf_counter() - self.flushed_at >= FLUSH_SECONDS:
                self._flush()
            ran = False
            while (
                self.pending
                and self.idle
                and (
                    just_ran
                    or self.pending_texts >= s.max_batch_size
                    or time.perf_counter() >= self.pending[0].arrived + max_wait
                )
            ):
                self._run(self._take())
                ran = True
                if self.pool is None:
                    break
            just_ran = ran and self.pool is None
        if self.pool is not None:
            self.pool.shutdown()
            self.wake_r.close()
            self.wake_w.close()
        self._flush()

    def _flush(self) -> None:
        """Metrics to the shared files, at most every FLUSH_SECONDS (metrics.Tally)."""
        self.tally.flush()
        if self.shown_depth != self.pending_texts:
            self.shown_depth = self.pending_texts
            self.queue_depth.set(self.pending_texts)
        if self.cache is not None and self.shown_cache != self.cache.held_bytes:
            self.shown_cache = self.cache.held_bytes
            self.cache_bytes.set(self.shown_cache)
        self.flushed_at = time.perf_counter()


def engine_main(
    settings: EngineSettings, blocks: list[SlotBlock], sockets: list[socket.socket], load: OwnerLoad | None = None
) -> None:
    """Entry point of the model owner process (forked by the supervisor)."""
    # The supervisor decides when to stop; this process ends when the fronts have all gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held back by the supervisor
    if settings.constant:
        forward = constant_forward(settings.dimensions, settings.max_batch_size)
        log.info("model owner: constant vectors (benchmark mode), %d fronts", len(sockets))
    else:
        import torch

        from .encoder import Encoder

        encoder = Encoder(settings.model_dir, device=settings.device, threads=settings.threads)
        forward = encoder.forward
        log.info(
            "model owner: %s on %s, %d fronts, %d passes at once, %d torch threads each",
            settings.model_dir,
            encoder.device,
            len(sockets),
            settings.instances,
            torch.get_num_threads(),
        )
    Engine(settings, blocks, sockets, forward, load).serve()
    log.info("model owner: every front has closed, exiting")
