"""The sync entry points, with no event loop: :class:`Assembler` and :func:`assemble_sync`.

Theory of operation: an :class:`Assembler` is the engine of one source (``_engine``), the same
object every async entry point runs, seen through the smallest sync interface: feed it, get the
results of the completions that ended; the source's own outcome is :attr:`Assembler.report`
once it ends. :func:`assemble_sync` is the one-call version for a list of chunks (what
LiteLLM's ``stream_chunk_builder`` or openai's ``get_final_completion`` give).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

from ._engine import Engine, SourceRaised, source_error
from ._errors import IncompleteStreamError, StreamError
from ._framing import Format
from ._limits import DEFAULT_LIMITS, Limits
from ._results import Result, SourceReport

if TYPE_CHECKING:
    from ._chat._completions import ChatCompletion, Completion

__all__ = ["Assembler", "assemble_sync", "one_completion"]

T = TypeVar("T")


@final
class Assembler:
    """Assemble every completion of one source, with no event loop.

    Args:
        name: the source's name, used in results and errors.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` (told apart from the first byte), for
            :meth:`feed`.
        strict: on malformed input, end the open completions with the error and stop
            (``True``), or skip the bad payload and record it in :attr:`Result.problems`.
        limits: the limits (:class:`~aggregator.Limits`); time limits do not apply here.
        interleaved: the source carries several completions side by side, told apart by id.

    Feed bytes with :meth:`feed`, or parsed payloads, events and SDK chunk objects with
    :meth:`add`; each returns the results of the completions that ended. :meth:`close` ends the
    source and returns the rest; then :attr:`report` says how the source itself ended.
    """

    __slots__ = ("_engine",)

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        interleaved: bool = False,
    ) -> None:
        self._engine = Engine(
            name, format=format, strict=strict, limits=limits, interleaved=interleaved
        )

    @property
    def started(self) -> float | None:
        """When the source started (the request was sent), on the clock of the times you give
        :meth:`feed`; by default the first of them. The first stream's timings count from it."""
        return self._engine.started

    @started.setter
    def started(self, when: float | None) -> None:
        self._engine.started = when

    @property
    def report(self) -> SourceReport | None:
        """How the source ended and its trouble outside any completion, once it ended."""
        return self._engine.report

    def feed(self, data: bytes, now: float | None = None) -> list[Result]:
        """Take the next bytes of the source; return the results of completions that ended.

        ``now``: when the bytes arrived, in seconds on a monotonic clock of yours (the core
        reads none); given, each result has its :class:`~aggregator.Timings`.
        """
        return _results(self._engine.feed(data, now))

    def add(self, item: Any, now: float | None = None) -> list[Result]:
        """Take one item: a parsed payload (a chunk, or an ``{"error": ...}`` object), a chunk
        event, an SDK's chunk object, or a ``(dedupe_id, payload)`` pair; ``now``: as for
        :meth:`feed`.

        Raises:
            UsageError: ``item`` is none of these.
        """
        return _results(self._engine.feed_item(item, now))

    def close(self, *, cancelled: bool = False, now: float | None = None) -> list[Result]:
        """End the source; return the results of every completion still open.

        Open completions end as ``cut_off`` when the source was SSE (which promises ``[DONE]``),
        ``exhausted`` otherwise, or ``cancelled`` when ``cancelled`` is true.
        """
        return _results(self._engine.close(cancelled=cancelled, now=now))

    def fail(self, error: StreamError, now: float | None = None) -> list[Result]:
        """The source failed (it raised, say): end every open completion with ``error``."""
        return _results(self._engine.fail(error, now))


def _results(ended: list[Any]) -> list[Result]:
    return [r for r in ended if r.__class__ is Result]


@overload
def assemble_sync(
    source: Iterable[Any],
    expect: None = None,
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
) -> ChatCompletion | Completion: ...
@overload
def assemble_sync(
    source: Iterable[Any],
    expect: type[T],
    *,
    name: str = ...,
    format: Format = ...,
    strict: bool = ...,
    limits: Limits = ...,
) -> T: ...
def assemble_sync(
    source: Iterable[Any],
    expect: type[Any] | None = None,
    *,
    name: str = "<stream>",
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """Assemble the one completion of a sync source: a list of chunk dicts, chunk events, an
    SDK's chunk objects, or pieces of bytes.

    Example:
        ``completion = aggregator.assemble_sync(chunks, ChatCompletion)``

    Args:
        source: a sync iterable, as for :func:`~aggregator.assemble`.
        expect: the class the completion must be (``ChatCompletion``, say): the return type.
        name: the source's name, used in results and errors.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"``, for pieces of bytes.
        strict: as for :class:`Assembler`.
        limits: as for :class:`Assembler`.

    Raises:
        IncompleteStreamError: the stream did not end properly; ``result`` holds the partial.
        StreamError: the source held no completion, more than one, or not one of ``expect``.
        UsageError: the source yields something it should not.
    """
    engine = Engine(name, format=format, strict=strict, limits=limits)
    ended: list[Any] = []
    try:
        engine.feed_items(source, ended)
    except SourceRaised as raised:
        ended += engine.fail(source_error(raised.exception, name, raised.number))
    ended += engine.close()
    return one_completion(ended, name, expect)


def one_completion(ended: list[Any], name: str, expect: type[Any] | None) -> Any:
    """The one completion of a whole source's output (results, then its report), or raise."""
    found = [r for r in ended if r.__class__ is Result]
    report = next((r for r in ended if r.__class__ is SourceReport), None)
    if not found:
        if report is not None and report.error is not None:
            raise report.error
        raise StreamError("no completion in the input", source=name)
    if len(found) > 1:
        raise StreamError(
            f"{len(found)} completions in one source; use assemble_all()", source=name
        )
    result = found[0]
    if report is not None:  # the source's own trouble is this completion's too
        extra = [*report.problems]
        if report.error is not None and report.error is not result.error:
            extra.append(report.error)
        if extra:
            import attrs

            result = attrs.evolve(result, problems=(*result.problems, *extra))
    if not result.complete:
        raise IncompleteStreamError(result)
    completion = result.completion
    if expect is not None and not isinstance(completion, expect):
        raise StreamError(
            f"expected a {expect.__name__}, got a {type(completion).__name__}",
            source=name,
            where=result.where,
        )
    return completion
