"""Reading one source, with its time limits: the one reader ``results``, ``fan_in`` and ``Tee``
share.

Theory of operation: a source is an async or a sync iterable. :class:`SourceReader` turns either
into one ``await reader.next()``, bounded by ``Limits.idle_timeout`` (the most time one read may
wait) and ``Limits.deadline`` (the most time the whole source may take, from its first read), and
closes it (``aclose``, shielded from cancellation, or ``close``) once, whatever happened. A read
past a time limit raises :class:`LimitError`; what the source itself raises comes out as it is.

A path that is not a regular file (a FIFO, ``<(curl -N ...)``'s ``/dev/fd/N``, a character
device) is read by :class:`PipeSource`: opened ``O_NONBLOCK`` and read with ``os.read`` only after
the event loop says it is readable (``anyio.wait_readable``). No read ever blocks a thread, so a
cancellation (a time limit, Ctrl-C) ends the wait at once, and each read returns what the pipe
holds (at most ``PIPE_READ_SIZE``), so the output follows the input as it comes. Waiting before
the first read also covers a FIFO whose writer has not opened it yet: a non-blocking read would
say end of file, but the kernel reports it readable only once a writer wrote or came and went.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Union, final

from ._core._errors import LimitError
from ._core._limits import Limits

__all__ = ["PIPE_READ_SIZE", "PipeSource", "Source", "SourceReader", "Sources", "close_async"]

#: The most one read of a pipe asks for (it returns what the pipe holds, up to this).
PIPE_READ_SIZE = 64 * 1024

#: What a source yields: bytes (SSE or JSON Lines), parsed payloads, chunk events, an SDK's chunk
#: objects, or ``(dedupe_id, payload)`` pairs; sync or async.
Source = Union[AsyncIterable[Any], Iterable[Any]]

#: Many named sources: a mapping, or (name, source) pairs, sync or async (sources that arrive
#: over time, as a gateway's requests do).
Sources = Union[
    Mapping[str, Source], Iterable[tuple[str, Source]], AsyncIterable[tuple[str, Source]]
]


async def close_async(iterator: Any) -> None:
    """Close an async iterator that can be closed, even inside a cancelled scope."""
    import anyio  # imported here: `import aggregator` stays light

    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


@final
class SourceReader:
    """One source, read item by item within its time limits."""

    __slots__ = ("_end_by", "_idle", "_iterator", "_source", "closed", "deadline", "is_async")

    def __init__(self, source: Source, limits: Limits) -> None:
        self._source = source
        self.is_async = isinstance(source, AsyncIterable)
        self._iterator: AsyncIterator[Any] | Iterator[Any] | None = None
        self._idle = limits.idle_timeout
        self.deadline = limits.deadline
        self._end_by: float | None = None
        #: whether :meth:`aclose` ran: the source reads as ended from then on.
        self.closed = False

    def sync_iterator(self) -> Iterator[Any]:
        """The iterator of a sync source (read in batches by the caller, with no time limits:
        a sync source never waits)."""
        if self._iterator is None:
            self._iterator = iter(self._source)  # type: ignore[arg-type]
        return self._iterator  # type: ignore[return-value]

    async def next(self) -> Any:
        """The next item.

        Raises:
            StopAsyncIteration: the source ran out.
            LimitError: ``idle_timeout`` or ``deadline`` passed (``limit`` says which).
        """
        iterator: Any = self._iterator
        if iterator is None:
            if self.closed:
                raise StopAsyncIteration
            import anyio  # imported here: `import aggregator` stays light

            source: Any = self._source
            iterator = aiter(source) if self.is_async else iter(source)
            self._iterator = iterator
            if self.deadline is not None:
                self._end_by = anyio.current_time() + self.deadline
        if not self.is_async:
            try:
                return next(iterator)
            except StopIteration:
                raise StopAsyncIteration from None
        if self._idle is None and self._end_by is None:
            return await anext(iterator)
        return await self._in_time(iterator)

    async def _in_time(self, iterator: AsyncIterator[Any]) -> Any:
        import anyio  # imported here: `import aggregator` stays light

        limit, wait = "idle_timeout", float("inf")
        if self._idle is not None:
            wait = self._idle
        if self._end_by is not None:
            left = max(self._end_by - anyio.current_time(), 0.0)
            if left < wait:
                limit, wait = "deadline", left
        with anyio.move_on_after(wait):
            return await anext(iterator)
        if limit == "idle_timeout":
            raise LimitError(f"nothing received for {wait:g} s (idle_timeout)", limit=limit)
        raise LimitError("the deadline passed (deadline)", limit=limit)

    async def aclose(self) -> None:
        """Close the source (once is enough; more is harmless)."""
        iterator, self._iterator = self._iterator, None
        self.closed = True
        if iterator is None:
            return
        if self.is_async:
            await close_async(iterator)
        else:
            close = getattr(iterator, "close", None)  # a generator, a file
            if close is not None:
                close()


@final
class PipeSource:
    """The bytes of a pipe, FIFO or character device, read without blocking a thread (see the
    module's docstring). The path is opened at once (``OSError`` if it cannot be); the
    descriptor is closed when the bytes run out or the source is closed."""

    __slots__ = ("_fd", "_size")

    def __init__(self, path: str | os.PathLike[str], size: int = PIPE_READ_SIZE) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        self._size = size

    @staticmethod
    def wanted(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` names something other than a regular file or a directory (a FIFO,
        a socket, a character device): what this class reads. ``False`` if it cannot be
        stat-ed (the caller's own open then says why)."""
        import stat

        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            return False
        return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)

    def __aiter__(self) -> PipeSource:
        return self

    async def __anext__(self) -> bytes:
        import anyio  # imported here: `import aggregator` stays light

        while self._fd >= 0:
            await anyio.wait_readable(self._fd)
            try:
                data = os.read(self._fd, self._size)
            except (BlockingIOError, InterruptedError):
                continue  # readable, then drained by another reader: wait again
            if data:
                return data
            self._close()
        raise StopAsyncIteration

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    async def aclose(self) -> None:
        """Close the descriptor (once is enough; more is harmless)."""
        if self._fd >= 0:
            import anyio  # imported here: `import aggregator` stays light

            anyio.notify_closing(self._fd)
            self._close()
