"""What chunk stages see: a small, typed vocabulary.

Theory of operation: when a pipeline has stages of its own before ``merge_deltas()`` (a redactor,
a filter, a tap), the engine hands them each chunk as an :class:`Envelope` and each stream's end
as an :class:`End`, in order, and merges the envelopes that come out. ``snapshots()`` puts a
:class:`SnapshotRequest` among them, which the engine answers with a :class:`Snapshot` of the
stream in progress. Without such stages none of these objects is made.

A stream key is ``(source name, ordinal)``: the ordinal numbers the streams of a source from 1,
so a key never changes, even when a stream learns its id late (Azure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

import attrs

from ._errors import StreamError, Where, where_text
from ._model import Model
from ._results import EndReason

if TYPE_CHECKING:
    from ._chat._completions import ChatCompletion, Completion

__all__ = ["End", "Envelope", "Snapshot", "SnapshotRequest", "StreamKey"]

#: ``(source name, ordinal of the stream within the source, from 1)``.
StreamKey = tuple[str, int]


@final
class Envelope:
    """One chunk of one stream, as a chunk stage sees it.

    Attributes:
        key: the stream it belongs to.
        event: the chunk event (built from the payload on first access).
        payload: the parsed JSON payload, when the chunk came as JSON, else ``None``.
        dedupe_id: what identifies a replayed copy: the SSE ``id:`` the event carried, or the id
            a source gave with it (``(id, payload)`` pairs), else ``None``.
        where: the place in the source, for messages (``line 12 (event 5)``).

    Envelopes are immutable; compare by value. A stage that rewrites a chunk makes a new
    envelope with :meth:`with_event`.
    """

    __slots__ = ("_build", "_event", "_where", "dedupe_id", "key", "payload")

    def __init__(
        self,
        key: StreamKey,
        event: Any,
        dedupe_id: str | None = None,
        where: Where = "",
        payload: dict[str, Any] | None = None,
        build: Callable[[Any, str], Any] | None = None,
    ) -> None:
        if event is None and (payload is None or build is None):
            raise TypeError("an Envelope needs an event, or a payload and how to build it")
        self.key = key
        self._event = event
        self.payload = payload
        self.dedupe_id = dedupe_id
        self._where = where
        self._build = build

    @property
    def where(self) -> str:
        """The place in the source (``line 12 (event 5)``)."""
        return where_text(self._where)

    @property
    def event(self) -> Any:
        """The chunk event."""
        event = self._event
        if event is None:
            assert self._build is not None
            event = self._event = self._build(self.payload, self.where)
        return event

    def with_event(self, event: Any) -> Envelope:
        """A copy of this envelope carrying ``event`` instead (for stages that rewrite chunks)."""
        return Envelope(self.key, event, self.dedupe_id, self._where)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Envelope:
            return NotImplemented
        o: Envelope = other
        return (self.key, self.dedupe_id, self.where, self.event) == (
            o.key,
            o.dedupe_id,
            o.where,
            o.event,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Envelope(key={self.key!r}, event={self.event!r}, "
            f"dedupe_id={self.dedupe_id!r}, where={self.where!r})"
        )


@final
@attrs.frozen(repr=False)
class End(Model):
    """The end of one stream, as a chunk stage sees it (its result comes after)."""

    key: StreamKey
    reason: EndReason
    where: str = ""
    error: StreamError | None = None


@final
@attrs.frozen(repr=False)
class SnapshotRequest(Model):
    """A marker asking the engine for the current partial completion of ``key``."""

    key: StreamKey


@final
@attrs.frozen(repr=False)
class Snapshot(Model):
    """The partial completion of a stream in progress, after ``chunks`` chunks."""

    key: StreamKey
    completion: ChatCompletion | Completion
    chunks: int
