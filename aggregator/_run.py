"""Running pipelines: over one source in the caller's task, or over many sources at once.

Theory of operation: :func:`results` reads one source in the caller's task and runs the pipeline
over what it decodes: no task and no channel. :func:`fan_in` is the one place where concurrency
starts: an async context manager that opens a task group, runs one task per source (at most
``max_sources`` at a time) that reads and decodes its source and sends batches of items into one
bounded memory object stream, and runs the pipeline in the consumer's task over what comes out.
A slow consumer fills the buffer and so blocks the sources' ``send``, which stops their reads:
memory stays bounded. Leaving the ``async with`` block cancels every source task; each source
iterator is closed (``aclose``) on the way out, whatever happened.

A source that raises becomes an ``error`` end for its open streams, with what they held, and the
others go on; with ``fail_fast=True`` the exception cancels everything and propagates instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import anyio.abc

from ._decode import Format
from ._errors import LimitError, UsageError
from ._fused import FusedSource
from ._items import Item
from ._limits import DEFAULT_LIMITS, Limits
from ._stages import Batch, Pipeline, Stage
from ._streams import SourceDecoder, SourceFailed, StreamBudget
from ._streams import SourceRaised as _SourceRaised

__all__ = ["Source", "Sources", "fan_in", "results"]

#: What a source yields: bytes (SSE or JSON Lines), parsed payloads, chunk events, or
#: ``(dedupe_id, payload)`` pairs; sync or async.
Source = Union[AsyncIterable[Any], Iterable[Any]]

#: Many named sources: a mapping, or (name, source) pairs, sync or async (sources that arrive
#: over time, as a gateway's requests do).
Sources = Union[
    Mapping[str, Source], Iterable[tuple[str, Source]], AsyncIterable[tuple[str, Source]]
]

#: How many items of a sync source are read between two checkpoints.
_SYNC_BATCH = 1024


async def _close(iterator: Any) -> None:
    """Close an async iterator that can be closed, even inside a cancelled scope."""
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


async def _decoded(
    source: Source,
    decoder: SourceDecoder | FusedSource,
    *,
    fail_fast: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> AsyncGenerator[Batch, None]:
    """Read ``source`` in this task; yield batches of decoded items. Closes the source.

    ``limits.idle_timeout`` and ``limits.deadline`` bound the waits on an async source.
    """
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    number = 0
    idle, deadline = limits.idle_timeout, limits.deadline
    end_by = anyio.current_time() + deadline if deadline is not None else None
    if isinstance(source, AsyncIterable):
        iterator = aiter(source)
        try:
            while not decoder.stopped:
                try:
                    if idle is None and end_by is None:
                        raw = await anext(iterator)
                    else:
                        raw = await _next_in_time(iterator, idle, end_by)
                except StopAsyncIteration:
                    break
                except _TooSlow as slow:
                    yield decoder.fail(slow.error(decoder.name, number))
                    return
                except Exception as exc:
                    if fail_fast:
                        raise
                    yield decoder.feed_raw(SourceFailed(exc, number), number)
                    return
                number += 1
                items = decoder.feed_raw(raw, number)
                if items:
                    yield items
        finally:
            await _close(iterator)
    else:
        iterator_ = iter(source)
        try:
            batch: Batch = []
            while True:
                before = number
                try:  # a batch of items, read and fed in one loop
                    number = decoder.feed_all(islice(iterator_, _SYNC_BATCH), number, batch)
                except _SourceRaised as raised:
                    if fail_fast:
                        raise raised.exception from None
                    number = raised.number
                    batch += decoder.feed_raw(SourceFailed(raised.exception, number), number)
                    break
                if decoder.stopped or number - before < _SYNC_BATCH:
                    break
                if batch:
                    yield batch
                    batch = []
                await anyio.lowlevel.checkpoint()  # let the other tasks run
            if batch:
                yield batch
        finally:
            close = getattr(iterator_, "close", None)
            if close is not None:
                close()
    items = decoder.close()
    if items:
        yield items


class _TooSlow(Exception):
    def __init__(self, limit: str, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds

    def error(self, name: str, number: int) -> LimitError:
        if self.limit == "idle_timeout":
            what = f"nothing received for {self.seconds:g} s"
        else:
            what = "the deadline passed"
        return LimitError(
            f"{what} ({self.limit})",
            stream=name,
            where=f"after item {number}",
            limit=self.limit,
        )


async def _next_in_time(iterator: Any, idle: float | None, end_by: float | None) -> Any:
    """``anext(iterator)``, failing with :class:`_TooSlow` past the idle timeout or deadline."""
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    limit, wait, seconds = "idle_timeout", float("inf"), 0.0
    if idle is not None:
        wait = seconds = idle
    if end_by is not None:
        left = max(end_by - anyio.current_time(), 0.0)
        if left < wait:
            limit, wait, seconds = "deadline", left, -1.0
    with anyio.move_on_after(wait):
        return await anext(iterator)
    raise _TooSlow(limit, seconds)


def _as_pipeline(stages: Stage | Pipeline) -> Pipeline:
    if isinstance(stages, (Stage, Pipeline)):
        return Pipeline(stages)
    raise UsageError(f"not a stage or pipeline: {stages!r}")


async def results(
    source: Source,
    stages: Stage | Pipeline | None = None,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> AsyncGenerator[Item, None]:
    """Run one source through a pipeline in the caller's task; yield what comes out.

    With the default pipeline (``dedupe() | collect_usage() | merge_deltas() | assemble()``)
    that is one :class:`~aggregator.Result` per stream, as soon as it ends, plus one for the key
    ``(name, 0)`` when the source held no completion or had bad input outside any stream.

    Use it as ``async with contextlib.aclosing(results(...)) as items: async for ...``.
    """
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    await anyio.lowlevel.checkpoint()
    decoder: SourceDecoder | FusedSource
    if stages is None:  # the default pipeline runs fused, with the decoder
        decoder = FusedSource(name, format=format, strict=strict, limits=limits)
        pipeline = Pipeline()
    else:
        decoder = SourceDecoder(name, format=format, strict=strict, limits=limits)
        pipeline = _as_pipeline(stages)
    batches = _decoded(source, decoder, limits=limits)
    out = pipeline.run(batches)
    try:
        async for batch in out:
            for item in batch:
                yield item
    finally:
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
            await _close(iterator)
    else:
        for pair in sources:
            yield pair


async def _flatten(batches: AsyncIterator[Batch]) -> AsyncGenerator[Item, None]:
    async for batch in batches:
        for item in batch:
            yield item


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
) -> AsyncIterator[AsyncIterator[Item]]:
    """Read many sources at once and run what they hold through one pipeline.

    Example:
        ``async with aggregator.fan_in({"a": body_a, "b": body_b}) as items:``
        ``    async for result in items: ...``

    Args:
        sources: named sources (a mapping, or ``(name, source)`` pairs, sync or async). Each
            name must be unique: it is the first half of the keys of its streams.
        stages: the pipeline run over the decoded items (default: ``dedupe() |
            collect_usage() | merge_deltas() | assemble()``).
        format: the framing of byte sources (``"auto"``, ``"sse"``, ``"jsonl"``).
        strict: end a source's streams at its first malformed payload (``True``), or skip and
            report it (``False``).
        max_sources: how many sources are read at the same time.
        buffer: how many batches may wait between the sources and the pipeline.
        fail_fast: let a source's exception cancel everything and propagate, instead of ending
            that source's streams with an error.
        limits: the limits (see :class:`~aggregator.Limits`): line size, choices, tool calls,
            nesting, streams per source and open streams in all, idle timeout and deadline per
            source.

    Yields:
        an async iterator of the pipeline's output: with the default pipeline, one
        :class:`~aggregator.Result` per stream, as soon as that stream ends.
    """
    import anyio.lowlevel  # imported here: `import aggregator` stays light

    if max_sources < 1 or buffer < 0:
        raise UsageError("max_sources must be at least 1 and buffer at least 0")
    # the default pipeline runs fused in each source's task: only results cross to the consumer
    fused = stages is None
    pipeline = Pipeline() if stages is None else _as_pipeline(stages)
    budget = StreamBudget(limits.max_open_streams) if limits.max_open_streams else None
    send, receive = anyio.create_memory_object_stream[Batch](buffer)
    slots = anyio.Semaphore(max_sources)
    active: set[str] = set()

    async def one(name: str, source: Source, send: Any) -> None:
        try:
            async with send:
                kind = FusedSource if fused else SourceDecoder
                decoder = kind(name, format=format, strict=strict, limits=limits, budget=budget)
                batches = _decoded(source, decoder, fail_fast=fail_fast, limits=limits)
                try:
                    async for batch in batches:
                        await send.send(batch)
                finally:
                    await batches.aclose()
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
        output = pipeline.run(receive)
        items = _flatten(output)
        try:
            yield items
        finally:
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await items.aclose()
                await output.aclose()
                await receive.aclose()
