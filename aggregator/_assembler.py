"""One source in, one :class:`Result` per completion out (sans-I/O).

Theory of operation: a source (an HTTP body, a file) may carry several completions, told apart
by their chunk ``id``. The :class:`Assembler` keeps one :class:`Accumulator` per open
completion. A chunk with an empty id belongs to the completion in progress; a completion that has
no id yet (Azure's metadata chunk comes first, with ``id: ""``) takes the first id that arrives.
``[DONE]`` and the end of the source end every open completion; an error payload ends them with
the upstream error. Malformed input either ends them too (strict, the default) or is skipped,
counted and reported with the result (lenient). Nothing assembled is ever dropped: every
completion that received a chunk comes out as a :class:`Result`, complete or not.
"""

from __future__ import annotations

from typing import Any, final

from ._accumulate import Accumulator
from ._decode import Format, Item, ItemKind, PayloadDecoder, payload_to_item, upstream_error
from ._errors import StreamError, StructureError, UpstreamError, UsageError
from ._events import ChatCompletionChunk, CompletionChunk
from ._results import EndReason, Result

__all__ = ["Assembler"]


class _Open:
    __slots__ = ("acc", "error", "problems")

    def __init__(self) -> None:
        self.acc = Accumulator()
        self.problems: list[StreamError] = []
        self.error: StreamError | None = None


@final
class Assembler:
    """Assemble every completion of one source.

    Args:
        name: the source's name, used in results and errors.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"`` (told apart from the first byte), for
            :meth:`feed`.
        strict: on malformed input, end the open completions with the error (``True``), or skip
            the bad payload and report it with the result (``False``).

    Feed bytes with :meth:`feed`, or already parsed payloads with :meth:`add_dict`, or events with
    :meth:`add_event`; each returns the results of the completions that ended. :meth:`close`
    ends the source and returns the rest.
    """

    __slots__ = ("_by_id", "_current", "_decoder", "_open", "_stopped", "errors", "name", "strict")

    def __init__(self, name: str = "<stream>", *, format: Format = "auto", strict: bool = True):
        self.name = name
        self.strict = strict
        self._decoder = PayloadDecoder(name, format=format)
        self._open: list[_Open] = []
        self._by_id: dict[str, _Open] = {}
        self._current: _Open | None = None
        self._stopped = False
        #: errors that belong to no completion (garbage before the first chunk, say).
        self.errors: list[StreamError] = []

    @property
    def line(self) -> int:
        """The number of lines of bytes read so far (for messages about the end of input)."""
        return self._decoder.line

    @property
    def stopped(self) -> bool:
        """Whether the source is finished with (closed, or broken in strict mode)."""
        return self._stopped

    def feed(self, data: bytes) -> list[Result]:
        """Take the next bytes of the source; return the results of completions that ended."""
        if self._stopped:
            return []
        return self._items(self._decoder.feed(data))

    def add_dict(self, obj: Any, *, where: str = "") -> list[Result]:
        """Take one parsed JSON payload (a chunk, or an ``{"error": ...}`` object)."""
        if self._stopped:
            return []
        return self._items([payload_to_item(obj, stream=self.name, where=where)])

    def add_event(
        self, event: ChatCompletionChunk | CompletionChunk, *, where: str = ""
    ) -> list[Result]:
        """Take one chunk event."""
        if self._stopped:
            return []
        return self._items([Item(ItemKind.CHUNK, where, event=event)])

    def done(self) -> list[Result]:
        """The server said ``[DONE]``: end every open completion."""
        return self._end_all(EndReason.DONE)

    def close(self, *, cancelled: bool = False) -> list[Result]:
        """End the source; return the results of every completion still open.

        Open completions end as ``cut_off`` when the source was SSE (which promises ``[DONE]``),
        ``exhausted`` otherwise, or ``cancelled`` when ``cancelled`` is true.
        """
        if self._stopped:
            return []
        results = self._items(self._decoder.close())
        if cancelled:
            reason = EndReason.CANCELLED
        elif self._decoder.format == "sse":
            reason = EndReason.CUT_OFF
        else:
            reason = EndReason.EXHAUSTED
        results += self._end_all(reason)
        self._stopped = True
        return results

    def fail(self, error: StreamError) -> list[Result]:
        """The source failed (it raised, say): end every open completion with ``error``.

        The source is finished with afterwards. With no completion open, ``error`` is kept in
        :attr:`errors`.
        """
        if self._stopped:
            return []
        results = self._end_all(EndReason.ERROR, error)
        if not results:
            self.errors.append(error)
        self._stopped = True
        return results

    def snapshot(self) -> list[Result]:
        """The partial results of the open completions, as of now (nothing is ended)."""
        return [self._result(s, EndReason.CUT_OFF) for s in self._open]

    def _items(self, items: list[Item]) -> list[Result]:
        results: list[Result] = []
        for item in items:
            if self._stopped:
                break
            if item.kind is ItemKind.CHUNK:
                results += self._chunk(item.event, item.where)  # type: ignore[arg-type]
            elif item.kind is ItemKind.DONE:
                results += self._end_all(EndReason.DONE)
            else:
                results += self._error(item.error)  # type: ignore[arg-type]
        return results

    def _chunk(self, event: ChatCompletionChunk | CompletionChunk, where: str) -> list[Result]:
        stream = self._stream_for(event.id)
        try:
            stream.acc.add(event)
        except UsageError as exc:
            return self._error(StructureError(str(exc), stream=self.name, where=where))
        if event.error is not None:
            stream.error = upstream_error(event.error, self.name, where)
            return self._end_all(EndReason.ERROR)
        return []

    def _stream_for(self, id_: str) -> _Open:
        current = self._current
        if id_:
            stream = self._by_id.get(id_)
            if stream is None:
                if current is not None and not current.acc.id:
                    stream = current  # a completion without an id yet takes this one
                else:
                    stream = _Open()
                    self._open.append(stream)
                self._by_id[id_] = stream
        elif current is not None:
            stream = current
        else:
            stream = _Open()
            self._open.append(stream)
        self._current = stream
        return stream

    def _error(self, error: StreamError) -> list[Result]:
        if isinstance(error, UpstreamError) or self.strict:
            if not self._open:
                self.errors.append(error)
                if self.strict:
                    self._stopped = True
                return []
            results = self._end_all(EndReason.ERROR, error)
            if self.strict:
                self._stopped = True
            return results
        if self._current is not None:
            self._current.problems.append(error)
        else:
            self.errors.append(error)
        return []

    def _end_all(self, reason: EndReason, error: StreamError | None = None) -> list[Result]:
        if error is not None:
            for stream in self._open:
                stream.error = stream.error or error
        results = [self._result(s, reason) for s in self._open]
        self._open = []
        self._by_id = {}
        self._current = None
        return results

    def _result(self, stream: _Open, reason: EndReason) -> Result:
        acc = stream.acc
        return Result(
            stream=self.name,
            completion=acc.result(),
            reason=reason,
            finished=acc.finished,
            error=stream.error,
            problems=tuple(stream.problems),
            chunks=acc.chunks,
        )
