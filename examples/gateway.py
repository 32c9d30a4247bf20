"""A minimal aggregating proxy on the library API: ``aggregator.Tee`` inside a Starlette route.

Each streamed chat completion is passed to the client byte for byte and, once the stream is
over, logged whole (with its usage) as one JSON line on stdout. For a gateway to run in
production (timeouts, error bodies, redaction, SIGTERM, the Responses and Anthropic endpoints),
use the command: ``aggregator gateway --upstream https://api.openai.com`` (docs/gateway.md).

Run it with ``UPSTREAM=https://api.openai.com uvicorn examples.gateway:app``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import aggregator
from aggregator.sources import from_httpx

UPSTREAM = os.environ.get("UPSTREAM", "https://api.openai.com")


def log(tee: aggregator.Tee[bytes]) -> None:
    """One JSON line per completion the tee assembled."""
    for result in tee.results:
        line: dict[str, Any] = {"request": tee.name, "reason": result.reason.value}
        line.update(complete=result.complete, completion=aggregator.to_dict(result.completion))
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.flush()


async def chat(request: Request) -> Response:
    headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
    client = httpx.AsyncClient(base_url=UPSTREAM, timeout=60)
    sent = client.build_request(
        "POST", "/v1/chat/completions", content=await request.body(), headers=headers
    )
    answer = await client.send(sent, stream=True)
    if not answer.headers.get("content-type", "").startswith("text/event-stream"):
        body = await answer.aread()  # a whole answer or an error: passed on as it is
        await client.aclose()
        return Response(body, answer.status_code, media_type=answer.headers.get("content-type"))
    tee = aggregator.Tee(from_httpx(answer), name=request.headers.get("x-request-id", "request"))

    async def passed_on() -> AsyncIterator[bytes]:
        try:
            async with tee:  # the client leaving: the tee reads the rest (usage kept)
                async for data in tee:
                    yield data
        finally:
            await client.aclose()
            log(tee)

    return StreamingResponse(passed_on(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
