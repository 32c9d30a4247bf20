"""The simplest async entry points: assemble one source, on asyncio or trio.

Theory of operation: thin users of :func:`results` with the default pipeline: the source is read
in the caller's task, so these start no task. The source is closed when they return, raise or
are cancelled.
"""

from __future__ import annotations

from contextlib import aclosing

import attrs

from ._completions import ChatCompletion, Completion
from ._decode import Format
from ._errors import IncompleteStreamError, StreamError
from ._limits import DEFAULT_LIMITS, Limits
from ._results import Result
from ._run import Source, results

__all__ = ["assemble", "assemble_all"]


async def assemble_all(
    source: Source,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Result]:
    """Assemble every completion of one source; never raises for bad upstream data.

    Args:
        source: an async or sync iterable of bytes (an httpx ``response.aiter_bytes()``), of
            parsed chunk dicts, of chunk events, or of ``(dedupe_id, payload)`` pairs.
        name: the source's name, used in results and error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: end the stream at the first malformed payload (``True``), or skip it and report
            it in :attr:`Result.problems` (``False``).
        limits: the limits (:class:`~aggregator.Limits`) the source must keep to.

    Returns:
        One :class:`Result` per completion, in the order they ended, and one for the key
        ``(name, 0)`` (no completion) when the source held none or had bad input outside any
        completion.

    Raises:
        UsageError: the source yields something it should not.
    """
    items_ = results(source, name=name, format=format, strict=strict, limits=limits)
    async with aclosing(items_) as items:
        return [item async for item in items if isinstance(item, Result)]


async def assemble(
    source: Source,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> ChatCompletion | Completion:
    """Assemble the one completion a source carries, as the non-streaming API returns it.

    Example:
        ``completion = await aggregator.assemble(response.aiter_bytes())``

    Args:
        source: as for :func:`assemble_all`.
        name: the source's name, used in error messages.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` for byte sources.
        strict: as for :func:`assemble_all`.
        limits: as for :func:`assemble_all`.

    Raises:
        IncompleteStreamError: the stream did not end properly (cut off before ``[DONE]``, an
            error payload, malformed input); its ``result`` holds the partial completion.
        StreamError: the source held no completion, or more than one.
        UsageError: the source yields something it should not.
    """
    every = await assemble_all(source, name=name, format=format, strict=strict, limits=limits)
    found = [r for r in every if r.key[1] != 0]
    trouble = [r for r in every if r.key[1] == 0]
    if not found:
        for r in trouble:
            if r.error is not None:
                raise r.error
        raise StreamError("no completion in the stream", stream=name)
    if len(found) > 1:
        raise StreamError(
            f"{len(found)} completions in one stream; use assemble_all()", stream=name
        )
    result = found[0]
    if trouble:
        result = _with_problems(result, trouble)
    if not result.complete:
        raise IncompleteStreamError(result)
    return result.completion


def _with_problems(result: Result, trouble: list[Result]) -> Result:
    extra = tuple(p for r in trouble for p in (*((r.error,) if r.error else ()), *r.problems))
    return attrs.evolve(result, problems=result.problems + extra)
