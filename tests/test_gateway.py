"""End to end, on loopback, with real parts: the official OpenAI client, the example gateway
(``examples/gateway.py``) under uvicorn (asyncio) and hypercorn (trio), and an upstream serving
the recordings of ``tests/data`` (``tests/servers.py``) under uvicorn.

Theory of operation: the upstream and the gateways run in threads, each in its own event loop,
for the whole module; the tests run as clients on asyncio and on trio. Each request carries a
unique ``x-request-id``, which the gateway uses as the stream's name, so its line in the
gateway's log (one JSON line per completion, written once the stream is over) is found by it,
polled for at most ``LOG_WAIT`` seconds. For every recording, three readings must agree: what the
client reassembles from the SDK's chunks (``assemble_all(from_openai(stream))``), what the gateway
logged from the bytes it passed on, and an independent oracle (the SDK's own accumulator for
OpenAI's recordings, ``tests/data/providers/expected/`` for the providers').

Where the client's reading differs, it is the SDK's doing, asserted as such: it consumes
``data: [DONE]`` (so the client's streams end ``exhausted``), and it raises on a chunk that carries
an error (so the chunk's usage never reaches the client; the gateway, reading the bytes, keeps it).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import httpx2
import openai
import pytest

import aggregator
from aggregator import EndReason, Result, UpstreamError, to_dict
from aggregator.sources import from_openai

from .conftest import DATA
from .servers import Upstream, recording_bytes, serving, upstream_app
from .test_differential import sdk_final
from .test_providers import _expected
from .test_sources import (
    GROQ_ERROR,
    MINIMAX_ERROR,
    NAMES,
    THIRD_PARTY_GENERATORS,
    is_text_completion,
)

pytestmark = [pytest.mark.anyio, *THIRD_PARTY_GENERATORS]

SERVERS = ["uvicorn", "hypercorn"]
#: The most seconds a test waits for the gateway's log line.
LOG_WAIT = 10.0
#: A recording with usage, small enough to stream slowly.
SLOW = "openai/a491adda08c3.sse"
SLOW_FINISH = "openai/e2aad469b71d.sse"
N3 = "openai/a491adda08c3.sse"
PARALLEL_TOOLS = "openai/f82268f2fefd.sse"
_ids = itertools.count(1)


def _load_create_app() -> Callable[..., Any]:
    """``create_app`` from examples/gateway.py (examples/ is not a package)."""
    path = Path(__file__).parent.parent / "examples" / "gateway.py"
    spec = importlib.util.spec_from_file_location("examples_gateway", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    create_app: Callable[..., Any] = module.create_app
    return create_app


create_app = _load_create_app()


@dataclass
class Gateway:
    url: str
    log: Path
    server: str

    def records(self) -> list[dict[str, Any]]:
        """The log's complete lines."""
        data = self.log.read_bytes()
        return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]

    async def lines_for(self, request: str, count: int = 1) -> list[dict[str, Any]]:
        """The log lines of ``request``, once there are ``count`` of them (bounded wait)."""
        with anyio.move_on_after(LOG_WAIT):
            while True:
                found = [r for r in self.records() if r["request"] == request]
                if len(found) >= count:
                    return found
                await anyio.sleep(0.01)
        raise AssertionError(f"no log line for {request} within {LOG_WAIT} s")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    record = Upstream()
    with serving(upstream_app(record), "uvicorn") as url:
        yield record, url


def _gateway(
    server: str, upstream_url: str, log_path: Path, on_disconnect: str
) -> Iterator[Gateway]:
    log: IO[bytes]
    with log_path.open("ab") as log:
        app = create_app(upstream_url, log, on_disconnect=on_disconnect)
        with serving(app, server) as url:
            yield Gateway(url, log_path, server)


@pytest.fixture(scope="module", params=SERVERS)
def gateway(
    request: pytest.FixtureRequest,
    upstream: tuple[Upstream, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The gateway as it ships (``on_disconnect="stop"``)."""
    log = tmp_path_factory.mktemp("gateway") / "completions.jsonl"
    yield from _gateway(request.param, upstream[1], log, "stop")


@pytest.fixture(scope="module", params=SERVERS)
def finishing_gateway(
    request: pytest.FixtureRequest,
    upstream: tuple[Upstream, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A gateway that reads an upstream to its end when the client leaves."""
    log = tmp_path_factory.mktemp("gateway-finish") / "completions.jsonl"
    yield from _gateway(request.param, upstream[1], log, "finish")


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (another thread makes it so), ``LOG_WAIT`` at most."""
    with anyio.fail_after(LOG_WAIT):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


def unique(name: str) -> str:
    return f"test-{next(_ids)}-{name}"


@asynccontextmanager
async def sdk(gateway: Gateway) -> AsyncIterator[Any]:
    """The official async client, pointed at the gateway. Its HTTP client is the one it makes
    by default but for TLS verification, whose context takes a tenth of a second to build and
    plain HTTP on loopback never uses."""
    async with httpx2.AsyncClient(verify=False) as http_client:
        client = openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key="x", max_retries=0, http_client=http_client
        )
        async with client:
            yield client


async def create(client: Any, name: str, request: str) -> Any:
    """Start a streamed completion of recording ``name`` through the SDK."""
    headers = {"x-request-id": request}
    if is_text_completion(name):
        return await client.completions.create(
            model=name, prompt="x", stream=True, extra_headers=headers
        )
    return await client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_headers=headers,
    )


async def recorded(source: AsyncIterator[Any], into: list[Any]) -> AsyncIterator[Any]:
    """``source``'s items, each kept in ``into`` on the way."""
    async for item in source:
        into.append(item)
        yield item


async def from_the_bytes(name: str, request: str) -> Result:
    """What the gateway's tee makes of the bytes the upstream sends for ``name``."""
    (result,), _ = await aggregator.assemble_all([recording_bytes(name)], name=request)
    return result


def assert_logged(record: dict[str, Any], result: Result, *, disconnected: bool = False) -> None:
    """The log line says what ``result`` says."""
    assert record["streamed"] is True
    assert record["client_disconnected"] is disconnected
    assert record["complete"] is result.complete
    assert record["partial"] is not result.complete
    assert record["reason"] == result.reason.value
    assert record["error"] == (None if result.error is None else str(result.error))
    assert record["chunks"] == result.chunks
    assert record["usage"] == (None if result.usage is None else to_dict(result.usage))
    assert record["completion"] == to_dict(result.completion)


def assert_client_agrees(ours: Result, raw: Result, record: dict[str, Any], name: str) -> None:
    """The client's reassembly is the gateway's, but for what the SDK does."""
    logged = record["completion"]
    if name == MINIMAX_ERROR:  # the SDK raised on the chunk with the error (and the usage)
        assert "usage" in logged
        logged = {key: value for key, value in logged.items() if key != "usage"}
    assert to_dict(ours.completion) == logged
    if raw.reason is EndReason.DONE:  # the SDK ate `[DONE]`
        assert ours.reason is EndReason.EXHAUSTED
        assert ours.complete is raw.finished
    else:
        assert ours.reason is raw.reason
    if isinstance(raw.error, UpstreamError):
        assert isinstance(ours.error, UpstreamError)
        assert ours.error.payload == raw.error.payload
    else:
        assert ours.error is None


@pytest.mark.parametrize("name", NAMES)
async def test_every_recording_through_the_gateway(gateway: Gateway, name: str) -> None:
    request = unique(name)
    chunks: list[dict[str, Any]] = []
    async with sdk(gateway) as client:
        stream = await create(client, name, request)
        (ours,), report = await aggregator.assemble_all(
            recorded(from_openai(stream), chunks), name=request
        )
    (record,) = await gateway.lines_for(request)
    raw = await from_the_bytes(name, request)

    endpoint = "/v1/completions" if is_text_completion(name) else "/v1/chat/completions"
    assert (record["request"], record["endpoint"]) == (request, endpoint)
    assert_logged(record, raw)
    assert_client_agrees(ours, raw, record, name)
    if name in (GROQ_ERROR, MINIMAX_ERROR):
        assert record["error"] is not None
        assert (record["complete"], record["reason"]) == (False, "error")
        # the SDK raised: the error stopped the client's source too
        assert (report.reason, report.error) == (EndReason.ERROR, ours.error)
    else:
        assert (record["complete"], record["error"]) == (True, None)
        assert (report.reason, report.error, report.ok) == (EndReason.EXHAUSTED, None, True)

    # and an independent oracle
    if name.startswith("openai/"):
        assert record["completion"] == sdk_final(chunks)
    else:
        (expected,) = _expected(DATA / name)
        assert record["completion"] == expected["completion"]
        assert record["complete"] is expected["complete"]
        # JSON Lines recordings are served as SSE, which ends with `[DONE]`
        reason = "done" if expected["reason"] == "exhausted" else expected["reason"]
        assert record["reason"] == reason
        if expected["error_message"] is not None:
            assert expected["error_message"] in record["error"]


async def test_n_choices_and_tool_calls_come_through(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        requests = {name: unique(name) for name in (N3, PARALLEL_TOOLS)}
        for name, request in requests.items():
            stream = await create(client, name, request)
            await aggregator.assemble_all(from_openai(stream))
    (n3,) = await gateway.lines_for(requests[N3])
    assert [c["index"] for c in n3["completion"]["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] for c in n3["completion"]["choices"])
    assert n3["usage"]["total_tokens"] > 0
    (tools,) = await gateway.lines_for(requests[PARALLEL_TOOLS])
    calls = tools["completion"]["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["GetWeatherArgs", "get_stock_price"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Edinburgh", "country": "GB", "units": "c"},
        {"ticker": "AAPL", "exchange": "NASDAQ"},
    ]
    assert all("index" not in c for c in calls)


@pytest.mark.parametrize(
    "name", ["openai/173417d55340.sse", N3, GROQ_ERROR, "providers/zai_glm47_reasoning_content.sse"]
)
async def test_raw_client_receives_the_upstream_bytes_unchanged(
    gateway: Gateway, name: str
) -> None:
    request = unique(name)
    body = {"model": name, "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b"".join([piece async for piece in response.aiter_raw()])
    assert received == recording_bytes(name)
    (record,) = await gateway.lines_for(request)
    assert_logged(record, await from_the_bytes(name, request))


async def read_a_little_then_leave(gateway: Gateway, name: str, request: str) -> bytes:
    """Start a slowly paced stream, read three events, and close the connection."""
    body = {
        "model": name,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "x_pace": 0.003,
    }
    received = b""
    async with (
        httpx.AsyncClient(base_url=gateway.url) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request}
        ) as response,
    ):
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            received += piece
            if received.count(b"\n\n") >= 3:
                break
    return received


def first_chunks(name: str, count: int) -> dict[str, Any]:
    """The completion the first ``count`` chunks of recording ``name`` make."""
    events = [e for e in recording_bytes(name).split(b"\n\n") if e.startswith(b"data: {")]
    assembler = aggregator.Assembler("first")
    data = b"".join(event + b"\n\n" for event in events[:count])
    (result,) = assembler.feed(data) + assembler.close()
    return to_dict(result.completion)


async def test_client_leaving_with_stop_logs_the_partial(
    gateway: Gateway, upstream: tuple[Upstream, str]
) -> None:
    record_of_upstream = upstream[0]
    request = unique(SLOW)
    finished = record_of_upstream.finished.count(SLOW)
    abandoned = record_of_upstream.abandoned.count(SLOW)
    received = await read_a_little_then_leave(gateway, SLOW, request)

    (record,) = await gateway.lines_for(request)
    whole = await from_the_bytes(SLOW, request)
    assert record["client_disconnected"] is True
    assert record["partial"] is True
    assert record["complete"] is False
    assert record["reason"] == "cancelled"
    assert record["error"] is None
    assert record["usage"] is None
    assert 3 <= record["chunks"] < whole.chunks
    assert record["completion"] == first_chunks(SLOW, record["chunks"])
    assert recording_bytes(SLOW).startswith(received)
    # the gateway let the upstream go: its response was given up, not sent to the end
    await eventually(lambda: record_of_upstream.abandoned.count(SLOW) > abandoned)
    assert record_of_upstream.finished.count(SLOW) == finished


async def test_client_leaving_with_finish_logs_the_whole_completion(
    finishing_gateway: Gateway, upstream: tuple[Upstream, str]
) -> None:
    record_of_upstream = upstream[0]
    request = unique(SLOW_FINISH)
    finished = record_of_upstream.finished.count(SLOW_FINISH)
    await read_a_little_then_leave(finishing_gateway, SLOW_FINISH, request)

    (record,) = await finishing_gateway.lines_for(request)
    whole = await from_the_bytes(SLOW_FINISH, request)
    assert record["usage"] is not None
    assert_logged(record, whole, disconnected=True)
    assert (record["complete"], record["reason"]) == (True, "done")
    assert record_of_upstream.finished.count(SLOW_FINISH) == finished + 1
    assert SLOW_FINISH not in record_of_upstream.abandoned


async def test_unknown_model_is_the_upstream_404(gateway: Gateway) -> None:
    request = unique("missing")
    async with sdk(gateway) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(
                model="openai/no-such-recording.sse",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_headers={"x-request-id": request},
            )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    (record,) = await gateway.lines_for(request)
    assert record["complete"] is False
    assert record["error"].startswith("HTTP 404: ")
    assert "does not exist" in record["error"]
    assert "completion" not in record


async def test_many_concurrent_clients(gateway: Gateway) -> None:
    small = [name for name in NAMES if len(recording_bytes(name)) < 40_000]
    names = [small[i % len(small)] for i in range(20)]
    requests = [unique(name) for name in names]
    ours: dict[str, Result] = {}

    async def one(client: Any, name: str, request: str) -> None:
        stream = await create(client, name, request)
        (ours[request],), _ = await aggregator.assemble_all(from_openai(stream), name=request)

    async with sdk(gateway) as client, anyio.create_task_group() as tg:
        for name, request in zip(names, requests, strict=True):
            tg.start_soon(one, client, name, request)

    assert len(ours) == 20
    for name, request in zip(names, requests, strict=True):
        (record,) = await gateway.lines_for(request)
        raw = await from_the_bytes(name, request)
        assert_logged(record, raw)
        assert_client_agrees(ours[request], raw, record, name)
