"""The protocol seam: what is particular to one wire protocol, behind one small interface.

Theory of operation: the engine knows sources, streams, framing, dedupe, limits, strict and
lenient handling, and how a stream ends; it knows no chunk format. A protocol knows the rest: how
to recognise its payloads, how to check one and what it means, how a stream's chunks fold into
the final object, and optionally its fast branches. Adding one means adding a module with a
:class:`Protocol` subclass and naming it in ``_protocols.PROTOCOLS`` (docs/design.md), its event
classes named with :func:`typed_events`.

What a payload means is :data:`Parsed`: an *action*, a stream id, the value to merge (an event,
or a plain payload the protocol validated, for ``add_plain``), the payload's own dedupe id if the
protocol has one (a sequence number; else the SSE ``id:`` or the source's id is used), and for
``LAST`` and ``LAST_ERROR`` how the stream ends:

- ``CHUNK``: merge into the stream with this id (an empty id: the stream in progress);
- ``START``: merge into a new stream, ending any in progress (a message's first event);
- ``LAST``: merge, then end the stream: properly (``end`` is ``None``), or as ``end`` says, an
  ``(EndReason, StreamError | None)`` pair (a response that ended incomplete or failed);
  a ``LAST`` that ends the source's last open stream is its end marker, as ``[DONE]`` is
  (``Engine.done``: the source ends ``done``, not ``cut_off``, for a protocol with no ``[DONE]``);
- ``LAST_ERROR``: merge, then end the source's streams with the error ``end`` (on a chunk);
- ``ERROR``: the value is the :class:`UpstreamError` the server sent; ``SKIP``: a keep-alive.

An accumulator may report what it found itself: its ``notes`` and ``problems`` (lists, read when
its stream ends) join the stream's own in the :class:`~aggregator.Result`. It may say what output
it holds (``output_kind``: ``"content"``, ``"reasoning"``, ``"tool_call"``..., or ``None`` before
any), read once a feed until it says, for :class:`~aggregator.Timings`' first output.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

from ._errors import LimitError, StreamError, Where, where_text
from ._limits import MAX_DEPTH_CEILING, Limits, depth_exceeds

__all__ = [
    "CHUNK",
    "ERROR",
    "LAST",
    "LAST_ERROR",
    "SKIP",
    "START",
    "TYPED_EVENTS",
    "Protocol",
    "StreamAccumulator",
    "typed_events",
]

CHUNK = 0
START = 1
LAST = 2
LAST_ERROR = 3
ERROR = 4
SKIP = 5

#: ``(action, stream id, value, dedupe id, end)``: what one payload means (see above).
Parsed = tuple[int, str, Any, "str | None", Any]

#: The event classes a source may yield as they are, each with its protocol's name. Each
#: protocol's models module fills it as it is imported (:func:`typed_events`): an event object
#: exists only once its class does, so a protocol's models can be imported when first needed.
TYPED_EVENTS: dict[type, str] = {}


def typed_events(protocol: str, classes: Iterable[type]) -> None:
    """Name ``classes`` the event classes of ``protocol`` (see :data:`TYPED_EVENTS`)."""
    for cls in classes:
        TYPED_EVENTS[cls] = protocol


class StreamAccumulator(TypingProtocol):
    """Folds the chunks of one stream into its final object (one per stream)."""

    #: the number of chunks merged.
    chunks: int

    @property
    def notes(self) -> Sequence[str]:
        """What the accumulator absorbed (a quirk of the server's), with its place."""

    @property
    def problems(self) -> Sequence[StreamError]:
        """What the accumulator found wrong without ending the stream."""

    @property
    def finished(self) -> bool:
        """Whether the stream's object is whole by its own account (every choice finished)."""

    def add(self, event: Any) -> None:
        """Merge one event (raises :class:`ConflictError` or :class:`LimitError`)."""

    def add_plain(self, payload: dict[str, Any]) -> None:
        """Merge one payload the protocol validated as plain, with no event built."""

    def absorb_ids(self) -> None:
        """Take chunks whatever their id from now on (the server changed it mid-stream)."""

    def result(self) -> Any:
        """The final object as of now (partial if the stream is not over)."""


class Protocol(abc.ABC):
    """One wire protocol (see the module's docstring). One instance decodes one source."""

    #: the protocol's name, as :class:`~aggregator.Result` and the CLI say it; the event
    #: classes a source may yield as they are name it in :data:`TYPED_EVENTS`.
    name: ClassVar[str]

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits

    def check_depth(self, obj: Any, where: Where) -> None:
        """Raise a placed :class:`~aggregator.LimitError` if ``obj`` nests deeper than
        ``max_depth`` (the one depth rule, for the protocols' ``parse``)."""
        max_depth = self.limits.max_depth or MAX_DEPTH_CEILING
        if depth_exceeds(obj, max_depth):
            raise LimitError(
                f"JSON nested deeper than {max_depth} levels",
                source=self.source,
                where=where_text(where),
                limit="max_depth",
            )

    @classmethod
    @abc.abstractmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        """Whether a source whose first payload is ``obj`` (SSE event name ``event``) speaks
        this protocol."""

    @abc.abstractmethod
    def parse(self, obj: Any, where: Where) -> Parsed:
        """What the parsed payload (or event) ``obj`` at ``where`` means.

        Raises:
            StreamError: the payload is malformed (a :class:`StructureError`, a
                :class:`LimitError` for nesting); the engine applies strict or lenient rules.
        """

    @abc.abstractmethod
    def accumulator(self) -> StreamAccumulator:
        """A new accumulator, for a stream that opens."""

    @abc.abstractmethod
    def event(self, payload: dict[str, Any], where: str) -> Any:
        """The event of a plain payload (for chunk stages that read ``Envelope.event``)."""

    def hot_event(self) -> tuple[type | None, Any]:
        """``(event class, chunk_id)``: the class of the events a sync source yields most, and
        a function giving the stream id of such an event when :meth:`parse` would say ``CHUNK``
        with that id and the event itself (``None`` otherwise). The engine merges such an event
        of the current stream without the dispatch. ``(None, None)``: no such shortcut."""
        return (None, None)

    def lane(self) -> Any:
        """The protocol's byte-shape fast lane for one source (``try_merge(payload) -> bool``,
        ``learn(payload, obj, plain, accumulator)``, ``clear()``), or ``None``.

        A lane whose payloads carry a dedupe id of their own (a sequence number) has a
        ``duplicate`` attribute: the engine sets it to its dedupe check for the current stream
        (``duplicate(dedupe_id, payload) -> bool``: an exact replay of the same id and payload
        bytes, counted; else remembered), which the lane calls before it merges such a payload
        (and drops it, merged, if it says so)."""
        return None
