"""The upstream of tests/test_gateway.py, run as a process of its own: the recordings of
``tests/data`` and, on demand (by model name), the ways an upstream fails.

Theory of operation: :class:`Misbehaving` extends the loopback upstream of ``tests/servers.py``
(recordings cut into random pieces at a pace) with the Responses and Anthropic endpoints (their
JSON Lines recordings served as SSE with event names) and with failures: ``error/401`` (an error
body that echoes the API key), ``error/500`` (plain text), ``error/not-json`` (a 200 of HTML),
``slow`` (no headers for 10 s), ``headers`` (a whole answer with headers to filter) and
``cut/NAME`` (half of a recording, then the connection is dropped). ``GET /record`` tells the
tests what it served. It runs in its own process so that a test's client and the upstream do
not share one interpreter (200 concurrent streams on a small machine starve a thread).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .servers import DATA, Upstream, recording_bytes

#: Seconds ``slow`` waits before answering.
SLOW_SECONDS = 10.0


def event_stream(name: str) -> bytes:
    """A JSON Lines recording of events (Responses, Anthropic) as SSE with event names."""
    out = bytearray()
    for line in (DATA / name).read_bytes().splitlines():
        if line.strip():
            event = orjson.loads(line)
            out += b"event: " + event["type"].encode() + b"\ndata: " + line.strip() + b"\n\n"
    return bytes(out)


def upstream_bytes(name: str) -> bytes:
    """The bytes the upstream streams for recording ``name``."""
    if name.startswith(("responses/", "anthropic/")):
        return event_stream(name)
    return recording_bytes(name)


def chat_final(name: str) -> dict[str, Any]:
    """The non-streamed answer for chat recording ``name``: the OpenAI SDK's accumulation."""
    from .test_differential import sdk_final

    events = [e for e in recording_bytes(name).split(b"\n\n") if e.startswith(b"data: {")]
    return sdk_final([json.loads(e.removeprefix(b"data: ")) for e in events])


class Misbehaving(Upstream):
    """The recordings, and on demand (by model name) the ways an upstream fails."""

    #: Fewer, larger pieces than the default: the tests run three processes on a small machine.
    max_pieces = 60

    async def answer(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        name = str(body.get("model", ""))
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if name == "error/401":
            message = f"Incorrect API key provided: {key}. Find your key at platform."
            error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
            return JSONResponse({"error": error}, 401, headers={"x-request-id": "up-401"})
        if name == "error/500":
            return Response(f"Internal Server Error (key {key})", 500, media_type="text/plain")
        if name == "error/not-json":
            return Response(b"<html>oops</html>", 200, media_type="text/html")
        if name == "slow":
            await anyio.sleep(SLOW_SECONDS)
            return JSONResponse({"late": True})
        if name.startswith("headers/"):
            headers = {
                "x-ratelimit-remaining-tokens": "99",
                "openai-processing-ms": "7",
                "set-cookie": "session=secret",
                "x-internal-host": "10.0.0.1",
            }
            return JSONResponse(chat_final(name[8:]), headers=headers)
        self.requests.append(body)
        if name.startswith("cut/"):
            data = upstream_bytes(name[4:])
            return StreamingResponse(self.cut(data), media_type="text/event-stream")
        if name.startswith(("responses/", "anthropic/")):
            pace = float(body.get("x_pace") or 0)
            data = event_stream(name)
            return StreamingResponse(self.pieces(name, data, pace), media_type="text/event-stream")
        self.requests.pop()  # (complete() records it)
        return await self.complete(request)

    async def cut(self, data: bytes) -> AsyncIterator[bytes]:
        yield data[: data.rfind(b"\n\n", 0, len(data) // 2) + 2]  # at an event's end
        await anyio.sleep(0.01)
        raise ConnectionResetError("the upstream's connection is cut")

    async def record(self, request: Request) -> Response:
        return JSONResponse(
            {"requests": self.requests, "finished": self.finished, "abandoned": self.abandoned}
        )


def app(upstream: Misbehaving) -> Starlette:
    """The upstream's ASGI app."""
    paths = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")
    routes = [Route(p, upstream.answer, methods=["POST"]) for p in paths]
    routes.append(Route("/record", upstream.record, methods=["GET"]))
    return Starlette(routes=routes)


def main(port: int) -> None:
    import uvicorn

    from . import test_differential  # noqa: F401 - imported before the first request needs it

    uvicorn.run(app(Misbehaving()), host="127.0.0.1", port=port, log_level="critical")


if __name__ == "__main__":
    main(int(sys.argv[1]))
