"""The one exception tree of the package.

Theory of operation: there are two kinds of trouble. The caller can misuse the API
(:class:`UsageError`), or the bytes that came from upstream can be wrong
(:class:`StreamError` and its children). Every upstream error carries the name of the stream and
the place (line, byte or event number) so that a message can be printed as it is, with no
traceback. Each error also subclasses the fitting builtin, so ``except ValueError`` keeps
working for callers who do not know this package.
"""

from __future__ import annotations

from typing import Any, final

__all__ = [
    "AggregatorError",
    "DecodeError",
    "IncompleteStreamError",
    "LimitError",
    "StreamError",
    "StructureError",
    "UpstreamError",
    "UsageError",
]


class AggregatorError(Exception):
    """The root of every error this package raises on purpose."""


@final
class UsageError(AggregatorError, TypeError):
    """The caller used the API in a way it does not support."""


class StreamError(AggregatorError, ValueError):
    """The data that came from upstream is wrong.

    Attributes:
        stream: the name of the source (a file name, ``<stdin>``, or a caller-given name).
        where: the place in that source, such as ``line 12`` or ``event 3``.
        detail: what is wrong, without the stream and place.
    """

    def __init__(self, detail: str, *, stream: str = "<stream>", where: str = "") -> None:
        self.detail = detail
        self.stream = stream
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        place = f", {self.where}" if self.where else ""
        return f"{self.stream}{place}: {self.detail}"

    def __str__(self) -> str:
        return self._message()


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
        self, detail: str, *, stream: str = "<stream>", where: str = "", limit: str = ""
    ) -> None:
        self.limit = limit
        super().__init__(detail, stream=stream, where=where)


@final
class StructureError(StreamError):
    """A chunk is valid JSON but a field has the wrong type or is missing.

    Attributes:
        field: the JSON path of the bad field, such as ``$.choices[0].index``.
    """

    def __init__(
        self, detail: str, *, stream: str = "<stream>", where: str = "", field: str = "$"
    ) -> None:
        self.field = field
        super().__init__(detail, stream=stream, where=where)

    def _message(self) -> str:
        return f"{super()._message()} (at {self.field})"


@final
class UpstreamError(StreamError):
    """The server sent an error payload in the stream.

    Attributes:
        payload: the error object as the server sent it (``{"message": ..., "code": ...}``).
    """

    def __init__(
        self,
        detail: str,
        *,
        stream: str = "<stream>",
        where: str = "",
        payload: Any = None,
    ) -> None:
        self.payload = payload
        super().__init__(detail, stream=stream, where=where)


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
        where = result.error.where if result.error is not None else ""
        super().__init__(
            f"stream incomplete ({result.reason.value}){cause}", stream=result.stream, where=where
        )
