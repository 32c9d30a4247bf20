"""An aggregating OpenAI-compatible gateway: proxy streamed completions, log whole ones.

``POST /v1/chat/completions`` and ``POST /v1/completions`` are passed to an upstream
OpenAI-compatible server. A streamed answer (``"stream": true``) is re-streamed to the client byte
for byte through an :class:`aggregator.Tee`, and when it ends each assembled completion is written
with its usage as one JSON line to the log. When the client goes away mid-stream, the log line is
still written: with ``--on-disconnect stop`` (the default) it holds the partial completion, marked
``"partial": true`` and ``"client_disconnected": true``; with ``finish`` the gateway reads the
upstream to its end first, so the completion and its usage are whole.

Run it (``pip install 'stream-aggregator[gateway]'``) under uvicorn (asyncio) or hypercorn (trio)::

    python examples/gateway.py --upstream https://api.openai.com --log completions.jsonl
    python examples/gateway.py --server hypercorn --upstream http://localhost:8000 ...

and point any OpenAI client at it: ``OpenAI(base_url="http://127.0.0.1:8080/v1")``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal, cast

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import aggregator
from aggregator.sources import from_httpx

#: What to do with a stream whose client went away: see :class:`aggregator.Tee`.
OnDisconnect = Literal["stop", "finish"]
#: Request headers passed on to the upstream (others, such as ``host``, are the gateway's own).
FORWARDED = ("authorization", "content-type", "accept", "openai-organization", "openai-project")
#: Response headers passed back to the client.
RETURNED = ("content-type", "x-request-id", "openai-processing-ms", "openai-version")


class CompletionLog:
    """One JSON line per completion, appended to a file and flushed at once."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(orjson.dumps(record) + b"\n")
        self.file.flush()

    def streamed(self, request: str, endpoint: str, tee: aggregator.Tee[bytes]) -> None:
        """Log what a tee assembled: each completion, or the source's errors when it held
        none."""
        for result in tee.results:
            self.write(
                {
                    "time": time.time(),
                    "request": request,
                    "endpoint": endpoint,
                    "streamed": True,
                    "complete": result.complete,
                    "partial": not result.complete,
                    "client_disconnected": tee.disconnected,
                    "reason": result.reason.value,
                    "error": None if result.error is None else str(result.error),
                    "chunks": result.chunks,
                    "usage": None if result.usage is None else aggregator.to_dict(result.usage),
                    "completion": aggregator.to_dict(result.completion),
                }
            )
        if not tee.results:
            report = tee.report
            found = [] if report is None else [report.error, *report.problems]
            errors = [str(e) for e in found if e is not None] or ["no completion in the stream"]
            self.write(
                {
                    "time": time.time(),
                    "request": request,
                    "endpoint": endpoint,
                    "streamed": True,
                    "complete": False,
                    "partial": True,
                    "client_disconnected": tee.disconnected,
                    "error": "; ".join(errors),
                }
            )


class TeeResponse(Response):
    """Stream an upstream response to the client through a :class:`aggregator.Tee`; log the
    completions when the stream ends, however it ends."""

    def __init__(
        self,
        upstream: httpx.Response,
        *,
        request: str,
        endpoint: str,
        log: CompletionLog,
        on_disconnect: OnDisconnect,
    ) -> None:
        super().__init__(status_code=upstream.status_code)
        self.upstream = upstream
        self.request = request
        self.endpoint = endpoint
        self.log = log
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k: v for k, v in self.upstream.headers.items() if k in RETURNED}
        tee = aggregator.Tee(
            from_httpx(self.upstream), name=self.request, on_disconnect=self.on_disconnect
        )
        try:
            async with tee:
                body = StreamingResponse(tee, status_code=self.status_code, headers=headers)
                await body(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass  # the client went away: the tee has ended the stream as asked
        finally:
            self.log.streamed(self.request, self.endpoint, tee)


def create_app(
    upstream: str,
    log: IO[bytes],
    *,
    on_disconnect: OnDisconnect = "stop",
    timeout: float = 600.0,
) -> Starlette:
    """The gateway: proxy to the OpenAI-compatible server at ``upstream`` (``https://host``,
    no ``/v1``), logging completions to ``log``."""
    completions = CompletionLog(log)
    numbers = itertools.count(1)
    client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal client
        async with httpx.AsyncClient(base_url=upstream, timeout=timeout) as client:
            yield

    def proxy(endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            assert client is not None
            body = await request.body()
            name = request.headers.get("x-request-id") or f"request {next(numbers)}"
            try:
                streamed = orjson.loads(body).get("stream") is True
            except (orjson.JSONDecodeError, AttributeError):
                return JSONResponse({"error": {"message": "the body is not a JSON object"}}, 400)
            headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
            sent = client.build_request("POST", endpoint, content=body, headers=headers)
            answer = await client.send(sent, stream=True)
            if streamed and answer.status_code == 200:
                return TeeResponse(
                    answer,
                    request=name,
                    endpoint=endpoint,
                    log=completions,
                    on_disconnect=on_disconnect,
                )
            content = await answer.aread()  # not a stream (or an error): pass it on whole
            await answer.aclose()
            record: dict[str, Any] = {"time": time.time(), "request": name, "endpoint": endpoint}
            if answer.status_code == 200:
                record.update(streamed=False, complete=True, completion=orjson.loads(content))
            else:
                text = content[:500].decode("utf-8", "replace")
                record.update(complete=False, error=f"HTTP {answer.status_code}: {text}")
            completions.write(record)
            returned = {k: v for k, v in answer.headers.items() if k in RETURNED}
            return Response(content, answer.status_code, headers=returned)

        return handle

    routes = [
        Route(path, proxy(path), methods=["POST"])
        for path in ("/v1/chat/completions", "/v1/completions")
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream server, e.g. https://host")
    parser.add_argument("--log", type=Path, required=True, help="JSON Lines file to append to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    parser.add_argument("--on-disconnect", choices=["stop", "finish"], default="stop")
    args = parser.parse_args()
    with args.log.open("ab") as log:
        app = create_app(args.upstream, log, on_disconnect=args.on_disconnect)
        if args.server == "uvicorn":  # asyncio
            import uvicorn

            uvicorn.run(app, host=args.host, port=args.port)
        else:  # trio
            import hypercorn.config
            import hypercorn.trio
            import trio

            config = hypercorn.config.Config()
            config.bind = [f"{args.host}:{args.port}"]
            trio.run(partial(hypercorn.trio.serve, cast(Any, app), config))


if __name__ == "__main__":
    main()
