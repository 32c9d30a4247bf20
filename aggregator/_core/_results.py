"""What comes out: a :class:`Result` for each completion, a :class:`SourceReport` for each source.

Theory of operation: a source (one HTTP body, one file) carries one or more streams, each the
chunks of one completion; each stream ends as one ``Result``, whatever happened to it. The
source's own outcome (how it ended, problems that belong to no completion, a source that held no
completion at all) is its ``SourceReport``, made once, when the source ends. Nothing is lost
silently: every stream has its result and every source its report.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, final

import attrs

from ._errors import StreamError
from ._model import Model

if TYPE_CHECKING:
    from ._chat._completions import ChatCompletion, Completion
    from ._chat._events import Usage
    from ._responses._models import Response, ResponseUsage

__all__ = ["EndReason", "Result", "SourceReport", "Timings"]


class EndReason(str, enum.Enum):
    """Why a stream (or a source) ended."""

    #: the server ended it properly: ``data: [DONE]``.
    DONE = "done"
    #: a source with no end marker (JSON Lines, an iterable of chunks) ran out.
    EXHAUSTED = "exhausted"
    #: an SSE source ran out before ``[DONE]``.
    CUT_OFF = "cut_off"
    #: the server sent an error, the source raised, or (strict mode) the input was malformed.
    ERROR = "error"
    #: the caller cancelled the work.
    CANCELLED = "cancelled"
    #: a configured limit was reached.
    LIMIT = "limit"


@final
@attrs.frozen(kw_only=True, repr=False)
class Timings(Model):
    """When the parts of one stream were seen, in seconds on the caller's monotonic clock.

    The async shell reads anyio's clock when each read of the source returns (``results``,
    ``fan_in``, ``Tee``, the CLI); the sync core takes the times its caller gives
    (``Engine.feed(data, now=...)``) and reads none. A time is that of the read that brought
    the chunk, so chunks that arrived in one read share it; for a file, these are the times it
    was read, not the times the server sent it.

    Attributes:
        started: when the stream's request started: the source's start (when its reading
            began, or the time the caller gave first) for its first stream, and for the next
            streams of a sequence the end of the one before (an interleaved source's streams
            all start with the source).
        first_byte: when the source's first bytes (or item) arrived; for a later stream of a
            sequence, its ``started`` (its bytes came after the stream before it ended).
        first_chunk: when the stream's first chunk arrived.
        first_output: when its first output arrived (text, reasoning, a refusal or tool-call
            arguments: ``output_kind`` says which), or ``None`` if none did.
        output_kind: ``"content"``, ``"reasoning"``, ``"refusal"`` or ``"tool_call"`` (each
            protocol names its own).
        last_chunk: when its last chunk arrived.
        ended: when it ended (its end marker, the source's end, an error).
        chunks: the chunks merged.
        output_chunks: the chunks from the one that brought the first output on.
    """

    started: float
    first_byte: float
    first_chunk: float
    first_output: float | None
    output_kind: str | None
    last_chunk: float
    ended: float
    chunks: int
    output_chunks: int

    @property
    def time_to_first_chunk(self) -> float:
        """From the start to the first chunk."""
        return self.first_chunk - self.started

    @property
    def time_to_first_token(self) -> float | None:
        """From the start to the first output (``None`` if there was none)."""
        return None if self.first_output is None else self.first_output - self.started

    @property
    def time_per_output_chunk(self) -> float | None:
        """The mean time between output chunks after the first (``None`` with fewer than two)."""
        if self.first_output is None or self.output_chunks < 2:
            return None
        return (self.last_chunk - self.first_output) / (self.output_chunks - 1)

    @property
    def duration(self) -> float:
        """From the start to the end."""
        return self.ended - self.started


@final
@attrs.frozen(kw_only=True, repr=False)
class Result(Model):
    """The outcome of one stream (one completion): never lost, even when the stream was.

    Attributes:
        source: the name of the source the stream came from.
        key: the stream's key, ``(source name, ordinal from 1)``.
        completion: what was assembled, complete or partial, by ``protocol``: a
            ``ChatCompletion`` or a ``Completion`` (``"chat"``), a Responses API ``Response``
            (``"responses"``, from ``aggregator.models.responses``); check it with
            ``isinstance`` or read ``protocol`` first.
        reason: why the stream ended.
        where: the place in the source where it ended (``line 66``), when known.
        finished: whether every choice had a ``finish_reason`` when it ended.
        error: the error that ended the stream (an upstream error payload, a limit, or malformed
            input in strict mode), if any.
        problems: what went wrong without ending the stream, in order: bad payloads skipped in
            lenient mode, chunks refused for a conflict.
        notes: what the server did that was absorbed, with its place (an id that changed
            mid-stream, say); notes do not make a result incomplete.
        chunks: the number of chunks merged.
        duplicates: the number of replayed chunks dropped by ``dedupe``.
        protocol: the name of the stream's protocol (``"chat"`` for Chat Completions and text
            completions).
        timings: when its parts were seen, when the caller gave times (the async shell
            always does); ``None`` otherwise. Measurements, not content: results that differ
            only in them are equal.
    """

    source: str
    key: tuple[str, int]
    completion: ChatCompletion | Completion | Response
    reason: EndReason
    where: str = ""
    finished: bool = False
    error: StreamError | None = None
    problems: tuple[StreamError, ...] = ()
    notes: tuple[str, ...] = ()
    chunks: int = 0
    duplicates: int = 0
    protocol: str = attrs.field(default="chat", repr=False)
    timings: Timings | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def usage(self) -> Usage | ResponseUsage | None:
        """The stream's usage, by the usage policy: ``completion.usage``."""
        return self.completion.usage

    @property
    def complete(self) -> bool:
        """Whether the stream ended properly.

        ``[DONE]`` ends an SSE stream properly; a source with no end marker ends properly when
        every choice has a ``finish_reason``. Any problem makes a stream incomplete.
        """
        if self.error is not None or self.problems:
            return False
        if self.reason is EndReason.DONE:
            return True
        return self.reason is EndReason.EXHAUSTED and self.finished


@final
@attrs.frozen(kw_only=True, repr=False)
class SourceReport(Model):
    """How one source ended, and its trouble outside any completion.

    Attributes:
        source: the source's name.
        reason: how the source ended (``done`` when its input ended with ``[DONE]``).
        where: the place where it ended, when known.
        error: what ended it badly, if anything: the source raised, a time limit passed,
            malformed input in strict mode or an error payload (the open completions end with
            the same error), or ``no completion in the input``.
        problems: bad input outside any completion that was skipped (lenient mode).
        completions: the number of completions (results) the source gave.
    """

    source: str
    reason: EndReason
    where: str = ""
    error: StreamError | None = None
    problems: tuple[StreamError, ...] = ()
    completions: int = 0

    @property
    def ok(self) -> bool:
        """Whether the source held at least one completion and had no trouble of its own."""
        return self.error is None and not self.problems and self.completions > 0
