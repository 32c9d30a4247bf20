"""Reading one source, with its time limits: the one reader ``results``, ``fan_in`` and ``Tee``
share.

Theory of operation: a source is an async or a sync iterable. :class:`SourceReader` turns either
into one ``await reader.next()``, bounded by ``Limits.idle_timeout`` (the most time one read may
wait) and ``Limits.deadline`` (the most time the whole source may take, from its first read), and
closes it (``aclose``, shielded from cancellation but within ``Limits.close_timeout``, or
``close``) once, whatever happened. A read past a time limit raises :class:`LimitError`; what the
source itself raises comes out as it is.

:class:`Feeder` is the one place where the shell bounds the work done between two visits to the
event loop: a bytes item longer than :data:`PIECE` is fed to the engine in pieces of that size,
and the loop is given a turn (``anyio.lowlevel.checkpoint``) after every :data:`BUDGET` bytes or
:data:`BUDGET_ITEMS` items fed, so no input (64 MiB of blank lines in one read, a source that
never awaits) stalls the other tasks for longer than the work on one budget. :class:`SyncBatches`
does the same for a sync source, read in batches.

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
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union, final

from ._core._errors import LimitError
from ._core._limits import Limits

if TYPE_CHECKING:
    from ._core._engine import Engine

__all__ = [
    "BUDGET",
    "BUDGET_ITEMS",
    "PIECE",
    "PIPE_READ_SIZE",
    "Feeder",
    "PipeSource",
    "Source",
    "SourceReader",
    "Sources",
    "SyncBatches",
    "close_async",
]

#: The most bytes of one item fed to the engine at once.
PIECE = 64 * 1024
#: The most bytes fed between two turns of the event loop.
BUDGET = 256 * 1024
#: The most items fed between two turns of the event loop.
BUDGET_ITEMS = 1024
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


async def close_async(iterator: Any, timeout: float | None = None) -> None:
    """Close an async iterator that can be closed, even inside a cancelled scope; a close that
    takes longer than ``timeout`` seconds is abandoned (cancelled)."""
    import anyio  # imported here: `import aggregator` stays light

    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True) as scope:
            if timeout is not None:
                scope.deadline = anyio.current_time() + timeout
            await aclose()


@final
class SourceReader:
    """One source, read item by item within its time limits."""

    __slots__ = (
        "_close_timeout",
        "_end_by",
        "_idle",
        "_iterator",
        "_plain",
        "_source",
        "closed",
        "deadline",
        "is_async",
    )

    def __init__(self, source: Source, limits: Limits) -> None:
        self._source = source
        self.is_async = isinstance(source, AsyncIterable)
        self._iterator: AsyncIterator[Any] | Iterator[Any] | None = None
        self._idle = limits.idle_timeout
        self.deadline = limits.deadline
        self._close_timeout = limits.close_timeout
        self._end_by: float | None = None
        #: whether :meth:`aclose` ran: the source reads as ended from then on.
        self.closed = False
        #: the async iterator, once made, if no time limit bounds its reads (see :meth:`next`).
        self._plain: AsyncIterator[Any] | None = None

    def sync_iterator(self) -> Iterator[Any]:
        """The iterator of a sync source (read in batches by the caller, with no time limits:
        a sync source never waits)."""
        if self._iterator is None:
            self._iterator = iter(self._source)  # type: ignore[arg-type]
        return self._iterator  # type: ignore[return-value]

    def next(self) -> Awaitable[Any]:
        """The next item, to be awaited: for an async source with no time limit, the source's
        own ``__anext__`` (no coroutine of ours a read: what each read of a network body
        costs, see docs/performance.md), else :meth:`_next`.

        Raises:
            StopAsyncIteration: the source ran out.
            LimitError: ``idle_timeout`` or ``deadline`` passed (``limit`` says which).
        """
        plain = self._plain
        if plain is not None:
            return anext(plain)
        return self._next()

    async def _next(self) -> Any:
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
            if self.is_async and self._idle is None and self._end_by is None:
                self._plain = iterator
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
        self._plain = None
        self.closed = True
        if iterator is None:
            return
        if self.is_async:
            await close_async(iterator, self._close_timeout)
        else:
            close = getattr(iterator, "close", None)  # a generator, a file
            if close is not None:
                close()


@final
class Feeder:
    """Feed an engine the items of an async source within a bounded amount of work per turn of
    the event loop (see the module's docstring)."""

    __slots__ = ("_bytes", "_engine", "_items")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bytes = 0
        self._items = 0

    async def feed(self, raw: Any, now: float | None) -> list[Any]:
        """:meth:`Engine.feed_item`, with a long bytes item cut in pieces and the loop given a
        turn when the budget is spent; what ended. (What :meth:`take`, :meth:`pieces`,
        :attr:`due` and :meth:`turn` make, as the reader's loop of ``_run.drive`` makes it.)"""
        out = self.take(raw, now)
        if out is None:
            return await self.pieces(raw, now)
        if self.due:
            await self.turn()
        return out

    def take(self, raw: Any, now: float | None) -> list[Any] | None:
        """Feed an item that is not to be cut (what ended), counted in the budget; ``None``,
        feeding nothing, for a bytes item longer than ``PIECE``: :meth:`pieces` cuts it."""
        cls = raw.__class__
        if cls is bytes or cls is bytearray or cls is memoryview:
            size = len(raw)
            if size > PIECE:
                return None
            self._bytes += size
        self._items += 1
        return self._engine.feed_item(raw, now)

    @property
    def due(self) -> bool:
        """Whether the budget is spent: the loop is to be given a turn (:meth:`turn`)."""
        return self._bytes >= BUDGET or self._items >= BUDGET_ITEMS

    async def pieces(self, raw: Any, now: float | None) -> list[Any]:
        """Feed a long bytes item a piece at a time, the loop given a turn after each."""
        engine = self._engine
        view = memoryview(raw).cast("B")
        out = engine.feed_item(bytes(view[:PIECE]), now)  # counts the item, once
        for start in range(PIECE, len(view), PIECE):
            await self.turn()
            if engine.stopped:
                break
            out += engine.feed(bytes(view[start : start + PIECE]), now)
        await self.turn()
        return out

    async def turn(self) -> None:
        """Give the loop a turn, the budget afresh."""
        import anyio.lowlevel  # imported here: `import aggregator` stays light

        self._bytes = self._items = 0
        await anyio.lowlevel.checkpoint()


@final
class SyncBatches:
    """The items of a sync source in batches of at most :data:`BUDGET_ITEMS` items and about
    :data:`BUDGET` bytes, a bytes item longer than :data:`PIECE` cut in pieces (each counts as
    an item); the reader gives the loop a turn between two batches. Iterating it ends with the
    source; :attr:`exhausted` says, once a batch has been read to its end, whether it was the
    last (the source ran out in it), so the reader can end in that batch's turn."""

    __slots__ = ("_at", "_iterator", "_raw", "exhausted")

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator
        self._raw: Any = None  # the item being cut, and the offset in it
        self._at = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[Iterator[Any]]:
        while not self.exhausted:
            yield self._batch()

    def _batch(self) -> Iterator[Any]:
        iterator = self._iterator
        budget, count = BUDGET, BUDGET_ITEMS
        while budget > 0 and count > 0:
            raw, at = self._raw, self._at
            if raw is None:
                try:
                    raw = next(iterator)
                except StopIteration:
                    self.exhausted = True
                    return
                cls = raw.__class__
                if not (cls is bytes or cls is bytearray or cls is memoryview):
                    count -= 1
                    yield raw
                    continue
                if len(raw) <= PIECE:
                    budget -= len(raw)
                    count -= 1
                    yield raw
                    continue
                raw, at = memoryview(raw).cast("B"), 0
            piece = bytes(raw[at : at + PIECE])
            at += PIECE
            self._raw, self._at = (raw, at) if at < len(raw) else (None, 0)
            budget -= len(piece)
            count -= 1
            yield piece


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
