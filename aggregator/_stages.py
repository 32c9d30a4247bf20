"""Stages and their composition with ``|``, and how a pipeline runs.

Theory of operation: a pipeline has two sections, split at ``merge_deltas()`` (or
``assemble()``, where chunks become results):

- *Before* it, stages see chunks: each source's engine runs them in the source's own task, as
  plain calls, on each chunk's :class:`Envelope` and each stream's :class:`End` (see
  ``_core/_engine``). ``dedupe()`` and ``collect_usage()`` are the engine's own steps there:
  dedupe drops a replayed chunk before anything sees it, and usage is the accumulator's, kept
  once, so no order of ours can count a replay or disagree with the completion.
- *After* it, stages see results (:class:`Result`, :class:`SourceReport`, :class:`Snapshot`):
  they run in the consumer's task, over batches, and may await (:class:`AsyncStage`).

A pipeline that cannot give a right answer is refused when it is planned, with an error that
says why: ``dedupe()`` after the merge (it would see no chunk), an :class:`AsyncStage` before it
(a chunk stage runs inside the engine, which does not await), no merge at all.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any, final

import attrs

from ._core._engine import Engine, StreamBudget
from ._core._errors import UsageError
from ._core._framing import Format
from ._core._items import End, Envelope, SnapshotRequest, StreamKey
from ._core._limits import Limits
from ._core._merge import add_usage
from ._core._model import Model
from ._core._results import Result
from ._core._usage import Tokens, tokens

__all__ = [
    "AsyncStage",
    "Pipeline",
    "Stage",
    "Tokens",
    "UsageTotals",
    "assemble",
    "collect_usage",
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
        """The input is over (a chunk stage: this source's): append what is still held."""

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
    """A step that awaits: override :meth:`run`, an async generator over items. It sees
    results, so it goes after ``merge_deltas()``."""

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
                    stream = _in_one_loop(tuple(group), stream)
                    group = []
                stream = _async_stage(s, stream)
            else:
                group.append(s)
        if group or not self.stages:
            stream = _in_one_loop(tuple(group), stream)
        return stream  # type: ignore[return-value]


def pipeline(*stages: Stage | Pipeline) -> Pipeline:
    """The stages composed in order: ``pipeline(a, b, c)`` is ``a | b | c``."""
    return Pipeline(*stages)


async def _in_one_loop(
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


class _EngineStep(Stage):
    """A step the engine itself does; in a pipeline it says where, and with what settings."""


@final
class dedupe(_EngineStep):
    """Drop a chunk whose ``(stream, dedupe_id)`` was already seen, and count it in
    :attr:`Result.duplicates`.

    The ``dedupe_id`` is the SSE ``id:`` an event carried (a client that reconnects with
    Last-Event-ID gets a replay) or the id a source gave with a payload (``(id, payload)``
    pairs). Chunks without one are never duplicates: the same token twice in a row is
    legitimate. At most ``max_ids`` ids are remembered per stream (the oldest are forgotten
    first); they are freed when the stream ends. Without ``dedupe()`` in a pipeline, nothing is
    dropped.
    """

    def __init__(self, *, max_ids: int = 65_536) -> None:
        if max_ids < 1:
            raise UsageError("max_ids must be at least 1")
        self.max_ids = max_ids


@final
class collect_usage(_EngineStep):
    """Each stream's usage by the usage policy, on :attr:`Result.usage` (which is
    ``completion.usage``): the report that arrives last wins, with the fields it lacks filled
    from earlier reports; never summed within a stream. The accumulator keeps it as it merges,
    so this stage only says so; it is kept for pipelines that name every step."""


@final
class merge_deltas(_EngineStep):
    """Fold each stream's chunks into its completion: where chunks become results. The stages
    before it see chunks, the stages after it see results."""


@final
class assemble(_EngineStep):
    """Where chunks become results, like ``merge_deltas()``; after it, a no-op."""


@final
class snapshots(Stage):
    """Ask for the partial completion of a stream every ``every`` chunks, or when ``interval``
    seconds have passed since its last snapshot (checked as chunks arrive). A chunk stage: put
    it before ``merge_deltas()``; the :class:`Snapshot` s come out with the results."""

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


@final
@attrs.frozen(repr=False)
class UsageTotals(Model):
    """Usage summed across streams, by model (emitted by :class:`total_usage` at the end).

    Attributes:
        by_model: each model's usage objects summed, in its protocol's own shape (a model
            reported by two protocols has its second one under ``"model (protocol)"``).
        streams: the streams that reported usage.
        tokens: each model's :class:`Tokens` summed across every protocol, in one vocabulary
            (input with cached tokens included, output, cache reads and writes, reasoning).
    """

    by_model: dict[str, Any]
    streams: int
    tokens: dict[str, Tokens] = attrs.field(factory=dict)


@final
class total_usage(Stage):
    """Total the usage of every result, by model, for billing and quotas. A result stage.

    Numeric fields and numeric provider extras (``cost``) are summed. :attr:`totals` is current
    at any time; a :class:`UsageTotals` item is emitted when the input is over.
    """

    def __init__(self) -> None:
        self.totals: dict[str, Any] = {}
        self.tokens: dict[str, Tokens] = {}
        self.streams = 0

    def process(self, item: Any, out: list[Any]) -> None:
        if item.__class__ is Result and (usage := item.usage) is not None:
            model = str(getattr(item.completion, "model", "") or "")
            held = self.totals.get(model)
            key = model
            if held is not None and type(held) is not type(usage):
                key = f"{model} ({item.protocol})"
                held = self.totals.get(key)
            self.totals[key] = add_usage(held, usage)
            counted = tokens(usage)
            if counted is not None:
                before = self.tokens.get(model)
                self.tokens[model] = counted if before is None else before + counted
            self.streams += 1
        out.append(item)

    def finish(self, out: list[Any]) -> None:
        out.append(UsageTotals(dict(self.totals), self.streams, dict(self.tokens)))


def default_pipeline() -> Pipeline:
    """``dedupe() | collect_usage() | merge_deltas() | assemble()``."""
    return dedupe() | collect_usage() | merge_deltas() | assemble()


@final
@attrs.frozen
class Plan(Model):
    """A pipeline split where chunks become results: the engine's settings and chunk stages,
    and the stages run over results."""

    dedupe_ids: int | None = 65_536
    chunk_stages: tuple[Stage, ...] = ()
    result_stages: Pipeline = attrs.field(factory=Pipeline)

    def engine(
        self,
        name: str,
        *,
        format: Format,
        strict: bool,
        limits: Limits,
        interleaved: bool = False,
        budget: StreamBudget | None = None,
    ) -> Engine:
        """The engine of one source for this pipeline."""
        return Engine(
            name,
            format=format,
            strict=strict,
            limits=limits,
            interleaved=interleaved,
            dedupe_ids=self.dedupe_ids,
            stages=self.chunk_stages,
            budget=budget,
        )


_DEFAULT = Plan()


def plan(stages: Stage | Pipeline | None) -> Plan:
    """Split ``stages`` where chunks become results; refuse what cannot give a right answer.

    Raises:
        UsageError: the pipeline has no ``merge_deltas()``/``assemble()``; an engine step or
            ``snapshots()`` after it; an :class:`AsyncStage` or ``total_usage()`` before it.
    """
    if stages is None:
        return _DEFAULT
    if not isinstance(stages, (Stage, Pipeline)):
        raise UsageError(f"not a stage or pipeline: {stages!r}")
    steps = Pipeline(stages).stages
    at = next((i for i, s in enumerate(steps) if isinstance(s, (merge_deltas, assemble))), None)
    if at is None:
        raise UsageError(
            f"the pipeline {Pipeline(stages)!r} has no merge_deltas() or assemble(): say where "
            "chunks become results (the stages before it see chunks, those after it results)"
        )
    before = steps[:at]
    after = [s for s in steps[at + 1 :] if not isinstance(s, assemble)]  # a no-op after it
    for s in after:
        if isinstance(s, (_EngineStep, snapshots)):
            raise UsageError(
                f"{type(s).__name__}() after {type(steps[at]).__name__}() would see no chunk: "
                "put it before"
            )
    for s in before:
        if isinstance(s, AsyncStage):
            raise UsageError(
                f"{s!r} awaits, and chunk stages run inside the engine, which does not: put it "
                f"after {type(steps[at]).__name__}(), where it sees results"
            )
        if isinstance(s, total_usage):
            raise UsageError("total_usage() reads results: put it after merge_deltas()")
    found = [s for s in before if isinstance(s, dedupe)]
    return Plan(
        dedupe_ids=found[-1].max_ids if found else None,
        chunk_stages=tuple(s for s in before if not isinstance(s, _EngineStep)),
        result_stages=Pipeline(*after),
    )
