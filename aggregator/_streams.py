"""The sans-I/O halves of a pipeline: one source into items, items into completions.

Theory of operation: a :class:`SourceDecoder` turns one source (bytes, parsed payloads or
events) into :class:`Envelope` s keyed by stream, :class:`Failure` s and :class:`End` s. It owns
every decision about *where a stream ends*: ``[DONE]``, the end of the source, an error payload,
and malformed input (strict: the source's open streams end with the error and the source is
finished with; lenient: the payload is skipped and a ``Failure`` reports it). A :class:`Merger`
folds envelopes into one :class:`Accumulator` per stream and puts the completion on the stream's
``End``. Both are plain objects: the async stages and the sync :class:`Assembler` drive them.

A source that never opened a stream, or had bad input while no stream was open, still ends with
an ``End`` for the key ``(name, 0)``: a source is never lost silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import attrs

from ._accumulate import Accumulator
from ._completions import ChatCompletion
from ._decode import Format, ItemKind, Lane, PayloadDecoder, payload_to_item, upstream_error
from ._decode import Item as DecodedItem
from ._errors import (
    AggregatorError,
    LimitError,
    StreamError,
    StructureError,
    UpstreamError,
    UsageError,
)
from ._events import ChatCompletionChunk, CompletionChunk
from ._items import End, Envelope, Failure, Item, Snapshot, SnapshotRequest, StreamKey
from ._limits import DEFAULT_LIMITS, Limits
from ._repr import attrs_repr
from ._results import EndReason, Result

__all__ = [
    "Merger",
    "SourceDecoder",
    "SourceFailed",
    "SourceRaised",
    "StreamBudget",
    "end_to_result",
    "feed_raw",
    "internal_error",
]

_CHUNKS = (ChatCompletionChunk, CompletionChunk)


class _Open:
    __slots__ = ("error", "has_id", "key", "seq")

    def __init__(self, key: StreamKey, has_id: bool) -> None:
        self.key = key
        self.seq = 0
        self.has_id = has_id
        self.error: StreamError | None = None


@final
class StreamBudget:
    """How many more streams may open at once, shared by the sources of a fan-in."""

    __slots__ = ("free",)

    def __init__(self, size: int) -> None:
        self.free = size

    def take(self) -> bool:
        if self.free <= 0:
            return False
        self.free -= 1
        return True

    def give(self, n: int) -> None:
        self.free += n


@final
class SourceDecoder:
    """Decode one source into items, grouping its chunks into streams by completion id.

    Args:
        name: the source's name (first half of every stream key; used in messages).
        format: ``"sse"``, ``"jsonl"`` or ``"auto"``, for :meth:`feed`.
        strict: on malformed input, end the source's open streams with the error (``True``), or
            skip the payload and emit a :class:`Failure` (``False``).
    """

    __slots__ = (
        "_budget",
        "_by_id",
        "_current",
        "_decoder",
        "_done",
        "_limits",
        "_open",
        "_ordinal",
        "_refused",
        "_source_trouble",
        "_stopped",
        "name",
        "strict",
    )

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        budget: StreamBudget | None = None,
    ):
        self.name = name
        self.strict = strict
        self._limits = limits
        self._budget = budget
        self._refused: dict[str, None] = {}
        self._decoder = PayloadDecoder(
            name, format=format, max_line=limits.max_line, max_depth=limits.max_depth
        )
        self._open: dict[StreamKey, _Open] = {}
        self._by_id: dict[str, _Open] = {}
        self._current: _Open | None = None
        self._ordinal = 0
        self._source_trouble = False
        self._stopped = False
        self._done = False

    @property
    def line(self) -> int:
        """The number of lines of bytes read so far."""
        return self._decoder.line

    @property
    def stopped(self) -> bool:
        """Whether the source is finished with (closed, or broken in strict mode)."""
        return self._stopped

    @property
    def framing(self) -> Format:
        """``sse`` or ``jsonl`` once known from the bytes, ``auto`` before."""
        return self._decoder.format

    def feed(self, data: bytes, lane: Lane | None = None) -> list[Item]:
        """Take the next bytes of the source (``lane``: see ``FusedSource``)."""
        if self._stopped:
            return []
        return self._decoded(self._decoder.feed(data, lane))

    def add(self, item: Any, *, where: str = "", dedupe_id: str | None = None) -> list[Item]:
        """Take one parsed payload (a ``dict``) or chunk event."""
        if self._stopped:
            return []
        if isinstance(item, _CHUNKS):
            decoded = DecodedItem(ItemKind.CHUNK, where, event=item, sse_id=dedupe_id)
        else:
            decoded = payload_to_item(
                item,
                stream=self.name,
                where=where,
                sse_id=dedupe_id,
                max_depth=self._limits.max_depth,
            )
        return self._decoded([decoded])

    def feed_raw(self, raw: Any, number: int) -> list[Item]:
        """Take item ``number`` as a source yielded it (see :func:`feed_raw`)."""
        return feed_raw(self, raw, number)

    def feed_all(self, raws: Iterable[Any], number: int, out: list[Any]) -> int:
        """:meth:`feed_raw` for each item of ``raws``, numbered on from ``number``, with what
        comes out appended to ``out``, until the source stops; returns the last number.

        Raises:
            SourceRaised: ``raws`` raised (a sync source failing); what was fed is in ``out``.
        """
        iterator = iter(raws)
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                return number
            except Exception as exc:
                raise SourceRaised(exc, number) from exc
            number += 1
            items = feed_raw(self, raw, number)
            if items:
                out += items
                if self._stopped:
                    return number

    def close(self, *, cancelled: bool = False, lane: Lane | None = None) -> list[Item]:
        """End the source: every open stream ends (``cut_off`` for SSE, which promises
        ``[DONE]``; ``exhausted`` otherwise; ``cancelled`` if asked).

        At the end of the input, a last event or line without its terminator is decoded; when
        cancelled, the reading stopped in the middle of the input, and such an unfinished tail
        is dropped (it would be a truncated payload, not an error of the source's)."""
        if self._stopped:
            return []
        out = [] if cancelled else self._decoded(self._decoder.close(lane))
        if self._stopped:
            return out
        if cancelled:
            reason = EndReason.CANCELLED
        elif self._decoder.format == "sse":
            reason = EndReason.CUT_OFF
        else:
            reason = EndReason.EXHAUSTED
        where = self._place()
        self._end_all(reason, None, out, where)
        if self._ordinal == 0 or self._source_trouble:
            error = None
            if self._ordinal == 0:
                error = StreamError("no completion in the input", stream=self.name, where=where)
            source_reason = EndReason.DONE if self._done else reason
            out.append(End(key=(self.name, 0), reason=source_reason, where=where, error=error))
        self._stopped = True
        return out

    def fail(self, error: StreamError) -> list[Item]:
        """The source itself failed (it raised, say): its open streams end with ``error``."""
        if self._stopped:
            return []
        out: list[Item] = []
        self._fatal(error, out)
        return out

    def _place(self) -> str:
        return f"line {self._decoder.line}" if self._decoder.format != "auto" else ""

    def _decoded(self, items: list[DecodedItem]) -> list[Item]:
        out: list[Item] = []
        for item in items:
            if self._stopped:
                break
            kind = item.kind
            if kind is ItemKind.CHUNK:
                self._chunk(item, out)
            elif kind is ItemKind.DONE:
                self._end_all(EndReason.DONE, None, out, item.where)
                self._done = True
            else:
                self._error(item.error, out)  # type: ignore[arg-type]
        return out

    def _chunk(self, item: DecodedItem, out: list[Item]) -> None:
        self._done = False
        event: Any = item._event
        payload = item.payload
        id_ = payload["id"] if event is None else event.id  # type: ignore[index]
        stream = self._stream_for(id_)
        if stream is None:
            if id_ not in self._refused:  # the first chunk of a stream over the limits
                self._refuse(id_, item.where, out)
            return
        stream.seq += 1
        out.append(Envelope(stream.key, stream.seq, event, item.sse_id, item._where, payload))
        if event is not None and event.error is not None:
            error = upstream_error(event.error, self.name, item.where)
            self._end_all(EndReason.ERROR, error, out, item.where)

    def _stream_for(self, id_: str) -> _Open | None:
        current = self._current
        if id_:
            stream = self._by_id.get(id_)
            if stream is None:
                if current is not None and not current.has_id:
                    stream = current  # a stream without an id yet takes this one (Azure)
                    stream.has_id = True
                elif id_ in self._refused:
                    return None
                else:
                    stream = self._new(True)
                    if stream is None:
                        return None
                self._by_id[id_] = stream
        elif current is not None:
            stream = current
        else:
            stream = self._new(False)
            if stream is None:
                return None
        self._current = stream
        return stream

    def _new(self, has_id: bool) -> _Open | None:
        limit = self._limits.max_streams
        if limit is not None and len(self._open) >= limit:
            return None
        if self._budget is not None and not self._budget.take():
            return None
        self._ordinal += 1
        stream = _Open((self.name, self._ordinal), has_id)
        self._open[stream.key] = stream
        return stream

    def _refuse(self, id_: str, where: str, out: list[Item]) -> None:
        """A new stream would pass ``max_streams`` or ``max_open_streams``: report it, once."""
        if len(self._refused) < 4096:
            self._refused[id_] = None
        self._ordinal += 1
        per_source = self._limits.max_streams
        full = per_source is not None and len(self._open) >= per_source
        which = "max_streams" if full else "max_open_streams"
        error = LimitError(
            f"too many streams open at once; completion {id_ or '(no id)'} refused",
            stream=self.name,
            where=where,
            limit=which,
        )
        out.append(
            End(key=(self.name, self._ordinal), reason=EndReason.LIMIT, where=where, error=error)
        )

    def _error(self, error: StreamError, out: list[Item]) -> None:
        if self.strict:
            self._fatal(error, out)
        elif isinstance(error, UpstreamError):
            if self._open:
                self._end_all(EndReason.ERROR, error, out, error.where)
            else:
                self._source_trouble = True
                out.append(Failure((self.name, 0), error))
        elif self._current is not None:
            out.append(Failure(self._current.key, error))
        else:
            self._source_trouble = True
            out.append(Failure((self.name, 0), error))

    def _fatal(self, error: StreamError, out: list[Item]) -> None:
        if self._open:
            self._end_all(EndReason.ERROR, error, out, error.where)
        else:
            out.append(
                End(key=(self.name, 0), reason=EndReason.ERROR, where=error.where, error=error)
            )
        self._stopped = True

    def _end_all(
        self, reason: EndReason, error: StreamError | None, out: list[Item], where: str = ""
    ) -> None:
        if isinstance(error, LimitError):
            reason = EndReason.LIMIT
        for stream in self._open.values():
            out.append(End(key=stream.key, reason=reason, where=where, error=error))
        if self._budget is not None:
            self._budget.give(len(self._open))
        self._open = {}
        self._by_id = {}
        self._current = None


@final
class SourceRaised(Exception):
    """A sync source raised ``exception`` after ``number`` items (see ``feed_all``)."""

    def __init__(self, exception: Exception, number: int) -> None:
        super().__init__(exception, number)
        self.exception = exception
        self.number = number


@final
@attrs.frozen(repr=False)
class SourceFailed:
    """A raw item standing for an exception the source raised after ``number`` items."""

    __repr__ = attrs_repr

    exception: BaseException
    number: int


def source_error(exc: BaseException, name: str, number: int) -> StreamError:
    """The :class:`StreamError` for a source that raised ``exc``.

    An :class:`UpstreamError` an adapter raised (an HTTP error status, an SDK's error event) is
    kept as what it is, named and placed.
    """
    where = f"after item {number}"
    if isinstance(exc, UpstreamError):
        err: StreamError = UpstreamError(exc.detail, stream=name, where=where, payload=exc.payload)
    else:
        err = StreamError(
            f"the source raised {type(exc).__name__}: {exc}", stream=name, where=where
        )
    err.__cause__ = exc
    return err


def feed_raw(source: SourceDecoder, raw: Any, number: int) -> list[Item]:
    """Hand one item a source yielded to ``source``.

    Bad data never raises: it becomes items. Should a bug of ours raise anyway, the source fails
    with an error saying so, and the other sources of a fan-in go on.

    ``raw`` is bytes, a parsed payload (``dict``), a chunk event, a ``(dedupe_id, payload)``
    pair (a broker's message id and the payload), or :class:`SourceFailed`.

    Raises:
        UsageError: ``raw`` is none of these.
    """
    try:
        return _feed_raw(source, raw, number)
    except AggregatorError:
        raise
    except Exception as exc:  # noqa: BLE001 - one source's bug must not end the others
        return source.fail(internal_error(exc, source.name, number))


def internal_error(exc: Exception, name: str, number: int) -> StreamError:
    """The error that fails a source when a bug of ours raised ``exc`` on its item ``number``."""
    error = StreamError(
        f"internal error (a bug: please report it): {type(exc).__name__}: {exc}",
        stream=name,
        where=f"item {number}",
    )
    error.__cause__ = exc
    return error


def _feed_raw(source: SourceDecoder, raw: Any, number: int) -> list[Item]:
    cls = raw.__class__
    if cls is bytes:
        return source.feed(raw)
    if cls is dict or cls is ChatCompletionChunk or cls is CompletionChunk:
        return source.add(raw, where=f"item {number}")
    if cls is tuple and len(raw) == 2:
        return source.add(raw[1], where=f"item {number}", dedupe_id=str(raw[0]))
    if cls is bytearray or cls is memoryview:
        return source.feed(bytes(raw))
    if cls is SourceFailed:
        return source.fail(source_error(raw.exception, source.name, raw.number))
    raise UsageError(
        "a source yields bytes, dicts, chunk events or (id, payload) pairs, "
        f"not {cls.__name__} (item {number})"
    )


def empty_completion() -> ChatCompletion:
    """The completion of a stream that never received a chunk."""
    return ChatCompletion(id="", created=0, model="", choices=[])


@final
class Merger:
    """Fold envelopes into one :class:`Accumulator` per stream (sans-I/O).

    :meth:`process` consumes :class:`Envelope` s and :class:`Failure` s, answers
    :class:`SnapshotRequest` s with :class:`Snapshot` s, completes each :class:`End` with the
    stream's completion and counters, and passes anything else on unchanged.
    """

    __slots__ = ("_accumulators", "_failed", "_limits", "_problems")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._accumulators: dict[StreamKey, Accumulator] = {}
        self._problems: dict[StreamKey, list[StreamError]] = {}
        self._failed: dict[StreamKey, LimitError] = {}

    @property
    def open_streams(self) -> int:
        """The number of streams being merged."""
        return len(self._accumulators)

    def process(self, item: Any, out: list[Any]) -> None:
        """Take one item; append what it produces to ``out``."""
        cls = item.__class__
        if cls is Envelope:
            key = item.key
            acc = self._accumulators.get(key)
            if acc is None:
                acc = self._accumulators[key] = Accumulator(self._limits)
            elif key in self._failed:
                return  # a stream that passed a limit takes nothing more
            try:
                if item._event is None:
                    acc.add_plain(item.payload)
                else:
                    acc.add(item._event)
            except UsageError as exc:
                self._usage_problem(key, item, exc)
            except LimitError as exc:
                self._limit_failure(key, item, exc)
        elif cls is Failure:
            self._problems.setdefault(item.key, []).append(item.error)
        elif cls is End:
            out.append(self.end(item))
        elif cls is SnapshotRequest:
            acc = self._accumulators.get(item.key)
            if acc is not None:
                out.append(Snapshot(item.key, acc.result(), acc.chunks))
        else:
            out.append(item)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        """:meth:`process` for each item of ``batch``; returns what they produce.

        Plain payloads of streams already open (the bulk of any stream) are folded inline.
        """
        out: list[Any] = []
        accumulators = self._accumulators
        failed = self._failed
        process = self.process
        for item in batch:
            if item.__class__ is Envelope and item._event is None:
                key = item.key
                acc = accumulators.get(key)
                if acc is not None and key not in failed:
                    try:
                        acc.add_plain(item.payload)  # type: ignore[arg-type]
                    except UsageError as exc:
                        self._usage_problem(key, item, exc)
                    except LimitError as exc:
                        self._limit_failure(key, item, exc)
                    continue
            process(item, out)
        return out

    def _usage_problem(self, key: StreamKey, item: Envelope, exc: UsageError) -> None:
        error = StructureError(str(exc), stream=key[0], where=item.where)
        self._problems.setdefault(key, []).append(error)

    def _limit_failure(self, key: StreamKey, item: Envelope, exc: LimitError) -> None:
        self._failed[key] = LimitError(exc.detail, stream=key[0], where=item.where, limit=exc.limit)

    def end(self, end: End) -> End:
        """Complete ``end`` with what was merged for its stream, and forget the stream."""
        acc = self._accumulators.pop(end.key, None)
        problems = self._problems.pop(end.key, ())
        failed = self._failed.pop(end.key, None)
        if end.completion is not None:
            return end
        if failed is not None:
            end = attrs.evolve(end, reason=EndReason.LIMIT, error=failed, where=failed.where)
        if acc is None:
            return attrs.evolve(
                end,
                completion=empty_completion(),
                problems=end.problems + tuple(problems),
            ).counted(chunks=0)
        return attrs.evolve(
            end,
            completion=acc.result(),
            finished=acc.finished,
            usage=end.usage if end.usage is not None else acc.usage,
            problems=end.problems + tuple(problems),
        ).counted(chunks=acc.chunks)


def end_to_result(end: End) -> Result:
    """The :class:`Result` the caller sees for a completed :class:`End`."""
    counters = end.counters
    completion = end.completion if end.completion is not None else empty_completion()
    return Result(
        stream=end.key[0],
        key=end.key,
        completion=completion,
        reason=end.reason,
        where=end.where,
        finished=end.finished,
        error=end.error,
        problems=end.problems,
        chunks=counters.get("chunks", 0),
        duplicates=counters.get("duplicates", 0),
        usage=end.usage if end.usage is not None else completion.usage,
    )
