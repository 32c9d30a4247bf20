"""``aggregator gateway --redis``: the gateway publishes each streamed body to Redis Streams, and
``aggregator worker`` assembles what it published; every completion is in the results once and
equals the one the gateway logged.

Theory of operation: real parts on loopback, as in tests/test_gateway.py and tests/test_redis.py
(whose fixtures and helpers are reused): a ``redis-server`` on a free port, the upstream of
``tests/gateway_upstream.py`` in its own process, the gateway as a real process (uvicorn for the
asyncio run, hypercorn for the trio one) and the worker and ``aggregator results`` as real
processes on the test's backend. Recordings of every protocol (chat, text completions,
responses, anthropic, and a chat stream the upstream cuts off) are streamed through the gateway
at the same time with httpx; then a worker runs until every log line's result is in the results
stream, and is stopped with SIGTERM. Each stream key the gateway logged is in the results as
many times as it has log lines (a responses stream may hold several), and what ``aggregator
results`` prints is, line for line, the gateway's logged completions. With Redis down, the
client's stream and the log line are as without Redis, and the line says why nothing was
published. ``create_app(publisher=...)`` is checked in process, with the Worker API.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from aggregator import to_dict
from aggregator.gateway import create_app
from aggregator.redis import Keys, Publisher, Worker, client

from .gateway_upstream import upstream_bytes
from .test_gateway import (
    MESSAGES,
    RESPONSES,
    SERVER_OF,
    SLOW_FINISH,
    Gateway,
    free_port,
    from_the_bytes,
    gateway_process,
    read_a_little_then_leave,
    unique,
    upstream,
)
from .test_redis import _command, _drain, redis, redis_url
from .test_sources import THIRD_PARTY_GENERATORS

__all__ = ["redis", "redis_url", "upstream"]  # (fixtures, used by name)

pytestmark = [pytest.mark.anyio, *THIRD_PARTY_GENERATORS]

#: What is streamed through the gateway: every protocol, and a stream the upstream cuts off.
RECORDINGS = [
    "openai/a491adda08c3.sse",
    "openai/f82268f2fefd.sse",
    "openai/e2aad469b71d.sse",
    "providers/groq_gptoss_event_error_tool_use_failed.sse",
    *RESPONSES[:3],
    *MESSAGES[:3],
    "cut/openai/f82268f2fefd.sse",
]
#: The most seconds the worker may take to write every result.
RESULTS_WAIT = 20.0


def body(name: str) -> tuple[str, dict[str, Any]]:
    """The endpoint and the streamed request of recording ``name``."""
    if "responses/" in name:
        return "/v1/responses", {"model": name, "input": "x", "stream": True}
    messages = [{"role": "user", "content": "x"}]
    if "anthropic/" in name:
        return "/v1/messages", {
            "model": name,
            "max_tokens": 10,
            "messages": messages,
            "stream": True,
        }
    return "/v1/chat/completions", {"model": name, "messages": messages, "stream": True}


@pytest.fixture
def redis_gateway(
    anyio_backend: str, upstream: Any, redis_url: str, tmp_path: Path
) -> Iterator[tuple[Gateway, Keys]]:
    """The gateway on the test's server, publishing under a key prefix of the test's own."""
    keys = Keys(f"gw{uuid.uuid4().hex[:8]}", shards=3)
    flags = ["--redis", redis_url, "--shards", "3", "--redis-prefix", keys.prefix]
    with gateway_process(SERVER_OF[anyio_backend], upstream.url, tmp_path, *flags) as gateway:
        yield gateway, keys


async def stream(http: httpx.AsyncClient, name: str, request: str) -> bytes:
    """What the gateway sends the client for recording ``name``."""
    path, payload = body(name)
    headers = {"x-request-id": request, "authorization": "Bearer sk-test-0123456789abcdef"}
    async with http.stream("POST", path, json=payload, headers=headers) as answer:
        assert answer.status_code == 200
        return b"".join([piece async for piece in answer.aiter_bytes()])


async def worker_results(
    redis_url: str, keys: Keys, shards: list[str], count: int
) -> list[dict[bytes, bytes]]:
    """Run ``aggregator worker`` until the results stream holds ``count`` entries (and half a
    second more: a second write of anything would show by then), stop it with SIGTERM (it
    exits 0), and return the entries."""
    worker = await anyio.open_process(
        [*_command(redis_url, "worker", *shards), "--lease-ms", "1000", "--idle-timeout", "2"],
        stdout=None,
        stderr=None,
    )
    try:
        async with client(redis_url) as redis:
            with anyio.fail_after(RESULTS_WAIT):
                while await redis.xlen(keys.results) < count:  # noqa: ASYNC110 - polling Redis is the wait
                    await anyio.sleep(0.1)
            await anyio.sleep(0.5)
            entries = [e.field_values for e in await redis.xrange(keys.results)]
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await worker.wait() == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await worker.aclose()
    return entries


async def test_the_workers_results_are_the_gateways_log(
    anyio_backend: str, redis_gateway: tuple[Gateway, Keys], redis_url: str
) -> None:
    gateway, keys = redis_gateway
    requests = {unique(name): name for name in RECORDINGS}
    sent: dict[str, bytes] = {}

    async def one(http: httpx.AsyncClient, request: str) -> None:
        sent[request] = await stream(http, requests[request], request)

    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
        anyio.create_task_group() as tg,
    ):
        for request in requests:
            tg.start_soon(one, http, request)
    records: list[dict[str, Any]] = []
    for request in requests:
        records += await gateway.lines_for(request)
    assert all(r["streamed"] and r["publish_error"] is None for r in records)
    by_key = collections.Counter(r["stream_key"] for r in records)
    assert len(by_key) == len(requests)  # one stream key per request, unique
    assert {r["stream_key"].rsplit(":", 1)[-1] for r in records} == set(requests)
    cut = [r for r in records if requests[r["request"]].startswith("cut/")]
    assert cut
    assert not cut[0]["complete"]  # the cut stream is logged partial

    shards = ["--shards", "3", "--prefix", keys.prefix, "--backend", anyio_backend]
    entries = await worker_results(redis_url, keys, shards, len(records))
    written = collections.Counter(e[b"key"].decode() for e in entries)
    assert written == by_key  # every completion once, under the key the gateway logged
    done = await anyio.run_process(_command(redis_url, "results", *shards))
    printed = done.stdout.splitlines()
    assert len(printed) == len(records)
    assert sorted(printed) == sorted(orjson.dumps(r["completion"]) for r in records)
    for entry in entries:  # each result under its own stream's key
        key = entry[b"key"].decode()
        logged = [orjson.dumps(r["completion"]) for r in records if r["stream_key"] == key]
        assert entry[b"result"] in logged
    reasons = {e[b"key"].decode(): e[b"reason"] for e in entries}
    assert reasons[cut[0]["stream_key"]] != b"done"


async def test_publish_only_the_workers_assemble_what_the_gateway_passed_on(
    anyio_backend: str, upstream: Any, redis_url: str, tmp_path: Path
) -> None:
    """``--publish-only``: the gateway assembles nothing (its log lines have no completion) and
    the worker's results are what assembling the upstream's bytes gives, for a client that
    read to the end and for one that left early (``finish``: the gateway read the rest and
    published it)."""
    keys = Keys(f"po{uuid.uuid4().hex[:8]}", shards=2)
    flags = ["--redis", redis_url, "--shards", "2", "--redis-prefix", keys.prefix]
    names = [RECORDINGS[0], RESPONSES[0], MESSAGES[0]]
    requests = {unique(name): name for name in names}
    left = unique(SLOW_FINISH)
    server = SERVER_OF[anyio_backend]
    with gateway_process(server, upstream.url, tmp_path, *flags, "--publish-only") as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            for request, name in requests.items():
                assert await stream(http, name, request) == upstream_bytes(name)
        await read_a_little_then_leave(gateway.url, SLOW_FINISH, left)
        requests[left] = SLOW_FINISH
        records = {r: (await gateway.lines_for(r))[0] for r in requests}
    for request, record in records.items():
        assert "completion" not in record
        assert (record["published"], record["error"], record["publish_error"]) == (True, None, None)
        assert record["client_disconnected"] is (request == left)
    shards = ["--shards", "2", "--prefix", keys.prefix, "--backend", anyio_backend]
    expected = {
        records[request]["stream_key"]: sorted(
            orjson.dumps(to_dict(r.completion)) for r in await from_the_bytes(name, request)
        )
        for request, name in requests.items()
    }
    entries = await worker_results(redis_url, keys, shards, sum(map(len, expected.values())))
    found: dict[str, list[bytes]] = collections.defaultdict(list)
    for entry in entries:
        found[entry[b"key"].decode()].append(entry[b"result"])
    assert {key: sorted(results) for key, results in found.items()} == expected
    assert all(e[b"reason"] == b"done" for e in entries if e[b"key"].decode().endswith(left))


async def test_redis_down_the_clients_stream_goes_on(
    anyio_backend: str, upstream: Any, tmp_path: Path
) -> None:
    """With Redis unreachable the client still gets its whole stream, and the log line its
    completion, with the publishing error (publishing stops for that stream)."""
    flags = ["--redis", f"redis://127.0.0.1:{free_port()}"]  # nothing listens there
    name, request = RECORDINGS[0], unique(RECORDINGS[0])
    with gateway_process(SERVER_OF[anyio_backend], upstream.url, tmp_path, *flags) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            got = await stream(http, name, request)
        (record,) = await gateway.lines_for(request)
    assert got == upstream_bytes(name)
    assert (record["complete"], record["reason"], record["error"]) == (True, "done", None)
    assert record["publish_error"].startswith("ConnectionError")


async def test_create_app_with_a_publisher_of_ones_own(
    upstream: Any, redis: Any, tmp_path: Path
) -> None:
    """``create_app(publisher=...)`` in process (the app's lifespan run here, httpx's ASGI
    transport as the client): what the Worker API assembles of what it published is what it
    logged, and the publisher's client is still the caller's (open) after the app's shutdown."""
    keys = Keys(shards=2)
    path = tmp_path / "log.jsonl"
    names = [RECORDINGS[0], MESSAGES[0], RESPONSES[0]]
    with path.open("ab") as log:
        app = create_app(upstream.url, log, publisher=Publisher(redis, keys), key_prefix="own:")
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as http,
        ):
            for n, name in enumerate(names):
                await stream(http, name, f"r{n}")
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted({r["stream_key"] for r in records}) == [f"own:{n + 1}:r{n}" for n in range(3)]
    await _drain(Worker(redis, keys, name="w"))
    entries = [e.field_values for e in await redis.xrange(keys.results)]
    assert sorted((e[b"key"].decode(), e[b"result"]) for e in entries) == sorted(
        (r["stream_key"], orjson.dumps(r["completion"])) for r in records
    )


def test_publish_only_needs_somewhere_to_publish(tmp_path: Path) -> None:
    with (tmp_path / "log").open("ab") as log, pytest.raises(ValueError, match="redis or publ"):
        create_app("http://127.0.0.1:9", log, assemble=False)


def test_redis_flags_without_redis_say_so() -> None:
    command = [sys.executable, "-m", "aggregator", "gateway", "--upstream", "http://127.0.0.1:9"]
    done = subprocess.run([*command, "--shards", "8"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == "aggregator gateway: --shards: only with --redis\n"
    done = subprocess.run([*command, "--publish-only"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (
        2,
        "aggregator gateway: --publish-only: only with --redis\n",
    )
