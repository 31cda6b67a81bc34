"""A front process's side of the cross-process batcher.

Requests from every protocol land on one queue per front, in texts. At the end of each turn of the
event loop (so the requests that arrived together go together), and whenever a slot of the front's
shared memory comes free, the dispatcher takes what is queued (up to `max_batch_size` texts; a larger
request is split into chunks), tokenizes it with one call, cuts it to the padded-token budget, writes
the ids into the slot and tells the model owner. While the slots are busy requests pile up, so the
batches follow the load. Results come back as float32 rows in the same slot and are copied into each
request's own array: no per-text Python lists on the way.

Isolation: a text the tokenizer refuses fails its own request (400, naming the row), never the others
it was batched with; a job whose forward pass failed is retried one request at a time, so only the
request that fails alone gets the 500. The queue is bounded in texts; a request that would overflow
it is refused at once (`Overloaded`, 503 + Retry-After).

Admission by the latency objective (`latency_objective`, the catalog's p99_latency_ms): the bound is then
not a count but what the model owner answers within the objective, its pace (texts computed a second while
it holds any, the best of its last eight half-second spans of busy time; channel.OwnerLoad) times the
objective, and the texts ahead of a request are what the owner holds from every front plus what waits in
this one. So a saturated server keeps its passes full and refuses only what would miss the objective
(reason `objective`). Until the first span is measured, the fixed bound applies. A request always gets in
when nothing is ahead of it, whatever its size.

Priority (`low` or `high`, from the request's x-modelyard-priority header): the high class's texts are
dispatched ahead of the low class's waiting ones (so those are not counted ahead of a high request when
it is admitted), and a low-priority request is admitted only while the texts in flight stay within
`low_priority_share` of the bound; past it, it is shed (`Shed`, 429 + Retry-After, reason `shed`) so the
high class keeps the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .channel import DONE, FAILED, JOB, MESSAGE, READY, OwnerLoad, SlotBlock
from .tokenizer import Tokens
from .validation import BadRequest

if TYPE_CHECKING:
    from .metrics import InputSignals

#: How stale this process's series in /metrics may be, in seconds.
FLUSH_SECONDS = 0.05


class Overloaded(Exception):
    """The queue is full, the server is draining or the model is gone; retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Shed(Overloaded):
    """A low-priority request refused to keep room for the high class (answered 429 + Retry-After)."""


class ModelFailed(Exception):
    """The forward pass failed on this request's texts (answered 500)."""


class DeadlinePassed(Exception):
    """The request's own deadline passed before its answer (answered 504); its texts still queued are
    dropped, never computed."""


class Result:
    __slots__ = ("tokens", "vectors")

    def __init__(self, vectors: np.ndarray, tokens: np.ndarray):
        self.vectors = vectors  # float32 [n, dimensions]
        self.tokens = tokens  # int32 [n]


class _Request:
    __slots__ = ("field", "future", "low", "remaining", "size", "texts", "tokens", "vectors")

    def __init__(self, texts: list[str], field: str, future: asyncio.Future[Result], low: bool = False):
        self.texts = texts
        self.field = field
        self.future = future
        self.low = low
        self.size = self.remaining = len(texts)
        # Only a request answered in several pieces gets arrays of its own; one in a single piece is
        # answered with rows of its batch's copy of the output.
        self.vectors: np.ndarray | None = None
        self.tokens: np.ndarray | None = None

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Piece:
    """Rows start..end of a request; `tokens` once tokenized and back in the queue (split off a batch
    by the token budget, or retried alone after its job failed)."""

    __slots__ = ("end", "request", "solo", "start", "tokens")

    def __init__(self, request: _Request, start: int, end: int, tokens: Tokens | None = None, solo: bool = False):
        self.request = request
        self.start = start
        self.end = end
        self.tokens = tokens
        self.solo = solo  # retried alone after its job failed

    def __len__(self) -> int:
        return self.end - self.start


class _Queue:
    """The front's queue of pieces: the high class's ahead of the low class's, each in arrival order (a piece put
    back goes to the head of its own class)."""

    __slots__ = ("high", "low")

    def __init__(self) -> None:
        self.high: deque[_Piece] = deque()
        self.low: deque[_Piece] = deque()

    def _of(self, piece: _Piece) -> deque[_Piece]:
        return self.low if piece.request.low else self.high

    def append(self, piece: _Piece) -> None:
        self._of(piece).append(piece)

    def appendleft(self, piece: _Piece) -> None:
        self._of(piece).appendleft(piece)

    def head(self) -> _Piece:
        return self.high[0] if self.high else self.low[0]

    def popleft(self) -> _Piece:
        return self.high.popleft() if self.high else self.low.popleft()

    def __bool__(self) -> bool:
        return bool(self.high or self.low)

    def __iter__(self) -> Iterator[_Piece]:
        yield from self.high
        yield from self.low

    def clear(self) -> None:
        self.high.clear()
        self.low.clear()

    def low_texts(self) -> int:
        """Texts of the low class waiting (live requests' only: a gone request's pieces are dropped unread)."""
        return sum(p.end - p.start for p in self.low if not p.request.future.done())


def _offsets(tokens: Tokens) -> np.ndarray:
    """Where each row of ragged token ids starts, and where the last ends."""
    return np.concatenate(([0], np.cumsum(tokens.lengths, dtype=np.int64)))


def _rows(tokens: Tokens, a: int, b: int, offsets: np.ndarray) -> Tokens:
    """Rows a..b of ragged token ids (`offsets`: _offsets(tokens))."""
    return Tokens(tokens.ids[offsets[a] : offsets[b]], tokens.lengths[a:b])


#: Request priorities (x-modelyard-priority); unmarked requests are high.
PRIORITIES = ("high", "low")
#: Busy seconds a pace measurement spans, and the spans the pace is the best of.
PACE_SPAN = 0.5
PACE_SPANS = 8


@dataclass
class DispatchSettings:
    model_name: str
    max_batch_size: int
    max_batch_tokens: int
    queue_capacity: int  # texts this front may hold waiting (with a latency objective: the ceiling)
    #: Seconds: admit what the measured pace answers within it (None: the fixed queue_capacity only).
    latency_objective: float | None = None
    #: The share of the admission bound low-priority requests may fill.
    low_priority_share: float = 0.5
    #: With a latency objective, the bound until the owner's pace is measured (None: queue_capacity).
    start_capacity: int | None = None


class Pace:
    """Texts a second the model owner computes, counted over the time it holds any (idle time would make it
    look slow), in spans of PACE_SPAN busy seconds: the best of the last PACE_SPANS
    spans, None until the first ends. The best, not an average: a span with little in flight measures how
    fast the load came, not what the model can answer (the owner's passes half empty, an instance idle), as
    TCP BBR keeps the windowed maximum of its delivery-rate samples because an application-limited sample
    understates the path; a lasting slowdown (longer texts, a slower device) ages the faster spans out."""

    def __init__(self) -> None:
        self.per_second: float | None = None
        self._spans: deque[float] = deque(maxlen=PACE_SPANS)
        self._mark: float | None = None  # when the busy time last counted began (None: nothing at the owner)
        self._busy = 0.0
        self._texts = 0

    def sent(self, now: float) -> None:
        """A job went to the owner; starts the clock if none was there."""
        if self._mark is None:
            self._mark = now

    def answered(self, now: float, texts: int, still_busy: bool) -> None:
        if self._mark is not None:
            self._busy += now - self._mark
        self._mark = now if still_busy else None
        self._texts += texts
        if self._busy >= PACE_SPAN:
            self._spans.append(self._texts / self._busy)
            self.per_second = max(self._spans)
            self._busy, self._texts = 0.0, 0


class Dispatcher:
    def __init__(
        self,
        settings: DispatchSettings,
        tokenizer: Callable[[list[str]], Tokens],
        block: SlotBlock,
        sock: socket.socket,
        signals: InputSignals | None = None,
        owner: OwnerLoad | None = None,
    ) -> None:
        from . import metrics

        self.settings = settings
        #: The model owner's load and pace (with a latency objective); None: admission by the fixed bound only.
        self.owner = owner
        self.tokenize = tokenizer
        #: The input histograms, observed for every text tokenized (once: a refused batch's texts are counted
        #: when tokenized on their own).
        self.signals = signals
        self.block = block
        self.sock = sock
        self.dimensions = block.layout.dimensions
        self.queue = _Queue()
        self.queued = 0
        self.in_flight = 0
        self.free = list(range(block.layout.slots))
        self.busy: dict[int, tuple[list[_Piece], Tokens]] = {}  # slot → its job's pieces and their tokens
        self.ready = False
        self.gone = False
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Request metrics of this process, written to the shared files every FLUSH_SECONDS (metrics.Tally).
        self.tally = metrics.Tally()
        self._flush_pending = False
        self._dispatch_pending = False
        self._shown = (-1, -1)
        self._queue_depth = metrics.QUEUE_DEPTH.labels(settings.model_name)
        self._in_flight = metrics.IN_FLIGHT.labels(settings.model_name)
        self._bound_gauge = metrics.ADMISSION_BOUND.labels(settings.model_name)
        self._shown_bound = -1
        self._rejected = {
            reason: metrics.REJECTED.labels(settings.model_name, reason)
            for reason in ("queue_full", "draining", "model_unavailable", "deadline", "objective", "shed")
        }

    # -- life cycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._on_message)

    def flush_metrics(self) -> None:
        self._flush_pending = False
        self.tally.flush()
        if self._shown != (self.queued, self.in_flight):
            self._shown = (self.queued, self.in_flight)
            self._queue_depth.set(self.queued)
            self._in_flight.set(self.in_flight)
        bound = self.bound()
        if bound != self._shown_bound:
            self._shown_bound = bound
            self._bound_gauge.set(bound)

    def _pace(self) -> float | None:
        return None if self.owner is None or self.settings.latency_objective is None else self.owner.pace

    def bound(self) -> int:
        """The texts admitted ahead of a request now: with a latency objective and the owner's pace measured, what
        that pace answers within the objective (at most the fixed capacity, its ceiling then); else the fixed one."""
        s = self.settings
        pace = self._pace()
        if s.latency_objective is None:
            return s.queue_capacity
        if pace is None:
            return s.queue_capacity if s.start_capacity is None else s.start_capacity
        return min(s.queue_capacity, max(s.max_batch_size, int(pace * s.latency_objective)))

    def metrics_changed(self) -> None:
        """Flush soon: at most every FLUSH_SECONDS, whatever the request rate."""
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_later(FLUSH_SECONDS, self.flush_metrics)

    def _engine_gone(self) -> None:
        if self._loop is not None and not self.gone:
            self._loop.remove_reader(self.sock.fileno())
        self.gone = True
        self.ready = False
        error = Overloaded("the model process has stopped", retry_after=5)
        for piece in self.queue:
            piece.request.fail(error)
        for pieces, _ in self.busy.values():
            for piece in pieces:
                piece.request.fail(error)
        self.queue.clear()
        self.busy.clear()
        self.queued = 0
        self.metrics_changed()

    def _dispatch_soon(self) -> None:
        """Dispatch once the requests of this turn of the event loop are queued: requests that arrived
        together travel in one job (one tokenizer call, one message, one wake-up of the model owner)
        instead of one job each while a slot happens to be free."""
        if not self._dispatch_pending:
            self._dispatch_pending = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        self._dispatch_pending = False
        self._dispatch()

    # -- requests

    def _admit(self, n: int, priority: str) -> None:
        """Refuses a request of `n` texts the bounds do not leave room for (Overloaded, Shed)."""
        s = self.settings
        if s.latency_objective is None:
            if self.queued + n > s.queue_capacity:
                self.tally.inc(self._rejected["queue_full"])
                raise Overloaded(f"queue full ({self.queued} of {s.queue_capacity} texts waiting)")
            if priority == "low" and self.queued + n > s.low_priority_share * s.queue_capacity:
                self.tally.inc(self._rejected["shed"])
                raise Shed(
                    f"low-priority request shed: {self.queued} texts waiting, past the low class's share "
                    f"({s.low_priority_share:g} of {s.queue_capacity})"
                )
            return
        pace = self._pace()
        # What the owner holds from every front, and what waits here; a high-priority request goes ahead of the
        # low class's waiting texts, so they are not ahead of it.
        held = self.in_flight - self.queued if self.owner is None else self.owner.texts
        before = held + self.queued - (self.queue.low_texts() if priority == "high" and self.queue.low else 0)
        if before <= 0:
            return
        bound = self.bound()
        ahead = before + n
        if priority == "low" and ahead > s.low_priority_share * bound:
            self.tally.inc(self._rejected["shed"])
            raise Shed(
                f"low-priority request shed: {before} texts ahead, past the low class's share "
                f"({s.low_priority_share:g} of {bound})"
            )
        if ahead > bound:
            if bound < s.queue_capacity:
                self.tally.inc(self._rejected["objective"])
                at = "its pace not yet measured" if pace is None else f"at {pace:.0f} texts/s"
                raise Overloaded(
                    f"{before} texts ahead would not all be answered within the latency objective "
                    f"({s.latency_objective * 1000:g} ms {at}: {bound} texts)"
                )
            self.tally.inc(self._rejected["queue_full"])
            raise Overloaded(f"queue full ({before} of {s.queue_capacity} texts ahead)")

    async def embed(
        self, texts: list[str], field: str, deadline: float | None = None, priority: str = "high"
    ) -> Result:
        """Vectors and token counts for `texts` (validated); `field` names the texts in error messages.
        `deadline` (the event loop's clock): past it, DeadlinePassed, and the texts not yet computed are
        dropped as a gone client's are. `priority`: one of PRIORITIES."""
        n = len(texts)
        if self.draining:
            self.tally.inc(self._rejected["draining"])
            raise Overloaded("the server is shutting down")
        if self.gone or not self.ready:
            self.tally.inc(self._rejected["model_unavailable"])
            raise Overloaded("the model is not loaded", retry_after=5)
        self._admit(n, priority)
        loop = self._loop or asyncio.get_running_loop()
        if deadline is not None and loop.time() >= deadline:
            self.tally.inc(self._rejected["deadline"])
            raise DeadlinePassed("the request's deadline passed before its texts could be queued")
        request = _Request(texts, field, loop.create_future(), priority == "low")
        step = self.settings.max_batch_size
        if n <= step:
            self.queue.append(_Piece(request, 0, n))
        else:
            for start in range(0, n, step):
                self.queue.append(_Piece(request, start, min(n, start + step)))
        self.queued += n
        self.in_flight += n
        self._dispatch_soon()
        try:
            if deadline is None:
                return await request.future
            # Cancelling this task at the deadline cancels the future, and a piece whose request is done is
            # dropped from the queue (_next_pieces).
            async with asyncio.timeout_at(deadline):
                return await request.future
        except TimeoutError:
            self.tally.inc(self._rejected["deadline"])
            message = "no answer within the request's deadline; its texts not yet computed were dropped"
            raise DeadlinePassed(message) from None
        finally:
            self.in_flight -= n  # shown with the next flush, which the caller asks for (metrics_changed)

    # -- batching

    def _next_pieces(self) -> list[_Piece]:
        """Whole or split pieces from the queue head, up to max_batch_size texts; a solo piece goes alone."""
        room = self.settings.max_batch_size
        taken: list[_Piece] = []
        queue = self.queue
        while queue and room:
            piece = queue.head()
            size = piece.end - piece.start
            if piece.request.future.done():  # failed elsewhere, or the client went away
                queue.popleft()
                self.queued -= size
                continue
            if piece.solo and taken:
                break
            if size > room:
                head = _Piece(piece.request, piece.start, piece.start + room, solo=piece.solo)
                if piece.tokens is not None:
                    offsets = _offsets(piece.tokens)
                    head.tokens = _rows(piece.tokens, 0, room, offsets)
                    piece.tokens = _rows(piece.tokens, room, size, offsets)
                piece.start += room
                piece, size = head, room
            else:
                queue.popleft()
            taken.append(piece)
            self.queued -= size
            room -= size
            if piece.solo:
                break
        return taken

    def _tokenize(self, pieces: list[_Piece]) -> tuple[list[_Piece], Tokens] | None:
        """The pieces and their tokens, in order, with one tokenizer call for every piece not yet
        tokenized; a piece whose text the tokenizer refuses fails its own request and is dropped (None
        when none is left)."""
        if not pieces:
            return None
        need = [p for p in pieces if p.tokens is None]
        if need:
            first = need[0]
            texts = (
                first.request.texts[first.start : first.end]
                if len(need) == 1
                else [t for p in need for t in p.request.texts[p.start : p.end]]
            )
            try:
                tokens = self.tokenize(texts)
            except Exception:
                self._tokenize_alone(need)
                pieces = [p for p in pieces if not p.request.future.done()]
                if not pieces:
                    return None
            else:
                if self.signals is not None:
                    self.signals.observe(self.tally, texts, tokens.ids, tokens.lengths)
                if len(need) == len(pieces):  # the usual case: a batch of new requests
                    return pieces, tokens
                row, offsets = 0, _offsets(tokens)
                for p in need:
                    p.tokens = _rows(tokens, row, row + len(p), offsets)
                    row += len(p)
        held = [p.tokens for p in pieces]
        if len(held) == 1:
            assert held[0] is not None
            return pieces, held[0]
        return pieces, Tokens(
            np.concatenate([t.ids for t in held if t is not None]),
            np.concatenate([t.lengths for t in held if t is not None]),
        )

    def _tokenize_alone(self, pieces: list[_Piece]) -> None:
        """After the tokenizer refused a batch: each piece's texts on their own, to find the row at fault."""
        for p in pieces:
            for i in range(p.start, p.end):
                try:
                    self.tokenize([p.request.texts[i]])
                except Exception as exc:
                    p.request.fail(BadRequest(f"{p.request.field}[{i}]", f"the tokenizer cannot read it ({exc})"))
                    break
            else:
                texts = p.request.texts[p.start : p.end]
                p.tokens = self.tokenize(texts)
                if self.signals is not None:
                    self.signals.observe(self.tally, texts, p.tokens.ids, p.tokens.lengths)

    def _within_budget(self, pieces: list[_Piece], tokens: Tokens) -> tuple[list[_Piece], Tokens]:
        """The longest run of rows whose padded size (rows x longest) fits max_batch_tokens (one row at
        least); the rest goes back to the head of the queue, tokens kept."""
        lengths = tokens.lengths
        n = len(lengths)
        budget = self.settings.max_batch_tokens
        if n < 2 or n * int(lengths.max()) <= budget:
            return pieces, tokens
        padded = np.maximum.accumulate(lengths) * np.arange(1, n + 1)
        cut = 1 + int(np.argmax(padded[1:] > budget))
        offsets = _offsets(tokens)
        keep: list[_Piece] = []
        back: list[_Piece] = []
        row = 0
        for p in pieces:
            k = len(p)
            if row + k <= cut:
                keep.append(p)
            elif row >= cut:
                p.tokens = _rows(tokens, row, row + k, offsets)
                back.append(p)
            else:
                r = cut - row
                back.append(_Piece(p.request, p.start + r, p.end, _rows(tokens, cut, row + k, offsets), p.solo))
                p.end, p.tokens = p.start + r, None  # its rows travel in this batch's tokens
                keep.append(p)
            row += k
        for p in reversed(back):
            self.queue.appendleft(p)
            self.queued += len(p)
        return keep, _rows(tokens, 0, cut, offsets)

    def _dispatch(self) -> None:
        low_slots = max(1, len(self.block.ids) // 2)
        while self.free and self.queue and not self.gone:
            if not self.queue.high and len(self.busy) >= low_slots:
                break  # the low class keeps to half the slots: a high request never waits behind all of them
            batch = self._tokenize(self._next_pieces())
            if batch is None:
                continue
            pieces, tokens = self._within_budget(*batch)
            slot = self.free.pop()
            texts, count = len(tokens.lengths), len(tokens.ids)
            self.block.ids[slot][:count] = tokens.ids
            self.block.lengths[slot][:texts] = tokens.lengths
            self.busy[slot] = (pieces, tokens)
            try:
                self.sock.send(MESSAGE.pack(JOB, slot, texts, count))
            except OSError:
                self._engine_gone()
                return

        self.metrics_changed()

    def _on_message(self) -> None:
        while True:
            try:
                data = self.sock.recv(MESSAGE.size)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._engine_gone()
                return
            kind, slot, _texts, _ = MESSAGE.unpack(data)
            if kind == READY:
                self.ready = True
            elif kind == DONE:
                self._done(slot)
            elif kind == FAILED:
                self._failed(slot)
        self._dispatch()

    def _done(self, slot: int) -> None:
        pieces, tokens = self.busy.pop(slot)
        lengths = tokens.lengths

        out = self.block.out[slot][: len(lengths)].copy()  # one copy for the batch; the slot is free again
        self.free.append(slot)
        row = 0
        for p in pieces:
            request = p.request
            k = p.end - p.start
            if not request.future.done():
                if k == request.size:
                    request.future.set_result(Result(out[row : row + k], lengths[row : row + k]))
                else:
                    if request.vectors is None or request.tokens is None:
                        request.vectors = np.empty((request.size, self.dimensions), np.float32)
                        request.tokens = np.empty(request.size, np.int32)
                    request.vectors[p.start : p.end] = out[row : row + k]
                    request.tokens[p.start : p.end] = lengths[row : row + k]
                    request.remaining -= k
                    if request.remaining == 0:
                        request.future.set_result(Result(request.vectors, request.tokens))
            row += k

    def _failed(self, slot: int) -> None:
        pieces, tokens = self.busy.pop(slot)
        self.free.append(slot)
        if len({id(p.request) for p in pieces}) == 1 and all(p.solo for p in pieces):
            pieces[0].request.fail(ModelFailed("the model failed on this request; see the server log"))
            return
        row, offsets = 0, _offsets(tokens)
        for p in pieces:
            p.tokens = _rows(tokens, row, row + len(p), offsets)
            row += len(p)
        for p in reversed(pieces):  # each request again on its own, at the head of the queue
            p.solo = True
            self.queue.appendleft(p)
            self.queued += len(p)
