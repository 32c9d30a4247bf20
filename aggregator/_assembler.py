"""One source in, one :class:`Result` per completion out, with no event loop (sans-I/O).

Theory of operation: the :class:`Assembler` is the synchronous driver of a ``FusedSource``: the
decoder of one source and the default pipeline's stages (``dedupe | collect_usage |
merge_deltas | assemble``), the same code :func:`~aggregator.results` and
:func:`~aggregator.fan_in` run, so every path gives the same results. Problems that belong to
no completion (bad input before the first chunk, a source with no completion at all) are kept
in :attr:`Assembler.errors` instead of a result.
"""

from __future__ import annotations

from typing import Any, final

from ._decode import Format
from ._errors import StreamError
from ._events import ChatCompletionChunk, CompletionChunk
from ._fused import FusedSource
from ._limits import DEFAULT_LIMITS, Limits
from ._results import Result

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

    __slots__ = ("_source", "errors")

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self._source = FusedSource(name, format=format, strict=strict, limits=limits)
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
    def done(self) -> bool:
        """Whether the input so far ends with ``[DONE]``: no completion is open."""
        return self._source.done

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

    def feed_raw(self, raw: Any, number: int) -> list[Result]:
        """Take item ``number`` (from 1) as a source yielded it: bytes, a parsed payload, a chunk
        event or a ``(dedupe_id, payload)`` pair. Bad data never raises: it becomes results."""
        return self._results(self._source.feed_raw(raw, number))

    def close(self, *, cancelled: bool = False) -> list[Result]:
        """End the source; return the results of every completion still open.

        Open completions end as ``cut_off`` when the source was SSE (which promises ``[DONE]``),
        ``exhausted`` otherwise, or ``cancelled`` when ``cancelled`` is true.
        """
        return self._results(self._source.close(cancelled=cancelled))

    def fail(self, error: StreamError) -> list[Result]:
        """The source failed (it raised, say): end every open completion with ``error``."""
        return self._results(self._source.fail(error))

    def _results(self, items: list[Any]) -> list[Result]:
        results = []
        for result in items:
            if result.key[1] == 0:
                if result.error is not None:
                    self.errors.append(result.error)
                self.errors.extend(result.problems)
            else:
                results.append(result)
        return results
