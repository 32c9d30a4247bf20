"""``sources.from_anthropic``: the real anthropic client against a real loopback HTTP server that
replays the recordings of tests/data/anthropic/ (INDEX.md) as the API sends them."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio.lowlevel
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import aggregator
from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator.sources import from_anthropic

from .servers import serving

#: Under trio, a reader that stops before the end of a body (here: at an error event) leaves
#: httpx2's nested response generators (over httpcore2's) to the collector, which warns
#: (encode/httpx#3686; see tests/test_sources.py). Only those libraries' generators pass.
pytestmark = [
    pytest.mark.filterwarnings(
        rf"ignore:Async generator '{module}.*' was garbage collected:ResourceWarning"
    )
    for module in (r"httpx2?\.", r"httpcore2?\.")
]

DATA = Path(__file__).parent / "data" / "anthropic"
NAMES = sorted(p.name for p in DATA.glob("*.jsonl"))
ERROR_MID_STREAM = [
    b'{"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
    b'"content":[],"model":"c","usage":{"input_tokens":3,"output_tokens":1}}}',
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}',
    b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
]


def sse(lines: list[bytes]) -> bytes:
    """The recording as the Messages API sends it: ``event: <type>`` and ``data:`` lines."""
    out = []
    for line in lines:
        kind = orjson.loads(line)["type"]
        out.append(b"event: " + kind.encode() + b"\ndata: " + line + b"\n\n")
    return b"".join(out)


def recording(name: str) -> bytes:
    if name == "error-mid-stream":
        return sse(ERROR_MID_STREAM)
    return sse([line for line in (DATA / name).read_bytes().splitlines() if line.strip()])


async def pieces(name: str, data: bytes) -> AsyncIterator[bytes]:
    rng = random.Random(name)
    at = 0
    while at < len(data):
        size = rng.randint(1, max(160, len(data) // 200))
        yield data[at : at + size]
        at += size
        await anyio.lowlevel.checkpoint()


async def messages(request: Request) -> Response:
    body = orjson.loads(await request.body())
    name = body.get("model", "")
    if name != "error-mid-stream" and name not in NAMES:
        error = {"type": "not_found_error", "message": f"model: {name}"}
        return JSONResponse({"type": "error", "error": error}, 404)
    return StreamingResponse(pieces(name, recording(name)), media_type="text/event-stream")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    with serving(app, "uvicorn") as base:
        yield base


def engine_results(data: bytes) -> list[Any]:
    engine = Engine("s")
    out = engine.feed(data) + engine.close()
    return [(to_dict(r.completion), r.reason, r.complete) for r in out if hasattr(r, "completion")]


def outcome(found: list[Any]) -> list[Any]:
    return [(to_dict(r.completion), r.reason, r.complete) for r in found]


KWARGS: dict[str, Any] = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.anyio
@pytest.mark.parametrize("name", NAMES)
async def test_an_async_raw_event_stream_assembles_as_its_bytes(url: str, name: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    stream = await client.messages.create(model=name, stream=True, **KWARGS)
    found, _ = await aggregator.assemble_all(from_anthropic(stream), name=name)
    assert stream.response.is_closed
    assert outcome(found) == engine_results(recording(name))
    assert all(r.complete for r in found)
    await client.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", ["anthropic_text_basic.jsonl", "anthropic_tool_use_json_tool.jsonl"]
)
async def test_a_message_stream_manager_gives_what_the_sdk_gives_and_more(
    url: str, name: str
) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    (result,), _ = await aggregator.assemble_all(
        from_anthropic(client.messages.stream(model=name, **KWARGS)), name=name
    )
    async with client.messages.stream(model=name, **KWARGS) as stream:
        sdk = await stream.get_final_message()
    ours = to_dict(result.completion)
    theirs: dict[str, Any] = sdk.to_dict(mode="json")
    for key in ("id", "model", "stop_reason", "content"):
        assert ours[key] == {k: v for k, v in theirs.items() if v is not None}[key]
    assert ours["usage"]["output_tokens"] == theirs["usage"]["output_tokens"]
    await client.close()


def test_sync_streams_and_managers(url: str) -> None:
    name = "anthropic_tool_search_regex_2_messages.jsonl"
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as client:
        raw = client.messages.create(model=name, stream=True, **KWARGS)
        source = from_anthropic(raw)
        assert isinstance(source, Iterator)
        engine = Engine(name)
        out: list[Any] = []
        for data in source:
            out += engine.feed(data)
        out += engine.close()
        found = [r for r in out if hasattr(r, "completion")]
        assert outcome(found) == engine_results(recording(name))
        assert len(found) == 2
        assert raw.response.is_closed
        with client.messages.stream(model=name, **KWARGS) as message_stream:
            assert joined(from_anthropic(message_stream)) == recording(name)
        manager = client.messages.stream(model=name, **KWARGS)
        assert joined(from_anthropic(manager)) == recording(name)


def joined(source: Any) -> bytes:
    assert isinstance(source, Iterator)
    return b"".join(source)


@pytest.mark.anyio
async def test_an_error_mid_stream_keeps_the_partial_message_and_its_line(url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    stream = await client.messages.create(model="error-mid-stream", stream=True, **KWARGS)
    (result,), _ = await aggregator.assemble_all(from_anthropic(stream), name="claude")
    assert not result.complete
    assert to_dict(result.completion)["content"] == [{"type": "text", "text": "Hel"}]
    assert to_dict(result.completion)["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert str(result.error) == "claude, line 11 (event 4): upstream error: Overloaded"
    await client.close()


def test_where_the_sdk_raises_for_an_error_mid_stream_with_no_partial_message(url: str) -> None:
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as client:
        stream = client.messages.create(model="error-mid-stream", stream=True, **KWARGS)
        seen = []
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            seen.extend(stream)
        assert len(seen) == 3  # the events before; the message is the caller's to rebuild
