"""Sources: where streams come from, as the iterables :func:`~aggregator.fan_in`,
:func:`~aggregator.results`, :func:`~aggregator.assemble` and :func:`~aggregator.tee` read.

Each adapter is thin: it turns what a client library hands out into bytes or parsed payloads,
and imports that library only when called, so the core install stays small. The adapters for
``httpx`` responses need the ``[httpx]`` extra (or any client with the same response interface);
those for the OpenAI SDK's streams need the ``[openai]`` extra, the one for the anthropic SDK's
the ``[anthropic]`` extra.

A failed HTTP response (status 400 and up) is not a stream: its adapter raises
:class:`~aggregator.UpstreamError` with the error object the server sent, which ends the source
with that error, named and placed like any other.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, final, overload

import orjson

from ._core._errors import DecodeError, UpstreamError, upstream_error
from ._reading import PipeSource, Source

if TYPE_CHECKING:
    import os

    import httpx
    from openai import AsyncStream, Stream

__all__ = ["from_anthropic", "from_file", "from_httpx", "from_openai", "from_stdin"]

#: How many bytes each read of a file or of standard input asks for.
READ_SIZE = 1 << 20
#: How much of a failed HTTP response's body is read for its error message.
ERROR_BODY_LIMIT = 64 * 1024


def from_file(path: str | os.PathLike[str], *, read_size: int = READ_SIZE) -> AsyncIterator[bytes]:
    """The bytes of a file (SSE or JSON Lines), read in a worker thread, ``read_size`` at a time.

    A path that is a pipe, a FIFO or a character device (``<(curl -N ...)``, ``/dev/fd/N``) is
    read without blocking a thread instead, each read returning what the pipe holds, so time
    limits and cancellation apply to it and its bytes come as they arrive.

    The file is opened at once, so a missing or unreadable file raises here, not when the source
    is read; it is closed when the source ends or is closed (``aclose``).

    Raises:
        OSError: the file cannot be opened.
    """
    if PipeSource.wanted(path):
        return PipeSource(path)
    return _FileSource(open(path, "rb"), read_size)


@final
class _FileSource:
    __slots__ = ("_file", "_size")

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size

    def __aiter__(self) -> _FileSource:
        return self

    async def __anext__(self) -> bytes:
        import anyio.to_thread  # imported here: `import aggregator` stays light

        if self._file.closed:
            raise StopAsyncIteration
        data = await anyio.to_thread.run_sync(self._file.read, self._size)
        if not data:
            self._file.close()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        self._file.close()


async def from_stdin(*, read_size: int = READ_SIZE) -> AsyncIterator[bytes]:
    """Standard input as it arrives: each read returns what the pipe holds (``read1``), not a
    full buffer. A read that blocks is abandoned on cancellation, so time limits
    (:class:`~aggregator.Limits`) apply to a live pipe."""
    import anyio.to_thread  # imported here: `import aggregator` stays light

    read1 = sys.stdin.buffer.read1  # type: ignore[union-attr]
    while data := await anyio.to_thread.run_sync(read1, read_size, abandon_on_cancel=True):
        yield data


def from_httpx(response: httpx.Response, *, sync: bool | None = None) -> Source:
    """The body of a streamed ``httpx`` response, decoded (gzip and such undone), as it arrives.

    Open the response with ``client.stream(...)`` (or ``send(..., stream=True)``); the source
    closes it when done. A response from an ``httpx.AsyncClient`` gives an async source, one from
    an ``httpx.Client`` a sync one; ``sync`` forces the choice. Any response object with the same
    interface works (``status_code``, ``aiter_bytes``/``iter_bytes``, ``aclose``/``close``).

    A status of 400 or more raises :class:`~aggregator.UpstreamError` when the source is read,
    with the error object of the body (``{"error": {...}}``) as its ``payload``.

    A ``gzip`` body is inflated here, from the raw bytes, at most 64 KiB at a time, so that a
    small compressed read (a gzip bomb) never becomes one huge block in memory or one long
    stall of the event loop; other encodings are httpx's own decoding.
    """
    if sync is None:
        sync = not hasattr(response.stream, "__aiter__")
    return _httpx_sync(response) if sync else _httpx_async(response)


async def _httpx_async(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        if response.status_code >= 400:
            body = bytearray()
            async for data in response.aiter_bytes():
                body += data
                if len(body) >= ERROR_BODY_LIMIT:
                    break
            raise _http_error(response, bytes(body))
        inflater = _gzip(response)
        if inflater is None:
            async for data in response.aiter_bytes():
                yield data
        else:
            async for raw in response.aiter_raw():
                for data in _inflate(inflater, raw):
                    yield data
    finally:
        await response.aclose()


def _httpx_sync(response: httpx.Response) -> Iterator[bytes]:
    try:
        if response.status_code >= 400:
            body = bytearray()
            for data in response.iter_bytes():
                body += data
                if len(body) >= ERROR_BODY_LIMIT:
                    break
            raise _http_error(response, bytes(body))
        inflater = _gzip(response)
        if inflater is None:
            yield from response.iter_bytes()
        else:
            for raw in response.iter_raw():
                yield from _inflate(inflater, raw)
    finally:
        response.close()


#: The most decoded bytes one step of inflating a gzip body gives.
_INFLATE_PIECE = 64 * 1024


def _gzip(response: Any) -> Any:
    """A gzip inflater when the body is gzip (and only gzip), else ``None`` (httpx decodes)."""
    headers = getattr(response, "headers", None)
    encoding = headers.get("content-encoding", "") if headers is not None else ""
    if (
        encoding.strip().lower() not in ("gzip", "x-gzip")
        or not hasattr(response, "aiter_raw")
        or getattr(response, "is_stream_consumed", True)  # read already: httpx decoded it
    ):
        return None
    import zlib

    return zlib.decompressobj(zlib.MAX_WBITS | 16)


def _inflate(inflater: Any, raw: bytes) -> Iterator[bytes]:
    """The decoded bytes of ``raw``, at most ``_INFLATE_PIECE`` at a time."""
    import zlib

    data = raw
    while data and not inflater.eof:
        try:
            out = inflater.decompress(data, _INFLATE_PIECE)
        except zlib.error as exc:
            raise DecodeError(f"the gzip body is corrupt: {exc}") from None
        if out:
            yield out
        data = inflater.unconsumed_tail


def _http_error(response: httpx.Response, body: bytes) -> UpstreamError:
    """An :class:`UpstreamError` for a failed response: the server's error object when the body
    holds one (``{"error": {...}}``), else the start of the body."""
    payload: Any = None
    try:
        parsed = orjson.loads(body[:ERROR_BODY_LIMIT])
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        payload = parsed.get("error", parsed)
    text = body[:500].decode("utf-8", "replace").strip()
    fallback = text or getattr(response, "reason_phrase", "") or "no body"
    return upstream_error(payload, status=response.status_code, fallback=fallback)


@overload
def from_openai(stream: AsyncStream[Any]) -> AsyncIterator[dict[str, Any]]: ...
@overload
def from_openai(  # type: ignore[overload-cannot-match]  # the SDK's types are skipped here
    stream: Stream[Any],
) -> Iterator[dict[str, Any]]: ...
def from_openai(
    stream: AsyncStream[Any] | Stream[Any],
) -> AsyncIterator[dict[str, Any]] | Iterator[dict[str, Any]]:
    """The chunks of an OpenAI SDK stream, as the JSON objects the server sent.

    ``stream`` is what ``client.chat.completions.create(..., stream=True)``,
    ``client.completions.create(..., stream=True)`` or ``client.responses.create(...,
    stream=True)`` returns, from ``AsyncOpenAI`` (an async source) or ``OpenAI`` (a sync one).
    Each ``ChatCompletionChunk``, ``Completion`` or Responses event becomes the object the server
    sent, the fields (and event types) the SDK does not know included; the source closes the
    stream when done. An error the SDK raises for an error event (``openai.APIError``) becomes an
    :class:`~aggregator.UpstreamError` carrying the server's error object.

    The SDK consumes ``data: [DONE]`` itself, so streams from it end as ``exhausted``: complete
    when every choice has a ``finish_reason`` (a response: when its terminal event came).
    """
    if hasattr(stream, "__aiter__"):
        return _openai_async(stream)
    return _openai_sync(stream)


async def _openai_async(stream: AsyncStream[Any]) -> AsyncIterator[dict[str, Any]]:
    from openai import APIError

    try:
        try:
            async for chunk in stream:
                # as sent: a value the SDK types otherwise (Mistral's content parts) is no error
                yield chunk.to_dict(mode="json", warnings=False)
        except APIError as exc:
            raise _openai_error(exc) from exc
    finally:
        await stream.close()


def _openai_sync(stream: Stream[Any]) -> Iterator[dict[str, Any]]:
    from openai import APIError

    try:
        try:
            for chunk in stream:
                # as sent: a value the SDK types otherwise (Mistral's content parts) is no error
                yield chunk.to_dict(mode="json", warnings=False)
        except APIError as exc:
            raise _openai_error(exc) from exc
    finally:
        stream.close()


def _openai_error(exc: Any) -> UpstreamError:
    payload = exc.body if exc.body is not None else {"message": exc.message}
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        payload = payload["error"]
    status = getattr(exc, "status_code", None)
    return upstream_error(payload, status=status, fallback=str(exc.message))


def from_anthropic(stream: Any) -> Source:
    """The bytes of an anthropic SDK stream, exactly as the server sent them.

    ``stream`` is what ``client.messages.create(..., stream=True)`` returns (a ``Stream`` or
    ``AsyncStream`` of raw events), a ``MessageStream`` (``with client.messages.stream(...) as
    stream``), or the manager ``client.messages.stream(...)`` itself, which the source enters
    and leaves. ``Anthropic`` gives a sync source, ``AsyncAnthropic`` an async one. Pass the
    stream unread: the source reads its HTTP response's body, not the SDK's events, because the
    SDK drops every event whose SSE name it does not know or that has none, and turns an
    ``error`` event into an exception with no place; from the bytes, every event is kept and an
    error mid-stream ends the stream with its partial message and its line. The source closes
    the response when done.
    """
    if not hasattr(stream, "__iter__") and not hasattr(stream, "__aiter__"):  # a manager
        if hasattr(stream, "__aenter__"):
            return _anthropic_manager_async(stream)
        return _anthropic_manager_sync(stream)
    if hasattr(stream, "__aiter__"):
        return _httpx_async(stream.response)
    return _httpx_sync(stream.response)


async def _anthropic_manager_async(manager: Any) -> AsyncIterator[bytes]:
    async with manager as stream:
        async for data in _httpx_async(stream.response):
            yield data


def _anthropic_manager_sync(manager: Any) -> Iterator[bytes]:
    with manager as stream:
        yield from _httpx_sync(stream.response)
