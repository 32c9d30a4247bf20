# ruff: noqa: ASYNC110, ASYNC220, ASYNC221  (the worker processes are the point; polling Redis is the wait)
"""Scale-out on Redis Streams (aggregator.redis) against a real redis-server on loopback."""

from __future__ import annotations

import collections
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from aggregator import Tee, assemble_all
from aggregator._core._converter import to_dict
from aggregator._redis_cli import pieces
from aggregator.redis import GROUP, Keys, Publisher, Worker, client, read_results

DATA = Path(__file__).parent / "data"
#: Every recording, of every protocol (chat, text completions, responses, anthropic).
ALL = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix in {".sse", ".jsonl"})
CHAT = [p for p in ALL if p.parent.name == "openai"]


def test_the_recordings_cover_every_protocol() -> None:
    assert {p.parent.name for p in ALL} == {"anthropic", "openai", "providers", "responses"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(port: int, *options: str) -> subprocess.Popen[bytes]:
    """A real redis-server on loopback ``port``, running once it answers."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not on PATH: apt-get install -y redis-server (.ci/run does)"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", *options], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    port = _free_port()
    proc = _redis_server(port, "--save", "", "--appendonly", "no")
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    async with client(redis_url) as c:
        await c.flushall()
        yield c


async def _expected(paths: list[Path]) -> list[bytes]:
    """What ``aggregator assemble`` prints for each recording (its JSON lines)."""
    want: list[bytes] = []
    for path in paths:
        found, _ = await assemble_all([path.read_bytes()], name=str(path))
        want += [orjson.dumps(to_dict(r.completion)) for r in found]
    return want


async def _entries(redis: Any, keys: Keys) -> list[dict[bytes, bytes]]:
    """The results stream's entries (key, reason, result)."""
    got = await redis.xrange(keys.results)
    return [dict(e.field_values) for e in got]


async def _drain(*workers: Worker, open_ok: bool = False) -> None:
    """Step the workers until none has more to read (or, unless ``open_ok``, holds a stream)."""
    for _ in range(10_000):
        busy = False
        for w in workers:
            busy = await w.step() or busy
        if not busy and (open_ok or not any(s for w in workers for s in w._open.values())):
            return
    raise AssertionError("the workers did not drain")


@pytest.mark.anyio
async def test_every_recording_assembled_once(redis: Any) -> None:
    """All of tests/data in 97-byte pieces, some published twice (a publisher's retries), by one
    worker; then a second worker re-reads the shards (the leases dropped) and writes nothing."""
    keys = Keys(shards=3)
    publisher = Publisher(redis, keys)
    for n, path in enumerate(ALL):
        data = path.read_bytes()
        chunks = [data[i : i + 97] for i in range(0, len(data), 97)]
        if n % 10:
            await publisher.publish_all(str(path), chunks)
            continue
        for seq in [0, *range(len(chunks)), 0]:  # retried chunks: dropped by sequence number
            await publisher.publish(str(path), seq, chunks[seq])
        await publisher.end(str(path))
    first = Worker(redis, keys, name="w1")
    await _drain(first)
    got = [line async for line in read_results(redis, keys)]
    assert sorted(got) == sorted(await _expected(ALL))
    assert first.written == len(got)
    # everything acknowledged; a new worker on the same shards finds nothing to do twice
    for shard in range(3):
        assert (await redis.xpending(keys.chunks(shard), "aggregator")).pending == 0
    await redis.delete([keys.workers, *(keys.lease(s) for s in range(3))])
    await redis.xgroup_setid(keys.chunks(0), "aggregator", "0")  # shard 0 read again, whole
    second = Worker(redis, keys, name="w2")
    await _drain(second)
    assert second.written == 0
    assert [line async for line in read_results(redis, keys)] == got


@pytest.mark.anyio
async def test_out_of_order_and_duplicate_entries(redis: Any) -> None:
    keys = Keys(shards=1)
    publisher = Publisher(redis, keys)
    path = CHAT[0]
    chunks = list(pieces(path.read_bytes(), None))
    order = [1, 0, 0, 3, 2, *range(4, len(chunks)), 2]
    for seq in order:
        await publisher.publish("k", seq, chunks[seq])
    await publisher.end("k")
    await _drain(Worker(redis, keys, name="w"))
    assert [line async for line in read_results(redis, keys)] == await _expected([path])


@pytest.mark.anyio
async def test_foreign_entries_are_counted_not_fatal(redis: Any) -> None:
    """Entries no Publisher writes (no seq number, a huge one, no key) neither stop the worker
    nor hold memory: counted, acknowledged with their stream, the completion unchanged."""
    keys = Keys(shards=1)
    publisher = Publisher(redis, keys)
    chunks = list(pieces(CHAT[0].read_bytes(), None))
    stream = keys.chunks(0)
    for seq, chunk in enumerate(chunks):
        await publisher.publish("k", seq, chunk)
        if seq == 1:
            await redis.xadd(stream, {"key": "k", "seq": "x", "data": b"junk"})
            await redis.xadd(stream, {"key": "k", "seq": str(10**18), "data": b"junk"})
            await redis.xadd(stream, {"other": "field"})
    await publisher.end("k")
    worker = Worker(redis, keys, name="w")
    await _drain(worker, open_ok=True)
    assert worker.malformed == 2
    assert [line async for line in read_results(redis, keys)] == await _expected(CHAT[:1])
    assert (await redis.xpending(stream, GROUP)).pending == 1  # the keyless one's stream is open


@pytest.mark.anyio
async def test_a_new_owner_replays_what_a_dead_one_held(redis: Any) -> None:
    """A worker that read half of every stream and died (no ack, no release): the next owner
    replays the pending entries from each stream's start and assembles each completion once."""
    keys = Keys(shards=2)
    publisher = Publisher(redis, keys)
    paths = ALL[::4]
    halves: dict[Path, list[bytes]] = {}
    for path in paths:
        chunks = list(pieces(path.read_bytes(), 512))
        halves[path] = chunks[len(chunks) // 2 :]
        for seq, chunk in enumerate(chunks[: len(chunks) // 2]):
            await publisher.publish(str(path), seq, chunk)
    dead = Worker(redis, keys, name="dead", lease_ms=200, count=100)
    await _drain(dead, open_ok=True)  # it holds every stream open, half fed
    assert sum(len(s) for s in dead._open.values()) == len(paths)
    await anyio.sleep(0.3)  # its leases lapse: it "died"
    for path in paths:
        start = len(list(pieces(path.read_bytes(), 512))) - len(halves[path])
        for seq, chunk in enumerate(halves[path], start):
            await publisher.publish(str(path), seq, chunk)
        await publisher.end(str(path))
    heir = Worker(redis, keys, name="heir", count=100)
    await _drain(heir)
    got = [line async for line in read_results(redis, keys)]
    assert sorted(got) == sorted(await _expected(paths))
    # the dead worker, back, reads nothing more (its reads check the lease) and writes nothing
    assert not await dead.step()
    assert dead.held == set()
    assert dead.written == 0


@pytest.mark.anyio
async def test_a_shard_taken_while_running_is_read_at_once(redis: Any) -> None:
    """Two running workers; one stops, leaving entries on its shard that nobody read; the other,
    kept busy on its own shard, takes the free one and assembles them (it does not wait for a
    new entry there to wake it)."""
    keys = Keys(shards=2)
    publisher = Publisher(redis, keys)
    by_shard = {keys.shard_of(f"s{i}"): f"s{i}" for i in range(20)}
    # the kept one renews every second: it takes the free shard after the entries are there
    workers = [
        Worker(redis, keys, name=n, lease_ms=ms, idle_timeout=60)
        for n, ms in (("a", 3000), ("b", 300))
    ]
    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(w.run)
        with anyio.fail_after(10):
            while any(len(w.held) != 1 for w in workers):
                await anyio.sleep(0.05)
        keep, leave = workers
        [free] = leave.held
        leave.stop()
        while leave.held:
            await anyio.sleep(0.01)
        chunks = list(pieces(CHAT[0].read_bytes(), None))
        await publisher.publish_all(by_shard[free], chunks)  # nobody holds that shard now
        with anyio.fail_after(10):  # the kept worker busy on its own shard meanwhile
            n = 0
            while not await redis.xlen(keys.results):
                await publisher.publish(by_shard[1 - free], n, b"")
                n += 1
                await anyio.sleep(0.02)
        keep.stop()
    [entry] = await _entries(redis, keys)
    assert entry[b"key"] == by_shard[free].encode()
    assert [entry[b"result"]] == await _expected(CHAT[:1])


class _Stalled(Worker):
    """A worker that stalls before its final write until told to go on."""

    go: anyio.Event

    async def _finish(self, shard: int, keys: list[bytes]) -> None:
        await self.go.wait()
        await super()._finish(shard, keys)


@pytest.mark.anyio
async def test_a_worker_stalled_past_its_lease_does_not_write(redis: Any) -> None:
    keys = Keys(shards=1)
    await Publisher(redis, keys).publish_all("k", pieces(CHAT[0].read_bytes(), None))
    stalled = _Stalled(redis, keys, name="stalled", lease_ms=200)
    stalled.go = anyio.Event()
    heir = Worker(redis, keys, name="heir")
    async with anyio.create_task_group() as tg:
        tg.start_soon(stalled.step)
        await anyio.sleep(0.4)  # it read the stream and stalls; its lease lapses
        await heir.step()  # takes the shard, replays the pending entries, writes the result
        stalled.go.set()
    assert (stalled.written, heir.written) == (0, 1)
    assert stalled.held == set()
    assert [line async for line in read_results(redis, keys)] == await _expected(CHAT[:1])


@pytest.mark.anyio
async def test_idle_stream_ends_as_cut_off(redis: Any) -> None:
    keys = Keys(shards=1)
    chunks = list(pieces(CHAT[0].read_bytes(), None))
    publisher = Publisher(redis, keys)
    for seq, chunk in enumerate(chunks[:-2]):  # the publisher dies before [DONE]
        await publisher.publish("k", seq, chunk)
    worker = Worker(redis, keys, name="w", idle_timeout=0.3)
    await worker.step()
    assert await _entries(redis, keys) == []  # not yet idle long enough
    await anyio.sleep(0.4)
    await worker.step()
    [entry] = await _entries(redis, keys)
    assert entry[b"reason"] == b"cut_off"
    assert [entry[b"result"]] == await _expected_bytes(b"".join(chunks[:-2]))


async def _expected_bytes(data: bytes) -> list[bytes]:
    found, _ = await assemble_all([data])
    return [orjson.dumps(to_dict(r.completion)) for r in found]


async def _recording(data: bytes) -> AsyncIterator[bytes]:
    for piece in pieces(data, None):
        await anyio.lowlevel.checkpoint()
        yield piece


@pytest.mark.anyio
async def test_tee_publishes_as_chunks_pass(redis: Any) -> None:
    """A proxy's tee, its source wrapped by Publisher.relay: the bytes pass on unchanged, and
    the worker's results equal the tee's own; a downstream that leaves early ends 'cancelled'."""
    keys = Keys(shards=2)
    publisher = Publisher(redis, keys)
    sent: list[bytes] = []
    async with Tee(publisher.relay(_recording(CHAT[0].read_bytes()), "whole")) as upstream:
        async for data in upstream:
            sent.append(data)
    assert b"".join(sent) == CHAT[0].read_bytes()
    async with Tee(
        publisher.relay(_recording(CHAT[1].read_bytes()), "left"), on_disconnect="stop"
    ) as tee:
        async for _ in tee:
            break
    await _drain(Worker(redis, keys, name="w"))
    by_key = {e[b"key"]: e for e in await _entries(redis, keys)}
    assert by_key[b"whole"][b"result"] == orjson.dumps(to_dict(upstream.results[0].completion))
    assert by_key[b"whole"][b"reason"] == b"done"
    assert by_key[b"left"][b"reason"] == b"cancelled"
    assert by_key[b"left"][b"result"] == orjson.dumps(to_dict(tee.results[0].completion))


def _command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", args[0], "--redis", url, *args[1:]]


def _worker(url: str, name: str, backend: str, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _command(url, "worker", "--name", name, "--backend", backend, "--lease-ms", "1000", *more)
    )


def _assembled(paths: list[Path]) -> list[bytes]:
    """What the ``aggregator assemble`` command prints for the paths, line by line."""
    out = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", *map(str, paths)],
        capture_output=True,
        check=False,
    ).stdout
    return out.splitlines()


async def _wait_results(redis: Any, keys: Keys, n: int, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    with anyio.fail_after(seconds):
        while len(got) < n:
            await anyio.sleep(0.2)
            got = [line async for line in read_results(redis, keys)]
    return got


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_processes_killed_and_stopped(redis_url: str, workers: int) -> None:
    """`aggregator worker` processes (on asyncio and trio, alternately) on every recording of
    tests/data, published interleaved so that many streams are open at once; one SIGKILLed
    mid-stream, one SIGTERMed (it exits 0); every completion is written once and equals what
    `aggregator assemble` prints."""
    assemble = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "assemble", *map(str, ALL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    backends = ["asyncio", "trio"]
    procs = [_worker(redis_url, f"w{i}", backends[i % 2]) for i in range(workers)]
    try:
        got, counts = anyio.run(_killed_and_stopped, redis_url, procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
    want = assemble.communicate()[0].splitlines()
    assert sorted(got) == sorted(want)
    expected = anyio.run(_counts)
    assert counts == expected


async def _counts() -> collections.Counter[bytes]:
    return collections.Counter(
        {str(p).encode(): n for p in ALL if (n := len(await _expected([p])))}
    )


async def _killed_and_stopped(
    url: str, procs: list[subprocess.Popen[bytes]]
) -> tuple[list[bytes], collections.Counter[bytes]]:
    keys = Keys(shards=4)
    async with client(url) as redis:
        await redis.flushall()
        with anyio.fail_after(20):  # every worker started and holds its share of the shards
            while len({await redis.get(keys.lease(s)) for s in range(4)} - {None}) < len(procs):
                await anyio.sleep(0.1)
        publisher = Publisher(redis, keys)
        streams = {str(p): list(pieces(p.read_bytes(), 4096)) for p in ALL}
        rounds = max(len(c) for c in streams.values())
        for r in range(rounds):  # round r: chunk r of every stream still going, and the ends
            await publisher.publish_many(
                [(key, r, chunks[r]) for key, chunks in streams.items() if r < len(chunks)],
                ends=[key for key, chunks in streams.items() if r == len(chunks) - 1],
            )
            await anyio.sleep(0.01)
            if r == rounds // 4:  # read but not acknowledged: streams open in the workers
                pending = [await redis.xpending(keys.chunks(s), GROUP) for s in range(4)]
                assert sum(p.pending for p in pending) > 0
                procs[0].send_signal(signal.SIGKILL)
            if r == rounds // 2:
                procs[1].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=10) == -signal.SIGKILL
        assert procs[1].wait(timeout=10) == 0
        procs.append(_worker(url, "w-late", "asyncio"))
        want = len(await _expected(ALL))
        await _wait_results(redis, keys, want, 40)
        await anyio.sleep(1)  # a second write of anything would show by now
        got = [line async for line in read_results(redis, keys)]
        counts = collections.Counter(e[b"key"] for e in await _entries(redis, keys))
    return got, counts


@pytest.mark.anyio
async def test_publisher_killed_mid_stream(redis_url: str, redis: Any, anyio_backend: str) -> None:
    """`aggregator publish` killed by SIGKILL mid-stream: that stream ends as cut off after the
    worker's idle timeout, partial kept; the streams it finished and those another publisher
    sent are whole. The `aggregator results` command prints what `aggregator assemble` does."""
    keys = Keys(shards=2)
    slow = [CHAT[0], ALL[-1]]  # a chat stream, then a responses one, cut mid-way
    others = CHAT[1:4]
    worker = _worker(redis_url, "w", anyio_backend, "--shards", "2", "--idle-timeout", "1")
    first_len = len(list(pieces(slow[0].read_bytes(), None)))
    publish = subprocess.Popen(
        _command(redis_url, "publish", "--shards", "2", "--key-prefix", "", "--delay", "0.01")
        + list(map(str, slow))
    )
    try:
        with anyio.fail_after(20):
            while sum([await redis.xlen(keys.chunks(s)) for s in range(2)]) < first_len + 6:
                await anyio.sleep(0.005)
        publish.send_signal(signal.SIGKILL)
        publish.wait(timeout=10)
        others_cmd = _command(redis_url, "publish", "--shards", "2", *map(str, others))
        assert subprocess.run(others_cmd, check=False).returncode == 0
        # the partial: what the dead publisher's entries of that stream hold, in order
        sent = [
            e.field_values
            for s in range(2)
            for e in await redis.xrange(keys.chunks(s))
            if e.field_values[b"key"] == str(slow[1]).encode()
        ]
        assert not any(b"end" in f for f in sent)
        partial = b"".join(f[b"data"] for f in sorted(sent, key=lambda f: int(f[b"seq"])))
        assert 0 < len(partial) < len(slow[1].read_bytes())
        want = _assembled([slow[0], *others]) + await _expected_bytes(partial)
        await _wait_results(redis, keys, len(want), 20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        for proc in (worker, publish):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    printed = subprocess.run(
        _command(redis_url, "results", "--shards", "2"), capture_output=True, check=True
    ).stdout.splitlines()
    assert sorted(printed) == sorted(want)
    reasons = {e[b"key"]: e[b"reason"] for e in await _entries(redis, keys)}
    assert reasons[str(slow[1]).encode()] == b"cut_off"
    assert reasons[str(slow[0]).encode()] == b"done"
    assert await redis.keys(f"{keys.prefix}:lease:*") == set()  # SIGTERM handed them back


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
def test_redis_restarted(tmp_path: Path, aof: bool) -> None:
    """redis-server killed (SIGKILL) and restarted under a running `aggregator worker`: it
    reconnects and goes on. With AOF (fsync always) every completion is written once; with no
    persistence what was written before is gone, and what is published after is written once."""
    port = _free_port()
    options = ["--dir", str(tmp_path), "--save", ""]
    options += ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
    server = _redis_server(port, *options)
    url = f"redis://127.0.0.1:{port}"
    worker = _worker(url, "w", "asyncio")
    before, after = CHAT[:5], CHAT[5:10]
    try:
        anyio.run(_publish_and_wait, url, before, len(_assembled(before)))
        server.kill()
        server.wait()
        server = _redis_server(port, *options)
        kept = len(_assembled(before)) if aof else 0
        got = anyio.run(_publish_and_wait, url, after, kept + len(_assembled(after)))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        for proc in (worker, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sorted(got) == sorted(_assembled([*before, *after] if aof else after))


async def _publish_and_wait(url: str, paths: list[Path], n: int) -> list[bytes]:
    keys = Keys()
    async with client(url) as redis:
        publisher = Publisher(redis, keys)
        for path in paths:
            await publisher.publish_all(str(path), pieces(path.read_bytes(), None))
        await _wait_results(redis, keys, n, 30)
        await anyio.sleep(0.5)  # a second write would show by now
        return [line async for line in read_results(redis, keys)]


def test_benchmark_runs_quick() -> None:
    """tests/benchmarks/redis_bench.py at tiny sizes (a smoke run: no figure is judged)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.redis_bench", "--quick"],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert any("of the floor" in line for line in lines)
    assert any("two against one" in line for line in lines)
    assert any(line.strip().startswith("p50") for line in lines)
    assert lines[-1].startswith("smoke run:")


def test_commands_without_redis_say_so() -> None:
    """No Redis at the URL: one line on stderr, exit status 1, no traceback."""
    url = f"redis://127.0.0.1:{_free_port()}"
    for args in (("results",), ("publish", str(CHAT[0]))):
        proc = subprocess.run(_command(url, *args), capture_output=True, text=True, check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"aggregator {args[0]}: cannot reach Redis at {url}")
        assert "Traceback" not in proc.stderr
