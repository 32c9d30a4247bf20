"""The one exception tree of the package.

Theory of operation: there are two kinds of trouble. The caller can misuse the API
(:class:`UsageError`), or the data that came from upstream can be wrong (:class:`StreamError`
and its children). Every upstream error carries the name of the source and the place (line,
byte, item or event number) so that a message can be printed as it is, with no traceback. Each
error also subclasses the fitting builtin, so ``except ValueError`` keeps working for callers who
do not know this package.

An error is raised as the kind it is where it is found: a chunk whose id or model conflicts with
its stream's is a :class:`ConflictError` (upstream data) from the accumulator itself, not a usage
error relabelled later. An accumulator does not know its source or place; the engine that called
it names both with :meth:`StreamError.placed`, which makes a copy of the same class.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar, final

__all__ = [
    "AggregatorError",
    "ConflictError",
    "DecodeError",
    "IncompleteStreamError",
    "LimitError",
    "StreamError",
    "StructureError",
    "UpstreamError",
    "UsageError",
    "Where",
    "quoted",
    "upstream_error",
    "where_text",
]

E = TypeVar("E", bound="StreamError")


class AggregatorError(Exception):
    """The root of every error this package raises on purpose."""


@final
class UsageError(AggregatorError, TypeError):
    """The caller used the API in a way it does not support."""


class StreamError(AggregatorError, ValueError):
    """The data that came from upstream is wrong.

    Attributes:
        source: the name of the source (a file name, ``<stdin>``, or a caller-given name).
        where: the place in that source, such as ``line 12 (event 5)`` or ``item 3``.
        detail: what is wrong, without the source and place.
    """

    def __init__(self, detail: str, *, source: str = "<stream>", where: str = "") -> None:
        self.detail = detail
        self.source = source
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        place = f", {self.where}" if self.where else ""
        return f"{self.source}{place}: {self.detail}"

    def __str__(self) -> str:
        return self._message()

    def placed(self: E, source: str, where: str) -> E:
        """A copy of this error naming ``source`` and ``where`` (the cause is kept)."""
        new = copy.copy(self)
        new.source = source
        new.where = where
        new.args = (new._message(),)
        new.__cause__ = self.__cause__
        return new


@final
class DecodeError(StreamError):
    """The bytes are not valid SSE, UTF-8 or JSON."""


@final
class LimitError(StreamError):
    """A configured limit was passed (see :class:`~aggregator.Limits`).

    Attributes:
        limit: the name of the limit, such as ``max_choices``.
    """

    def __init__(
        self, detail: str, *, source: str = "<stream>", where: str = "", limit: str = ""
    ) -> None:
        self.limit = limit
        super().__init__(detail, source=source, where=where)


@final
class StructureError(StreamError):
    """A payload is valid JSON but a field has the wrong type or is missing.

    Attributes:
        field: the JSON path of the bad field, such as ``$.choices[0].index``.
    """

    def __init__(
        self, detail: str, *, source: str = "<stream>", where: str = "", field: str = "$"
    ) -> None:
        self.field = field
        super().__init__(detail, source=source, where=where)

    def _message(self) -> str:
        return f"{super()._message()} (at {self.field})"


@final
class ConflictError(StreamError):
    """A chunk contradicts its stream: another id or model, or a text chunk in a chat stream.

    The chunk is refused (not merged) and reported in :attr:`~aggregator.Result.problems`.
    """


@final
class UpstreamError(StreamError):
    """The server sent an error: an error payload in the stream, or an HTTP error status.

    Attributes:
        payload: the error object as the server sent it (``{"message": ..., "code": ...}``).
    """

    def __init__(
        self,
        detail: str,
        *,
        source: str = "<stream>",
        where: str = "",
        payload: Any = None,
    ) -> None:
        self.payload = payload
        super().__init__(detail, source=source, where=where)


@final
class IncompleteStreamError(StreamError):
    """A stream did not end properly; what was assembled is in :attr:`result`.

    Attributes:
        result: the :class:`~aggregator.Result`, with the partial completion, the reason the
            stream ended and the error that ended it, if any.
    """

    def __init__(self, result: Any) -> None:
        self.result = result
        cause = f": {result.error.detail}" if result.error is not None else ""
        if not cause and result.problems:
            cause = f": {result.problems[0].detail}"
        where = result.error.where if result.error is not None else result.where
        super().__init__(
            f"stream incomplete ({result.reason.value}){cause}", source=result.source, where=where
        )


#: A place in a source, formatted only when a message needs it: text, an item number (``item
#: 3``), or a ``(line, event)`` pair (``line 12 (event 5)``).
Where = str | int | tuple[int, int]


def quoted(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters: a message never repeats a
    server's id (or model name) of any length."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


def where_text(where: Where) -> str:
    """The place as text."""
    cls = where.__class__
    if cls is tuple:
        return f"line {where[0]} (event {where[1]})"  # type: ignore[index]
    if cls is int:
        return f"item {where}"
    return where  # type: ignore[return-value]


def upstream_error(
    payload: Any,
    source: str = "<stream>",
    where: str = "",
    *,
    status: int | None = None,
    fallback: str = "",
) -> UpstreamError:
    """The :class:`UpstreamError` for an error object a server sent (in the stream, or as the
    body of an HTTP ``status``); ``fallback`` is the message when the object has none."""
    message = payload.get("message") if isinstance(payload, dict) else payload
    if not isinstance(message, str) or not message:
        import orjson

        message = fallback or orjson.dumps(payload, default=repr).decode()
    if len(message) > 500:
        message = message[:497] + "..."
    if status is not None:
        message = f"HTTP {status}: {message}"
    return UpstreamError(f"upstream error: {message}", source=source, where=where, payload=payload)
