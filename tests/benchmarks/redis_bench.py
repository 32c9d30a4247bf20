# ruff: noqa: ASYNC110  (polling Redis is the wait)
"""The Redis scale-out benchmark: ``python -m tests.benchmarks.redis_bench [--quick]``.

Theory of operation: it starts its own ``redis-server`` on a free loopback port (no persistence)
and measures, side by side in one run (the ratios survive a shared machine's noise better than
the absolute figures):

1. one worker's throughput (chunks per second, in process: drained step by step) against a floor
   that only ``XREADGROUP``s the same entries (1,000 at a time), ``orjson.loads`` each chunk's
   payload, and ``XACK``s them; contenders alternate, each figure is the median of the repeats;
2. two ``aggregator worker`` processes against one, on the same entries, published beforehand
   (time from the moment the workers may take the shards to the last result);
3. publish-to-result latency (p50, p99) of a 100-chunk stream with one worker process: from the
   ``XADD`` of the end entry to the result read by a client blocked on the results stream.

The streams are OpenAI chat streams as a gateway sees them: one entry per SSE event (a content
token per chunk, a finish chunk, ``[DONE]``). ``--quick`` is a smoke run at tiny sizes.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import anyio
import orjson

from aggregator.redis import GROUP, Keys, Publisher, Worker, client

SHARDS = 4


def _events(n: int) -> list[bytes]:
    """The SSE events of one chat stream of ``n`` content chunks."""
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]})
        + b"\n\n"
        for i in range(n)
    ]
    finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    out.append(b"data: " + orjson.dumps({**head, "choices": [finish]}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def _server() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not on PATH (apt-get install -y redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)


async def _publish(redis: Any, keys: Keys, streams: int, chunks: int) -> int:
    publisher = Publisher(redis, keys)
    events = _events(chunks)
    batch: list[tuple[str, int, bytes]] = []
    ends: list[str] = []
    for s in range(streams):
        batch += [(f"s{s}", seq, data) for seq, data in enumerate(events)]
        ends.append(f"s{s}")
        if len(batch) >= 5000:
            await publisher.publish_many(batch, ends)
            batch, ends = [], []
    await publisher.publish_many(batch, ends)
    return streams * len(events)


async def _reset(redis: Any, keys: Keys, group: str) -> None:
    """Make every entry unread again for ``group``; forget the results and idempotency keys."""
    for shard in range(keys.shards):
        await redis.xgroup_setid(keys.chunks(shard), group, "0")
    done = [k async for k in redis.scan_iter(match=f"{keys.prefix}:done:*")]
    await redis.delete([keys.results, keys.workers, *done])
    await redis.delete([keys.lease(s) for s in range(keys.shards)])


async def _worker_run(redis: Any, keys: Keys) -> float:
    await _reset(redis, keys, GROUP)
    worker = Worker(redis, keys, name="bench")
    start = time.perf_counter()
    while await worker.step() or any(worker._open.values()):
        pass
    elapsed = time.perf_counter() - start
    await redis.delete([keys.lease(s) for s in range(keys.shards)])
    return elapsed


async def _floor_run(redis: Any, keys: Keys) -> float:
    """Read every entry through a group, parse its payload, acknowledge: nothing else."""
    await _reset(redis, keys, "floor")
    start = time.perf_counter()
    for shard in range(keys.shards):
        stream = keys.chunks(shard)
        while True:
            got = await redis.xreadgroup("floor", "f", {stream: ">"}, count=1000)
            if not got:
                break
            ids = []
            for entries in got.values():
                for entry in entries:
                    data = entry.field_values.get(b"data")
                    if data is not None and data.startswith(b"data: {"):
                        orjson.loads(data[6:])
                    ids.append(entry.identifier)
            await redis.xack(stream, "floor", ids)
    return time.perf_counter() - start


_WORKER = (sys.executable, "-m", "aggregator", "worker", "--lease-ms", "1000")


def _workers(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([*_WORKER, "--redis", url, "--name", f"b{i}", "--shards", str(SHARDS)])
        for i in range(n)
    ]


async def _fleet_run(url: str, redis: Any, keys: Keys, n: int, streams: int, chunks: int) -> float:
    """Every entry published first, the shards' leases held by a gate; the ``n`` worker
    processes start and join the live set; the clock starts when the gate opens (the leases
    are deleted) and stops at the last result."""
    await redis.flushall()
    for shard in range(keys.shards):
        await redis.set(keys.lease(shard), "gate")
    await _publish(redis, keys, streams, chunks)
    procs = _workers(url, n)
    try:
        while await redis.zcard(keys.workers) < n:
            await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        start = time.perf_counter()
        await redis.delete([keys.lease(s) for s in range(keys.shards)])
        while await redis.xlen(keys.results) < streams:
            await anyio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


async def _latency(url: str, redis: Any, keys: Keys, repeats: int) -> list[float]:
    await redis.flushall()
    for shard in range(keys.shards):
        await redis.xgroup_create(keys.chunks(shard), GROUP, "$", mkstream=True)
    procs = _workers(url, 1)
    publisher = Publisher(redis, keys)
    events = _events(98)  # 100 chunks with the finish chunk and [DONE]
    out: list[float] = []
    try:
        while len({await redis.get(keys.lease(s)) for s in range(keys.shards)} - {None}) < 1:
            await anyio.sleep(0.05)
        last = "$"
        for r in range(repeats):
            key = f"lat{r}"
            for seq, data in enumerate(events):
                await publisher.publish(key, seq, data)
            seen = await redis.xrevrange(keys.results, count=1)
            last = seen[0].identifier if seen else "0-0"
            start = time.perf_counter()
            await publisher.end(key)
            got = await redis.xread({keys.results: last}, count=1, block=5000)
            assert got, "no result within 5 s"
            out.append(time.perf_counter() - start)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    return out


async def main(quick: bool) -> None:
    streams, chunks, repeats = (20, 20, 1) if quick else (200, 100, 5)
    proc, url = _server()
    keys = Keys(shards=SHARDS)
    try:
        async with client(url) as redis:
            total = await _publish(redis, keys, streams, chunks)
            for shard in range(SHARDS):
                for group in (GROUP, "floor"):
                    await redis.xgroup_create(keys.chunks(shard), group, "0")
            ours: list[float] = []
            floor: list[float] = []
            for _ in range(repeats):  # alternating
                ours.append(await _worker_run(redis, keys))
                floor.append(await _floor_run(redis, keys))
            mine, base = total / statistics.median(ours), total / statistics.median(floor)
            print(f"entries: {total:,} ({streams} streams of {chunks + 2} chunks), {SHARDS} shards")
            print(f"1. one worker (in process): {mine:,.0f} chunks/s")
            print(f"   floor (XREADGROUP + orjson + XACK): {base:,.0f} chunks/s")
            print(f"   ratio: {mine / base:.0%} of the floor (target >= 50%)")
            fleet: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(max(1, repeats - 2)):  # alternating
                for n in (1, 2):
                    fleet[n].append(await _fleet_run(url, redis, keys, n, 2 * streams, chunks))
            one, two = statistics.median(fleet[1]), statistics.median(fleet[2])
            n = 2 * streams * (chunks + 2)
            print(f"2. worker processes, {n:,} entries (published beforehand) assembled:")
            print(f"   one: {n / one:,.0f} chunks/s, two: {n / two:,.0f} chunks/s")
            print(f"   two against one: {one / two:.2f}x (medians of {len(fleet[1])})")
            lat = sorted(await _latency(url, redis, keys, 10 if quick else 200))
            p50 = lat[len(lat) // 2] * 1000
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            print(f"3. publish-to-result latency, 100-chunk stream, {len(lat)} streams:")
            print(f"   p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    finally:
        proc.terminate()
        proc.wait()
    if quick:
        print("smoke run: tiny sizes, nothing judged")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    anyio.run(main, parser.parse_args().quick)
