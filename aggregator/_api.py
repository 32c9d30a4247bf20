"""The first async entry points: assemble one source, on asyncio or trio.

Theory of operation: these are thin shells over :class:`Assembler`. They pull items from the
source in the caller's task (no task, no channel) and hand them to the sans-I/O core. An item may
be bytes (SSE or JSON Lines as a server sent them), a parsed payload (``dict``), or a chunk event.
The source is closed when they return, raise or are cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Union

import anyio.lowlevel

from ._assembler import Assembler
from ._completions import ChatCompletion, Completion
from ._decode import Format
from ._errors import IncompleteStreamError, StreamError, UsageError
from ._events import ChatCompletionChunk, CompletionChunk
from ._results import Result

__all__ = ["Source", "assemble", "assemble_all"]

#: What the entry points read: bytes, parsed payloads, or chunk events, sync or async.
Source = Union[
    AsyncIterable[Union[bytes, dict[str, Any], ChatCompletionChunk, CompletionChunk]],
    Iterable[Union[bytes, dict[str, Any], ChatCompletionChunk, CompletionChunk]],
]


def _take(assembler: Assembler, item: Any, number: int) -> list[Result]:
    cls = item.__class__
    if cls is bytes or cls is bytearray or cls is memoryview:
        return assembler.feed(bytes(item))
    if cls is dict:
        return assembler.add_dict(item, where=f"item {number}")
    if cls is ChatCompletionChunk or cls is CompletionChunk:
        return assembler.add_event(item, where=f"item {number}")
    raise UsageError(
        f"a source yields bytes, dicts or chunk events, not {cls.__name__} (item {number})"
    )


def _source_error(exc: Exception, name: str, number: int) -> StreamError:
    err = StreamError(
        f"the source raised {type(exc).__name__}: {exc}", stream=name, where=f"after item {number}"
    )
    err.__cause__ = exc
    return err


async def assemble_all(
    source: Source, *, name: str = "<stream>", format: Format = "auto", strict: bool = True
) -> list[Result]:
    """Assemble every completion of one source; never raises for bad upstream data.

    Args:
        source: an async or sync iterable of bytes (an httpx ``response.aiter_bytes()``), of
            parsed chunk dicts, or of chunk events.
        name: the source's name, used in results and error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: end the stream at the first malformed payload (``True``), or skip it and report
            it in :attr:`Result.problems` (``False``).

    Returns:
        One :class:`Result` per completion, in the order they ended. Errors that belong to no
        completion (garbage before the first chunk) are in a result-less
        :class:`StreamError` only when no completion was found; see :func:`assemble`.

    Raises:
        UsageError: the source yields something other than bytes, dicts or chunk events.
    """
    await anyio.lowlevel.checkpoint()
    assembler = Assembler(name, format=format, strict=strict)
    results: list[Result] = []
    number = 0
    if isinstance(source, AsyncIterable):
        iterator = aiter(source)
        try:
            while not assembler.stopped:
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - a failing source becomes a result
                    results += assembler.fail(_source_error(exc, name, number))
                    break
                number += 1
                results += _take(assembler, item, number)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
    else:
        iterator_ = iter(source)
        while not assembler.stopped:
            try:
                item = next(iterator_)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - a failing source becomes a result
                results += assembler.fail(_source_error(exc, name, number))
                break
            number += 1
            results += _take(assembler, item, number)
            await anyio.lowlevel.checkpoint_if_cancelled()
    results += assembler.close()
    if not results and assembler.errors:
        raise assembler.errors[0]
    return results


async def assemble(
    source: Source, *, name: str = "<stream>", format: Format = "auto", strict: bool = True
) -> ChatCompletion | Completion:
    """Assemble the one completion a source carries, as the non-streaming API returns it.

    Example:
        ``completion = await aggregator.assemble(response.aiter_bytes())``

    Args:
        source: as for :func:`assemble_all`.
        name: the source's name, used in error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: as for :func:`assemble_all`.

    Raises:
        IncompleteStreamError: the stream did not end properly (cut off before ``[DONE]``, an
            error payload, malformed input); its ``result`` holds the partial completion.
        StreamError: the source held no completion, or more than one.
        UsageError: the source yields something other than bytes, dicts or chunk events.
    """
    results = await assemble_all(source, name=name, format=format, strict=strict)
    if not results:
        raise StreamError("no completion in the stream", stream=name)
    if len(results) > 1:
        raise StreamError(
            f"{len(results)} completions in one stream; use assemble_all()", stream=name
        )
    result = results[0]
    if not result.complete:
        raise IncompleteStreamError(result)
    return result.completion
