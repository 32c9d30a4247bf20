"""The engine: one source in, one :class:`Result` per completion and a :class:`SourceReport` out.

Theory of operation: every rule about *where a stream starts and ends* and *what happens to a
chunk* lives here, once, for every protocol and every way in (bytes, parsed payloads, events,
``(id, payload)`` pairs). ``Assembler``, ``results``, ``fan_in``, ``Tee`` and the CLI all run this
one object; it is plain synchronous code, fed, returning what ended. A chunk's trip (each step
is described in docs/design.md): framing (``_framing``; the protocol's byte-shape lane is asked
first), recognition of the protocol by the first payload, parsing (``_protocol``'s actions;
malformed input is fatal when ``strict``, a problem otherwise), routing (:meth:`_stream_for`:
one response body is one completion, or one stream per id for an ``interleaved`` source),
dedupe, the chunk stages, and the merge into the stream's accumulator. Each open stream's state
is one ``_Stream``, freed when it ends; the source's report comes last.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from itertools import islice, repeat
from operator import length_hint
from typing import Any, final

import orjson

from ._errors import (
    AggregatorError,
    ConflictError,
    DecodeError,
    LimitError,
    StreamError,
    StructureError,
    UpstreamError,
    UsageError,
    Where,
    quoted,
    upstream_error,
    where_text,
)
from ._framing import Format, Framing
from ._items import End, Envelope, Snapshot, SnapshotRequest, StreamKey
from ._limits import DEFAULT_LIMITS, Limits
from ._protocol import (
    CHUNK,
    ERROR,
    LAST,
    LAST_ERROR,
    SKIP,
    START,
    TYPED_EVENTS,
    Protocol,
    StreamAccumulator,
)
from ._protocols import PROTOCOLS
from ._results import EndReason, Result, SourceReport, Timings
from ._usage import negative_counts

__all__ = ["Engine", "SourceRaised", "StreamBudget", "internal_error", "source_error"]

#: How many refused stream ids are remembered, so that their later chunks are dropped quietly
#: (the oldest is forgotten first; each id at most ``Limits.max_id`` long, or a digest).
_MAX_REFUSED = 4096
#: The most bytes of one feed framed at once (see ``Engine._bytes``): 256 KiB, what the caches
#: of a core hold (measured: 1.87 µs a chunk fed 100,000 chunks at once, 1.28 in such pieces).
_PIECE = 1 << 18


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
class SourceRaised(Exception):
    """A sync source raised ``exception`` after ``number`` items (see ``feed_items``)."""

    def __init__(self, exception: Exception, number: int) -> None:
        super().__init__(exception, number)
        self.exception = exception
        self.number = number


def source_error(exc: BaseException, name: str, number: int) -> StreamError:
    """The :class:`StreamError` for a source that raised ``exc`` after ``number`` items.

    An :class:`AggregatorError` a source or an adapter raised (an HTTP error status, an SDK's
    error event, a time limit) is kept as what it is, named and placed.
    """
    where = f"after item {number}"
    if isinstance(exc, StreamError):
        err = exc.placed(name, where)
    else:
        err = StreamError(
            f"the source raised {type(exc).__name__}: {exc}", source=name, where=where
        )
    err.__cause__ = exc
    return err


def internal_error(exc: Exception, name: str, number: int) -> StreamError:
    """The error that fails a source when a bug of ours raised ``exc`` on its item ``number``."""
    error = StreamError(
        f"internal error (a bug: please report it): {type(exc).__name__}: {exc}",
        source=name,
        where=f"item {number}",
    )
    error.__cause__ = exc
    return error


@final
class _Stream:
    """Everything the engine holds for one open stream."""

    __slots__ = (
        "acc",
        "changes",
        "duplicates",
        "failed",
        "id",
        "key",
        "last_id",
        "notes",
        "problems",
        "reused",
        "seen",
        "size",
        "steady",
        "timed",
    )

    def __init__(self, key: StreamKey, id_: str, acc: StreamAccumulator | None) -> None:
        self.key = key
        #: the id the stream is known by (``""`` until one arrives).
        self.id = id_
        #: the id its last chunk had, when the server changed it mid-stream.
        self.last_id = id_
        self.acc = acc
        #: the dedupe ids seen (an id, or the digest of a long one), each with its payload's hash.
        self.seen: OrderedDict[Any, int] | None = None
        self.duplicates = 0
        #: how many chunks came with a dedupe id already seen but another payload (kept).
        self.reused = 0
        #: the payload bytes taken so far (bounded by ``Limits.max_completion``).
        self.size = 0
        self.problems: list[StreamError] = []
        self.notes: list[str] = []
        #: how many times the server changed the id mid-stream (from one chunk to the next).
        self.changes = 0
        #: the limit this stream passed (it takes nothing more), or, refused, why.
        self.failed: LimitError | None = None
        #: its clock readings, when the caller gives times (see ``Engine._stamp``).
        self.timed: _Times | None = None
        #: the same, once its first output is noted: all a feed then moves is ``last`` (see
        #: :meth:`Engine.feed_item`).
        self.steady: _Times | None = None


@final
class _Times:
    """When a stream's parts were seen, by the times the caller gave (the core reads no clock)."""

    __slots__ = ("chunks", "first", "kind", "last", "output", "output_from", "started")

    def __init__(self, started: float, now: float) -> None:
        self.started = started
        self.first = now
        self.last = now
        self.chunks = 0
        self.output: float | None = None
        self.kind: str | None = None
        #: the chunks merged before the feed that brought the first output.
        self.output_from = 0


#: how many payloads a lane merges one by one, in a row, before it is asked for a run of them
#: (see ``Engine._lane_run``; measured: a run of fewer than about 20 costs more than it saves)
_RUN_AFTER = 32

_SDK_HINT = (
    " (an SDK's stream of chunk objects works as it is; any other object must be passed "
    "through an adapter of aggregator.sources)"
)


@final
class Engine:
    """Assemble every completion of one source (see the module's docstring).

    Args:
        name: the source's name (first half of every stream key; used in messages).
        format: ``"sse"``, ``"jsonl"`` or ``"auto"``, for bytes.
        strict: on malformed input, end the open streams with the error and stop (``True``),
            or skip the payload and record it (``False``).
        limits: the limits; time limits are the shell's.
        interleaved: the source carries several completions side by side, told apart by id.
        dedupe_ids: how many dedupe ids each stream remembers (``None``: no dedupe).
        fast_lane: use the protocol's byte-shape lane (off when ``stages`` are given).
        stages: chunk stages (objects with ``process_batch`` and ``finish``), run on each
            chunk's :class:`Envelope` and each stream's :class:`End`.
        budget: the open streams a fan-in allows, shared by its sources.
    """

    __slots__ = (
        "_budget",
        "_by_id",
        "_current",
        "_dedupe_ids",
        "_error",
        "_events",
        "_first_byte",
        "_framing",
        "_interleaved",
        "_lane",
        "_lane_runs",
        "_lane_wanted",
        "_limits",
        "_line",
        "_max_completion",
        "_max_id",
        "_now",
        "_open",
        "_ordinal",
        "_problems",
        "_protocol",
        "_ran",
        "_refused",
        "_results",
        "_since",
        "_stages",
        "done",
        "epoch",
        "items",
        "name",
        "report",
        "started",
        "stopped",
        "strict",
    )

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        interleaved: bool = False,
        dedupe_ids: int | None = 65_536,
        fast_lane: bool = True,
        stages: Sequence[Any] = (),
        budget: StreamBudget | None = None,
    ) -> None:
        if dedupe_ids is not None and dedupe_ids < 1:
            raise UsageError("dedupe_ids must be at least 1, or None")
        self.name = name
        self.strict = strict
        self._limits = limits
        self._max_completion = (
            limits.max_completion if limits.max_completion is not None else 1 << 62
        )
        self._max_id = limits.max_id
        self._interleaved = interleaved
        self._dedupe_ids = dedupe_ids
        self._stages = tuple(stages)
        self._lane_wanted = fast_lane and not stages
        self._budget = budget
        self._framing = Framing(format, max_line=limits.max_line)
        self._protocol: Protocol | None = None
        self._lane: Any = None
        #: the lane's ``merge_run``, if it has one (see ``_records``).
        self._lane_runs: Any = None
        self._open: dict[StreamKey, _Stream] = {}
        self._by_id: dict[str, _Stream] = {}
        self._refused: dict[str | bytes, None] = {}
        self._current: _Stream | None = None
        self._ordinal = 0
        #: the line of the payload record being handled.
        self._line = 0
        #: how many records the lane's last run merged (see ``_lane_run``).
        self._ran = 0
        self._results = 0
        self._events = 0
        self._problems: list[StreamError] = []
        self._error: StreamError | None = None
        #: the number of items the source yielded so far (bytes, objects).
        self.items = 0
        #: whether the input so far ends with ``[DONE]`` (no stream is open).
        self.done = False
        #: whether the source is finished with (closed, failed, or broken in strict mode).
        self.stopped = False
        #: the source's report, once it is finished with.
        self.report: SourceReport | None = None
        #: when the source started (the request was sent), on the caller's clock; by default
        #: the first time it gave (see :meth:`feed`).
        self.started: float | None = None
        #: what the caller's times are offset from those of the :class:`Timings` handed out
        #: (added to each): 0 unless the caller reads a clock's raw readings (the shell does
        #: on trio, whose clock is ``offset + perf_counter()``: see ``_run.clock``).
        self.epoch = 0.0
        self._now: float | None = None
        self._first_byte: float | None = None
        #: when the next stream of a sequence started: the source's start, then the end of
        #: the stream before it.
        self._since: float | None = None

    @property
    def line(self) -> int:
        """The number of lines of bytes read so far."""
        return self._framing.line

    @property
    def protocol(self) -> str | None:
        """The name of the source's protocol, once its first payload told it."""
        return None if self._protocol is None else self._protocol.name

    # -- the ways in -------------------------------------------------------------------------

    def feed(self, data: bytes, now: float | None = None) -> list[Any]:
        """Take the next bytes of the source; return what ended (results, the report).

        ``now``: when the bytes arrived, on a monotonic clock of the caller's, in seconds
        (every way in takes one). Given, each result has its :class:`Timings`; the engine
        reads no clock itself.
        """
        out: list[Any] = []
        if not self.stopped:
            if now is not None:
                self._tick(now)
            self._bytes(data, out)
            if now is not None and self._current is not None:
                self._stamp(self._current)
        return out

    def feed_item(self, raw: Any, now: float | None = None) -> list[Any]:
        """Take the next item a source yielded: bytes, a parsed payload, an event, an SDK's chunk
        object, or a ``(dedupe_id, payload)`` pair. Bad data never raises: it becomes results.
        Should a bug of ours raise, the source fails with an error saying so. ``now``: as for
        :meth:`feed`.

        Raises:
            UsageError: ``raw`` is none of these.
        """
        out: list[Any] = []
        if now is None or self.stopped:
            self._item(raw, out)
            return out
        self._now = now  # what _tick does, after the first byte
        if self._first_byte is None:
            self._tick(now)
        self._item(raw, out)
        current = self._current
        if current is not None:
            steady = current.steady
            if steady is None:
                self._stamp(current)
            else:  # _stamp's steady case, without its call (a read of an async source each)
                chunks = current.acc.chunks  # type: ignore[union-attr]  # (timed: not refused)
                if chunks != steady.chunks:
                    steady.last = now
                    steady.chunks = chunks
        return out

    def _item(self, raw: Any, out: list[Any]) -> None:
        self.items += 1
        number = self.items
        if self.stopped:
            return
        try:
            cls = raw.__class__
            if cls is bytes:
                if len(raw) <= _PIECE:  # (_bytes's, without its call: a read each)
                    self._records(self._framing.feed(raw), out)
                else:
                    self._bytes(raw, out)
            elif cls is dict or cls in TYPED_EVENTS:
                self._take(raw, "message", None, number, None, out)
            elif cls is tuple and len(raw) == 2:
                self._take(raw[1], "message", str(raw[0]), number, None, out)
            elif cls is bytearray or cls is memoryview:
                self._bytes(bytes(raw), out)
            else:
                try:
                    payload = _sdk_payload(raw, number)
                except UsageError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the object's fault: bad input
                    detail = f"{type(raw).__name__} gave no JSON: {type(exc).__name__}: {exc}"
                    self._malformed(
                        StructureError(detail, source=self.name, where=f"item {number}"), out
                    )
                    return
                self._take(payload, "message", None, number, None, out)
        except AggregatorError:
            raise
        except Exception as exc:  # noqa: BLE001 - one source's bug must not end the others
            out += self.fail(internal_error(exc, self.name, number))

    def feed_items(self, raws: Iterable[Any], out: list[Any], now: float | None = None) -> None:
        """:meth:`feed_item` for each item of ``raws``, with what ends appended to ``out``,
        until ``raws`` runs out or the source stops; ``now``: when they were read (one time
        for them all).

        An event that continues the current stream as a plain chunk (what the protocol's
        ``chunk_id`` says of it: no error on it; no dedupe id, no chunk stage, a stream not
        refused) goes straight to :meth:`_merge`: that is what :meth:`_take` would do with it,
        without the dispatch (``tests/test_engine.py`` checks the two agree).

        Raises:
            SourceRaised: ``raws`` raised (a sync source failing); what was fed is in ``out``.
            UsageError: an item of a wrong type.
        """
        if now is not None and not self.stopped:
            self._tick(now)
        item = self._item
        hot_cls: Any = None
        chunk_id: Any = None
        number = self.items  # kept here while the hot branch runs, in self.items for the rest
        run: list[bytes] = []  # bytes items read in a row, framed at once (see _run)
        size = 0  # their bytes: a run is framed once it holds _PIECE
        try:
            for raw in raws:
                number += 1
                if raw.__class__ is bytes:
                    run.append(raw)
                    size += len(raw)
                    if size < _PIECE:
                        continue
                    self._run(run, number, out)
                    size = 0
                    if self.stopped:
                        return
                    continue
                if run:
                    self._run(run, number - 1, out)
                    size = 0
                    if self.stopped:
                        return
                current = self._current
                if (
                    raw.__class__ is hot_cls
                    and current is not None
                    and current.failed is None
                    and current.id
                    and chunk_id(raw) == current.id
                ):  # the next plain chunk of the current stream (``done`` is false: it is open)
                    try:
                        current.acc.add(raw)  # type: ignore[union-attr]  # not refused: failed
                    except (ConflictError, LimitError) as exc:
                        self._refused_chunk(current, exc, number)
                    continue
                self.items = number - 1
                item(raw, out)
                if self.stopped:
                    return
                if hot_cls is None and self._protocol is not None and not self._stages:
                    hot_cls, chunk_id = self._protocol.hot_event()
            if run:
                self._run(run, number, out)
        except UsageError:
            raise
        except Exception as exc:  # the iterable raised: _item catches our own bugs
            if run:  # what was read before it raised is fed
                self._run(run, number, out)
                if self.stopped:
                    return  # it stopped before: one item at a time, that read was not made
            raise SourceRaised(exc, number) from exc
        finally:
            self.items = number
            if now is not None and self._current is not None:
                self._stamp(self._current)

    def _run(self, run: list[bytes], last: int, out: list[Any]) -> None:
        """Feed the bytes items ``run``, the last of them item number ``last``, as one item
        (the framing takes bytes cut anywhere, so they are framed as they would be one by
        one, in one pass instead of one per item: a sync source of lines, or of events). A run
        ends at an item that is not bytes, at the end of ``raws``, or at ``_PIECE`` bytes: what
        is held at once, and read ahead of a stop, stays bounded whatever the source."""
        data = run[0] if len(run) == 1 else b"".join(run)
        run.clear()  # first: should the feed raise, the caller's handler must not feed it again
        self.items = last - 1
        self._item(data, out)

    def close(self, *, cancelled: bool = False, now: float | None = None) -> list[Any]:
        """End the source: every open stream ends, then the source's report.

        Open streams end ``cut_off`` when the source was SSE (which promises ``[DONE]``),
        ``exhausted`` otherwise, or ``cancelled``. In lenient mode an SSE stream whose every
        choice finished ends ``exhausted`` (a server that never sends ``[DONE]``, noted).
        At the end of the input, a last event or line without its terminator is decoded; when
        cancelled, the reading stopped mid-input, and such an unfinished tail is dropped.
        """
        out: list[Any] = []
        if self.stopped:
            return out
        if now is not None:
            self._tick(now)
        if not cancelled:
            self._records(self._cut_tail(self._framing.close()), out)
            if self.stopped:
                return out
        reason = EndReason.CANCELLED if cancelled else None
        where = self._place()
        for stream in list(self._open.values()):
            self._end(stream, reason or self._run_out(stream), None, where, out)
        self._stop(reason or self._run_out(None), where, out)
        return out

    def _cut_tail(self, records: list[Any]) -> list[Any]:
        """The records of the source's unterminated tail, less an SSE event cut in the middle.

        SSE dispatches an event at its blank line; an event still open at the end of the input
        is kept if its data is whole (a server that omits the last blank line), but data that
        is not valid JSON there is a cut connection or file, not the server's bad JSON: it is
        dropped, and the open streams end ``cut_off`` with a note saying where.
        """
        if self._framing.format != "sse":
            return records
        kept: list[Any] = []
        for record in records:
            if record.__class__ is tuple and record[0] != b"[DONE]" and record[1] != "error":
                try:
                    orjson.loads(record[0])
                except orjson.JSONDecodeError:
                    note = f"cut off inside an event (line {record[4]}): its partial data dropped"
                    for stream in self._open.values():
                        stream.notes.append(note)
                    continue
            kept.append(record)
        return kept

    def fail(self, error: StreamError, now: float | None = None) -> list[Any]:
        """The source itself failed (it raised, say): its open streams end with ``error``."""
        out: list[Any] = []
        if not self.stopped:
            if now is not None:
                self._tick(now)
            self._fatal(error, out)
        return out

    # -- times -------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        """The caller gave the time: it is ``now``."""
        self._now = now
        if self._first_byte is None:
            self._first_byte = now
            if self.started is None:
                self.started = now
            self._since = self.started

    def _stamp(self, stream: _Stream) -> None:
        """Note the time on ``stream`` if chunks were merged into it since it was last noted.

        Called when a feed is over, when the stream stops being current, and when it ends: the
        time is the same within one feed, so the readings are those of each chunk's arrival,
        to the feed, while the merge paths (the lane, the hot branch) carry no clock. Once the
        first output is noted, a feed moves only ``last``: the stream is ``steady``, and
        :meth:`feed_item` (a read of an async source each) makes that case's two stores itself.
        """
        timed = stream.timed
        acc = stream.acc
        now = self._now
        if acc is None or now is None:
            return
        chunks = acc.chunks
        if timed is None:
            if not chunks:
                return
            since = self._since
            timed = stream.timed = _Times(now if since is None else since, now)
        elif chunks == timed.chunks:
            return
        timed.last = now
        if timed.kind is None:
            kind = getattr(acc, "output_kind", None)
            if kind is not None:
                timed.kind, timed.output, timed.output_from = kind, now, timed.chunks
                stream.steady = timed
        timed.chunks = chunks

    # -- payloads ----------------------------------------------------------------------------

    def _records(self, records: list[Any], out: list[Any]) -> None:
        """Handle the payload records of the framing (see ``_framing``), in order.

        The lane is asked before ``stopped`` is: a source that stopped has no current stream,
        so its lane holds no shape (``_set_current`` clears it)."""
        lane = self._lane
        run = self._lane_runs
        streak = 0  # (the payloads the lane merged in a row)
        todo = iter(records)
        for record in todo:
            if record.__class__ is not tuple:
                if self.stopped:
                    return
                self._malformed(record.placed(self.name, record.where), out)
                continue
            data, event, sse_id, _, line, own_id = record
            self._line = line  # (the place of a lane's dedupe problem, see _lane_duplicate)
            if lane is not None and lane.shapes and not own_id and event != "error":
                # merged by its byte shape: a branch of this one path (see ``_plain``)
                current = self._current  # (the lane's stream)
                size = current.size + len(data)  # type: ignore[union-attr]
                if size <= self._max_completion and lane.try_merge(data):
                    self._events += 1
                    self.done = False
                    current.size = size  # type: ignore[union-attr]
                    # and the records after it in a run, where the lane has them (the next
                    # record's index, from the records left, is the run's start; the records
                    # it merged are skipped): tried once the lane merged _RUN_AFTER payloads
                    # in a row, since a run costs about as much as that many payloads save
                    if run is not None:
                        streak += 1
                        if streak >= _RUN_AFTER and self._lane_run(
                            run, records, len(records) - length_hint(todo)
                        ):
                            next(islice(todo, self._ran, self._ran), None)
                    continue
                # (a payload past max_completion, or no shape's: the full path decides it)
            streak = 0
            if self.stopped:
                return
            if data == b"[DONE]" or (len(data) < 32 and data.strip() == b"[DONE]"):
                self._end_all(EndReason.DONE, None, f"line {line}", out)
                self.done = True
                continue
            self._events += 1
            where = (line, self._events)
            if event == "error":
                self._error_event(data, where_text(where), out)
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                text = where_text(where)
                self._malformed(
                    DecodeError(f"invalid JSON: {exc}", source=self.name, where=text), out
                )
                continue
            self._take(obj, event, sse_id if own_id else None, where, data, out)
            if lane is None:
                lane = self._lane  # (made when the first payload told the protocol)
                run = self._lane_runs

    def _lane_run(self, run: Any, records: list[Any], start: int) -> bool:
        """Let the lane merge a run of records from ``start`` on (``merge_run``: a branch of
        its ``try_merge``, and so of this one path), and do the counts and the size check its
        records would have each made; whether it merged any (how many: ``_ran``)."""
        current = self._current
        if current is None or start >= len(records):
            return False
        dedupe = self._dedupe_ids is not None
        if dedupe and current.seen is None:
            return False  # (the first dedupe id makes it: try_merge's call does)
        stop, size = run(records, start, self._max_completion - current.size, current.seen, dedupe)
        ran = self._ran = stop - start
        if not ran:
            return False
        self._events += ran
        self.done = False
        current.size += size
        self._line = records[stop - 1][4]
        return True

    def _lane_remember(self, ids: list[Any], records: list[Any], start: int) -> None:
        """Note the dedupe ids of a lane's run in the current stream, as :meth:`_lane_duplicate`
        notes each in its steady branch: each id (not seen yet: the run's are distinct and were
        not seen) with the hash of its payload (``records[start:]``'s, in order), the oldest
        forgotten beyond ``dedupe_ids``."""
        seen: Any = self._current.seen  # type: ignore[union-attr]  # (the run checked both)
        for key, record in zip(ids, records[start : start + len(ids)], strict=True):
            seen[key] = hash(record[0])  # (OrderedDict.update is slower than this loop)
        over = len(seen) - self._dedupe_ids  # type: ignore[operator]
        if over > 0:  # (popitem(last=False) ``over`` times, in one C loop)
            deque(map(seen.popitem, repeat(False, over)), maxlen=0)

    def _bytes(self, data: bytes, out: list[Any]) -> None:
        """Frame ``data`` and handle its records; more than ``_PIECE`` bytes, a piece at a
        time, so that its lines, its records and the scanner's checks are made a piece at a
        time: what one feed holds at once, and its cost per chunk, do not grow with its size
        (the framing takes bytes cut anywhere)."""
        if len(data) <= _PIECE:
            self._records(self._framing.feed(data), out)
            return
        for start in range(0, len(data), _PIECE):
            self._records(self._framing.feed(data[start : start + _PIECE]), out)
            if self.stopped:
                return

    def _error_event(self, data: bytes, where: str, out: list[Any]) -> None:
        try:
            obj: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = data.decode("utf-8", "replace")
        if isinstance(obj, dict) and "error" in obj:
            obj = obj["error"]
        self._upstream(upstream_error(obj, self.name, where), out)

    def _take(
        self,
        obj: Any,
        event: str,
        dedupe_id: str | None,
        where: Where,
        data: bytes | None,
        out: list[Any],
    ) -> None:
        """Parse, route, dedupe and merge one payload (``data``: its bytes, when it had some)."""
        protocol = self._protocol
        if protocol is None:
            protocol = self._recognise(obj, event)
        try:
            action, id_, value, own_id, end = protocol.parse(obj, where)
        except StreamError as exc:
            self._malformed(exc, out)
            return
        if action == CHUNK:
            stream = self._stream_for(id_, where, out)
        elif action == START:
            for open_ in list(self._open.values()):
                place = where_text(where)
                self._end(open_, self._run_out(open_, place), None, place, out)
            stream = self._new(id_, where, out)
        elif action == ERROR:
            self._upstream(value, out)
            return
        elif action == SKIP:
            return
        else:  # LAST, LAST_ERROR
            stream = self._stream_for(id_, where, out)
        self.done = False
        if stream is None or stream.acc is None:  # refused
            return
        if data is not None:
            stream.size += len(data)
            if stream.size > self._max_completion:
                self._too_large(stream, where, out)
                return
        if own_id is not None:
            dedupe_id = own_id
        if dedupe_id is not None and self._duplicate(stream, dedupe_id, obj, data, where):
            return
        if self._stages:
            self._through_stages(stream, value, dedupe_id, where, out)
        else:
            self._merge(stream, value, where, None if data is None else (data, obj))
        if action == LAST:
            reason, error = (EndReason.DONE, None) if end is None else end
            if stream.key in self._open:
                self._end(stream, reason, error, where_text(where), out)
            if not self._open:
                self.done = True  # a protocol's last event is its source's end marker
        elif action == LAST_ERROR:
            self._end_all(EndReason.ERROR, end, where_text(where), out)

    def _duplicate(
        self, stream: _Stream, dedupe_id: Any, obj: Any, data: bytes | None, where: Where | None
    ) -> bool:
        """Whether a chunk is an exact replay (dropped, counted in ``duplicates``): its dedupe
        id was seen in this stream, with the same payload. The same id with another payload is
        not a replay: it is kept, and the stream gets a problem (the server reuses ids, so
        dedupe by id cannot tell its replays from new content). Ids longer than
        ``Limits.max_id`` are remembered as digests, so the memory is bounded in bytes.
        ``where``: ``None`` for the event being read (a lane's payload; placed only if needed).
        """
        if self._dedupe_ids is None:
            return False
        seen = stream.seen
        if seen is None:
            seen = stream.seen = OrderedDict()
        key = self._id_key(dedupe_id) if dedupe_id.__class__ is str else dedupe_id
        # a payload's mark, to tell an exact replay from new content under the same id: the
        # hash of its bytes when it came as bytes, else of its JSON
        mark = hash(data) if data is not None else _object_hash(obj)
        kept = seen.get(key)
        if kept is not None:
            if kept == mark:
                stream.duplicates += 1
                return True
            stream.reused += 1
            if stream.reused == 1:
                if where is None:
                    where = (self._line, self._events + 1)
                stream.problems.append(
                    ConflictError(
                        f"the dedupe id {_short(str(dedupe_id))} came again with another payload: "
                        "kept, as not a replay (a server that reuses ids; dedupe by id cannot "
                        "tell its replays from new content)",
                        source=self.name,
                        where=where_text(where),
                    )
                )
            seen[key] = mark
            return False
        seen[key] = mark
        if len(seen) > self._dedupe_ids:
            seen.popitem(last=False)  # O(1); ``del d[next(iter(d))]`` rescans deleted slots
        return False

    def _lane_duplicate(self, dedupe_id: Any, payload: bytes | None = None) -> bool:
        """:meth:`_duplicate` for the current stream: what a lane asks before it merges a
        payload with a dedupe id of its own (see ``Protocol.lane``); ``payload``: its bytes
        (without them, the id alone tells a replay)."""
        current = self._current
        if current is None:
            return False
        seen = current.seen
        if (
            seen is not None
            and dedupe_id.__class__ is int
            and payload is not None
            and dedupe_id not in seen
        ):  # the steady branch of ``_duplicate`` (an id not seen yet), without its calls
            seen[dedupe_id] = hash(payload)
            if len(seen) > self._dedupe_ids:  # type: ignore[operator]  # (seen: dedupe on)
                seen.popitem(last=False)
            return False
        return self._duplicate(current, dedupe_id, None, payload, None)

    def _id_key(self, id_: Any) -> Any:
        """How an id is remembered: as it is, or a 16-byte digest when a string longer than
        ``max_id`` (a protocol's own dedupe id may be any hashable: a sequence number, which
        :meth:`_duplicate` keeps as it is without asking)."""
        if id_.__class__ is not str or len(id_) <= self._max_id:
            return id_
        import hashlib  # (only for such ids: OpenSSL's start is 2 to 3 ms of every import)

        return hashlib.blake2b(id_.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _too_large(self, stream: _Stream, where: Where, out: list[Any]) -> None:
        """The stream passed ``max_completion``: it ends now, ``limit``, with what it held
        before this chunk (a never-ending source gives its result at once); the rest of it is
        dropped as a refused stream's is, and the source's other streams go on."""
        if stream.failed is not None or stream.key not in self._open:
            return
        named = _short(stream.id) if stream.id else "(no id)"
        error = LimitError(
            f"completion {named} larger than {self._limits.max_completion} bytes (max_completion)",
            source=self.name,
            where=where_text(where),
            limit="max_completion",
        )
        stream.failed = error
        self._end(stream, EndReason.LIMIT, error, error.where, out)
        if self._interleaved:  # its later chunks are dropped, not a new stream
            if stream.id:
                self._refuse(stream.id)
        else:
            rest = _Stream(stream.key, stream.id, None)
            rest.failed = error
            self._set_current(rest)  # the rest of its body is dropped with it

    def _recognise(self, obj: Any, event: str) -> Protocol:
        cls = obj.__class__
        typed = TYPED_EVENTS.get(cls)
        for kind in PROTOCOLS:
            if typed == kind.name or (cls is dict and kind.recognises(obj, event)):
                break
        protocol = self._protocol = kind(self.name, self._limits)
        if self._lane_wanted:
            lane = self._lane = protocol.lane()
            self._lane_runs = getattr(lane, "merge_run", None)
            if lane is not None and hasattr(lane, "duplicate"):
                lane.duplicate = self._lane_duplicate  # the one dedupe rule, for its shapes
                if hasattr(lane, "remember"):
                    lane.remember = self._lane_remember  # (and for its runs)
        return protocol

    def _merge(self, stream: _Stream, value: Any, where: Where, data: Any = None) -> None:
        """Fold one chunk into its stream's accumulator; ``data``: its ``(bytes, parsed
        object)``, when it came as bytes, for the lane to learn its shape from."""
        if stream.failed is not None:
            return  # a stream that passed a limit takes nothing more
        acc = stream.acc
        assert acc is not None
        try:
            plain = value.__class__ is dict
            if plain:
                acc.add_plain(value)
            else:
                acc.add(value)
            if data is not None and self._lane is not None:
                self._lane.learn(data[0], data[1], plain, acc)  # into the current stream
        except (ConflictError, LimitError) as exc:
            self._refused_chunk(stream, exc, where)

    def _refused_chunk(self, stream: _Stream, exc: StreamError, where: Where) -> None:
        """The accumulator refused a chunk: a conflict is a problem; a limit fails the stream,
        which takes nothing more."""
        if isinstance(exc, LimitError):
            stream.failed = exc.placed(self.name, where_text(where))
            if self._lane is not None:
                self._lane.clear()
        else:
            stream.problems.append(exc.placed(self.name, where_text(where)))

    # -- routing -----------------------------------------------------------------------------

    def _stream_for(self, id_: str, where: Where, out: list[Any]) -> _Stream | None:
        """The stream a chunk with ``id_`` belongs to (opened if need be), or ``None`` if its
        stream was refused; it becomes the current stream."""
        current = self._current
        if not id_:
            if current is not None:
                return current
            return self._new("", where, out)
        if current is not None and (id_ == current.id or id_ == current.last_id):
            return current
        if self._interleaved:
            stream = self._by_id.get(id_)
            if stream is None:
                if current is not None and not current.id:
                    stream = current  # a stream without an id yet takes this one (Azure)
                    stream.id = stream.last_id = id_
                elif self._id_key(id_) in self._refused:
                    return None
                else:
                    stream = self._new(id_, where, out)
                    if stream is None:
                        return None
                self._by_id[id_] = stream
            if stream is not current:
                self._set_current(stream)
            return stream
        if current is None:
            return self._new(id_, where, out)
        if not current.id:
            current.id = current.last_id = id_  # the stream learns its id late (Azure)
            return current
        if current.failed is not None and current.acc is None:
            return None  # the rest of a refused body
        assert current.acc is not None
        if current.acc.finished:  # the next body of a sequence
            place = where_text(where)
            self._end(current, self._run_out(current, place), None, place, out)
            return self._new(id_, where, out)
        if current.changes == 0:
            current.acc.absorb_ids()
            current.notes.append(
                f"{where_text(where)}: the id changed mid-stream from {_short(current.id)} to "
                f"{_short(id_)}; one response body is one completion, kept as "
                f"{_short(current.id)}"
            )
        current.changes += 1
        current.last_id = id_
        if self._lane is not None:
            self._lane.clear()  # its shapes carry the id this chunk changed
        return current

    def _set_current(self, stream: _Stream | None) -> None:
        current = self._current
        if current is not None and current is not stream and self._now is not None:
            self._stamp(current)
        self._current = stream
        if self._lane is not None:
            self._lane.clear()  # its shapes merge into the stream that was current

    def _new(self, id_: str, where: Where, out: list[Any]) -> _Stream | None:
        """Open a new stream, or refuse it (a ``limit`` result at once)."""
        self._ordinal += 1
        key = (self.name, self._ordinal)
        limit = self._limits.max_streams
        full = limit is not None and len(self._open) >= limit
        if full or (self._budget is not None and not self._budget.take()):
            which = "max_streams" if full else "max_open_streams"
            named = _short(id_) if id_ else "(no id)"
            error = LimitError(
                f"too many streams open at once; completion {named} refused",
                source=self.name,
                where=where_text(where),
                limit=which,
            )
            refused = _Stream(key, id_, None)
            refused.failed = error
            out.append(self._result(refused, EndReason.LIMIT, error, error.where))
            if self._interleaved:  # remembered, so it is reported once
                self._refuse(id_)
            else:
                self._set_current(refused)  # its body's other chunks are dropped with it
            return None
        assert self._protocol is not None
        stream = _Stream(key, id_, self._protocol.accumulator())
        self._open[key] = stream
        self._set_current(stream)
        return stream

    def _refuse(self, id_: str) -> None:
        """Remember a refused stream's id (its digest when long; the oldest of
        ``_MAX_REFUSED`` forgotten first), so that its later chunks are dropped quietly."""
        refused = self._refused
        refused[self._id_key(id_)] = None
        if len(refused) > _MAX_REFUSED:
            del refused[next(iter(refused))]

    # -- ends --------------------------------------------------------------------------------

    def _run_out(self, stream: _Stream | None, where: str = "") -> EndReason:
        """How a stream (or the source) ends when its input runs out with it open
        (``where``: the place it ended, the input's end if not given)."""
        if self._framing.format != "sse":
            return EndReason.EXHAUSTED
        if stream is None:
            return EndReason.DONE if self.done else EndReason.CUT_OFF
        if not self.strict and stream.acc is not None and stream.acc.finished:
            stream.notes.append(
                f"{where or self._place() or 'the end'}: ended without [DONE], every choice "
                "finished (lenient)"
            )
            return EndReason.EXHAUSTED
        return EndReason.CUT_OFF

    def _end(
        self,
        stream: _Stream,
        reason: EndReason,
        error: StreamError | None,
        where: str,
        out: list[Any],
    ) -> None:
        """End one open stream: its result goes to ``out``."""
        if self._stages:  # the stages see the end first, and may let held chunks go
            self._settle(self._run_stages([End(stream.key, reason, where, error)]), out)
        if self._now is not None:
            self._stamp(stream)
            if not self._interleaved:
                self._since = self._now  # the next request of a sequence is sent now
        del self._open[stream.key]
        if self._budget is not None:
            self._budget.give(1)
        if stream.id and self._by_id.get(stream.id) is stream:
            del self._by_id[stream.id]
        if stream is self._current:
            self._set_current(None)
        out.append(self._result(stream, reason, error, where))

    def _end_all(
        self, reason: EndReason, error: StreamError | None, where: str, out: list[Any]
    ) -> None:
        for stream in list(self._open.values()):
            self._end(stream, reason, error, where, out)
        self._by_id.clear()
        self._set_current(None)

    def _result(
        self, stream: _Stream, reason: EndReason, error: StreamError | None, where: str
    ) -> Result:
        failed = stream.failed
        if failed is not None:
            reason, error, where = EndReason.LIMIT, failed, failed.where
        elif isinstance(error, LimitError):
            reason = EndReason.LIMIT
        acc = stream.acc
        if acc is None:  # refused: an empty object of the protocol
            assert self._protocol is not None
            acc = self._protocol.accumulator()
        self._results += 1
        completion = acc.result()
        problems = (*stream.problems, *acc.problems)
        usage = getattr(completion, "usage", None)
        if usage is not None:
            negative = negative_counts(usage)
            if negative:
                problems += (
                    StructureError(
                        f"usage with token counts below zero ({', '.join(negative)}): no "
                        "count, not summed in totals",
                        source=self.name,
                        where=where,
                        field="$.usage",
                    ),
                )
        return Result(
            source=self.name,
            key=stream.key,
            completion=completion,
            reason=reason,
            where=where,
            finished=acc.finished,
            error=error,
            problems=problems,
            notes=(*_notes(stream), *acc.notes),
            chunks=acc.chunks,
            duplicates=stream.duplicates,
            protocol=self._protocol.name if self._protocol is not None else "chat",
            timings=None if stream.timed is None else self._timings(stream.timed, acc.chunks),
        )

    def _timings(self, timed: _Times, chunks: int) -> Timings:
        assert self._now is not None
        assert self._first_byte is not None
        epoch = self.epoch
        return Timings(
            started=epoch + timed.started,
            first_byte=epoch + max(self._first_byte, timed.started),  # a later stream's: its start
            first_chunk=epoch + timed.first,
            first_output=None if timed.output is None else epoch + timed.output,
            output_kind=timed.kind,
            last_chunk=epoch + timed.last,
            ended=epoch + self._now,
            chunks=chunks,
            output_chunks=chunks - timed.output_from if timed.output is not None else 0,
        )

    def _stop(self, reason: EndReason, where: str, out: list[Any]) -> None:
        """The source is finished with: its report comes last."""
        self.stopped = True
        self._set_current(None)
        error = self._error
        if error is None and self._results == 0:
            error = StreamError("no completion in the input", source=self.name, where=where)
        if isinstance(self._error, LimitError):
            reason = EndReason.LIMIT
        if self._stages:
            tail: list[Any] = []
            for s in self._stages:
                tail = s.process_batch(tail)
                s.finish(tail)
            self._settle(tail, out)
        self.report = SourceReport(
            source=self.name,
            reason=reason,
            where=where,
            error=error,
            problems=tuple(self._problems),
            completions=self._results,
        )
        out.append(self.report)

    def _place(self) -> str:
        return f"line {self._framing.line}" if self._framing.format != "auto" else ""

    # -- bad input ---------------------------------------------------------------------------

    def _malformed(self, error: StreamError, out: list[Any]) -> None:
        """Malformed input: fatal (strict), or a problem of the stream in progress."""
        if self.strict:
            self._fatal(error, out)
        elif self._current is not None:
            self._current.problems.append(error)
        else:
            self._problems.append(error)

    def _upstream(self, error: UpstreamError, out: list[Any]) -> None:
        """The server sent an error: it ends the open streams (and, strict, the source)."""
        if self.strict:
            self._fatal(error, out)
        elif self._open:
            self._end_all(EndReason.ERROR, error, error.where, out)
        else:
            self._problems.append(error)

    def _fatal(self, error: StreamError, out: list[Any]) -> None:
        """The source cannot go on: its open streams end with ``error``, and so does it."""
        if self._open:
            self._end_all(EndReason.ERROR, error, error.where, out)
        self._error = error
        self._stop(EndReason.ERROR, error.where, out)

    # -- chunk stages ------------------------------------------------------------------------

    def _through_stages(
        self, stream: _Stream, value: Any, dedupe_id: str | None, where: Where, out: list[Any]
    ) -> None:
        assert self._protocol is not None
        if value.__class__ is dict:
            envelope = Envelope(stream.key, None, dedupe_id, where, value, self._protocol.event)
        else:
            envelope = Envelope(stream.key, value, dedupe_id, where)
        self._settle(self._run_stages([envelope]), out)

    def _run_stages(self, batch: list[Any]) -> list[Any]:
        for s in self._stages:
            batch = s.process_batch(batch)
            if not batch:
                break
        return batch

    def _settle(self, batch: list[Any], out: list[Any]) -> None:
        """Merge the envelopes the chunk stages let through; answer snapshot requests."""
        for item in batch:
            cls = item.__class__
            if cls is Envelope:
                stream = self._open.get(item.key)
                if stream is not None:
                    value = item.payload if item._event is None else item._event
                    self._merge(stream, value, item._where)
            elif cls is SnapshotRequest:
                stream = self._open.get(item.key)
                if stream is not None and stream.acc is not None:
                    out.append(Snapshot(item.key, stream.acc.result(), stream.acc.chunks))
            elif cls is not End:
                out.append(item)  # something a stage of the caller's made: passed on


def _notes(stream: _Stream) -> tuple[str, ...]:
    if stream.changes > 1:
        return (*stream.notes, f"the id changed {stream.changes} times in all")
    return tuple(stream.notes)


_short = quoted


def _object_hash(obj: Any) -> int:
    """A hash of a payload that came as an object (see :meth:`Engine._duplicate`): of its JSON
    (an event: of its ``to_dict()``)."""
    try:
        if obj.__class__ is not dict and hasattr(obj, "to_dict"):
            obj = obj.to_dict()
        return hash(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return hash(repr(obj))


def _sdk_payload(raw: Any, number: int) -> Any:
    """The JSON a server sent for an SDK's chunk object (openai's, anthropic's: pydantic)."""
    to_dict = getattr(raw, "to_dict", None)
    if callable(to_dict):
        try:  # as sent: a value the SDK types otherwise (content parts) is no error
            return to_dict(mode="json", warnings=False)
        except TypeError:
            return to_dict()
    dump = getattr(raw, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_unset=True)
    raise UsageError(
        "a source yields bytes, dicts, chunk events or (id, payload) pairs, "
        f"not {type(raw).__name__} (item {number}){_SDK_HINT}"
    )
