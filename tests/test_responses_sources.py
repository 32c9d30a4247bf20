"""The OpenAI SDK's Responses stream as a source: ``client.responses.create(stream=True)`` of
the real ``openai`` client (async and sync) against a real loopback server that replays each
recording of tests/data/responses (vercel/ai, Apache-2.0: see its INDEX.md) as the API does
(``event:`` and ``data:`` lines, no ``[DONE]``), cut at random byte boundaries. What
``from_openai`` gives assembles as the raw bytes do."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import aggregator
from aggregator import EndReason, Result, SourceReport, to_dict
from aggregator.sources import from_openai

from .servers import serving
from .test_sources import THIRD_PARTY_GENERATORS

pytestmark = [pytest.mark.anyio, *THIRD_PARTY_GENERATORS]

DATA = Path(__file__).parent / "data" / "responses"
RECORDINGS = sorted(DATA.glob("*.jsonl"))


def sse(path: Path) -> bytes:
    """A recording as the Responses API sends it: an ``event:`` line with each ``data:``."""
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return b"".join(
        b"event: " + orjson.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n"
        for line in lines
    )


class _Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def pieces(self, data: bytes, seed: str) -> AsyncIterator[bytes]:
        rng = random.Random(seed)
        at = 0
        while at < len(data):
            size = rng.randint(1, max(160, len(data) // 200))
            yield data[at : at + size]
            at += size
            await anyio.lowlevel.checkpoint()

    async def responses(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        path = DATA / str(body.get("model"))
        if not body.get("stream") or path.parent != DATA or not path.is_file():
            return JSONResponse({"error": {"message": "no such recording"}}, 404)
        return StreamingResponse(self.pieces(sse(path), path.name), media_type="text/event-stream")


@pytest.fixture
def upstream(anyio_backend: str) -> Iterator[tuple[str, _Upstream]]:
    state = _Upstream()
    app = Starlette(routes=[Route("/v1/responses", state.responses, methods=["POST"])])
    with serving(app, "uvicorn" if anyio_backend == "asyncio" else "hypercorn") as url:
        yield url, state


def _outcome(found: tuple[list[Result], SourceReport]) -> list[Any]:
    """Each result, then the report; a source of objects (the SDK's) has no framing to end,
    so it ends ``exhausted`` where the bytes end ``done`` (as for chat)."""
    results, report = found
    reason = EndReason.EXHAUSTED if report.reason is EndReason.DONE else report.reason
    return [
        (to_dict(r.completion), r.reason, r.complete, type(r.error).__name__, r.duplicates)
        for r in results
    ] + [(report.completions, reason, type(report.error).__name__)]


async def test_every_recording_through_the_async_client(upstream: tuple[str, _Upstream]) -> None:
    url, state = upstream
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    try:
        for path in RECORDINGS:
            stream = await client.responses.create(model=path.name, input="x", stream=True)
            found = await aggregator.assemble_all(from_openai(stream), name=path.name)
            assert stream.response.is_closed
            raw = await aggregator.assemble_all([sse(path)], name=path.name)
            assert _outcome(found) == _outcome(raw), path.name
            assert found[0], path.name
    finally:
        await client.close()
    assert [r["model"] for r in state.requests] == [p.name for p in RECORDINGS]


@pytest.mark.parametrize(
    "name",
    [
        "openai_reasoning_encrypted_summary_tool_loop_4_responses.jsonl",
        "openai_error_insufficient_quota_response_failed.jsonl",
        "xai_x_search_custom_tool_calls_interleaved_items.jsonl",
    ],
)
async def test_the_sync_client(upstream: tuple[str, _Upstream], name: str) -> None:
    url, _ = upstream
    with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        stream: Any = client.responses.create(model=name, input="x", stream=True)
        source = from_openai(stream)
        assert isinstance(source, Iterator)
        found = await aggregator.assemble_all(source, name=name)
    assert stream.response.is_closed
    raw = await aggregator.assemble_all([sse(DATA / name)], name=name)
    assert _outcome(found) == _outcome(raw)
