"""Scale out on Redis Streams: publishers, a group of workers, a results stream (extra ``[redis]``).

Theory of operation: a :class:`Publisher` appends each chunk of each stream (stream key, sequence
number, payload bytes) and an end entry with the reason to one of ``shards`` shard streams, chosen
by a stable hash (CRC32) of the stream key, with ``MAXLEN ~`` trimming. Every key of one shard
carries the hash tag ``{<prefix>:<shard>}`` so a Redis Cluster keeps a shard in one slot.
:meth:`Publisher.relay` wraps a source so that each item is published as it passes (in front of
an :class:`aggregator.Tee`, or alone: publish instead of assembling).

A :class:`Worker` takes shards by lease (``SET lease NX PX``, renewed by a compare-and-extend
script), as many as its share: the live workers (heartbeats in a sorted set) sorted by name
share the shards evenly, so a new worker gets work and a dead one's shards move. It reads each
shard as the consumer named after the shard, so a new owner inherits the entries the old one had
not acknowledged. Every read is a Lua script that checks the lease and
runs ``XREADGROUP`` in one atomic step, so a worker that lost its lease (it stalled) reads
nothing more. A new owner replays the shard's pending entries first (``XREADGROUP ... 0``, paged
until empty): since a stream's entries are acknowledged only when its result is written, the
pending list holds every entry of every open stream, from its start, and the replay rebuilds
their state. Then it reads new entries (``>``), and when a round brings nothing it waits with a
plain ``XREAD BLOCK`` (which changes no group state) from the last id it saw.

Each entry is fed to the stream's own engine as it is read (incremental assembly: a stream holds
its assembled state, not its raw chunks), in sequence order: an entry whose sequence number was
already fed is a duplicate and is dropped (a publisher that retried; a new owner starts each
stream afresh from its first entry, so a replay feeds nothing twice), one that comes early waits
in a small reorder buffer. At the end entry, or when the stream has had no entry for
``idle_timeout`` seconds (a publisher that died: the stream ends as cut off, partial kept), the
engine is closed and ONE Lua script checks the lease, writes each result to the results stream
guarded by an idempotency key per stream (``SET NX``) and XACKs the stream's entries. A worker
that crashes before the script leaves the entries pending (the next owner replays them); after
it, the idempotency key stops a second write; a worker past its lease writes nothing. Nothing
here parses a protocol's fields: payloads are bytes, the engine recognises them.

Keys (prefix ``agg`` by default, settable, see :class:`Keys`): shard streams
``agg:chunks:{agg:<n>}``, leases ``agg:lease:{agg:<n>}``, idempotency keys
``agg:done:{agg:<n>}:<key>``, live workers ``agg:workers`` (a sorted set of heartbeats, from
which each worker takes its fair share of shards and hands back the rest), results
``agg:results`` (its name settable too).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
import orjson

from ._core._converter import to_dict
from ._core._engine import Engine
from ._core._errors import UsageError
from ._core._limits import DEFAULT_LIMITS, Limits
from ._core._results import EndReason, Result
from ._reading import close_async
from ._stages import plan

__all__ = ["GROUP", "Keys", "Publisher", "Worker", "read_results", "serve"]

#: The consumer group every worker reads the shard streams through.
GROUP = "aggregator"
#: The most entries one read takes from one shard.
READ_COUNT = 1000
#: The most early entries (a gap in the sequence numbers) a stream holds before feeding past it.
MAX_HELD = 1024

T = TypeVar("T")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: the live workers (a sorted set, scored by when each one's heartbeat lapses).
# ARGV: this worker's name, the lease (ms). Returns the names of the workers alive.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the shard stream, its lease. ARGV: owner, group, consumer, count, start id.
# Returns false when the lease is not the owner's; else {entries, the stream's last id}.
_READ = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
local got = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                       'STREAMS', KEYS[1], ARGV[5])
local entries = {}
if got then entries = got[1][2] end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if last[1] then last_id = last[1][1] end
return {entries, last_id}
"""

# KEYS: the shard stream, the results stream, the stream's idempotency key, the shard's lease.
# ARGV: owner, idempotency ttl (ms), stream key, n results, then n (reason, line) pairs, then the
# ids of the stream's entries. Returns 0 (lease lost: nothing written or acknowledged), 1 (written),
# 2 (already written before: acknowledged only).
_WRITE = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
local wrote = 2
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  wrote = 1
  for i = 0, n - 1 do
    redis.call('XADD', KEYS[2], '*', 'key', ARGV[3], 'reason', ARGV[5 + 2 * i],
               'result', ARGV[6 + 2 * i])
  end
end
local i = 5 + 2 * n
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[1], 'aggregator', unpack(ARGV, i, last))
  i = last + 1
end
return wrote
"""


class Keys:
    """The key names used in Redis, under one ``prefix``.

    Args:
        prefix: the first part of every key.
        shards: how many shard streams there are (publishers and workers must agree).
        results: the results stream's name (default ``<prefix>:results``).
    """

    def __init__(self, prefix: str = "agg", shards: int = 4, results: str | None = None) -> None:
        if shards < 1:
            raise UsageError("shards must be at least 1")
        self.prefix = prefix
        self.shards = shards
        self._results = results

    def shard_of(self, stream_key: str) -> int:
        """The shard of a stream key (a stable hash: CRC32)."""
        return zlib.crc32(stream_key.encode()) % self.shards

    def tag(self, shard: int) -> str:
        """The hash tag of a shard's keys (one Redis Cluster slot)."""
        return "{" + f"{self.prefix}:{shard}" + "}"

    def chunks(self, shard: int) -> str:
        """The shard's stream of chunks."""
        return f"{self.prefix}:chunks:{self.tag(shard)}"

    def lease(self, shard: int) -> str:
        """The shard's lease (its value: the owner's name)."""
        return f"{self.prefix}:lease:{self.tag(shard)}"

    def done(self, shard: int, stream_key: str) -> str:
        """The idempotency key of a stream's results."""
        return f"{self.prefix}:done:{self.tag(shard)}:{stream_key}"

    @property
    def workers(self) -> str:
        """The live workers: a sorted set of names, scored by when their heartbeat lapses."""
        return f"{self.prefix}:workers"

    @property
    def results(self) -> str:
        """The results stream."""
        return self._results or f"{self.prefix}:results"


def client(url: str) -> Any:
    """A coredis client for ``url`` (bytes replies), as the roles here expect."""
    import coredis
    from coredis.retry import NoRetryPolicy

    # no retries: a read retried after a lost reply would skip what the first one delivered
    # (a worker starts over on a lost connection instead; a publisher's retry is a duplicate
    # its sequence number absorbs)
    return coredis.Redis.from_url(url, decode_responses=False, retry_policy=NoRetryPolicy())


def _payload(item: Any) -> bytes:
    cls = item.__class__
    if cls is bytes:
        return item  # type: ignore[no-any-return]
    if cls is bytearray or cls is memoryview:
        return bytes(item)
    if cls is dict:
        return orjson.dumps(item) + b"\n"  # one JSON line
    raise UsageError(f"a published item is bytes or a parsed payload (a dict), not {cls.__name__}")


class Publisher:
    """Publish the chunks of streams to the shard streams (the gateway side).

    Args:
        client: a coredis client (see :func:`client`).
        keys: the key names.
        maxlen: the approximate length each shard stream is trimmed to (``MAXLEN ~``); it must
            exceed the entries of every stream not yet assembled, or their first entries go.
    """

    def __init__(self, client: Any, keys: Keys | None = None, *, maxlen: int = 1_000_000) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.maxlen = maxlen

    def _add(self, target: Any, stream_key: str, fields: dict[str, bytes | str]) -> Any:
        from coredis.tokens import PureToken

        return target.xadd(
            self.keys.chunks(self.keys.shard_of(stream_key)),
            {"key": stream_key, **fields},
            trim_strategy=PureToken.MAXLEN,
            threshold=self.maxlen,
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def publish(self, stream_key: str, seq: int, data: bytes) -> None:
        """Publish chunk ``seq`` (0, 1, 2...; payload bytes) of a stream."""
        await self._add(self.client, stream_key, {"seq": str(seq), "data": data})

    async def end(self, stream_key: str, reason: str = "complete") -> None:
        """Publish the end entry of a stream (``reason``: ``complete``, ``cancelled``, ...)."""
        await self._add(self.client, stream_key, {"end": reason})

    async def publish_all(
        self, stream_key: str, chunks: Iterable[bytes], *, batch: int = 500
    ) -> None:
        """Publish every chunk of a recording, then its end entry, ``batch`` per round trip."""
        pending: list[tuple[str, int, bytes]] = []
        for seq, data in enumerate(chunks):
            pending.append((stream_key, seq, data))
            if len(pending) >= batch:
                await self.publish_many(pending)
                pending = []
        await self.publish_many(pending, ends=[stream_key])

    async def publish_many(
        self, chunks: Iterable[tuple[str, int, bytes]], ends: Iterable[str] = ()
    ) -> None:
        """Publish ``(stream key, seq, data)`` chunks, then the end entries (reason
        ``complete``) of the streams in ``ends``, in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key, seq, data in chunks:
                self._add(pipe, key, {"seq": str(seq), "data": data})
            for key in ends:
                self._add(pipe, key, {"end": "complete"})

    async def relay(
        self,
        source: AsyncIterable[T] | Iterable[T],
        stream_key: str,
        *,
        on_error: Callable[[Exception], None] | None = None,
    ) -> AsyncIterator[T]:
        """Publish each item of ``source`` as it passes, and pass it on unchanged.

        Put it in front of a tee to publish what a proxy forwards (``Tee(publisher.relay(
        response.aiter_bytes(), request_id))``), or iterate it alone to publish instead of
        assembling. Items are bytes (SSE or JSON Lines) or parsed payloads (dicts, published as
        JSON lines). The end entry says how the source ended: ``complete`` (it ran out),
        ``error`` (it raised) or ``cancelled`` (the reader stopped early); a publisher that
        dies sends none, and the workers end the stream as cut off after their idle timeout.

        ``on_error``: when publishing fails (Redis unreachable), call it with the exception
        once, publish nothing more of this stream (the workers end it as cut off) and go on
        passing the items on; without it the failure is raised to the reader.
        """
        seq = 0
        reason = "cancelled"
        failed = False
        iterator: Any = aiter(source) if isinstance(source, AsyncIterable) else None

        async def publish(item: Any) -> None:
            nonlocal failed
            if failed:
                return
            data = _payload(item)
            try:
                await self.publish(stream_key, seq, data)
            except Exception as exc:
                if on_error is None:
                    raise
                failed = True
                on_error(exc)

        try:
            if iterator is not None:
                async for item in iterator:
                    await publish(item)
                    seq += 1
                    yield item
            else:
                for item in source:  # type: ignore[union-attr]
                    await publish(item)
                    seq += 1
                    yield item
            reason = "complete"
        except Exception:
            reason = "error"
            raise
        finally:
            await close_async(iterator)
            with anyio.CancelScope(shield=True):
                if not failed:
                    try:
                        await self.end(stream_key, reason)
                    except Exception as exc:
                        if on_error is None:
                            raise
                        on_error(exc)


class _Open:
    """What a worker holds for one open stream: its engine, and its entries' ids to ack."""

    __slots__ = ("duplicates", "end", "engine", "held", "ids", "next", "results", "seen")

    def __init__(self, engine: Engine, now: float) -> None:
        self.engine = engine
        self.next = 0
        self.held: dict[int, bytes] = {}
        self.ids: list[bytes] = []
        self.results: list[Result] = []
        self.seen = now
        self.end: str | None = None
        self.duplicates = 0

    def feed(self, data: bytes) -> None:
        for item in self.engine.feed(data):
            if item.__class__ is Result:
                self.results.append(item)

    def take(self, seq: int, data: bytes) -> None:
        """Feed chunk ``seq`` in sequence order; drop a duplicate."""
        if seq < self.next or seq in self.held:
            self.duplicates += 1
            return
        if seq > self.next:
            self.held[seq] = data
            if len(self.held) <= MAX_HELD:
                return
            self.next = min(self.held)  # a gap that is not filling: feed past it
            data = self.held.pop(self.next)
        self.feed(data)
        self.next += 1
        while self.next in self.held:
            self.feed(self.held.pop(self.next))
            self.next += 1

    def close(self) -> list[Result]:
        """End the stream: at its end entry, or (none came) idle: the publisher died, and what
        was still open ends as cut off whatever the framing."""
        for seq in sorted(self.held):  # what is left after a gap (entries trimmed away)
            self.feed(self.held.pop(seq))
        for item in self.engine.close(cancelled=self.end == "cancelled"):
            if item.__class__ is Result:
                if self.end is None and item.reason is EndReason.EXHAUSTED:
                    item = attrs.evolve(item, reason=EndReason.CUT_OFF)
                self.results.append(item)
        return self.results


def _default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Assemble the streams of the shards this worker holds by lease (see the module docstring).

    Args:
        client: a coredis client (see :func:`client`).
        keys: the key names.
        name: this worker's name, unique in the group (default: host and process id).
        lease_ms: how long a lease lasts unless renewed; a worker stalled longer loses it.
        idle_timeout: seconds without an entry after which a stream ends as cut off.
        block_ms: how long an idle round waits for new entries.
        count: the most entries one read takes from one shard.
        done_ttl_ms: how long an idempotency key lives (a stream key is not reused within it).
        strict: as for :func:`aggregator.assemble_all`.
        limits: as for :func:`aggregator.assemble_all` (time limits do not apply).
        warn: called with a line of text when the connection to Redis is lost (the worker
            drops its shards and starts over once Redis answers again).
    """

    def __init__(
        self,
        client: Any,
        keys: Keys | None = None,
        *,
        name: str | None = None,
        lease_ms: int = 3000,
        idle_timeout: float = 10.0,
        block_ms: int = 100,
        count: int = READ_COUNT,
        done_ttl_ms: int = 86_400_000,
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.warn = warn
        self.keys = keys or Keys()
        self.name = name or _default_name()
        self.lease_ms = lease_ms
        self.idle_timeout = idle_timeout
        self.block_ms = block_ms
        self.count = count
        self.done_ttl_ms = done_ttl_ms
        self.strict = strict
        self.limits = limits
        #: the shards held now.
        self.held: set[int] = set()
        #: the completions written, and the pending entries found trimmed away, since the start.
        self.written = 0
        self.lost = 0
        #: the entries that were neither a chunk nor an end (no ``seq`` number, no ``data``).
        self.malformed = 0
        #: how many times the connection to Redis was lost (the worker started over each time).
        self.reconnects = 0
        #: set it (or call :meth:`stop`) to make :meth:`run` hand its leases back and return.
        self.stopping = False
        self._open: dict[int, dict[bytes, _Open]] = {}
        self._last: dict[int, bytes] = {}
        self._leases_due = 0.0
        self._idle_due: dict[int, float] = {}
        #: the shards the last wait saw new entries on (``None``: read them all).
        self._woken: set[int] | None = None
        #: the shards taken since the last round.
        self._taken: set[int] = set()
        #: the shards where an end entry came since their last finish.
        self._ended: set[int] = set()
        self._plan = plan(None)

    def stop(self) -> None:
        """Make :meth:`run` return after its current round (leases handed back)."""
        self.stopping = True

    async def _maintain(self, now: float) -> None:
        """Every third of a lease: say this worker is alive, renew the held leases, hand back
        those above its share, take free ones up to it. The live workers, sorted by name, share
        the shards: each ``shards // live``, and one more for the first ``shards % live``."""
        if now < self._leases_due:
            return
        self._leases_due = now + self.lease_ms / 3000
        from coredis.exceptions import StreamDuplicateConsumerGroupError
        from coredis.tokens import PureToken

        held = sorted(self.held)
        async with self.client.pipeline(transaction=False) as pipe:  # one round trip
            heartbeat = pipe.eval(_HEARTBEAT, [self.keys.workers], [self.name, str(self.lease_ms)])
            renewals = [
                pipe.eval(_RENEW, [self.keys.lease(s)], [self.name, str(self.lease_ms)])
                for s in held
            ]
        live = sorted(await heartbeat)
        for shard, renewed in zip(held, renewals, strict=True):
            if not await renewed:
                self._drop(shard)
        name = self.name.encode()
        rank = live.index(name) if name in live else 0
        fair = self.keys.shards // max(1, len(live)) + (rank < self.keys.shards % max(1, len(live)))
        for shard in sorted(self.held, reverse=True):
            if len(self.held) <= fair:
                break
            await self.client.eval(_RELEASE, [self.keys.lease(shard)], [self.name])
            self._drop(shard)
        for shard in range(self.keys.shards):
            if len(self.held) >= fair:
                break
            if shard in self.held or not await self.client.set(
                self.keys.lease(shard), self.name, condition=PureToken.NX, px=self.lease_ms
            ):
                continue
            with contextlib.suppress(StreamDuplicateConsumerGroupError):  # the group exists
                await self.client.xgroup_create(self.keys.chunks(shard), GROUP, "0", mkstream=True)
            self.held.add(shard)
            self._open[shard] = {}
            self._taken.add(shard)
            await self._replay(shard)

    def _drop(self, shard: int) -> None:
        """Forget a shard whose lease is gone: its next owner replays what it held."""
        self.held.discard(shard)
        self._open.pop(shard, None)
        self._last.pop(shard, None)

    async def _read(self, shard: int, start: str) -> int | None:
        """Read up to :attr:`count` entries of a held shard, lease checked; feed them; return
        how many came (``None``: the lease was lost)."""
        got = await self.client.eval(
            _READ,
            [self.keys.chunks(shard), self.keys.lease(shard)],
            [self.name, GROUP, str(shard), str(self.count), start],
        )
        if got is None:
            self._drop(shard)
            return None
        entries, last = got
        self._last[shard] = last
        streams = self._open[shard]
        now = time.monotonic()
        lost: list[bytes] = []
        for ident, fields in entries:
            if not fields:  # pending, but trimmed away (MAXLEN) before it was assembled
                lost.append(ident)
                continue
            self._take(shard, streams, ident, fields, now)
        if lost:
            self.lost += len(lost)
            await self.client.xack(self.keys.chunks(shard), GROUP, lost)
        if entries and start != ">":
            self._last[shard] = entries[-1][0]
        return len(entries)

    def _take(
        self, shard: int, streams: dict[bytes, _Open], ident: bytes, flat: list[bytes], now: float
    ) -> None:
        if len(flat) == 6 and flat[2] == b"seq" and flat[0] == b"key" and flat[4] == b"data":
            slot = streams.get(flat[1])  # a chunk as the Publisher writes it: the fast path
            if slot is not None and flat[3].isdigit():
                slot.ids.append(ident)
                slot.seen = now
                slot.take(int(flat[3]), flat[5])
                return
        fields = dict(zip(flat[::2], flat[1::2], strict=False))
        key = fields.get(b"key", b"")
        slot = streams.get(key)
        if slot is None:
            engine = self._plan.engine(
                key.decode(errors="replace"), format="auto", strict=self.strict, limits=self.limits
            )
            slot = streams[key] = _Open(engine, now)
        slot.ids.append(ident)
        slot.seen = now
        if b"end" in fields:
            slot.end = fields[b"end"].decode(errors="replace")
            self._ended.add(shard)
        elif fields.get(b"seq", b"").isdigit() and b"data" in fields:
            slot.take(int(fields[b"seq"]), fields[b"data"])
        else:  # not an entry of ours: acknowledged with its stream, and counted
            self.malformed += 1

    async def _replay(self, shard: int) -> None:
        """Read the shard's pending entries from the start, page by page, then finish."""
        start = "0"
        while await self._read(shard, start):
            start = self._last[shard].decode()
        await self._finish_ended(shard, time.monotonic())

    async def _finish_ended(self, shard: int, now: float) -> None:
        """Finish the shard's streams whose end entry came, and (at most every quarter of the
        idle timeout) those idle for longer than it."""
        streams = self._open.get(shard)
        if streams is None:
            return
        ended = []
        if shard in self._ended:
            self._ended.discard(shard)
            ended = [k for k, s in streams.items() if s.end is not None]
        if now >= self._idle_due.get(shard, 0.0):
            self._idle_due[shard] = now + self.idle_timeout / 4
            ended += [
                k for k, s in streams.items() if s.end is None and now - s.seen > self.idle_timeout
            ]
        if ended:
            await self._finish(shard, ended)

    async def _finish(self, shard: int, keys: list[bytes]) -> None:
        """Close the streams' engines; write their results and acknowledge their entries, one
        lease-checked script per stream, all of them in one round trip."""
        slots = [self._open[shard].pop(key) for key in keys]
        async with self.client.pipeline(transaction=False) as pipe:
            replies = []
            for key, slot in zip(keys, slots, strict=True):
                found = slot.close()
                pairs: list[bytes | str] = []
                for result in found:
                    pairs += [result.reason.value, orjson.dumps(_line(result))]
                done = self.keys.done(shard, key.decode(errors="replace"))
                replies.append(
                    (
                        len(found),
                        pipe.eval(
                            _WRITE,
                            [
                                self.keys.chunks(shard),
                                self.keys.results,
                                done,
                                self.keys.lease(shard),
                            ],
                            [
                                self.name,
                                str(self.done_ttl_ms),
                                key,
                                str(len(found)),
                                *pairs,
                                *slot.ids,
                            ],
                        ),
                    )
                )
        for n, reply in replies:
            wrote = await reply
            if wrote == 0:
                self._drop(shard)
            elif wrote == 1:
                self.written += n

    async def step(self) -> bool:
        """One round: leases, a read of each held shard, the ended streams finished. Returns
        whether a shard had more to read (the round was full)."""
        now = time.monotonic()
        await self._maintain(now)
        busy = False
        woken, self._woken = self._woken, None
        if woken is not None:  # a shard just taken is read at once: nothing to wake it yet
            woken |= self._taken
        self._taken.clear()
        for shard in sorted(self.held):
            if woken is None or shard in woken:
                count = await self._read(shard, ">")
                if count is None:
                    continue
                busy = busy or count >= self.count
            await self._finish_ended(shard, time.monotonic())
        return busy

    async def _wait(self) -> None:
        """Wait up to ``block_ms`` for a new entry on a held shard (plain XREAD: no group
        state changes)."""
        if not self.held:
            await anyio.sleep(self.block_ms / 1000)
            return
        names = {self.keys.chunks(s).encode(): s for s in sorted(self.held)}
        got = await self.client.xread(
            {name: self._last.get(s, b"0-0") for name, s in names.items()},
            count=1,
            block=self.block_ms,
        )
        self._woken = {names[name] for name in got or {} if name in names}

    async def run(self) -> None:
        """Run until :meth:`stop`, then hand the leases back: the open streams stay pending for
        the next owner, who replays them."""
        from coredis.exceptions import ConnectionError as Disconnected

        try:
            while not self.stopping:
                try:
                    if not await self.step() and not self.stopping:
                        await self._wait()
                except (Disconnected, OSError) as exc:  # Redis restarting: start over
                    self.reconnects += 1
                    if self.warn is not None:
                        self.warn(f"lost the connection to Redis ({exc}); retrying")
                    for shard in list(self.held):
                        self._drop(shard)
                    self._leases_due = 0.0
                    await anyio.sleep(self.lease_ms / 3000)
                await anyio.lowlevel.checkpoint()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Disconnected, OSError):
                for shard in sorted(self.held):
                    await self.client.eval(_RELEASE, [self.keys.lease(shard)], [self.name])
                    self._drop(shard)
                await self.client.zrem(self.keys.workers, [self.name])


def _line(result: Result) -> Any:
    """The JSON ``aggregator assemble`` prints for a result."""
    return to_dict(result.completion)


async def read_results(
    client: Any, keys: Keys | None = None, *, follow: bool = False, start: str = "0"
) -> AsyncIterator[bytes]:
    """Yield each result as the JSON line ``aggregator assemble`` prints (without the newline).

    ``follow``: wait for more at the end instead of returning. ``start``: read after this id.
    """
    keys = keys or Keys()
    last = start
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


async def serve(url: str, keys: Keys | None = None, **options: Any) -> Worker:
    """Run a :class:`Worker` on ``url`` until SIGTERM or SIGINT; hand its leases back; return
    it. ``options`` are the worker's."""
    import signal

    async with client(url) as redis:
        worker = Worker(redis, keys, **options)
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        worker.stop()
                        return

            tg.start_soon(watch)
            await worker.run()
            tg.cancel_scope.cancel()
    return worker
