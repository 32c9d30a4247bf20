"""What flows through a pipeline: a small, typed vocabulary.

Theory of operation: a source is decoded into :class:`Envelope` s (one chunk event of one
stream), :class:`Failure` s (a bad payload that was skipped) and one :class:`End` per stream.
Stages pass, drop, or enrich these; an ``End`` gathers what the stages learnt about its stream
(the assembled completion, the counters, the usage) as it travels, and ``assemble`` turns it into
the :class:`~aggregator.Result` the caller sees. ``SnapshotRequest`` markers ask ``merge_deltas``
for a :class:`Snapshot` of a stream in progress.

A stream key is ``(source name, ordinal)``: the chunks of one source are grouped into streams by
their completion ``id`` (see docs/merge-rules.md), and the ordinal numbers the streams of that
source from 1, so a key never changes, even when a stream learns its id late (Azure).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union, final

import attrs

from ._completions import ChatCompletion, Completion
from ._converter import structure_chunk
from ._decode import where_text
from ._errors import StreamError
from ._events import EMPTY, ChatCompletionChunk, CompletionChunk, Usage
from ._repr import attrs_repr
from ._results import EndReason, Result

__all__ = [
    "End",
    "Envelope",
    "Failure",
    "Item",
    "Snapshot",
    "SnapshotRequest",
    "StreamKey",
]

#: ``(source name, ordinal of the stream within the source, from 1)``.
StreamKey = tuple[str, int]


@final
class Envelope:
    """One chunk event of one stream.

    Attributes:
        key: the stream it belongs to.
        seq: its position in the stream (1, 2, ...), as the source delivered it.
        event: the chunk (built from the payload on first access; see below).
        payload: the parsed JSON payload, when the envelope was decoded from JSON, else ``None``.
        dedupe_id: what identifies a replayed copy: the SSE ``id:`` the event carried, or a
            sequence the source assigned (a broker's message id), else ``None``.
        where: the place in the source, for messages (``line 12 (event 5)``).

    A payload of the common shape (content, reasoning or refusal deltas) is validated when it
    is decoded, but its :attr:`event` is only built if a stage reads it: ``merge_deltas``
    folds the validated payload directly. Envelopes are immutable; compare by value.
    """

    __slots__ = ("_event", "_where", "dedupe_id", "key", "payload", "seq")

    def __init__(
        self,
        key: StreamKey,
        seq: int,
        event: ChatCompletionChunk | CompletionChunk | None,
        dedupe_id: str | None = None,
        where: str | tuple[int, int] = "",
        payload: dict[str, Any] | None = None,
    ) -> None:
        if event is None and payload is None:
            raise TypeError("an Envelope needs an event or a payload")
        self.key = key
        self.seq = seq
        self._event = event
        self.payload = payload
        self.dedupe_id = dedupe_id
        self._where = where

    @property
    def where(self) -> str:
        """The place in the source (``line 12 (event 5)``)."""
        return where_text(self._where)

    @property
    def event(self) -> ChatCompletionChunk | CompletionChunk:
        """The chunk event."""
        event = self._event
        if event is None:
            event = self._event = structure_chunk(self.payload, where=self.where)
        return event

    def with_event(self, event: ChatCompletionChunk | CompletionChunk) -> Envelope:
        """A copy of this envelope carrying ``event`` instead (for stages that rewrite chunks)."""
        return Envelope(self.key, self.seq, event, self.dedupe_id, self.where)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Envelope:
            return NotImplemented
        o: Envelope = other
        return (self.key, self.seq, self.dedupe_id, self.where, self.event) == (
            o.key,
            o.seq,
            o.dedupe_id,
            o.where,
            o.event,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Envelope(key={self.key!r}, seq={self.seq!r}, event={self.event!r}, "
            f"dedupe_id={self.dedupe_id!r}, where={self.where!r})"
        )


@final
@attrs.frozen(repr=False)
class Failure:
    """A bad payload that was skipped (lenient mode); reported with its stream's result.

    ``key`` is the stream in progress when it came, or ``(source name, 0)`` if there was none.
    """

    __repr__ = attrs_repr

    key: StreamKey
    error: StreamError


@final
@attrs.frozen(repr=False)
class SnapshotRequest:
    """A marker asking ``merge_deltas`` for the current partial completion of ``key``."""

    __repr__ = attrs_repr

    key: StreamKey


@final
@attrs.frozen(repr=False)
class Snapshot:
    """The partial completion of a stream in progress, after ``chunks`` chunks."""

    __repr__ = attrs_repr

    key: StreamKey
    completion: ChatCompletion | Completion
    chunks: int


@final
@attrs.frozen(kw_only=True, repr=False)
class End:
    """The end of one stream, and what the stages learnt about it on the way.

    Attributes:
        key: the stream that ended.
        reason: why it ended.
        where: the place in the source where it ended (``line 66``), when known.
        error: the error that ended it, if any.
        completion: the assembled completion, once ``merge_deltas`` has seen it.
        finished: whether every choice had a ``finish_reason``.
        usage: the stream's usage by the usage policy, once ``collect_usage`` has seen it.
        problems: payloads skipped in lenient mode.
        counters: named counts (``chunks``, ``duplicates``...).
    """

    __repr__ = attrs_repr

    key: StreamKey
    reason: EndReason
    where: str = ""
    error: StreamError | None = None
    completion: ChatCompletion | Completion | None = None
    finished: bool = False
    usage: Usage | None = None
    problems: tuple[StreamError, ...] = ()
    counters: Mapping[str, int] = EMPTY

    def counted(self, **counts: int) -> End:
        """A copy with ``counts`` added to :attr:`counters`."""
        return attrs.evolve(self, counters={**self.counters, **counts})


#: Everything that may flow between stages.
Item = Union[Envelope, Failure, SnapshotRequest, Snapshot, End, Result]
