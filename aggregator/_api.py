"""The simplest async entry points: assemble one source, on asyncio or trio.

Theory of operation: thin users of :func:`results` with the default pipeline: the source is read
in the caller's task, so these start no task. The source is closed when they return, raise or
are cancelled.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from ._core._assembler import one_completion
from ._core._chat._completions import ChatCompletion, Completion
from ._core._framing import Format
from ._core._limits import DEFAULT_LIMITS, Limits
from ._core._results import Result, SourceReport
from ._reading import Source
from ._run import results

__all__ = ["assemble", "assemble_all"]

T = TypeVar("T")


async def assemble_all(
    source: Source,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    interleaved: bool = False,
) -> tuple[list[Result], SourceReport]:
    """Assemble every completion of one source; never raises for bad upstream data.

    Example:
        ``found, report = await aggregator.assemble_all(response.aiter_bytes())``

    Args:
        source: an async or sync iterable of bytes (an httpx ``response.aiter_bytes()``), of
            parsed chunk dicts, of chunk events or an SDK's chunk objects (an ``openai``
            stream as it is), or of ``(dedupe_id, payload)`` pairs.
        name: the source's name, used in results and error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: end the stream at the first malformed payload (``True``), or skip it and report
            it in :attr:`Result.problems` (``False``).
        limits: the limits (:class:`~aggregator.Limits`) the source must keep to.
        interleaved: the source carries several completions side by side, told apart by id.

    Returns:
        One :class:`Result` per completion, in the order they ended, and the source's
        :class:`SourceReport` (how it ended; its trouble outside any completion).

    Raises:
        UsageError: the source yields something it should not.
    """
    found: list[Result] = []
    report: SourceReport | None = None
    async with results(
        source, name=name, format=format, strict=strict, limits=limits, interleaved=interleaved
    ) as items:
        async for item in items:
            if isinstance(item, Result):
                found.append(item)
            else:
                report = item
    assert report is not None  # a source always ends with its report
    return found, report


@overload
async def assemble(
    source: Source,
    expect: None = None,
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
) -> ChatCompletion | Completion: ...
@overload
async def assemble(
    source: Source,
    expect: type[T],
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
) -> T: ...
async def assemble(
    source: Source,
    expect: type[Any] | None = None,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """Assemble the one completion a source carries, as the non-streaming API returns it.

    Example:
        ``completion = await aggregator.assemble(response.aiter_bytes(), ChatCompletion)``

    Args:
        source: as for :func:`assemble_all`.
        expect: the class the completion must be (``ChatCompletion``, say): the return type.
        name: the source's name, used in error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: as for :func:`assemble_all`.
        limits: as for :func:`assemble_all`.

    Raises:
        IncompleteStreamError: the stream did not end properly (cut off before ``[DONE]``, an
            error payload, malformed input); its ``result`` holds the partial completion.
        StreamError: the source held no completion, more than one, or not one of ``expect``.
        UsageError: the source yields something it should not.
    """
    found, report = await assemble_all(
        source, name=name, format=format, strict=strict, limits=limits
    )
    return one_completion([*found, report], name, expect)
