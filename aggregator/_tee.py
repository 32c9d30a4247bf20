"""A tee: pass a stream on unchanged while assembling it, as a proxy does.

Theory of operation: :class:`Tee` is an async iterator over its source that hands every item on as
it came (the same ``bytes`` object, byte for byte) after feeding it to the sans-I/O engine (the one
every entry point runs), read through the shared ``SourceReader``. Nothing is buffered: the
downstream reads at its own pace, and the upstream is read no faster. When the downstream stops
early (its client went away, it raised, it was cancelled), :meth:`Tee.aclose` decides what becomes
of the completions still open: with ``on_disconnect="finish"`` it reads the rest of the source
(shielded from cancellation, within ``drain_timeout``) so the result is whole, usage included; with
``"stop"`` it closes the source and ends them as ``cancelled``, partial. Either way
:attr:`Tee.results` holds one :class:`~aggregator.Result` per completion, :attr:`Tee.report` the
source's own outcome, and nothing is lost."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, final

from ._core._engine import Engine, source_error
from ._core._errors import LimitError, UsageError
from ._core._framing import Format
from ._core._limits import DEFAULT_LIMITS, Limits
from ._core._results import Result, SourceReport
from ._reading import Feeder, SourceReader
from ._run import clock

__all__ = ["Tee"]

T = TypeVar("T")

#: What :class:`Tee` does with the open completions when its downstream stops early.
OnDisconnect = Literal["finish", "stop"]


@final
class Tee(Generic[T]):
    """Hand a source's items on unchanged while assembling the completions they carry.

    Args:
        source: an async (or sync) iterable of bytes (SSE or JSON Lines), parsed payloads or
            chunk events, as for :func:`~aggregator.results`.
        name: the source's name, used in results and errors.
        on_disconnect: when the downstream stops before the source ends: ``"finish"`` reads the
            rest of the source so the completions are whole (billing needs the final usage), or
            ``"stop"`` closes the source and ends them as ``cancelled``.
        drain_timeout: the most seconds ``"finish"`` may take; past them the open completions
            end with a :class:`~aggregator.LimitError` (``limit="drain_timeout"``). A read of
            the source under way when the downstream is cancelled is not cut short (that would
            lose the stream): the cancellation takes effect once it returns, at most
            ``drain_timeout`` after the downstream's own deadline, when it has one.
        format: ``"sse"``, ``"jsonl"`` or ``"auto"``.
        strict: as for :class:`~aggregator.Assembler`.
        interleaved: as for :func:`~aggregator.fan_in`.
        limits: the limits; ``idle_timeout`` and ``deadline`` bound the waits on the source.
        assemble: ``False`` to pass the items on without assembling them (a proxy that
            publishes the stream for workers to assemble, ``aggregator.redis.Publisher.relay``,
            with the same ``on_disconnect`` and time limits): :attr:`results` stays empty and
            :attr:`report` ``None``; a failure of the source is raised to the downstream as
            ever, and a downstream that leaves before the source ran out is
            :attr:`disconnected` (the tee sees no ``[DONE]``).

    Use it as an async context manager and iterate it::

        async with Tee(response_bytes, name="req-1") as upstream:
            async for data in upstream:
                await send(data)  # the same bytes, unchanged
        log(upstream.results)

    If reading the source fails (it raises, or a time limit passes), the failure is recorded in
    :attr:`results` and raised to the downstream: a proxy should not pretend a broken stream
    ended well.
    """

    def __init__(
        self,
        source: AsyncIterable[T] | Iterable[T],
        name: str = "<stream>",
        *,
        on_disconnect: OnDisconnect = "finish",
        drain_timeout: float = 30.0,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        interleaved: bool = False,
        assemble: bool = True,
    ) -> None:
        if on_disconnect not in ("finish", "stop"):
            raise UsageError(f"on_disconnect is 'finish' or 'stop', not {on_disconnect!r}")
        self._reader = SourceReader(source, limits)
        self._engine = Engine(
            name, format=format, strict=strict, limits=limits, interleaved=interleaved
        )
        self._feeder = Feeder(self._engine)
        self._assemble = assemble
        self._on_disconnect = on_disconnect
        self._drain_timeout = drain_timeout
        #: when reading the rest must be over (``"finish"``), once the downstream left.
        self._drain_by: float | None = None
        #: reads are shielded from the caller's cancellation (``"finish"``, async source).
        self._shield_reads = on_disconnect == "finish" and self._reader.is_async
        #: ``"open"``, ``"interrupted"`` (cancelled inside a read of the source), or ``"ended"``.
        self._state = "open"
        #: the results of the completions that ended so far, in order.
        self.results: list[Result] = []
        #: whether the downstream stopped before the source ended, with a completion open or
        #: more to come (leaving right after ``[DONE]`` or an error that ended the source, as
        #: the OpenAI SDK does, cuts nothing).
        self.disconnected = False
        self._time: Callable[[], float] = _clock  # the backend's own, from the first read on

    @property
    def name(self) -> str:
        """The source's name."""
        return self._engine.name

    @property
    def report(self) -> SourceReport | None:
        """The source's own outcome (how it ended, its trouble outside any completion), once
        the tee has ended (``None`` if it does not assemble)."""
        return self._engine.report if self._assemble else None

    @property
    def ended(self) -> bool:
        """Whether the tee is done: the source ended, failed, or :meth:`aclose` ran."""
        return self._state == "ended"

    async def __aenter__(self) -> Tee[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Tee[T]:
        return self

    async def __anext__(self) -> T:
        if self._state != "open":
            raise StopAsyncIteration
        if self._shield_reads:
            return await self._step_shielded()
        return await self._step()

    async def _step(self) -> T:
        """Read the next item, assemble it and return it; record how the source ended."""
        engine = self._engine
        if engine.started is None:
            self._time, engine.epoch = clock()
            engine.started = self._time()
        try:
            raw = await self._reader.next()
        except StopAsyncIteration:
            await self._end(engine.close(now=self._time()))
            raise
        except Exception as exc:
            error = source_error(exc, self.name, engine.items)
            await self._end(engine.fail(error, self._time()))
            if isinstance(exc, LimitError):  # a time limit: raised named and placed
                raise error from None
            raise
        except BaseException:
            self._state = "interrupted"  # cancelled mid-read: the source cannot go on
            raise
        await self._take(raw)
        item: T = raw
        return item

    async def _step_shielded(self) -> T:
        """:meth:`_step` for ``"finish"``: the caller's cancellation must not cut a read of the
        source short, since an async generator cancelled mid-read cannot go on and the rest is to
        be read anyway. The read runs shielded in a task of its own while the caller waits for
        it; cancelled while it waits (its client left, its deadline passed), the caller gives the
        read ``drain_timeout`` more (the time :meth:`aclose` has to read the rest), then the
        cancellation takes effect. A read that does not return by then ends the open completions
        with a ``drain_timeout`` :class:`~aggregator.LimitError`."""
        import anyio
        import anyio.lowlevel  # imported here: `import aggregator` stays light

        await anyio.lowlevel.checkpoint_if_cancelled()  # between two reads: aclose drains
        box: list[Any] = []
        shield = anyio.CancelScope(shield=True)
        done = anyio.Event()

        async def read() -> None:
            with shield:
                try:
                    box.append(await self._step())
                except Exception as exc:  # noqa: BLE001 - handed to the caller, raised there
                    box.append(_Raised(exc))
            if shield.cancelled_caught:  # the read outlasted drain_timeout
                await self._end(self._engine.fail(self._drain_error(), self._time()))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            try:
                await done.wait()
            except anyio.get_cancelled_exc_class():
                if not box and not shield.cancelled_caught:  # the caller was cancelled while
                    self.disconnected = True  # the read is under way: it may take this long
                    shield.deadline = min(shield.deadline, self._drain_deadline())
                raise
        if not box:  # pragma: no cover - the read ended only by drain_timeout, after a cancel
            raise StopAsyncIteration
        value = box[0]
        if value.__class__ is _Raised:
            raise value.exception
        item: T = value
        return item

    async def aclose(self) -> list[Result]:
        """End the tee: the source is closed, and every completion still open ends as
        ``on_disconnect`` says. Returns :attr:`results`. Safe to call more than once."""
        if self._state == "ended":
            return self.results
        import anyio  # imported here: `import aggregator` stays light

        engine = self._engine
        if not (engine.done or engine.stopped):
            self.disconnected = True  # (after [DONE] or a fatal error, leaving cuts nothing)
        with anyio.CancelScope(shield=True):
            if self._on_disconnect == "finish" and self._state == "open":
                await self._drain()
            else:
                self._keep(engine.close(cancelled=True, now=self._time()))
            await self._end([])
        return self.results

    def _drain_deadline(self) -> float:
        """When reading the rest must be over: ``drain_timeout`` after the downstream left."""
        import anyio  # imported here: `import aggregator` stays light

        if self._drain_by is None:
            self._drain_by = anyio.current_time() + self._drain_timeout
        return self._drain_by

    def _drain_error(self) -> LimitError:
        return LimitError(
            f"the source did not end within {self._drain_timeout:g} s of the downstream "
            "leaving (drain_timeout)",
            source=self.name,
            where=f"after item {self._engine.items}",
            limit="drain_timeout",
        )

    async def _drain(self) -> None:
        import anyio  # imported here: `import aggregator` stays light

        engine = self._engine
        with anyio.CancelScope(deadline=self._drain_deadline()):
            while not engine.stopped:
                try:
                    raw = await self._reader.next()
                except StopAsyncIteration:
                    self._keep(engine.close(now=self._time()))
                    return
                except Exception as exc:  # noqa: BLE001 - recorded in the results
                    error = source_error(exc, self.name, engine.items)
                    self._keep(engine.fail(error, self._time()))
                    return
                await self._take(raw)
            return
        self._keep(engine.fail(self._drain_error(), self._time()))

    async def _take(self, raw: Any) -> None:
        if self._assemble:
            self._keep(await self._feeder.feed(raw, self._time()))
        else:  # counted only, so that an error after it is placed
            self._engine.items += 1

    def _keep(self, ended: list[Any]) -> None:
        self.results += [r for r in ended if r.__class__ is Result]

    async def _end(self, ended: list[Any]) -> None:
        self._keep(ended)
        self._state = "ended"
        await self._reader.aclose()


@final
class _Raised:
    """What a read raised, handed from its task to the caller (see ``Tee._step_shielded``)."""

    __slots__ = ("exception",)

    def __init__(self, exception: Exception) -> None:
        self.exception = exception


def _clock() -> float:
    """anyio's clock (the tee runs in an async task)."""
    import anyio  # imported here: `import aggregator` stays light

    return anyio.current_time()
