"""Real servers on loopback for the end-to-end tests.

- :func:`upstream_app`: an OpenAI-compatible upstream that answers ``POST /v1/chat/completions``
  and ``POST /v1/completions`` by replaying a recording from ``tests/data`` (named by the
  request's ``model``, e.g. ``"openai/173417d55340.sse"``) as a chunked HTTP SSE response, split at
  random byte boundaries with small delays. JSON Lines recordings are sent as SSE
  (``data: {...}`` per line, then ``data: [DONE]``). A header ``x-pace: SECONDS`` (or a body
  field ``"x_pace"``, which passes through a gateway) sets the wait after each piece.
- :func:`serving`: run an ASGI app under a real server in a thread, uvicorn (asyncio) or
  hypercorn (trio), and yield its base URL.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DATA = Path(__file__).parent / "data"


def recording_bytes(name: str) -> bytes:
    """The bytes an upstream sends for recording ``name``: SSE as recorded, JSON Lines as SSE."""
    raw = (DATA / name).read_bytes()
    if name.endswith(".sse"):
        return raw
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    return b"".join(b"data: " + line + b"\n\n" for line in lines) + b"data: [DONE]\n\n"


class Upstream:
    """The upstream's record of what it served: request bodies, responses fully sent, and
    responses given up."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.finished: list[str] = []
        #: the responses given up before their end (the client went away).
        self.abandoned: list[str] = []

    #: About how many pieces a long recording is cut into, at most: pieces of 1 to 160 bytes,
    #: or longer for a recording over 32 KB, so that the longest take no more time than needed.
    max_pieces = 400

    async def pieces(self, name: str, data: bytes, pace: float) -> AsyncIterator[bytes]:
        rng = random.Random(name)
        most = max(160, 2 * len(data) // self.max_pieces)
        at = 0
        try:
            while at < len(data):
                size = rng.randint(1, most)
                yield data[at : at + size]
                at += size
                await anyio.sleep(pace if pace else rng.choice((0.0, 0.0, 0.0, 0.001)))
        finally:
            (self.finished if at >= len(data) else self.abandoned).append(name)

    async def complete(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        name = body.get("model", "")
        if not isinstance(name, str) or ".." in name or not (DATA / name).is_file():
            message = f"The model `{name}` does not exist"
            return JSONResponse({"error": {"message": message, "code": "model_not_found"}}, 404)
        data = recording_bytes(name)
        if not body.get("stream"):
            return JSONResponse({"error": {"message": "this upstream only streams"}}, 400)
        # a gateway passes on the body, not an unknown header: the pace may come in either
        pace = float(request.headers.get("x-pace") or body.get("x_pace") or 0)
        return StreamingResponse(
            self.pieces(name, data, pace),
            media_type="text/event-stream",
            headers={"x-request-id": f"upstream-{len(self.requests)}"},
        )


def upstream_app(upstream: Upstream) -> Starlette:
    """An ASGI app serving recordings, recording what it did in ``upstream``."""
    routes = [
        Route(path, upstream.complete, methods=["POST"])
        for path in ("/v1/chat/completions", "/v1/completions")
    ]
    return Starlette(routes=routes)


@contextmanager
def serving(app: Any, server: str) -> Iterator[str]:
    """Serve ``app`` on a loopback port under ``server`` (``"uvicorn"`` on asyncio or
    ``"hypercorn"`` on trio) in a thread; yield ``http://127.0.0.1:PORT``."""
    if server == "uvicorn":
        with _uvicorn(app) as url:
            yield url
    elif server == "hypercorn":
        with _hypercorn(app) as url:
            yield url
    else:
        raise ValueError(server)


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def _hypercorn(app: Any) -> Iterator[str]:
    import hypercorn.config
    import hypercorn.trio
    import trio

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.loglevel = "WARNING"
    started = threading.Event()
    state: dict[str, Any] = {}

    async def run() -> None:
        stop = trio.Event()
        state["stop"], state["token"] = stop, trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: hypercorn.trio.serve(
                    app, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            state["url"] = binds[0]
            started.set()

    def main() -> None:
        try:
            trio.run(run)
        finally:
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(10)
    try:
        assert "url" in state, "hypercorn did not start"
        yield str(state["url"])
    finally:
        if "token" in state:
            trio.from_thread.run_sync(state["stop"].set, trio_token=state["token"])
        thread.join(10)
