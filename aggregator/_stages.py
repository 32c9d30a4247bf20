"""Stages and their composition with ``|``.

Theory of operation: a stage is a small object with ``process(item, out)`` (append what to pass
on) and ``finish(out)`` (the input is over). Items travel in batches (a network read or a
channel receive gives many), and a :class:`Pipeline` runs every run of consecutive such stages
as one loop over the batch, in the caller's task: no task, no channel and no ``await`` per stage
per item. A stage that must await (a user's database write, say) is an :class:`AsyncStage`, an
async generator over items; the pipeline adapts batches to items around it. The stages the
product promises are defined here once each, on top of the sans-I/O ``Merger`` and friends.
"""

from __future__ import annotations

import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
)
from typing import Any, final

import attrs

from ._decode import Format
from ._errors import UsageError
from ._events import Usage
from ._items import End, Envelope, SnapshotRequest, StreamKey
from ._limits import DEFAULT_LIMITS, Limits
from ._merge import merge_usage
from ._repr import attrs_repr
from ._results import Result
from ._streams import Merger, SourceDecoder, end_to_result, feed_raw

__all__ = [
    "AsyncStage",
    "Pipeline",
    "Stage",
    "UsageTotals",
    "assemble",
    "collect_usage",
    "decode",
    "dedupe",
    "default_pipeline",
    "filter_items",
    "map_items",
    "merge_deltas",
    "pipeline",
    "snapshots",
    "stage",
    "tap",
    "total_usage",
]

Batch = list[Any]


class Stage:
    """A synchronous step of a pipeline.

    Subclass it and override :meth:`process` (and :meth:`finish` if the stage holds items
    back). The default passes every item on unchanged. Compose stages with ``|``.
    """

    def process(self, item: Any, out: list[Any]) -> None:
        """Take one item; append to ``out`` what to pass on (nothing drops it)."""
        out.append(item)

    def finish(self, out: list[Any]) -> None:
        """The input is over: append to ``out`` anything still held back."""

    def process_batch(self, batch: list[Any]) -> list[Any]:
        """Take a batch of items; return the batch to pass on (it may be ``batch`` itself).

        The default calls :meth:`process` for each item. A stage may override it with a faster
        path; the result must be what :meth:`process` would give.
        """
        out: list[Any] = []
        process = self.process
        for item in batch:
            process(item, out)
        return out

    def __or__(self, other: Stage | Pipeline) -> Pipeline:
        return Pipeline(self) | other


class AsyncStage(Stage):
    """A step that awaits: override :meth:`run`, an async generator over items."""

    def run(self, items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        """Turn the items coming in into the items going out."""
        raise NotImplementedError  # pragma: no cover - an abstract method

    def process(self, item: Any, out: list[Any]) -> None:
        raise UsageError("an AsyncStage runs only inside a Pipeline")


@final
class Pipeline:
    """Stages in order; itself composable with ``|``.

    :meth:`run` turns an async iterable of batches (lists of items) into an async iterator of
    batches. Consecutive :class:`Stage` s are fused into one loop in the caller's task.
    """

    __slots__ = ("stages",)

    def __init__(self, *stages: Stage | Pipeline) -> None:
        flat: list[Stage] = []
        for s in stages:
            if isinstance(s, Pipeline):
                flat.extend(s.stages)
            elif isinstance(s, Stage):
                flat.append(s)
            else:
                raise UsageError(f"not a stage: {s!r}")
        self.stages: tuple[Stage, ...] = tuple(flat)

    def __or__(self, other: Stage | Pipeline) -> Pipeline:
        return Pipeline(self, other)

    def __repr__(self) -> str:
        return " | ".join(type(s).__name__ for s in self.stages) or "Pipeline()"

    def run(self, batches: AsyncIterable[Batch]) -> AsyncGenerator[Batch, None]:
        """Run the stages over ``batches``."""
        stream: AsyncIterable[Batch] = batches
        group: list[Stage] = []
        for s in self.stages:
            if isinstance(s, AsyncStage):
                if group:
                    stream = _fused(tuple(group), stream)
                    group = []
                stream = _async_stage(s, stream)
            else:
                group.append(s)
        if group or not self.stages:
            stream = _fused(tuple(group), stream)
        return stream  # type: ignore[return-value]


def pipeline(*stages: Stage | Pipeline) -> Pipeline:
    """The stages composed in order: ``pipeline(a, b, c)`` is ``a | b | c``."""
    return Pipeline(*stages)


async def _fused(
    stages: tuple[Stage, ...], batches: AsyncIterable[Batch]
) -> AsyncGenerator[Batch, None]:
    steps = [s.process_batch for s in stages]
    async for batch in batches:
        for step in steps:
            batch = step(batch)
            if not batch:
                break
        if batch:
            yield batch
    batch = []
    for s in stages:
        batch = s.process_batch(batch)
        s.finish(batch)
    if batch:
        yield batch


async def _async_stage(s: AsyncStage, batches: AsyncIterable[Batch]) -> AsyncGenerator[Batch, None]:
    async def items() -> AsyncGenerator[Any, None]:
        async for batch in batches:
            for item in batch:
                yield item

    inner = items()
    outer = s.run(inner)
    try:
        async for item in outer:
            yield [item]
    finally:
        await outer.aclose()
        await inner.aclose()


@final
class _FunctionStage(AsyncStage):
    def __init__(self, fn: Callable[[AsyncIterator[Any]], AsyncGenerator[Any, None]]) -> None:
        self._fn = fn

    def run(self, items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        return self._fn(items)

    def __repr__(self) -> str:
        return f"stage({getattr(self._fn, '__name__', self._fn)!r})"


def stage(fn: Callable[[AsyncIterator[Any]], AsyncGenerator[Any, None]]) -> AsyncStage:
    """Make a stage of an async generator function over items (a decorator)."""
    return _FunctionStage(fn)


@final
class decode(Stage):
    """Bytes (SSE or JSON Lines), parsed payloads or chunk events of one source, to items.

    Use it at the head of a pipeline run over one raw source; ``aggregator.results`` and
    ``aggregator.fan_in`` decode their sources themselves.
    """

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self._source = SourceDecoder(name, format=format, strict=strict, limits=limits)
        self._number = 0

    def process(self, item: Any, out: list[Any]) -> None:
        self._number += 1
        out.extend(feed_raw(self._source, item, self._number))

    def finish(self, out: list[Any]) -> None:
        out.extend(self._source.close())


@final
class map_items(Stage):
    """Replace every item by ``fn(item)``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn

    def process(self, item: Any, out: list[Any]) -> None:
        out.append(self._fn(item))


@final
class filter_items(Stage):
    """Pass on only the items for which ``predicate(item)`` is true."""

    def __init__(self, predicate: Callable[[Any], object]) -> None:
        self._predicate = predicate

    def process(self, item: Any, out: list[Any]) -> None:
        if self._predicate(item):
            out.append(item)


@final
class tap(Stage):
    """Call ``fn(item)`` for every item (metrics, logging) and pass it on unchanged."""

    def __init__(self, fn: Callable[[Any], object]) -> None:
        self._fn = fn

    def process(self, item: Any, out: list[Any]) -> None:
        self._fn(item)
        out.append(item)


@final
class dedupe(Stage):
    """Drop an envelope whose ``(stream, dedupe_id)`` was already seen, and count it.

    The ``dedupe_id`` is the SSE ``id:`` (a client that reconnects with Last-Event-ID gets a
    replay) or the sequence a source assigned. Envelopes without one are never duplicates:
    the same token twice in a row is legitimate. The state of a stream is freed at its end, and
    at most ``max_ids`` ids are remembered per stream (the oldest are forgotten first).
    """

    def __init__(self, *, max_ids: int = 65_536) -> None:
        if max_ids < 1:
            raise UsageError("max_ids must be at least 1")
        self._max_ids = max_ids
        self._seen: dict[StreamKey, dict[str, None]] = {}
        self._dropped: dict[StreamKey, int] = {}

    def process_batch(self, batch: list[Any]) -> list[Any]:
        for item in batch:  # the common batch: envelopes with no id to check, no end
            if item.__class__ is not Envelope or item.dedupe_id is not None:
                return super().process_batch(batch)
        return batch

    def process(self, item: Any, out: list[Any]) -> None:
        cls = item.__class__
        if cls is Envelope:
            dedupe_id = item.dedupe_id
            if dedupe_id is not None:
                seen = self._seen.get(item.key)
                if seen is None:
                    seen = self._seen[item.key] = {}
                elif dedupe_id in seen:
                    self._dropped[item.key] = self._dropped.get(item.key, 0) + 1
                    return
                seen[dedupe_id] = None
                if len(seen) > self._max_ids:
                    del seen[next(iter(seen))]
        elif cls is End:
            self._seen.pop(item.key, None)
            item = item.counted(duplicates=self._dropped.pop(item.key, 0))
        out.append(item)


@final
class merge_deltas(Stage):
    """Fold each stream's envelopes into its completion, put on the stream's :class:`End`.

    Envelopes are consumed (no chunk is kept once merged); :class:`SnapshotRequest` s are
    answered with :class:`Snapshot` s; everything else passes on.
    """

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._merger = Merger(limits)

    @property
    def open_streams(self) -> int:
        """The number of streams being merged now."""
        return self._merger.open_streams

    def process(self, item: Any, out: list[Any]) -> None:
        self._merger.process(item, out)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        return self._merger.process_batch(batch)


@final
class collect_usage(Stage):
    """Keep each stream's usage by the usage policy and put it on the stream's :class:`End`.

    The report that arrives last wins, with the fields it lacks filled from earlier reports;
    never summed within a stream. Envelopes pass on unchanged.
    """

    def __init__(self) -> None:
        self._usage: dict[StreamKey, Usage] = {}

    def process_batch(self, batch: list[Any]) -> list[Any]:
        for item in batch:  # the common batch: plain payloads (which carry no usage), no end
            if item.__class__ is not Envelope or item._event is not None:
                return super().process_batch(batch)
        return batch

    def process(self, item: Any, out: list[Any]) -> None:
        cls = item.__class__
        if cls is Envelope:
            event = item._event  # None for a plain payload, which has no usage
            usage = event.usage if event is not None else None
            if usage is not None:
                key = item.key
                self._usage[key] = merge_usage(self._usage.get(key), usage)
        elif cls is End:
            usage = self._usage.pop(item.key, None)
            if usage is not None:
                item = attrs.evolve(item, usage=usage)
        out.append(item)


@final
@attrs.frozen(repr=False)
class UsageTotals:
    """Usage summed across streams, by model (emitted by :class:`total_usage` at the end)."""

    __repr__ = attrs_repr

    by_model: dict[str, Usage]
    streams: int


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, bool) or isinstance(b, bool):
        return b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if attrs.has(type(a)) and type(a) is type(b):
        changes = {
            f.name: _add(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a))
        }
        return type(a)(**changes)
    if isinstance(a, Mapping) and isinstance(b, Mapping):  # extras: a dict, or the empty proxy
        return {k: _add(a.get(k), b.get(k)) for k in {**a, **b}}
    return b


@final
class total_usage(Stage):
    """Total the usage of every stream that ends, by model, for billing and quotas.

    Reads the usage of each :class:`End` (from ``collect_usage``) or :class:`Result`; numeric
    fields and numeric provider extras (``cost``) are summed. :attr:`totals` is current at any
    time; a :class:`UsageTotals` item is emitted when the input is over.
    """

    def __init__(self) -> None:
        self.totals: dict[str, Usage] = {}
        self.streams = 0

    def process(self, item: Any, out: list[Any]) -> None:
        cls = item.__class__
        usage = None
        if cls is End or cls is Result:
            usage = item.usage
            if usage is None and item.completion is not None:
                usage = item.completion.usage
            if usage is not None:
                model = item.completion.model if item.completion is not None else ""
                self.totals[model] = _add(self.totals.get(model), usage)
                self.streams += 1
        out.append(item)

    def finish(self, out: list[Any]) -> None:
        out.append(UsageTotals(dict(self.totals), self.streams))


@final
class assemble(Stage):
    """Turn each stream's :class:`End` into its :class:`Result` (merging it first if no
    ``merge_deltas`` came before). Envelopes are consumed; other items pass on."""

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._merger = Merger(limits)

    def process(self, item: Any, out: list[Any]) -> None:
        cls = item.__class__
        if cls is End:
            if item.completion is None:
                item = self._merger.end(item)
            out.append(end_to_result(item))
        elif cls is Envelope:
            self._merger.process(item, out)
        else:
            out.append(item)


@final
class snapshots(Stage):
    """Ask for the partial completion of a stream every ``every`` envelopes, or when
    ``interval`` seconds have passed since its last snapshot (checked as envelopes arrive).

    Put it before ``merge_deltas``, which answers with :class:`Snapshot` items.
    """

    def __init__(self, *, every: int | None = None, interval: float | None = None) -> None:
        if every is None and interval is None:
            raise UsageError("snapshots() needs every=N or interval=T")
        if every is not None and every < 1:
            raise UsageError("every must be at least 1")
        self._every = every
        self._interval = interval
        self._counts: dict[StreamKey, int] = {}
        self._last: dict[StreamKey, float] = {}

    def process(self, item: Any, out: list[Any]) -> None:
        out.append(item)
        cls = item.__class__
        if cls is Envelope:
            key = item.key
            due = False
            if self._every is not None:
                n = self._counts.get(key, 0) + 1
                self._counts[key] = n
                due = n % self._every == 0
            if self._interval is not None:
                now = time.monotonic()
                last = self._last.setdefault(key, now)
                if now - last >= self._interval:
                    due = True
                if due:
                    self._last[key] = now
            if due:
                out.append(SnapshotRequest(key))
        elif cls is End:
            self._counts.pop(item.key, None)
            self._last.pop(item.key, None)


def default_pipeline(limits: Limits = DEFAULT_LIMITS) -> Pipeline:
    """``dedupe() | collect_usage() | merge_deltas() | assemble()``."""
    return dedupe() | collect_usage() | merge_deltas(limits=limits) | assemble(limits=limits)
