"""``aggregator.Tee``: a source's items passed on unchanged while they are assembled.

Theory of operation: the inputs are the real recordings in ``tests/data``, cut into pieces at
random (seeded) byte boundaries and served by :class:`Source`, an instrumented async iterator
that counts the items it gave, records ``aclose`` calls, and can wait before each item, hang
(forever) or raise after a given item. What a downstream receives is compared, object for object,
with what the source gave; what the tee assembled is compared with :func:`aggregator.assemble_all`
on the same bytes (a whole stream) or with an assembly of the events that had fully arrived (a
stream the downstream left early). No servers: see test_gateway.py for those.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest

import aggregator
from aggregator import (
    Assembler,
    DecodeError,
    EndReason,
    LimitError,
    Limits,
    Result,
    SourceReport,
    StreamError,
    Tee,
    UpstreamError,
    UsageError,
    to_dict,
)

from .conftest import DATA

pytestmark = pytest.mark.anyio

RECORDINGS = sorted((DATA / "openai").glob("*.sse")) + sorted(
    p for p in (DATA / "providers").iterdir() if p.suffix in (".sse", ".jsonl")
)
#: OpenAI's n=3 stream with a final usage report: what a gateway bills from.
N3_USAGE = DATA / "providers" / "openai_gpt4omini_n3_interleaved_usage.sse"
#: Groq's stream that ends with an ``event: error``.
GROQ_ERROR = DATA / "providers" / "groq_gptoss_event_error_tool_use_failed.sse"
#: Recordings of both framings, with and without usage, for the tests of leaving early.
EARLY = [
    N3_USAGE,
    DATA / "openai" / "173417d55340.sse",
    DATA / "providers" / "deepseek_reasoner_reasoning_then_tool_call.jsonl",
    DATA / "providers" / "xai_grok3mini_reasoning_tool_call_usage.jsonl",
]


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def cut(raw: bytes, seed: str, most: int = 200) -> list[bytes]:
    """``raw`` in pieces of 1 to ``most`` bytes, cut at random (seeded) places."""
    rng = random.Random(seed)
    pieces: list[bytes] = []
    at = 0
    while at < len(raw):
        size = rng.randint(1, most)
        pieces.append(raw[at : at + size])
        at += size
    return pieces


class Source:
    """An async iterator over ``pieces``, instrumented: it waits ``delay`` seconds before each
    of its first ``slow_items`` items, and waits forever before item ``hang_at`` or raises
    ``failure`` there (numbered from 0).

    Attributes:
        given: the number of items handed out.
        closes: the number of ``aclose`` calls.
        exhausted: whether it was read to its end.
    """

    def __init__(
        self,
        pieces: list[Any],
        *,
        delay: float = 0.0,
        slow_items: int = 40,
        hang_at: int | None = None,
        fail_at: int | None = None,
        failure: Exception | None = None,
    ) -> None:
        self.pieces = pieces
        self.delay = delay
        self.slow_items = slow_items
        self.hang_at = hang_at
        self.fail_at = fail_at
        self.failure = failure or ConnectionResetError("connection reset by peer")
        self.given = 0
        self.closes = 0
        self.exhausted = False

    @property
    def closed(self) -> bool:
        return self.closes > 0

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Any:
        assert not self.closed, "read after aclose"
        if self.given == self.hang_at:
            await anyio.sleep_forever()
        if self.given == self.fail_at:
            raise self.failure
        if self.delay and self.given < self.slow_items:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()
        if self.given == len(self.pieces):
            self.exhausted = True
            raise StopAsyncIteration
        self.given += 1
        return self.pieces[self.given - 1]

    async def aclose(self) -> None:
        self.closes += 1


def summary(result: Result) -> dict[str, Any]:
    """Everything a result says, in comparable form."""
    error = result.error
    return {
        "source": result.source,
        "key": result.key,
        "reason": result.reason,
        "where": result.where,
        "complete": result.complete,
        "finished": result.finished,
        "error": None if error is None else (type(error).__name__, str(error)),
        "problems": [(type(p).__name__, str(p)) for p in result.problems],
        "notes": result.notes,
        "chunks": result.chunks,
        "usage": None if result.usage is None else to_dict(result.usage),
        "completion": to_dict(result.completion),
    }


def report_summary(report: SourceReport | None) -> dict[str, Any]:
    """Everything a source's report says, in comparable form."""
    assert report is not None, "the source has no report: it has not ended"
    error = report.error
    return {
        "source": report.source,
        "reason": report.reason,
        "where": report.where,
        "error": None if error is None else (type(error).__name__, str(error)),
        "problems": [(type(p).__name__, str(p)) for p in report.problems],
        "completions": report.completions,
        "ok": report.ok,
    }


async def assembled(raw: bytes, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What ``assemble_all`` makes of ``raw``: the completions' summaries, and the summary of
    the source's own report."""
    found, report = await aggregator.assemble_all([raw], name=name)
    return [summary(r) for r in found], report_summary(report)


def arrived(raw: bytes) -> dict[str, Any]:
    """The partial completion made of the events (SSE) or lines (JSON Lines) of ``raw`` that
    arrived whole: what a stream cut after ``raw`` holds."""
    end = raw.rfind(b"\n\n") + 2 if raw.startswith(b"data:") else raw.rfind(b"\n") + 1
    assembler = Assembler("arrived")
    (result,) = assembler.feed(raw[:end]) + assembler.close()
    return to_dict(result.completion)


async def drain(tee: Tee[Any]) -> None:
    """Read a tee to its end, in a block, as a downstream does."""
    async with tee:
        async for _ in tee:
            pass


def half(pieces: list[bytes]) -> int:
    """The number of pieces that carry half the bytes."""
    total = sum(map(len, pieces))
    seen = 0
    for number, piece in enumerate(pieces, 1):
        seen += len(piece)
        if seen >= total // 2:
            return number
    raise AssertionError("no pieces")  # pragma: no cover


# --- a whole stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORDINGS, ids=_id)
async def test_items_pass_unchanged_and_assemble_as_assemble_all(path: Path) -> None:
    raw = await anyio.Path(path).read_bytes()
    pieces = cut(raw, path.name)
    source = Source(pieces)
    received: list[bytes] = []
    async with Tee(source, name=path.name) as tee:
        async for data in tee:
            received.append(data)

    assert len(received) == len(pieces)
    assert all(got is sent for got, sent in zip(received, pieces, strict=False))
    assert b"".join(received) == raw
    expected, report = await assembled(raw, path.name)
    assert [summary(r) for r in tee.results] == expected
    assert report_summary(tee.report) == report
    assert report["problems"] == []
    assert report["completions"] == len(expected)
    # the report has an error when one stopped the source (strict mode: the one that ended its
    # last stream); an error a chunk carries ends the streams, not the source
    if report["reason"] is EndReason.ERROR:
        assert report["error"] is not None
        assert report["error"] == expected[-1]["error"]
    else:
        assert report["error"] is None
    assert tee.ended
    assert not tee.disconnected
    assert source.exhausted
    assert source.closes == 1


async def test_n_choices_and_usage_are_whole_when_read_to_the_end() -> None:
    raw = N3_USAGE.read_bytes()
    async with Tee(Source(cut(raw, "n3")), name="n3") as tee:
        async for _ in tee:
            pass
    (result,) = tee.results
    assert (result.reason, result.complete) == (EndReason.DONE, True)
    assert isinstance(result.completion, aggregator.models.ChatCompletion)
    assert [c.index for c in result.completion.choices] == [0, 1, 2]
    assert result.usage is not None
    assert result.usage.total_tokens == to_dict(result.completion)["usage"]["total_tokens"]


async def test_parsed_payloads_pass_through_too() -> None:
    raw = (DATA / "providers" / "deepseek_reasoner_reasoning_then_tool_call.jsonl").read_bytes()
    payloads = [_json(line) for line in _lines(raw)]
    chunks = [_json(line) for line in _lines(raw)]  # the same, as separate objects
    received = []
    async with Tee(Source(payloads), name="dicts") as tee:
        async for payload in tee:
            received.append(payload)
    assert all(got is sent for got, sent in zip(received, payloads, strict=True))
    (expected,), report = await aggregator.assemble_all(chunks, name="dicts")
    assert [summary(r) for r in tee.results] == [summary(expected)]
    assert report_summary(tee.report) == report_summary(report)
    assert report.ok


def _lines(raw: bytes) -> Iterator[bytes]:
    return (line for line in raw.splitlines() if line.strip())


def _json(line: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(line)
    return value


# --- the downstream leaves early --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_leaving_right_after_done_is_no_disconnect(mode: Literal["finish", "stop"]) -> None:
    """The OpenAI SDK closes the response as soon as it reads ``[DONE]``, often before the
    server's end of body: nothing was cut, so the tee does not call it a disconnect."""
    whole = N3_USAGE.read_bytes().rstrip(b"\n") + b"\n\n"  # up to [DONE], dispatched
    pieces = [whole, b"\n"]  # then the end of the body, still to come
    source = Source(pieces)
    async with Tee(source, name="sdk", on_disconnect=mode) as tee:
        async for data in tee:
            assert data is whole
            break
    (result,) = tee.results
    assert (result.reason, result.complete) == (EndReason.DONE, True)
    assert not tee.disconnected
    assert source.closes == 1


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_leaving_right_after_an_error_event_is_no_disconnect(
    mode: Literal["finish", "stop"],
) -> None:
    """The SDK raises (and closes) at an ``event: error``, which ends the stream: nothing
    was cut."""
    whole = GROQ_ERROR.read_bytes().rstrip(b"\n") + b"\n\n"
    source = Source([whole, b"\n"])
    async with Tee(source, name="sdk", on_disconnect=mode) as tee:
        async for _ in tee:
            break
    (result,) = tee.results
    assert result.reason is EndReason.ERROR
    assert isinstance(result.error, aggregator.UpstreamError)
    assert not tee.disconnected


@pytest.mark.parametrize("path", EARLY, ids=_id)
async def test_finish_reads_the_rest_after_the_downstream_breaks(path: Path) -> None:
    raw = await anyio.Path(path).read_bytes()
    pieces = cut(raw, path.name)
    stop_at = half(pieces)
    source = Source(pieces)
    received: list[bytes] = []
    async with Tee(source, name=path.name, on_disconnect="finish") as tee:
        async for data in tee:
            received.append(data)
            if len(received) == stop_at:
                break

    assert received == pieces[:stop_at]
    assert tee.disconnected
    assert source.exhausted  # the rest was read
    assert source.closes == 1
    expected, report = await assembled(raw, path.name)
    assert [summary(r) for r in tee.results] == expected
    assert report_summary(tee.report) == report
    (result,) = tee.results
    assert result.complete


@pytest.mark.parametrize("path", EARLY, ids=_id)
async def test_stop_closes_the_source_and_keeps_the_partial(path: Path) -> None:
    raw = await anyio.Path(path).read_bytes()
    pieces = cut(raw, path.name)
    stop_at = half(pieces)
    source = Source(pieces)
    async with Tee(source, name=path.name, on_disconnect="stop") as tee:
        async for _ in tee:
            if source.given == stop_at:
                break

    assert tee.disconnected
    assert source.closes == 1
    assert source.given == stop_at  # nothing read after the downstream left
    assert not source.exhausted
    (result,) = tee.results
    assert result.reason is EndReason.CANCELLED
    assert not result.complete
    assert result.error is None
    assert to_dict(result.completion) == arrived(b"".join(pieces[:stop_at]))
    assert result.usage is None  # the usage comes last: a stopped stream has none
    assert tee.report is not None
    assert (tee.report.reason, tee.report.error, tee.report.completions) == (
        EndReason.CANCELLED,
        None,
        1,
    )


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_downstream_raising_ends_the_tee_as_on_disconnect_says(mode: str) -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "raising")
    stop_at = half(pieces)
    source = Source(pieces)
    tee = Tee(source, name="n3", on_disconnect=mode)  # type: ignore[arg-type]

    async def consume() -> None:
        async with tee:
            async for _ in tee:
                if source.given == stop_at:
                    raise BrokenPipeError("client went away")

    with pytest.raises(BrokenPipeError):
        await consume()
    (result,) = tee.results
    assert tee.disconnected
    assert source.closes == 1
    if mode == "finish":
        assert (result.reason, result.complete, source.exhausted) == (EndReason.DONE, True, True)
    else:
        assert (result.reason, result.complete) == (EndReason.CANCELLED, False)
        assert source.given == stop_at


# --- the consumer is cancelled ----------------------------------------------------------------


async def test_consumer_deadline_mid_read_with_finish_reads_the_rest() -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "deadline")
    source = Source(pieces, delay=0.01)
    received: list[bytes] = []
    tee = Tee(source, name="n3", on_disconnect="finish")
    with anyio.move_on_after(0.1) as scope:
        async with tee:
            async for data in tee:
                received.append(data)
    assert scope.cancelled_caught
    assert 0 < len(received) < len(pieces)
    assert all(got is sent for got, sent in zip(received, pieces, strict=False))
    assert tee.disconnected
    assert source.exhausted
    assert source.closes == 1
    expected, report = await assembled(raw, "n3")
    assert [summary(r) for r in tee.results] == expected
    assert report_summary(tee.report) == report
    assert tee.results[0].usage is not None


async def test_consumer_deadline_mid_read_with_stop_ends_cancelled() -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "deadline")
    source = Source(pieces, delay=0.01)
    received: list[bytes] = []
    tee = Tee(source, name="n3", on_disconnect="stop")
    with anyio.move_on_after(0.1) as scope:
        async with tee:
            async for data in tee:
                received.append(data)
    assert scope.cancelled_caught
    assert 0 < len(received) == source.given < len(pieces)
    assert tee.disconnected
    assert source.closes == 1
    (result,) = tee.results
    assert (result.reason, result.complete, result.error) == (EndReason.CANCELLED, False, None)
    assert to_dict(result.completion) == arrived(b"".join(received))


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_consumer_cancel_scope_cancelled_from_outside(mode: str) -> None:
    """Another task cancels the consumer's scope, which has no deadline, while it waits."""
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "scope")
    source = Source(pieces, delay=0.005)
    received: list[bytes] = []
    tee = Tee(source, name="n3", on_disconnect=mode)  # type: ignore[arg-type]
    scope = anyio.CancelScope()
    five = anyio.Event()

    async def consume() -> None:
        with scope:
            async with tee:
                async for data in tee:
                    received.append(data)
                    if len(received) == 5:
                        five.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await five.wait()
        await anyio.sleep(0.002)  # into the wait for the next item
        scope.cancel()

    assert scope.cancelled_caught
    assert len(received) < len(pieces)
    assert tee.disconnected
    assert source.closes == 1
    (result,) = tee.results
    if mode == "finish":
        expected, report = await assembled(raw, "n3")
        assert [summary(result)] == expected
        assert report_summary(tee.report) == report
        assert source.exhausted
    else:
        assert (result.reason, result.complete) == (EndReason.CANCELLED, False)
        assert to_dict(result.completion) == arrived(b"".join(pieces[: source.given]))
        assert source.given <= len(received) + 1


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_consumer_cancelled_between_reads(mode: str) -> None:
    """The cancellation lands in the consumer's own wait, not in a read of the source."""
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "between")
    source = Source(pieces)
    tee = Tee(source, name="n3", on_disconnect=mode)  # type: ignore[arg-type]
    with anyio.move_on_after(0.05) as scope:
        async with tee:
            async for _ in tee:
                if source.given == 4:
                    await anyio.sleep_forever()  # a downstream that stopped reading
    assert scope.cancelled_caught
    (result,) = tee.results
    if mode == "finish":
        assert (result.reason, result.complete, source.exhausted) == (EndReason.DONE, True, True)
    else:
        assert (result.reason, source.given) == (EndReason.CANCELLED, 4)
        assert to_dict(result.completion) == arrived(b"".join(pieces[:4]))


# --- the source fails -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_source_raising_is_recorded_and_reraised(mode: str) -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "raise")
    source = Source(pieces, fail_at=12)
    received: list[bytes] = []
    tee = Tee(source, name="req-7", on_disconnect=mode)  # type: ignore[arg-type]

    async def consume() -> None:
        async with tee:
            async for data in tee:
                received.append(data)

    with pytest.raises(ConnectionResetError, match="connection reset by peer"):
        await consume()
    assert received == pieces[:12]
    (result,) = tee.results
    assert result.reason is EndReason.ERROR
    assert not result.complete
    assert type(result.error) is StreamError
    assert str(result.error) == (
        "req-7, after item 12: the source raised ConnectionResetError: connection reset by peer"
    )
    assert isinstance(result.error.__cause__, ConnectionResetError)
    assert to_dict(result.completion) == arrived(b"".join(received))
    # the error that stopped the source is its report's too
    assert tee.report is not None
    assert tee.report.reason is EndReason.ERROR
    assert tee.report.error is result.error
    assert tee.report.where == "after item 12"
    assert source.closes == 1
    assert not tee.disconnected  # the source failed; the downstream did not leave


async def test_source_raising_an_upstream_error_keeps_it() -> None:
    """An adapter's UpstreamError (an HTTP error, an SDK's error event) stays one, named and
    placed, with its payload."""
    payload = {"message": "Rate limit reached", "code": "rate_limit_exceeded"}
    failure = UpstreamError("upstream error: HTTP 429: Rate limit reached", payload=payload)
    raw = N3_USAGE.read_bytes()
    source = Source(cut(raw, "upstream"), fail_at=12, failure=failure)
    tee = Tee(source, name="req-8")
    with pytest.raises(UpstreamError):
        await drain(tee)
    (result,) = tee.results
    assert isinstance(result.error, UpstreamError)
    assert result.error.payload == payload
    assert str(result.error) == "req-8, after item 12: upstream error: HTTP 429: Rate limit reached"
    assert tee.report is not None
    assert (tee.report.reason, tee.report.error) == (EndReason.ERROR, result.error)


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_idle_timeout_raises_and_is_recorded(mode: str) -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "idle")
    source = Source(pieces, hang_at=9)
    tee = Tee(
        source,
        name="idle",
        on_disconnect=mode,  # type: ignore[arg-type]
        limits=Limits(idle_timeout=0.1),
    )
    started = anyio.current_time()
    with pytest.raises(LimitError) as info:
        await drain(tee)
    assert anyio.current_time() - started < 5
    assert info.value.limit == "idle_timeout"
    assert str(info.value) == "idle, after item 9: nothing received for 0.1 s (idle_timeout)"
    (result,) = tee.results
    assert result.reason is EndReason.LIMIT
    assert result.error is info.value
    assert to_dict(result.completion) == arrived(b"".join(pieces[:9]))
    assert tee.report is not None
    assert (tee.report.reason, tee.report.error) == (EndReason.LIMIT, info.value)
    assert source.closes == 1


async def test_drain_timeout_after_the_downstream_breaks() -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "drain")
    source = Source(pieces, hang_at=15)
    tee = Tee(source, name="drain", on_disconnect="finish", drain_timeout=0.2)
    async with tee:
        async for _ in tee:
            if source.given == 10:
                break
        started = anyio.current_time()
    assert 0.2 <= anyio.current_time() - started < 3
    assert tee.disconnected
    assert source.given == 15
    assert source.closes == 1
    (result,) = tee.results
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "drain_timeout"
    assert str(result.error).startswith("drain, after item 15: the source did not end within 0.2 s")
    assert result.reason is EndReason.LIMIT
    assert to_dict(result.completion) == arrived(b"".join(pieces[:15]))
    assert tee.report is not None
    assert (tee.report.reason, tee.report.error) == (EndReason.LIMIT, result.error)


async def test_drain_timeout_bounds_a_read_the_consumer_deadline_interrupted() -> None:
    """With ``"finish"``, a read under way at the consumer's deadline goes on, but no longer
    than ``drain_timeout`` past that deadline."""
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "drain")
    source = Source(pieces, hang_at=6)
    tee = Tee(source, name="drain", on_disconnect="finish", drain_timeout=0.2)
    started = anyio.current_time()
    with anyio.move_on_after(0.1) as scope:
        async with tee:
            async for _ in tee:
                pass
    assert scope.cancelled_caught
    assert 0.3 <= anyio.current_time() - started < 3
    assert tee.disconnected
    assert source.closes == 1
    (result,) = tee.results
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "drain_timeout"
    assert to_dict(result.completion) == arrived(b"".join(pieces[:6]))
    assert tee.report is not None
    assert (tee.report.reason, tee.report.error) == (EndReason.LIMIT, result.error)


# --- passing on without assembling (a proxy that publishes for workers) ----------------------


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_a_tee_that_does_not_assemble_passes_on_and_leaves_as_told(mode: str) -> None:
    pieces = cut(N3_USAGE.read_bytes(), "publish")
    whole = Source(pieces)
    async with Tee(whole, name="whole", on_disconnect=mode, assemble=False) as tee:  # type: ignore[arg-type]
        received = [data async for data in tee]
    assert all(got is sent for got, sent in zip(received, pieces, strict=True))
    assert whole.exhausted
    assert whole.closes == 1
    assert (tee.results, tee.report, tee.disconnected) == ([], None, False)

    left = Source(pieces, delay=0.01)
    tee = Tee(left, name="left", on_disconnect=mode, assemble=False)  # type: ignore[arg-type]
    with anyio.move_on_after(0.1) as scope:  # the downstream's deadline, mid-read
        async with tee:
            async for _ in tee:
                pass
    assert scope.cancelled_caught
    assert tee.disconnected
    assert left.exhausted is (mode == "finish")  # finish reads the rest (for the publisher)
    assert left.closes == 1
    assert (tee.results, tee.report) == ([], None)


async def test_a_tee_that_does_not_assemble_raises_what_the_source_raised() -> None:
    pieces = cut(N3_USAGE.read_bytes(), "publish")
    source = Source(pieces, fail_at=5)
    tee = Tee(source, name="failing", assemble=False)
    received: list[bytes] = []

    async def consume() -> None:
        async with tee:
            async for data in tee:
                received.append(data)

    with pytest.raises(ConnectionResetError, match="connection reset by peer"):  # as it was
        await consume()
    assert received == pieces[:5]
    assert (tee.results, tee.report, source.closes) == ([], None, 1)


# --- bad input, closing, sync sources, misuse -------------------------------------------------


async def test_garbage_is_passed_on_unchanged_and_recorded() -> None:
    raw = N3_USAGE.read_bytes()
    at = raw.index(b"\n\n", len(raw) // 3) + 2
    bad = raw[:at] + b"data: {this is not json}\n\n" + raw[at:]
    pieces = cut(bad, "garbage")
    received: list[bytes] = []
    async with Tee(Source(pieces), name="bad") as tee:
        async for data in tee:
            received.append(data)
    assert all(got is sent for got, sent in zip(received, pieces, strict=True))
    (result,) = tee.results
    assert isinstance(result.error, DecodeError)
    assert result.reason is EndReason.ERROR
    assert "invalid JSON" in str(result.error)
    expected, report = await assembled(bad, "bad")
    assert [summary(result)] == expected
    assert report_summary(tee.report) == report
    assert tee.report is not None
    assert tee.report.error is result.error  # strict: the bad payload stopped the source


async def test_bytes_that_hold_no_completion_are_passed_on_and_recorded() -> None:
    pieces = [b"\x00\xff\xfe not a stream", b" at all \x00\n\n"]
    received: list[bytes] = []
    async with Tee(Source(pieces), name="junk") as tee:
        async for data in tee:
            received.append(data)
    assert received == pieces
    assert tee.results == []
    _, report = await assembled(b"".join(pieces), "junk")
    assert report["error"] is not None
    assert not report["ok"]
    assert report_summary(tee.report) == report


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_aclose_is_idempotent(mode: str) -> None:
    pieces = cut(N3_USAGE.read_bytes(), "aclose")
    source = Source(pieces)
    tee = Tee(source, name="n3", on_disconnect=mode)  # type: ignore[arg-type]
    async for _ in tee:
        if source.given == 3:
            break
    first = await tee.aclose()
    again = await tee.aclose()
    async with tee:  # and leaving a block changes nothing either
        pass
    assert first is tee.results
    assert again is tee.results
    assert [summary(r) for r in first] == [summary(r) for r in tee.results]
    assert len(tee.results) == 1
    assert source.closes == 1
    assert tee.ended
    assert [data async for data in tee] == []  # nothing more to read


@pytest.mark.parametrize("mode", ["finish", "stop"])
async def test_sync_source(mode: str) -> None:
    raw = N3_USAGE.read_bytes()
    pieces = cut(raw, "sync")
    closed: list[bool] = []

    def generate() -> Iterator[bytes]:
        try:
            yield from pieces
        finally:
            closed.append(True)

    # whole
    received: list[bytes] = []
    async with Tee(pieces, name="n3", on_disconnect=mode) as tee:  # type: ignore[arg-type]
        async for data in tee:
            received.append(data)
    assert all(got is sent for got, sent in zip(received, pieces, strict=True))
    expected, report = await assembled(raw, "n3")
    assert [summary(r) for r in tee.results] == expected
    assert report_summary(tee.report) == report

    # left early: a generator is read to its end, or closed
    stop_at = half(pieces)
    async with Tee(generate(), name="n3", on_disconnect=mode) as tee:  # type: ignore[arg-type]
        async for data in tee:
            if data is pieces[stop_at]:
                break
    assert closed == [True]
    (result,) = tee.results
    if mode == "finish":
        assert [summary(result)] == expected
        assert report_summary(tee.report) == report
    else:
        assert (result.reason, result.complete) == (EndReason.CANCELLED, False)
        assert tee.report is not None
        assert tee.report.reason is EndReason.CANCELLED


def test_on_disconnect_must_be_finish_or_stop() -> None:
    with pytest.raises(UsageError, match="on_disconnect is 'finish' or 'stop', not 'drop'"):
        Tee([b""], on_disconnect="drop")  # type: ignore[arg-type]
