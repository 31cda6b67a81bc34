"""The cross-process batcher in one process: a front's dispatcher and the real model-owner loop (in a
thread, running one pass at a time or two at once on its instance threads) over a real socket pair
and shared memory, with the forward pass and the tokenizer replaced so the tests can make one row fail.
What it shows: large requests are split into max-batch chunks, a batch respects the padded-token
budget, rows come back in order, and one request's failure (a text the tokenizer refuses, a forward
pass that fails) never fails the requests it was batched with."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from modelyard_server.channel import JOB, MESSAGE, READY, Layout, OwnerLoad, SlotBlock
from modelyard_server.dispatch import Dispatcher, DispatchSettings, ModelFailed, Overloaded, Result
from modelyard_server.engine import Engine, EngineSettings
from modelyard_server.tokenizer import Tokens
from modelyard_server.validation import BadRequest

DIMS = 4
POISON = 666  # a token id the fake forward pass fails on


class WordTokenizer:
    """One token per word plus [CLS]/[SEP]; the id of a word is its length, "poison" is POISON; refuses
    any text containing a lone surrogate, as the real tokenizer does."""

    def __call__(self, texts: list[str]) -> Tokens:
        rows = []
        for text in texts:
            if "\udc80" in text:
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
            rows.append([101, *(POISON if w == "poison" else len(w) for w in text.split()), 102])
        lengths = np.array([len(r) for r in rows], np.int32)
        return Tokens(np.array([i for r in rows for i in r], np.int32), lengths)


class Harness:
    def __init__(
        self,
        max_batch_size: int = 8,
        max_batch_tokens: int = 64,
        capacity: int = 1000,
        instances: int = 1,
        cache_bytes: int = 0,
    ):
        self.batches: list[list[int]] = []  # row lengths of every forward pass
        self.gate: Callable[[], object] | None = None  # called at the start of every pass
        layout = Layout(4, max_batch_size, max_batch_tokens, DIMS)
        self.block = SlotBlock(layout)
        front_end, engine_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        settings = EngineSettings(
            "t",
            None,  # type: ignore[arg-type]
            DIMS,
            max_batch_size,
            max_batch_tokens,
            1.0,
            instances=instances,
            cache_bytes=cache_bytes,
        )
        self.engine = Engine(settings, [self.block], [engine_end], self.forward)
        self.thread = threading.Thread(target=self.engine.serve, daemon=True)
        self.thread.start()
        self.dispatcher = Dispatcher(
            DispatchSettings("t", max_batch_size, max_batch_tokens, capacity), WordTokenizer(), self.block, front_end
        )
        self.front_end = front_end

    def forward(self, tokens: Tokens) -> np.ndarray:
        """Row i's vector is [first word's id, tokens, padded width, 0]: enough to check the order."""
        if self.gate is not None:
            self.gate()
        if (tokens.ids == POISON).any():
            raise RuntimeError("the model failed")
        self.batches.append(tokens.lengths.tolist())
        offsets = np.concatenate(([0], np.cumsum(tokens.lengths)))
        first = tokens.ids[offsets[:-1] + 1]
        width = np.full(len(tokens.lengths), tokens.lengths.max())
        return np.stack([first, tokens.lengths, width, np.zeros_like(width)], axis=1).astype(np.float32)

    async def run(self, *requests: list[str]) -> list[Result | BaseException]:
        self.dispatcher.start(asyncio.get_running_loop())
        while not self.dispatcher.ready:
            await asyncio.sleep(0.001)
        return await asyncio.gather(
            *(self.dispatcher.embed(texts, "input") for texts in requests), return_exceptions=True
        )

    def close(self) -> None:
        self.front_end.close()
        self.thread.join(timeout=5)
        self.block.close()
        self.block.unlink()


@pytest.fixture(params=[1, 2], ids=["one pass at a time", "two passes at once"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(instances=request.param)
    yield h
    h.close()


def words(n: int) -> str:
    return " ".join("w" * (1 + i % 5) for i in range(n))


def test_rows_come_back_in_order_and_large_requests_are_chunked(harness: Harness) -> None:
    big = [words(1 + i % 3) for i in range(21)]  # 21 texts, max_batch_size 8: at least 3 passes
    small = ["a bb ccc"]
    results = asyncio.run(harness.run(big, small))
    out_big, out_small = results
    assert not isinstance(out_big, BaseException) and not isinstance(out_small, BaseException)
    assert [int(v[1]) for v in out_big.vectors] == [2 + 1 + i % 3 for i in range(21)]
    assert out_big.tokens.tolist() == [2 + 1 + i % 3 for i in range(21)]
    assert out_small.vectors[0][0] == 1 and out_small.tokens.tolist() == [5]
    assert all(len(b) <= 8 for b in harness.batches)
    assert sum(len(b) for b in harness.batches) == 22


def test_batches_respect_the_padded_token_budget(harness: Harness) -> None:
    long_text = words(30)  # 32 tokens: two of these fill the 64-token budget
    results = asyncio.run(harness.run(*[[long_text, "x"] for _ in range(6)]))
    assert not any(isinstance(r, BaseException) for r in results)
    assert all(len(b) * max(b) <= 64 for b in harness.batches), harness.batches


def test_requests_cut_by_the_budget_come_back_whole_and_in_order(harness: Harness) -> None:
    """Requests of mixed lengths, cut across batches by the token budget mid-request, some pieces back in
    the queue with their tokens beside new ones: every row lands in its own request, in order."""
    requests = [[words(1 + (7 * r + i) % 13) for i in range(1 + r % 5)] for r in range(12)]
    results = asyncio.run(harness.run(*requests))
    for texts, result in zip(requests, results, strict=True):
        assert not isinstance(result, BaseException)
        assert result.tokens.tolist() == [len(t.split()) + 2 for t in texts]
        assert [int(v[1]) for v in result.vectors] == result.tokens.tolist()
        assert [int(v[0]) for v in result.vectors] == [1] * len(texts)  # first word: "w"
    assert len(harness.batches) > 3 and all(len(b) * max(b) <= 64 for b in harness.batches), harness.batches


def test_a_text_the_tokenizer_refuses_fails_only_its_request(harness: Harness) -> None:
    results = asyncio.run(harness.run(["good one"], ["fine", "bad \udc80 text"], ["also good"]))
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
    assert isinstance(results[1], BadRequest) and results[1].field == "input[1]"
    assert results[1].status == 400


def test_a_failed_forward_pass_fails_only_the_request_that_fails_alone(harness: Harness) -> None:
    results = asyncio.run(harness.run(["one"], ["two poison"], ["three"], ["four four"]))
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(results[1], ModelFailed)
    assert [r.vectors[0][0] for r in results if not isinstance(r, BaseException)] == [3, 5, 4]


def test_two_instances_run_two_passes_at_once() -> None:
    """A pass waits until a second pass is running beside it: with one instance, the second could never
    start and both would fail."""
    h = Harness(instances=2)
    h.gate = threading.Barrier(2, timeout=5).wait

    async def scenario() -> list[Result | BaseException]:
        first = asyncio.create_task(h.run(["one"]))
        await asyncio.sleep(0.05)  # its pass has started; this request is a second job
        second = await h.dispatcher.embed(["two"], "input")
        return [*(await first), second]

    try:
        results = asyncio.run(scenario())
        assert [r.vectors[0][0] for r in results if not isinstance(r, BaseException)] == [3, 3]
    finally:
        h.close()


def test_the_queue_is_bounded_in_texts() -> None:
    h = Harness(capacity=10)
    try:
        results = asyncio.run(h.run(*[["a b"] * 4 for _ in range(12)]))  # 4 slots, then 10 texts queued
        assert any(isinstance(r, Overloaded) for r in results)
        assert sum(not isinstance(r, BaseException) for r in results) >= 2
    finally:
        h.close()


def test_the_model_process_going_away_is_503_for_waiting_and_new_requests() -> None:
    block = SlotBlock(Layout(4, 8, 64, DIMS))
    front_end, engine_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dispatcher = Dispatcher(DispatchSettings("t", 8, 64, 100), WordTokenizer(), block, front_end)

    async def scenario() -> None:
        dispatcher.start(asyncio.get_running_loop())
        engine_end.send(MESSAGE.pack(READY, 0, 0, 0))
        while not dispatcher.ready:
            await asyncio.sleep(0.001)
        waiting = asyncio.create_task(dispatcher.embed(["x"], "input"))
        await asyncio.sleep(0.01)
        assert MESSAGE.unpack(engine_end.recv(MESSAGE.size))[0] == JOB  # the job reached the model owner
        engine_end.close()  # which then dies
        with pytest.raises(Overloaded, match="stopped"):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(Overloaded, match="not loaded"):
            await dispatcher.embed(["y"], "input")

    try:
        asyncio.run(scenario())
    finally:
        front_end.close()
        block.close()
        block.unlink()


def test_every_openai_error_is_openai_shaped_including_500() -> None:
    """The front app in process, its model failing: OpenAI's route answers 500 in OpenAI's error shape,
    KServe's routes in KServe's."""
    from modelyard_server.front import App, FrontSettings
    from modelyard_server.metrics import Tally
    from modelyard_server.validation import Limits

    class Failing:
        ready, draining = True, False
        tally = Tally()

        def metrics_changed(self) -> None:
            pass

        async def embed(self, texts: list[str], field: str, deadline: float | None = None, _: str = "") -> object:
            raise ModelFailed("the model failed on this request; see the server log")

    app = App(FrontSettings("minilm", Limits(), 100_000, DIMS), Failing())  # type: ignore[arg-type]

    async def call(path: str, body: bytes) -> tuple[int, dict[str, object]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await app(scope, receive, send)  # type: ignore[arg-type]
        import orjson

        return int(sent[0]["status"]), orjson.loads(sent[1]["body"])

    status, body = asyncio.run(call("/v1/embeddings", b'{"model": "minilm", "input": "x"}'))
    assert status == 500
    assert body == {
        "error": {
            "message": "the model failed on this request; see the server log",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    status, body = asyncio.run(call("/v1/models/minilm:predict", b'{"instances": ["x"]}'))
    assert status == 500 and body == {"error": "the model failed on this request; see the server log"}


def test_a_merged_pass_that_fails_is_split_by_job_and_the_passes_that_ran_are_measured() -> None:
    """Two jobs merged into one pass, one with a row the model fails on: the other job is answered, and
    the pass that answered it is what the forward-time and batch-size metrics record."""
    from modelyard_server.engine import _Job

    h = Harness()
    try:
        good, bad = WordTokenizer()(["a bb", "ccc"]), WordTokenizer()(["poison"])
        jobs = []
        for slot, tokens in enumerate((good, bad)):
            h.block.ids[slot][: len(tokens.ids)] = tokens.ids
            h.block.lengths[slot][: len(tokens.lengths)] = tokens.lengths
            width = int(tokens.lengths.max())
            n = len(tokens.lengths)
            jobs.append(_Job(0, slot, n, len(tokens.ids), n, width, 0.0))
        results, passes = h.engine._compute(jobs)
        assert [vectors is None for _, vectors in results] == [False, True]
        assert [int(v[1]) for v in results[0][1]] == [4, 3]  # type: ignore[union-attr]
        assert [texts for _, texts in passes] == [2]
    finally:
        h.close()


def test_the_cache_answers_held_rows_without_a_pass_byte_for_byte() -> None:
    """A text seen before is answered with the row its first pass computed (its `width` column, the first
    batch's, shows it came from there); only the rows not held join a pass, and a request whose every row is
    held is answered without one."""
    h = Harness(cache_bytes=1 << 20)
    try:

        async def scenario() -> list[Result]:
            first = await h.run(["a bb", "ccc"])
            second = await h.dispatcher.embed(["ccc", "dddd", "a bb"], "input")
            third = await h.dispatcher.embed(["a bb", "ccc"], "input")
            return [*first, second, third]  # type: ignore[list-item]

        first, second, third = asyncio.run(scenario())
        assert h.batches == [[4, 3], [3]]  # the second request computed only "dddd"; the third, nothing
        assert second.vectors[0].tobytes() == first.vectors[1].tobytes()
        assert second.vectors[2].tobytes() == first.vectors[0].tobytes()
        assert second.vectors[1].tolist() == [4, 3, 3, 0]  # computed in a pass of its own: width 3
        assert third.vectors.tobytes() == first.vectors.tobytes()
        assert second.tokens.tolist() == [3, 3, 4]
    finally:
        h.close()


def test_the_cache_holds_no_more_than_its_bytes_and_evicts_the_least_recently_used() -> None:
    from modelyard_server.cache import ENTRY_OVERHEAD, EmbeddingCache, key

    entry = DIMS * 4 + ENTRY_OVERHEAD
    cache = EmbeddingCache(3 * entry + entry // 2, DIMS)
    assert cache.capacity == 3
    keys = [key(np.array([101, i, 102], np.int32)) for i in range(5)]
    rows = np.arange(20, dtype=np.float32).reshape(5, DIMS)
    cache.put(keys[:3], rows[:3])
    out = np.zeros((5, DIMS), np.float32)
    assert cache.fill([keys[0]], out) == []  # keys[0] is now the most recently used
    cache.put(keys[3:5], rows[3:5])  # evicts keys[1], then keys[2]
    assert cache.held_bytes == 3 * entry <= 3 * entry + entry // 2
    assert cache.fill(keys, out) == [1, 2]
    assert out[[0, 3, 4]].tobytes() == rows[[0, 3, 4]].tobytes()
    assert key(np.array([101, 7, 102], np.int32)) != key(np.array([101, 7, 102, 0], np.int32))
    with pytest.raises(ValueError, match="cannot hold one"):
        EmbeddingCache(entry - 1, DIMS)


@contextmanager
def _dispatcher(
    capacity: int = 1000, objective: float | None = None, low_share: float = 0.5
) -> Iterator[tuple[Dispatcher, OwnerLoad]]:
    block = SlotBlock(Layout(4, 8, 64, DIMS))
    front_end, engine_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    owner = OwnerLoad()
    settings = DispatchSettings(
        "t", 8, 64, capacity, latency_objective=objective, low_priority_share=low_share, start_capacity=600
    )
    try:
        yield Dispatcher(settings, WordTokenizer(), block, front_end, owner=owner), owner
    finally:
        for sock in (front_end, engine_end):
            sock.close()
        for shared in (block, owner):
            shared.close()
            shared.unlink()


def test_admission_by_the_latency_objective_follows_the_owners_pace_and_load() -> None:
    from modelyard_server.dispatch import Shed, _Piece, _Request

    with _dispatcher(capacity=4000, objective=0.25) as (d, owner):
        owner.publish(300, None)
        d._admit(300, "high")  # no pace measured yet: the start bound, 600 texts
        with pytest.raises(Overloaded, match="its pace not yet measured: 600 texts"):
            d._admit(301, "high")
        owner.publish(40, 200.0)  # 200 texts/s x 0.25 s: 50 texts can be answered in time
        assert d.bound() == 50
        d._admit(10, "high")  # 50 texts ahead of its last: each answered within the objective
        with pytest.raises(Overloaded, match=r"40 texts ahead .* \(250 ms at 200 texts/s: 50 texts\)"):
            d._admit(11, "high")
        with pytest.raises(Shed, match=r"40 texts ahead, past the low class's share \(0.5 of 50\)"):
            d._admit(1, "low")
        owner.publish(20, 200.0)
        d._admit(5, "low")
        d.queued = 30  # what waits in this front is ahead too
        with pytest.raises(Overloaded, match="50 texts ahead"):
            d._admit(1, "high")
        # ... except the low class's waiting texts, which a high-priority request goes ahead of.
        loop = asyncio.new_event_loop()
        try:
            d.queue.append(_Piece(_Request(["x"] * 30, "input", loop.create_future(), low=True), 0, 30))
            d._admit(30, "high")
            with pytest.raises(Shed):
                d._admit(1, "low")
        finally:
            loop.close()
        d.queue.clear()
        d.queued = 0
        owner.publish(0, 200.0)
        d._admit(500, "low")  # nothing ahead: any request gets in, whatever its size
        owner.publish(0, 1.0)
        assert d.bound() == 8  # never below one full pass
        owner.publish(0, 1e6)
        assert d.bound() == 4000  # never above the ceiling
        counts = {reason: d.tally.counts.get(child, 0) for reason, child in d._rejected.items()}
        assert counts["objective"] == 3 and counts["shed"] == 2


def test_without_an_objective_the_low_class_is_shed_past_its_share_of_the_queue() -> None:
    from modelyard_server.dispatch import Shed

    with _dispatcher(capacity=100, low_share=0.25) as (d, _):
        d.queued = 20
        d._admit(5, "low")
        with pytest.raises(Shed, match=r"0\.25 of 100"):
            d._admit(6, "low")
        d._admit(80, "high")
        with pytest.raises(Overloaded, match="queue full"):
            d._admit(81, "high")


def test_the_pace_counts_busy_time_only() -> None:
    from modelyard_server.dispatch import PACE_SPANS, Pace

    pace = Pace()
    pace.sent(0.0)
    pace.answered(0.1, 40, still_busy=False)  # 40 texts in 0.1 s busy
    pace.sent(5.0)  # idle from 0.1 s to 5 s: not counted
    pace.answered(5.2, 60, still_busy=True)
    assert pace.per_second is None  # 0.3 s of busy time so far
    pace.answered(5.4, 100, still_busy=False)
    assert pace.per_second == pytest.approx(200 / 0.5)
    pace.sent(9.0)
    pace.answered(9.5, 100, still_busy=False)  # 200 texts/s over the next span: the best of the spans stays
    assert pace.per_second == pytest.approx(400)
    for k in range(PACE_SPANS - 1):
        pace.sent(10.0 + k)
        pace.answered(10.5 + k, 100, still_busy=False)
    assert pace.per_second == pytest.approx(200)  # the fast span has aged out


def test_the_high_class_is_dispatched_ahead_of_the_low_class_waiting() -> None:
    """While the model is held, a low request and then a high one queue; when it is let go, the high one's texts
    go first, and a high request's admission does not count the low texts waiting behind it."""
    h = Harness(max_batch_size=2, capacity=1000)
    release = threading.Event()
    h.gate = lambda: release.wait(5)
    order: list[str] = []

    async def scenario() -> None:
        first = asyncio.create_task(h.run(["x"] * 8))  # fills the 4 slots, 2 texts each; the passes are held
        await asyncio.sleep(0.05)

        async def one(word: str, priority: str) -> None:
            await h.dispatcher.embed([word, word], "input", priority=priority)
            order.append(priority)

        low = asyncio.create_task(one("low", "low"))
        await asyncio.sleep(0.01)
        high = asyncio.create_task(one("high", "high"))
        await asyncio.sleep(0.01)
        assert h.dispatcher.queue.low_texts() == 2
        release.set()
        await asyncio.gather(first, low, high)

    try:
        asyncio.run(scenario())
        assert order == ["high", "low"]
    finally:
        release.set()
        h.close()
