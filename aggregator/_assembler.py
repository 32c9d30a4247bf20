"""One source in, one :class:`Result` per completion out, with no event loop (sans-I/O).

Theory of operation: the :class:`Assembler` is the synchronous driver of the two halves of a
pipeline, a :class:`SourceDecoder` (where streams start and end) and a :class:`Merger` (what
they hold), with nothing in between: the same code the async stages run, so both paths give the
same results. Problems that belong to no completion (bad input before the first chunk, a source
with no completion at all) are kept in :attr:`Assembler.errors` instead of a result.
"""

from __future__ import annotations

from typing import Any, final

from ._decode import Format
from ._errors import StreamError
from ._events import ChatCompletionChunk, CompletionChunk
from ._items import End, Item
from ._limits import DEFAULT_LIMITS, Limits
from ._results import Result
from ._streams import Merger, SourceDecoder, end_to_result

__all__ = ["Assembler"]


@final
class Assembler:
    """Assemble every completion of one source.

    Args:
        name: the source's name, used in results and errors.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` (told apart from the first byte), for
            :meth:`feed`.
        strict: on malformed input, end the open completions with the error (``True``), or skip
            the bad payload and report it in :attr:`Result.problems` (``False``).
        limits: the limits (:class:`~aggregator.Limits`); time limits do not apply here.

    Feed bytes with :meth:`feed`, parsed payloads with :meth:`add_dict`, or events with
    :meth:`add_event`; each returns the results of the completions that ended. :meth:`close`
    ends the source and returns the rest.
    """

    __slots__ = ("_merger", "_source", "errors")

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self._source = SourceDecoder(name, format=format, strict=strict, limits=limits)
        self._merger = Merger(limits)
        #: problems that belong to no completion, in order.
        self.errors: list[StreamError] = []

    @property
    def name(self) -> str:
        """The source's name."""
        return self._source.name

    @property
    def line(self) -> int:
        """The number of lines of bytes read so far (for messages about the end of input)."""
        return self._source.line

    @property
    def stopped(self) -> bool:
        """Whether the source is finished with (closed, or broken in strict mode)."""
        return self._source.stopped

    def feed(self, data: bytes) -> list[Result]:
        """Take the next bytes of the source; return the results of completions that ended."""
        return self._results(self._source.feed(data))

    def add_dict(self, obj: Any, *, where: str = "") -> list[Result]:
        """Take one parsed JSON payload (a chunk, or an ``{"error": ...}`` object)."""
        return self._results(self._source.add(obj, where=where))

    def add_event(
        self, event: ChatCompletionChunk | CompletionChunk, *, where: str = ""
    ) -> list[Result]:
        """Take one chunk event."""
        return self._results(self._source.add(event, where=where))

    def close(self, *, cancelled: bool = False) -> list[Result]:
        """End the source; return the results of every completion still open.

        Open completions end as ``cut_off`` when the source was SSE (which promises ``[DONE]``),
        ``exhausted`` otherwise, or ``cancelled`` when ``cancelled`` is true.
        """
        return self._results(self._source.close(cancelled=cancelled))

    def fail(self, error: StreamError) -> list[Result]:
        """The source failed (it raised, say): end every open completion with ``error``."""
        return self._results(self._source.fail(error))

    def _results(self, items: list[Item]) -> list[Result]:
        out: list[Item] = []
        merger = self._merger
        for item in items:
            merger.process(item, out)
        results = []
        for item in out:
            if isinstance(item, End):
                if item.key[1] == 0:
                    if item.error is not None:
                        self.errors.append(item.error)
                    self.errors.extend(item.problems)
                else:
                    results.append(end_to_result(item))
        return results
