# ruff: noqa: ASYNC110, ASYNC220  (the worker processes are the point; polling Redis is the wait)
"""Scale-out on Redis Streams (aggregator.redis) against a real redis-server on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from aggregator import assemble_all
from aggregator._core._converter import to_dict
from aggregator.redis import Keys, Publisher, Worker, read_results

DATA = Path(__file__).parent / "data"
#: Every recording, of every protocol.
ALL = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix in {".sse", ".jsonl"})
#: The chat and text-completion ones: the worker-process test keeps to them for time (each
#: worker step reads at most 1,000 entries of a shard, and all of tests/data is ~30,000).
RECORDINGS = [p for p in ALL if p.parent.name in {"openai", "providers"}]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is not on PATH: apt-get install -y redis-server (.ci/run does)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


async def _expected(paths: list[Path]) -> list[bytes]:
    want: list[bytes] = []
    for path in paths:
        found, _ = await assemble_all([path.read_bytes()], name=str(path))
        want += [orjson.dumps(to_dict(r.completion)) for r in found]
    return want


@pytest.mark.anyio
async def test_every_recording_assembled_once(redis_url: str) -> None:
    import coredis

    client = coredis.Redis.from_url(redis_url, decode_responses=False)
    async with client:
        await client.flushall()
        keys = Keys(shards=3)
        publisher = Publisher(client, keys)
        for path in ALL:
            data = path.read_bytes()
            await publisher.publish_all(
                str(path), [data[i : i + 97] for i in range(0, len(data), 97)]
            )
        first = Worker(client, keys, name="w1")
        for _ in range(40):  # (a step reads at most 1,000 entries of each shard)
            await first.step()
        # a second worker re-assembling the same shards after the leases lapse writes nothing twice
        await client.delete([keys.lease(s) for s in range(3)])
        second = Worker(client, keys, name="w2")
        for _ in range(5):
            await second.step()
        got = [line async for line in read_results(client, keys)]
    assert sorted(got) == sorted(await _expected(ALL))


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [2, 3])
async def test_worker_processes_killed_and_stopped(
    redis_url: str, workers: int, anyio_backend: str
) -> None:
    import signal
    import sys

    import anyio
    import coredis

    client = coredis.Redis.from_url(redis_url, decode_responses=False)
    async with client:
        await client.flushall()
        keys = Keys(shards=4)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "aggregator.redis", redis_url, "4", f"w{i}", anyio_backend]
            )
            for i in range(workers)
        ]
        with anyio.fail_after(20):  # every worker started and installed its signal handler
            while await client.exists([keys.lease(s) for s in range(4)]) < 4:
                await anyio.sleep(0.1)
        await anyio.sleep(2)
        publisher = Publisher(client, keys)
        for n, path in enumerate(RECORDINGS):
            data = path.read_bytes()
            await publisher.publish_all(
                str(path), [data[i : i + 97] for i in range(0, len(data), 97)]
            )
            if n == len(RECORDINGS) // 3:
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait()
            if n == len(RECORDINGS) // 2:
                procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=20) == 0
        procs[1] = subprocess.Popen(
            [sys.executable, "-m", "aggregator.redis", redis_url, "4", "w-late", anyio_backend]
        )
        want = await _expected(RECORDINGS)
        got: list[bytes] = []
        with anyio.fail_after(40):
            while len(got) < len(want):
                await anyio.sleep(0.3)
                got = [line async for line in read_results(client, keys)]
        await anyio.sleep(1.5)
        got = [line async for line in read_results(client, keys)]
        for proc in procs[1:]:
            proc.terminate()
            proc.wait(timeout=20)
    assert sorted(got) == sorted(want)
