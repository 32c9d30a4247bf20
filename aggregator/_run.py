"""Running sources: one in the caller's task (:func:`results`), or many at once (:func:`fan_in`).

Theory of operation: each source is read by a :class:`SourceReader` and fed to its own
:class:`Engine` in one task, the chunk stages (if any) running inside the engine; only what
ended (results, the source's report, snapshots) leaves that task. :func:`results` does that in
the caller's task: no task, no channel. :func:`fan_in` is the one place where concurrency starts:
an async context manager that opens a task group, runs one task per source (at most
``max_sources`` at a time), and sends what ends into one bounded memory object stream; the
result stages run in the consumer's task over what comes out. A slow consumer fills the buffer
and so blocks the sources' ``send``, which stops their reads: memory stays bounded. Leaving the
``async with`` block cancels every source task; each source is closed on the way out.

A source that raises becomes an ``error`` end for its open streams, with what they held, and the
others go on; with ``fail_fast=True`` the exception cancels everything and propagates instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    import anyio.abc

from ._core._engine import Engine, SourceRaised, StreamBudget, source_error
from ._core._errors import LimitError, UsageError
from ._core._framing import Format
from ._core._limits import DEFAULT_LIMITS, Limits
from ._core._results import Result, SourceReport
from ._reading import Feeder, Source, SourceReader, Sources, SyncBatches, close_async
from ._stages import Batch, Pipeline, Plan, Stage, plan

__all__ = ["fan_in", "results"]


def _no_time() -> None:
    """The clock when timings are off: the engine is given no time, and notes none."""


def clock() -> tuple[Callable[[], float], float]:
    """anyio's clock, looked up once, as ``(read, epoch)``: ``read() + epoch`` is what
    ``anyio.current_time()`` returns on the running backend, without the look-up of the
    backend it makes on every call (0.83 µs against 0.05 µs a reading on asyncio, 0.49 against
    0.13 on trio, measured here). On asyncio, ``read`` is the event loop's ``time`` and the
    epoch 0. On trio, whose clock is ``offset + perf_counter()``, ``read`` is ``perf_counter``
    and the epoch that offset: the engine adds it to the times it hands out (``Engine.epoch``),
    the same sums in the same floats, so a reading costs no Python frame (one a read of the
    source, with timings on)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        pass
    else:
        if type(loop).time is asyncio.BaseEventLoop.time:
            return time.monotonic, 0.0  # what that method returns, without its Python frame
        return loop.time, 0.0  # a loop of its own clock (uvloop's)
    trio = sys.modules.get("trio")
    if trio is not None:
        try:  # what trio.current_time() reads, without its look-up of the run
            own = trio.lowlevel.current_clock()
        except RuntimeError:  # not trio either
            pass
        else:
            offset = _offset(own)
            if offset is not None:
                return time.perf_counter, offset
            return own.current_time, 0.0  # a clock of the caller's (trio.testing's)
    import anyio  # imported here: `import aggregator` stays light

    return anyio.current_time, 0.0


def _offset(own: Any) -> float | None:
    """The offset of trio's own clock (``offset + perf_counter()``, the clock of a run given
    none), read from it and checked against it; ``None`` for any other clock."""
    cls = type(own)
    if cls.__name__ != "SystemClock" or not cls.__module__.startswith("trio."):
        return None
    offset = getattr(own, "offset", None)
    if offset.__class__ is not float:
        return None
    before = own.current_time()
    reading = offset + time.perf_counter()
    return offset if before <= reading <= own.current_time() else None


async def drive(
    source: Source,
    engine: Engine,
    *,
    limits: Limits,
    fail_fast: bool = False,
    timings: bool = True,
) -> AsyncGenerator[Batch, None]:
    """Read ``source`` in this task and feed ``engine``; yield what ends, in batches. Closes the
    source, whatever happens. The work between two turns of the event loop is bounded (a long
    bytes item is fed in pieces; see ``_reading.Feeder`` and ``SyncBatches``). With
    ``timings``, anyio's clock is read once per read (per batch of a sync source) and handed to
    the engine."""
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    now: Callable[[], float | None] = _no_time
    if timings:
        now, engine.epoch = clock()
    reader = SourceReader(source, limits)
    if engine.started is None:
        engine.started = now()
    try:
        if reader.is_async:
            feeder = Feeder(engine)
            take = feeder.take
            read = reader.next
            while not engine.stopped:
                try:
                    raw = await read()
                except StopAsyncIteration:
                    break
                except LimitError as exc:  # a time limit
                    yield engine.fail(source_error(exc, engine.name, engine.items), now())
                    return
                except Exception as exc:
                    if fail_fast:
                        raise
                    yield engine.fail(source_error(exc, engine.name, engine.items), now())
                    return
                when = now()
                ended = take(raw, when)  # (Feeder.feed, written out: no coroutine a read)
                if ended is None:
                    ended = await feeder.pieces(raw, when)
                elif feeder.due:
                    await feeder.turn()
                if ended:
                    yield ended
        else:
            batches = SyncBatches(reader.sync_iterator())
            for items in batches:
                batch: Batch = []
                try:  # a batch of items, read and fed in one loop
                    engine.feed_items(items, batch, now())
                except SourceRaised as raised:
                    if fail_fast:
                        raise raised.exception from None
                    error = source_error(raised.exception, engine.name, raised.number)
                    batch += engine.fail(error, now())
                if batches.exhausted or engine.stopped:  # the last batch: the end goes with it
                    batch += engine.close(now=now())
                    if batch:
                        yield batch
                    return
                if batch:
                    yield batch
                await anyio.lowlevel.checkpoint()  # let the other tasks run
        ended = engine.close(now=now())
        if ended:
            yield ended
    finally:
        await reader.aclose()


async def _flatten(batches: AsyncIterator[Batch]) -> AsyncGenerator[Any, None]:
    async for batch in batches:
        for item in batch:
            yield item


@overload
def results(
    source: Source,
    stages: None = None,
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
    interleaved: bool = ...,
    timings: bool = ...,
) -> AbstractAsyncContextManager[AsyncIterator[Result | SourceReport]]: ...
@overload
def results(
    source: Source,
    stages: Stage | Pipeline,
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
    interleaved: bool = ...,
    timings: bool = ...,
) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...
@asynccontextmanager
async def results(
    source: Source,
    stages: Stage | Pipeline | None = None,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    interleaved: bool = False,
    timings: bool = True,
) -> AsyncIterator[AsyncIterator[Any]]:
    """Read one source in the caller's task, through a pipeline; iterate what comes out.

    Example:
        ``async with aggregator.results(response.aiter_bytes()) as items:``
        ``    async for item in items: ...``

    With the default pipeline, that is one :class:`~aggregator.Result` per completion, as soon
    as it ends, and the source's :class:`~aggregator.SourceReport` last. The arguments are those
    of :func:`fan_in` (``name`` names the source).
    """
    steps = plan(stages)
    engine = steps.engine(
        name, format=format, strict=strict, limits=limits, interleaved=interleaved
    )
    batches = drive(source, engine, limits=limits, timings=timings)
    out = steps.result_stages.run(batches)
    items = _flatten(out)
    try:
        yield items
    finally:
        await items.aclose()
        await out.aclose()
        await batches.aclose()


async def _pairs(sources: Sources) -> AsyncGenerator[tuple[str, Source], None]:
    """The sources as pairs; an async iterable of them is closed when this is."""
    if isinstance(sources, Mapping):
        for pair in sources.items():
            yield pair
    elif isinstance(sources, AsyncIterable):
        iterator = aiter(sources)
        try:
            async for pair in iterator:
                yield pair
        finally:
            await close_async(iterator)
    else:
        for pair in sources:
            yield pair


@overload
def fan_in(
    sources: Sources,
    stages: None = None,
    *,
    format: Format = ...,
    strict: bool = ...,
    max_sources: int = ...,
    buffer: int = ...,
    fail_fast: bool = ...,
    limits: Limits = ...,
    interleaved: bool = ...,
    timings: bool = ...,
) -> AbstractAsyncContextManager[AsyncIterator[Result | SourceReport]]: ...
@overload
def fan_in(
    sources: Sources,
    stages: Stage | Pipeline,
    *,
    format: Format = ...,
    strict: bool = ...,
    max_sources: int = ...,
    buffer: int = ...,
    fail_fast: bool = ...,
    limits: Limits = ...,
    interleaved: bool = ...,
    timings: bool = ...,
) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...
@asynccontextmanager
async def fan_in(
    sources: Sources,
    stages: Stage | Pipeline | None = None,
    *,
    format: Format = "auto",
    strict: bool = True,
    max_sources: int = 64,
    buffer: int = 16,
    fail_fast: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    interleaved: bool = False,
    timings: bool = True,
) -> AsyncIterator[AsyncIterator[Any]]:
    """Read many sources at once; iterate what they hold, each completion as soon as it ends.

    Example:
        ``async with aggregator.fan_in({"a": body_a, "b": body_b}) as items:``
        ``    async for item in items: ...``

    Args:
        sources: named sources (a mapping, or ``(name, source)`` pairs, sync or async). Each
            name must be unique: it is the first half of the keys of its streams.
        stages: the pipeline (default: ``dedupe() | collect_usage() | merge_deltas() |
            assemble()``). Stages before ``merge_deltas()`` see chunks, in each source's task;
            stages after it see results, in the consumer's.
        format: the framing of byte sources (``"auto"``, ``"sse"``, ``"jsonl"``).
        strict: end a source's streams at its first malformed payload (``True``), or skip and
            record it (``False``).
        max_sources: how many sources are read at the same time.
        buffer: how many batches may wait between the sources and the consumer.
        fail_fast: let a source's exception cancel everything and propagate, instead of ending
            that source's streams with an error.
        limits: the limits (see :class:`~aggregator.Limits`).
        interleaved: each source carries several completions side by side, told apart by id
            (a multiplexed log), instead of one after the other.
        timings: read anyio's clock as the sources are read, for each result's
            :class:`~aggregator.Timings` (``False``: no clock is read and ``Result.timings``
            is ``None``).

    Yields:
        an async iterator of what comes out: with the default pipeline, one
        :class:`~aggregator.Result` per completion, as soon as it ends, and one
        :class:`~aggregator.SourceReport` per source, when it ends.
    """
    import anyio

    if max_sources < 1 or buffer < 0:
        raise UsageError("max_sources must be at least 1 and buffer at least 0")
    steps: Plan = plan(stages)
    budget = StreamBudget(limits.max_open_streams) if limits.max_open_streams else None
    send, receive = anyio.create_memory_object_stream[Batch](buffer)
    slots = anyio.Semaphore(max_sources)
    active: set[str] = set()

    async def one(name: str, source: Source, send: Any) -> None:
        """Read one source and send what ends."""
        try:
            engine = steps.engine(
                name,
                format=format,
                strict=strict,
                limits=limits,
                interleaved=interleaved,
                budget=budget,
            )
            async with (
                send,
                aclosing(
                    drive(source, engine, limits=limits, fail_fast=fail_fast, timings=timings)
                ) as out,
            ):
                async for batch in out:
                    await send.send(batch)
        finally:
            active.discard(name)
            slots.release()

    async def start_all(tg: anyio.abc.TaskGroup) -> None:
        async with send, aclosing(_pairs(sources)) as pairs:
            async for name, source in pairs:
                if name in active:
                    raise UsageError(f"two sources named {name!r} at the same time")
                active.add(name)
                await slots.acquire()
                tg.start_soon(one, name, source, send.clone(), name=f"aggregator source {name}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_all, tg)
        output = steps.result_stages.run(receive)
        items = _flatten(output)
        try:
            yield items
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await items.aclose()
                await output.aclose()
                await receive.aclose()
