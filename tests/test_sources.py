"""``aggregator.sources``: the adapters for httpx responses, OpenAI SDK streams and files.

Theory of operation: no network. ``httpx`` (and ``httpx2``, which the OpenAI SDK is built on)
clients get a ``MockTransport`` whose handler answers with a recording from ``tests/data`` (as
an upstream sends it: ``tests.servers.recording_bytes``), streamed in pieces, or with an error
status and body. The real SDK (``openai.AsyncOpenAI`` / ``openai.OpenAI``) is pointed at such a
transport, so its own SSE parsing and error handling run. What the adapters yield is assembled
and compared with :func:`aggregator.assemble_all` on the raw bytes (every result and the
source's report); an SDK stream passed as it is, with no adapter, assembles the same.

The SDK consumes ``data: [DONE]`` itself and raises on an error payload, so its streams end
``exhausted`` rather than ``done``, and a chunk that carries an error is never seen (its usage is
lost): both are asserted below as what they are.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import openai
import pytest

import aggregator
from aggregator import EndReason, Result, SourceReport, UpstreamError, to_dict
from aggregator.models import ChatCompletion
from aggregator.sources import ERROR_BODY_LIMIT, from_file, from_httpx, from_openai

from .conftest import DATA
from .servers import recording_bytes

#: Under trio, an async generator collected before its end warns (ResourceWarning). httpx's
#: and httpx2's response iterators (over httpcore's) are nested generators, so a reader that
#: stops before the end of a body (an error body read in part, a stream that ended at an error
#: event, a client that leaves) leaves the inner ones to the collector however the outer one is
#: closed (encode/httpx#3686); and openai 3.x's AsyncStream breaks out of its event generator at
#: ``[DONE]`` or an error without closing it. None of it is ours: only those libraries'
#: generators are let through. The collector may also find httpx's ``aiter_raw`` while a
#: finaliser of the same nest is running it ("async generator already executing", seen twice in
#: full runs on a loaded machine, trio only): the same leak, reported as unraisable.
THIRD_PARTY_GENERATORS = [
    *(
        pytest.mark.filterwarnings(
            rf"ignore:Async generator '{module}.*' was garbage collected:ResourceWarning"
        )
        for module in (r"httpx2?\.", r"httpcore2?\.", r"openai\._streaming\.")
    ),
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object "
        r"(Response\.aiter_raw|AsyncResponseStream\.__aiter__|BoundAsyncStream\.__aiter__)"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]

pytestmark = [pytest.mark.anyio, *THIRD_PARTY_GENERATORS]

OPENAI = sorted((DATA / "openai").glob("*.sse"))
PROVIDERS = sorted(p for p in (DATA / "providers").iterdir() if p.suffix in (".sse", ".jsonl"))
#: Every recording, by its name under tests/data (the `model` the handlers serve).
NAMES = [f"openai/{p.name}" for p in OPENAI] + [f"providers/{p.name}" for p in PROVIDERS]
GROQ_ERROR = "providers/groq_gptoss_event_error_tool_use_failed.sse"
MINIMAX_ERROR = "providers/openrouter_minimax_midstream_error_with_usage.sse"
RATE_LIMITED = {
    "error": {
        "message": "Rate limit reached for gpt-4o in organization org-x on tokens per min.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


def is_text_completion(name: str) -> bool:
    """Whether the recording holds legacy text-completion chunks (``/v1/completions``)."""
    lines = recording_bytes(name).splitlines()
    first = next(line for line in lines if line.startswith(b"data: {"))
    return bool(json.loads(first.removeprefix(b"data: ")).get("object") == "text_completion")


def pieces(data: bytes, size: int = 97) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def summary(result: Result) -> dict[str, Any]:
    error = result.error
    return {
        "source": result.source,
        "key": result.key,
        "reason": result.reason,
        "complete": result.complete,
        "error": None if error is None else (type(error).__name__, str(error)),
        "problems": [(type(p).__name__, str(p)) for p in result.problems],
        "notes": result.notes,
        "chunks": result.chunks,
        "usage": None if result.usage is None else to_dict(result.usage),
        "completion": to_dict(result.completion),
    }


def report_summary(report: SourceReport) -> dict[str, Any]:
    error = report.error
    return {
        "source": report.source,
        "reason": report.reason,
        "where": report.where,
        "error": None if error is None else (type(error).__name__, str(error)),
        "problems": [(type(p).__name__, str(p)) for p in report.problems],
        "completions": report.completions,
    }


def outcome(found: list[Result], report: SourceReport) -> dict[str, Any]:
    """Everything ``assemble_all`` said, in comparable form: each result, then the report."""
    return {"results": [summary(r) for r in found], "report": report_summary(report)}


async def read_all(source: aggregator.Source) -> list[Any]:
    """Every item of an async source."""
    assert isinstance(source, AsyncIterator)
    return [item async for item in source]


async def raw_results(name: str, data: bytes) -> tuple[list[Result], SourceReport]:
    """What ``assemble_all`` makes of the raw bytes: the results and the source's report."""
    return await aggregator.assemble_all([data], name=name)


# --- httpx ------------------------------------------------------------------------------------


class Body:
    """A response body served in pieces, counting how many were read."""

    def __init__(self, data: bytes, size: int = 97) -> None:
        self.pieces = pieces(data, size)
        self.read = 0

    def aiter(self) -> AsyncIterator[bytes]:
        return _Pieces(self)

    def iter(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.read += 1
            yield piece


class _Pieces:
    """A body's pieces as an async iterator that is no generator (nothing to finalize)."""

    def __init__(self, body: Body) -> None:
        self.body = body

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        body = self.body
        if body.read == len(body.pieces):
            raise StopAsyncIteration
        body.read += 1
        return body.pieces[body.read - 1]


def serve(
    status: int, body: Body, headers: dict[str, str] | None = None, *, sync: bool = False
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body.iter() if sync else body.aiter()
        return httpx.Response(status, content=content, headers=headers)

    return handler


@asynccontextmanager
async def async_response(
    handler: Callable[[httpx.Request], httpx.Response],
) -> AsyncIterator[httpx.Response]:
    """A streamed response from an ``httpx.AsyncClient`` through a mock transport."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("POST", "http://upstream/v1/chat/completions")
        yield await client.send(request, stream=True)


@pytest.mark.parametrize("name", ["openai/173417d55340.sse", GROQ_ERROR])
async def test_httpx_async_body_passes_through(name: str) -> None:
    data = recording_bytes(name)
    body = Body(data)
    async with async_response(serve(200, body, {"content-type": "text/event-stream"})) as response:
        received = await read_all(from_httpx(response))
    assert received == body.pieces
    assert response.is_closed
    response2 = httpx.Response(200, content=Body(data).aiter())
    ours = await aggregator.assemble_all(from_httpx(response2), name=name)
    assert outcome(*ours) == outcome(*await raw_results(name, data))


async def test_httpx_gzip_body_is_decoded() -> None:
    data = recording_bytes("providers/openai_gpt4omini_n3_interleaved_usage.sse")
    body = Body(gzip.compress(data), size=500)
    async with async_response(serve(200, body, {"content-encoding": "gzip"})) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="gz")
    assert response.is_closed
    assert outcome(results, report) == outcome(*await raw_results("gz", data))
    (result,) = results
    assert result.complete
    assert report.ok
    assert isinstance(result.completion, ChatCompletion)
    assert len(result.completion.choices) == 3


async def test_httpx_gzip_bytes_are_the_decoded_body() -> None:
    data = recording_bytes("openai/173417d55340.sse")
    body = Body(gzip.compress(data), size=64)
    async with async_response(serve(200, body, {"content-encoding": "gzip"})) as response:
        assert b"".join(await read_all(from_httpx(response))) == data


@pytest.mark.parametrize("status", [429, 500])
async def test_httpx_error_status_with_an_openai_error_body(status: int) -> None:
    body = Body(json.dumps(RATE_LIMITED).encode(), size=20)
    async with async_response(serve(status, body)) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="req-1")
    assert response.is_closed
    assert results == []  # no completion: the source's report has the error
    assert (report.source, report.reason, report.completions) == ("req-1", EndReason.ERROR, 0)
    assert isinstance(report.error, UpstreamError)
    assert report.error.payload == RATE_LIMITED["error"]
    assert str(report.error) == (
        f"req-1, after item 0: upstream error: HTTP {status}: Rate limit reached for gpt-4o in "
        "organization org-x on tokens per min."
    )
    assert report.error.source == "req-1"
    assert not report.ok


async def test_httpx_error_status_raises_from_assemble() -> None:
    body = Body(json.dumps(RATE_LIMITED).encode())
    async with async_response(serve(429, body)) as response:
        with pytest.raises(
            UpstreamError, match=r"^req-2, after item 0: .*HTTP 429: Rate limit"
        ) as info:
            await aggregator.assemble(from_httpx(response), name="req-2")
    assert info.value.payload["code"] == "rate_limit_exceeded"


async def test_httpx_error_status_with_a_body_that_is_not_json() -> None:
    body = Body(b"<html><body>502 Bad Gateway</body></html>\n")
    async with async_response(serve(502, body)) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="req-3")
    assert results == []
    assert isinstance(report.error, UpstreamError)
    assert report.error.payload is None
    assert str(report.error) == (
        "req-3, after item 0: upstream error: HTTP 502: <html><body>502 Bad Gateway</body></html>"
    )


async def test_httpx_error_status_with_an_empty_body_names_the_status() -> None:
    async with async_response(serve(503, Body(b""))) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="req-4")
    assert results == []
    assert isinstance(report.error, UpstreamError)
    assert str(report.error) == "req-4, after item 0: upstream error: HTTP 503: Service Unavailable"


async def test_httpx_large_error_body_is_read_only_in_part() -> None:
    data = b"x" * (16 * ERROR_BODY_LIMIT)
    body = Body(data, size=1024)
    async with async_response(serve(500, body)) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="big")
    assert response.is_closed
    assert ERROR_BODY_LIMIT // 1024 <= body.read < len(body.pieces) // 4
    assert results == []
    assert isinstance(report.error, UpstreamError)
    assert report.error.detail == "upstream error: HTTP 500: " + "x" * 500  # the body's start


async def test_httpx_response_is_closed_when_the_reader_stops_early() -> None:
    data = recording_bytes("providers/openai_gpt4omini_n3_interleaved_usage.sse")
    async with async_response(serve(200, Body(data))) as response:
        source = from_httpx(response)
        assert isinstance(source, AsyncIterator)
        await source.__anext__()
        assert not response.is_closed
        await source.aclose()  # type: ignore[attr-defined]
    assert response.is_closed


@contextmanager
def sync_response(handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[httpx.Response]:
    """A streamed response from an ``httpx.Client`` through a mock transport."""
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("POST", "http://upstream/v1/chat/completions")
        yield client.send(request, stream=True)


async def test_httpx_sync_client() -> None:
    name = "providers/deepseek_reasoner_reasoning_then_tool_call.jsonl"
    data = recording_bytes(name)
    body = Body(data)
    with sync_response(serve(200, body, sync=True)) as response:
        source = from_httpx(response)
        assert isinstance(source, Iterator)
        found = await aggregator.assemble_all(source, name=name)
    assert response.is_closed
    assert body.read == len(body.pieces)
    assert outcome(*found) == outcome(*await raw_results(name, data))

    body = Body(json.dumps(RATE_LIMITED).encode())
    with sync_response(serve(429, body, sync=True)) as response:
        results, report = await aggregator.assemble_all(from_httpx(response), name="sync")
    assert response.is_closed
    assert results == []
    assert report.reason is EndReason.ERROR
    assert isinstance(report.error, UpstreamError)
    assert report.error.payload == RATE_LIMITED["error"]
    assert "HTTP 429" in str(report.error)


async def test_httpx2_response_works_too() -> None:
    name = "openai/c6aa7e397b71.sse"
    data = recording_bytes(name)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=Body(data).aiter())

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        request = client.build_request("POST", "http://upstream/v1/chat/completions")
        response = await client.send(request, stream=True)
        found = await aggregator.assemble_all(from_httpx(response), name=name)  # type: ignore[arg-type]
    assert response.is_closed
    assert outcome(*found) == outcome(*await raw_results(name, data))


# --- the OpenAI SDK ---------------------------------------------------------------------------


def sdk_handler(
    requests: list[dict[str, Any]], *, async_: bool = True
) -> Callable[[httpx2.Request], httpx2.Response]:
    """An OpenAI-compatible upstream for the SDK: the recording named by ``model``, streamed."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        requests.append({"path": request.url.path, **body})
        headers = {"content-type": "text/event-stream"}
        data = recording_bytes(body["model"])
        content = Body(data).aiter() if async_ else Body(data).iter()
        return httpx2.Response(200, content=content, headers=headers)

    return handler


def create_kwargs(name: str) -> dict[str, Any]:
    if is_text_completion(name):
        return {"model": name, "prompt": "x", "stream": True}
    return {"model": name, "messages": [{"role": "user", "content": "x"}], "stream": True}


def expected_from_sdk(name: str, raw: tuple[list[Result], SourceReport]) -> dict[str, Any]:
    """What assembling the SDK's chunks must give (:func:`outcome`), from what the raw bytes
    gave: the SDK eats ``[DONE]`` (``exhausted``, complete when every choice finished) and
    raises on an error payload, which ends the stream after the chunks before it (counted in
    items), and the source with it."""
    found, report = raw
    out = []
    for result in found:
        expected = summary(result)
        if result.reason is EndReason.DONE:
            expected["reason"] = EndReason.EXHAUSTED
            expected["complete"] = result.finished
        if isinstance(result.error, UpstreamError):
            payload = result.error.payload
            detail = f"upstream error: {payload['message']}"
            expected["error"] = ("UpstreamError", f"{name}, after item {result.chunks}: {detail}")
        out.append(expected)
    return {"results": out, "report": sdk_report(report, out)}


def sdk_report(raw: SourceReport, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of an SDK source, from the raw bytes' report and the results expected of the
    SDK source: the SDK's error ends the source (after the items it yielded), with that error;
    else the source is a sequence of chunks that ran out (no place)."""
    expected = report_summary(raw)
    last = results[-1] if results else None
    if last is not None and last["error"] is not None and last["error"][0] == "UpstreamError":
        expected["reason"] = EndReason.ERROR
        expected["where"] = f"after item {last['chunks']}"
        expected["error"] = last["error"]
    else:
        assert raw.error is None
        expected["reason"] = EndReason.EXHAUSTED
        expected["where"] = ""
    return expected


def minimax_adjusted(name: str, expected: dict[str, Any], raw: SourceReport) -> dict[str, Any]:
    """The SDK raises on the chunk that carries the error and never yields it: its usage is
    lost, and so is the chunk in the count; the error stops the source (from the raw bytes,
    the error a chunk carries ends its stream, and the source goes on to ``[DONE]``)."""
    (only,) = expected["results"]
    only["usage"] = None
    del only["completion"]["usage"]
    only["chunks"] -= 1
    only["error"] = (
        "UpstreamError",
        f"{name}, after item {only['chunks']}: upstream error: Token limit reached",
    )
    return {"results": [only], "report": sdk_report(raw, [only])}


@pytest.mark.parametrize("name", NAMES)
async def test_openai_async_stream_assembles_as_the_raw_bytes(name: str) -> None:
    requests: list[dict[str, Any]] = []
    transport = httpx2.MockTransport(sdk_handler(requests))
    async with httpx2.AsyncClient(transport=transport) as http_client:
        client = openai.AsyncOpenAI(
            base_url="http://upstream/v1", api_key="x", http_client=http_client, max_retries=0
        )
        kwargs = create_kwargs(name)
        if "prompt" in kwargs:
            stream = await client.completions.create(**kwargs)
        else:
            stream = await client.chat.completions.create(**kwargs)
        found = await aggregator.assemble_all(from_openai(stream), name=name)
    assert stream.response.is_closed
    path = "/v1/completions" if "prompt" in kwargs else "/v1/chat/completions"
    assert requests == [{"path": path, **kwargs}]

    raw = await raw_results(name, recording_bytes(name))
    expected = expected_from_sdk(name, raw)
    if name == MINIMAX_ERROR:
        expected = minimax_adjusted(name, expected, raw[1])
    assert outcome(*found) == expected


async def test_openai_error_event_is_an_upstream_error_with_its_payload() -> None:
    transport = httpx2.MockTransport(sdk_handler([]))
    async with httpx2.AsyncClient(transport=transport) as http_client:
        client = openai.AsyncOpenAI(base_url="http://u/v1", api_key="x", http_client=http_client)
        stream = await client.chat.completions.create(**create_kwargs(GROQ_ERROR))
        (result,), report = await aggregator.assemble_all(from_openai(stream), name="groq")
    assert (report.reason, report.error) == (EndReason.ERROR, result.error)
    assert result.reason is EndReason.ERROR
    assert not result.complete
    assert isinstance(result.error, UpstreamError)
    assert result.error.payload["code"] == "tool_use_failed"
    assert result.error.payload["failed_generation"].startswith('{"name": "get_something_by_name"')
    assert str(result.error).startswith(
        "groq, after item 94: upstream error: Tool call validation failed"
    )
    assert isinstance(result.error.__cause__, UpstreamError)  # from_openai's, placed here
    assert isinstance(result.error.__cause__.__cause__, openai.APIError)
    message = to_dict(result.completion)["choices"][0]["message"]
    assert message["reasoning"].startswith("We need to call")


@pytest.mark.parametrize(
    "name",
    [
        "openai/173417d55340.sse",
        "providers/openai_legacy_text_completion_instruct.jsonl",
        GROQ_ERROR,
    ],
)
async def test_openai_sync_stream(name: str) -> None:
    transport = httpx2.MockTransport(sdk_handler([], async_=False))
    with httpx2.Client(transport=transport) as http_client:
        client = openai.OpenAI(base_url="http://u/v1", api_key="x", http_client=http_client)
        kwargs = create_kwargs(name)
        if "prompt" in kwargs:
            stream: Any = client.completions.create(**kwargs)
        else:
            stream = client.chat.completions.create(**kwargs)
        source = from_openai(stream)
        assert isinstance(source, Iterator)
        found = await aggregator.assemble_all(source, name=name)
    assert stream.response.is_closed
    expected = expected_from_sdk(name, await raw_results(name, recording_bytes(name)))
    assert outcome(*found) == expected


async def test_openai_chunks_are_the_objects_the_server_sent() -> None:
    """Fields the SDK does not model (provider extras) come through; nulls stay nulls."""
    name = "providers/groq_gptoss_reasoning_channel_tool_call.sse"
    transport = httpx2.MockTransport(sdk_handler([]))
    async with httpx2.AsyncClient(transport=transport) as http_client:
        client = openai.AsyncOpenAI(base_url="http://u/v1", api_key="x", http_client=http_client)
        stream = await client.chat.completions.create(**create_kwargs(name))
        chunks = [chunk async for chunk in from_openai(stream)]
    sent = [
        json.loads(line.removeprefix(b"data: "))
        for line in recording_bytes(name).splitlines()
        if line.startswith(b"data: {")
    ]
    assert chunks == sent


def finishes(name: str) -> bool:
    """Whether every choice of the recording's one completion has a ``finish_reason``: what
    makes a stream from the SDK (which eats ``[DONE]``) complete."""
    assembler = aggregator.Assembler(name)
    (result,) = assembler.feed(recording_bytes(name)) + assembler.close()
    return result.finished and result.error is None


#: The chat recordings the SDK streams whole: no error payload, every choice finished.
SDK_CHAT = [name for name in NAMES if not is_text_completion(name) and finishes(name)]


@pytest.mark.parametrize("name", SDK_CHAT)
async def test_openai_stream_passed_as_it_is_assembles_as_through_from_openai(name: str) -> None:
    """A source may be the SDK's stream itself (items with ``to_dict()``): ``assemble`` gives
    the completion ``from_openai`` gives, and closes the stream."""
    requests: list[dict[str, Any]] = []
    transport = httpx2.MockTransport(sdk_handler(requests))
    async with httpx2.AsyncClient(transport=transport) as http_client:
        client = openai.AsyncOpenAI(
            base_url="http://upstream/v1", api_key="x", http_client=http_client, max_retries=0
        )
        stream = await client.chat.completions.create(**create_kwargs(name))
        direct = await aggregator.assemble(stream, ChatCompletion, name=name)
        assert stream.response.is_closed
        adapted_stream = await client.chat.completions.create(**create_kwargs(name))
        adapted = await aggregator.assemble(from_openai(adapted_stream), ChatCompletion, name=name)
        assert adapted_stream.response.is_closed
    kwargs = create_kwargs(name)
    assert requests == [{"path": "/v1/chat/completions", **kwargs}] * 2
    assert isinstance(direct, ChatCompletion)
    assert to_dict(direct) == to_dict(adapted)
    (raw,), _ = await raw_results(name, recording_bytes(name))
    assert to_dict(direct) == to_dict(raw.completion)  # and as the bytes the server sent


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        DATA / "openai" / "2018feb66ae1.sse",
        DATA / "providers" / "openai_legacy_text_completion_instruct.jsonl",
    ],
    ids=lambda p: p.name,
)
async def test_from_file(path: Path) -> None:
    data = await anyio.Path(path).read_bytes()
    read = [piece async for piece in from_file(path, read_size=100)]
    assert b"".join(read) == data
    assert all(len(piece) == 100 for piece in read[:-1])
    found = await aggregator.assemble_all(from_file(path), name=path.name)
    assert outcome(*found) == outcome(*await raw_results(path.name, data))


def test_from_file_that_does_not_exist_raises_at_once() -> None:
    with pytest.raises(FileNotFoundError):
        from_file(DATA / "nope.sse")
