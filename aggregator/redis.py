"""Scale out on Redis Streams: publishers, a group of workers, a results stream (extra ``[redis]``).

Theory of operation: a :class:`Publisher` appends each chunk of each stream (stream key, sequence
number, payload bytes) and an end entry with the reason to one of ``shards`` shard streams, chosen
by a stable hash (CRC32) of the stream key, with ``MAXLEN ~`` trimming. Every key of one shard
carries the hash tag ``{<prefix>:<shard>}`` so a Redis Cluster keeps a shard in one slot. A
:class:`Worker` takes shards by lease (``SET lease NX PX``, renewed by a compare-and-extend
script), reads each shard as the consumer named after the shard (so a new owner inherits the
pending entries), replays those first (``XREADGROUP ... 0``) and then reads new ones (``>``).
Per stream key it keeps the payloads by sequence number (a replayed entry replaces nothing: the
dedupe is by (stream key, sequence number)); at the end entry, or when the stream has been idle
past ``idle_timeout`` (a publisher that died: the stream ends as cut off, partial kept), it runs
the one engine (:func:`aggregator.assemble_all`) over the payloads and, in ONE Lua script, writes
each result to the results stream guarded by an idempotency key per completion (``SET NX``) and
XACKs the completion's entries. A crash before the script leaves the entries pending (re-read and
re-assembled by the next owner); after it, the idempotency key stops a second write. Nothing here
parses a protocol's fields: payloads are bytes, the engine recognises them.

Keys (prefix ``agg`` by default, settable): shard streams ``agg:chunks:{agg:<n>}``, leases
``agg:lease:{agg:<n>}``, done markers ``agg:done:{agg:<n>}:<key>``, results ``agg:results``.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from ._api import assemble_all
from ._core._converter import to_dict
from ._core._results import Result

__all__ = ["Keys", "Publisher", "Worker", "read_results"]

GROUP = "aggregator"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Keys:
    """The key names used in Redis, under one ``prefix``."""

    def __init__(self, prefix: str = "agg", shards: int = 4) -> None:
        self.prefix = prefix
        self.shards = shards

    def shard_of(self, stream_key: str) -> int:
        """The shard of a stream key (a stable hash: CRC32)."""
        return zlib.crc32(stream_key.encode()) % self.shards

    def tag(self, shard: int) -> str:
        return "{" + f"{self.prefix}:{shard}" + "}"

    def chunks(self, shard: int) -> str:
        return f"{self.prefix}:chunks:{self.tag(shard)}"

    def lease(self, shard: int) -> str:
        return f"{self.prefix}:lease:{self.tag(shard)}"

    def done(self, shard: int, stream_key: str) -> str:
        return f"{self.prefix}:done:{self.tag(shard)}:{stream_key}"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"


def _nx() -> Any:
    from coredis.tokens import PureToken

    return PureToken.NX


def _client(url: str) -> Any:
    import coredis

    return coredis.Redis.from_url(url, decode_responses=False)


class Publisher:
    """Publish chunks of streams to the shard streams (a sink)."""

    def __init__(self, client: Any, keys: Keys | None = None, *, maxlen: int = 1_000_000) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.maxlen = maxlen

    async def _add(self, stream_key: str, fields: dict[str, bytes | str]) -> None:
        from coredis.tokens import PureToken

        shard = self.keys.shard_of(stream_key)
        await self.client.xadd(
            self.keys.chunks(shard),
            {"key": stream_key, **fields},
            trim_strategy=PureToken.MAXLEN,
            threshold=self.maxlen,
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def publish(self, stream_key: str, seq: int, data: bytes) -> None:
        """Publish chunk ``seq`` (payload bytes) of a stream."""
        await self._add(stream_key, {"seq": str(seq), "data": data})

    async def end(self, stream_key: str, reason: str = "complete") -> None:
        """Publish the end entry of a stream."""
        await self._add(stream_key, {"end": reason})

    async def publish_all(self, stream_key: str, chunks: Iterable[bytes]) -> None:
        """Publish every chunk of a recording, then its end entry."""
        for seq, data in enumerate(chunks):
            await self.publish(stream_key, seq, data)
        await self.end(stream_key)


class _Open:
    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}
        self.ids: list[bytes] = []
        self.seen = time.monotonic()


class Worker:
    """Assemble the streams of the shards this worker holds by lease."""

    def __init__(
        self,
        client: Any,
        keys: Keys | None = None,
        *,
        name: str = "worker",
        lease_ms: int = 3000,
        idle_timeout: float = 10.0,
        done_ttl_ms: int = 86_400_000,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.name = name
        self.lease_ms = lease_ms
        self.idle_timeout = idle_timeout
        self.done_ttl_ms = done_ttl_ms
        self.held: set[int] = set()
        self._open: dict[int, dict[str, _Open]] = {}
        self.stopping = False

    async def _take_leases(self) -> None:
        for shard in range(self.keys.shards):
            lease = self.keys.lease(shard)
            if shard in self.held:
                if not await self.client.eval(_RENEW, [lease], [self.name, str(self.lease_ms)]):
                    self.held.discard(shard)
                    self._open.pop(shard, None)
            elif await self.client.set(lease, self.name, condition=_nx(), px=self.lease_ms):
                stream = self.keys.chunks(shard)
                from coredis.exceptions import StreamDuplicateConsumerGroupError

                with contextlib.suppress(StreamDuplicateConsumerGroupError):  # the group exists
                    await self.client.xgroup_create(stream, GROUP, "0", mkstream=True)
                self.held.add(shard)
                self._open[shard] = {}
                await self._read(shard, "0")

    async def _read(self, shard: int, start: str) -> None:
        stream = self.keys.chunks(shard)
        got = await self.client.xreadgroup(
            GROUP, str(shard), {stream: start}, count=1000, block=None if start == "0" else 50
        )
        for entries in (got or {}).values():
            for entry in entries:
                self._take(shard, entry.identifier, entry.field_values)
        for key in list(self._open[shard]):
            if time.monotonic() - self._open[shard][key].seen > self.idle_timeout:
                await self._finish(shard, key, cut=True)

    def _take(self, shard: int, ident: Any, fields: dict[bytes, bytes]) -> None:
        key = fields[b"key"].decode()
        slot = self._open[shard].setdefault(key, _Open())
        slot.ids.append(ident)
        slot.seen = time.monotonic()
        if b"end" in fields:
            slot.chunks[-1] = fields[b"end"]
        else:
            slot.chunks.setdefault(int(fields[b"seq"]), fields[b"data"])

    async def _finish(self, shard: int, key: str, *, cut: bool = False) -> None:
        slot = self._open[shard].pop(key)
        payloads = [slot.chunks[s] for s in sorted(slot.chunks) if s >= 0]
        found, _report = await assemble_all(payloads, name=key)
        lines = [orjson.dumps(_line(r)) for r in found]
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in slot.ids]
        await self.client.eval(
            _ACK,
            [self.keys.chunks(shard), self.keys.results, self.keys.done(shard, key)],
            [str(self.done_ttl_ms), key, orjson.dumps(ids), *lines],
        )

    async def step(self) -> None:
        """One round: renew or take leases, read each held shard, finish ended streams."""
        await self._take_leases()
        for shard in list(self.held):
            await self._read(shard, ">")
            for key in [k for k, s in self._open[shard].items() if -1 in s.chunks]:
                await self._finish(shard, key)

    async def run(self) -> None:
        """Run until :attr:`stopping` is set, then hand the leases back."""
        while not self.stopping:
            await self.step()
            await anyio.lowlevel.checkpoint()
        for shard in self.held:
            await self.client.delete([self.keys.lease(shard)])


_ACK = """
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then
  for i = 4, #ARGV do redis.call('XADD', KEYS[2], '*', 'key', ARGV[2], 'result', ARGV[i]) end
end
local ids = cjson.decode(ARGV[3])
if #ids > 0 then redis.call('XACK', KEYS[1], 'aggregator', unpack(ids)) end
return 1
"""


def _line(result: Result) -> Any:
    return to_dict(result.completion) if result.completion is not None else None


async def read_results(
    client: Any, keys: Keys | None = None, *, follow: bool = False
) -> AsyncIterator[bytes]:
    """Yield each result as the JSON line ``aggregator assemble`` prints."""
    keys = keys or Keys()
    last = "0"
    while True:
        got = await client.xread({keys.results: last}, count=1000, block=1000 if follow else None)
        if not got:
            if not follow:
                return
            continue
        for entries in got.values():
            for entry in entries:
                last = entry.identifier
                yield entry.field_values[b"result"]


async def serve(url: str, *, shards: int = 4, name: str = "worker", lease_ms: int = 3000) -> None:
    """Run a worker on ``url`` until SIGTERM or SIGINT, then hand its leases back and return."""
    import signal

    client = _client(url)
    async with client:
        worker = Worker(client, Keys(shards=shards), name=name, lease_ms=lease_ms)
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        worker.stopping = True
                        return

            tg.start_soon(watch)
            await worker.run()
            tg.cancel_scope.cancel()


if __name__ == "__main__":  # python -m aggregator.redis URL SHARDS NAME [BACKEND]
    import sys

    anyio.run(
        lambda: serve(sys.argv[1], shards=int(sys.argv[2]), name=sys.argv[3], lease_ms=1000),
        backend=sys.argv[4] if len(sys.argv) > 4 else "asyncio",
    )
