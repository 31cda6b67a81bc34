"""A local OpenAI-compatible streaming endpoint for the load test's tests: `POST /v1/chat/completions` with
`stream: true` answered as vLLM's server answers it (chunked transfer, server-sent events of
`chat.completion.chunk` objects, a finish reason, a usage chunk, `data: [DONE]`), at a pace the test sets:
the first token after --ttft seconds, then one every --itl seconds, at most --slots streams at once (the
rest wait, as in an engine's batch). Failures on purpose: --fail-every N answers every Nth request 500,
--error-every N sends an `error` event mid-stream, --cut-every N closes a stream without a finish reason.
tests/test_loadtest.py holds its stream to the real `openai` client's parser. Standard library only.

    python tests/openai_stream.py --model chat --ttft 0.05 --itl 0.01   # prints the port it listens on
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time


def _chunk(payload: dict[str, object]) -> bytes:
    data = f"data: {json.dumps(payload)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Endpoint:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = asyncio.Semaphore(args.slots)
        self.count = itertools.count(1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))) or b"{}")
            method, path = request_line.split()[:2]
            if (method, path) != (b"POST", b"/v1/chat/completions"):
                await self._error(writer, 404, "NotFoundError", f"no route {path.decode()}")
            elif body.get("model") != self.args.model:
                await self._error(writer, 404, "NotFoundError", f"The model `{body.get('model')}` does not exist.")
            else:
                await self._complete(writer, body, next(self.count))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _error(self, writer: asyncio.StreamWriter, status: int, kind: str, message: str) -> None:
        body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()
        writer.write(
            f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _complete(self, writer: asyncio.StreamWriter, body: dict[str, object], n: int) -> None:
        a = self.args
        if a.fail_every and n % a.fail_every == 0:
            await self._error(writer, 500, "InternalServerError", "the engine failed this request")
            return
        tokens = min(int(body.get("max_tokens") or a.tokens), a.tokens)
        base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": int(time.time()), "model": a.model}
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
        )
        async with self.slots:
            await asyncio.sleep(a.ttft)
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            writer.write(_chunk({**base, "choices": [first]}))
            for i in range(tokens):
                if i:
                    await asyncio.sleep(a.itl)
                if a.error_every and n % a.error_every == 0 and i == tokens // 2:
                    error = {"message": "the engine failed mid-stream", "type": "InternalServerError", "code": 500}
                    writer.write(_chunk({"error": error}) + _chunk_done())
                    await writer.drain()
                    return
                if a.cut_every and n % a.cut_every == 0 and i == tokens // 2:
                    await writer.drain()
                    return
                delta = {"index": 0, "delta": {"content": f"tok{i} "}, "logprobs": None, "finish_reason": None}
                writer.write(_chunk({**base, "choices": [delta]}))
                await writer.drain()
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
        usage = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
        writer.write(_chunk({**base, "choices": [last]}) + _chunk({**base, "choices": [], "usage": usage}))
        writer.write(_chunk_done())
        await writer.drain()


def _chunk_done() -> bytes:
    data = b"data: [DONE]\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


async def main(args: argparse.Namespace) -> None:
    endpoint = Endpoint(args)
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", args.port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--itl", type=float, default=0.01)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--error-every", type=int, default=0)
    parser.add_argument("--cut-every", type=int, default=0)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
