"""What comes out for each stream: the completion, why the stream ended, and counters."""

from __future__ import annotations

import enum
from typing import final

import attrs

from ._completions import ChatCompletion, Completion
from ._errors import StreamError
from ._events import Usage
from ._repr import attrs_repr

__all__ = ["EndReason", "Result"]


class EndReason(str, enum.Enum):
    """Why a stream ended."""

    #: the server sent ``data: [DONE]``.
    DONE = "done"
    #: a source with no end marker (JSON Lines, an iterable of chunks) ran out.
    EXHAUSTED = "exhausted"
    #: an SSE source ran out before ``[DONE]``.
    CUT_OFF = "cut_off"
    #: the server sent an error payload, or (strict mode) the input was malformed.
    ERROR = "error"
    #: the caller cancelled the work.
    CANCELLED = "cancelled"
    #: a configured limit was reached.
    LIMIT = "limit"


@final
@attrs.frozen(kw_only=True, repr=False)
class Result:
    """The outcome of one stream: never lost, even when the stream was not.

    Attributes:
        stream: the name of the source the stream came from.
        key: the stream's key, ``(source name, ordinal)``; ordinal 0 stands for the source
            itself (a source that held no completion, or bad input outside any stream).
        completion: what was assembled, complete or partial.
        reason: why the stream ended.
        where: the place in the source where it ended (``line 66``), when known.
        finished: whether every choice had a ``finish_reason`` when it ended.
        error: the error that ended the stream (an upstream error payload, or malformed input in
            strict mode), if any.
        problems: bad payloads skipped in lenient mode, in order.
        chunks: the number of chunks merged.
        duplicates: the number of replayed chunks dropped by ``dedupe``.
        usage: the stream's usage by the usage policy (also in ``completion.usage``).
    """

    __repr__ = attrs_repr

    stream: str
    key: tuple[str, int] = ("", 0)
    completion: ChatCompletion | Completion
    reason: EndReason
    where: str = ""
    finished: bool = False
    error: StreamError | None = None
    problems: tuple[StreamError, ...] = ()
    chunks: int = 0
    duplicates: int = 0
    usage: Usage | None = None

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
