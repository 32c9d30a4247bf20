"""The async entry points, on asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aggregator
from aggregator import (
    EndReason,
    IncompleteStreamError,
    Result,
    SourceReport,
    StreamError,
    UsageError,
    assemble,
    assemble_all,
    assemble_sync,
    to_dict,
)
from aggregator.lowlevel import ChatProtocol, structure_chunk
from aggregator.models import ChatCompletion, Completion

from .conftest import DATA

pytestmark = pytest.mark.anyio

RECORDING = DATA / "openai" / "e2aad469b71d.sse"
RECORDING_ID = "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL"


def _chunk(content: str, finish: str | None = None, id_: str = "c1") -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


class Pieces:
    """An async iterable of byte pieces that records whether it was closed."""

    def __init__(self, data: bytes, size: int, fail_after: int | None = None) -> None:
        self.data = data
        self.size = size
        self.fail_after = fail_after
        self.closed = False

    async def _gen(self) -> AsyncIterator[bytes]:
        try:
            for n, i in enumerate(range(0, len(self.data), self.size)):
                if self.fail_after is not None and n == self.fail_after:
                    raise ConnectionResetError("peer went away")
                await anyio.lowlevel.checkpoint()
                yield self.data[i : i + self.size]
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()


async def test_assemble_bytes_from_async_iterable() -> None:
    data = RECORDING.read_bytes()
    source = Pieces(data, 7)
    completion = await assemble(source, name="e2a")
    assert isinstance(completion, ChatCompletion)
    assert completion.id == RECORDING_ID
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens is not None
    assert source.closed
    # the same as the sync core fed the whole file
    assembler = aggregator.Assembler("e2a")
    (result,) = assembler.feed(data) + assembler.close()
    assert to_dict(completion) == to_dict(result.completion)


async def test_assemble_returns_the_expected_class() -> None:
    data = RECORDING.read_bytes()
    source = Pieces(data, 7)
    completion = await assemble(source, ChatCompletion, name="e2a")
    assert type(completion) is ChatCompletion
    assert completion.id == RECORDING_ID  # typed: no narrowing needed
    assert completion.choices[0].message.role == "assistant"
    assert source.closed
    assert to_dict(completion) == to_dict(await assemble(Pieces(data, 100)))
    other = Pieces(data, 100)
    with pytest.raises(StreamError, match="expected a Completion, got a ChatCompletion") as info:
        await assemble(other, Completion, name="e2a")
    assert type(info.value) is StreamError
    assert info.value.source == "e2a"
    assert other.closed


def test_assemble_sync_dicts_and_events() -> None:
    dicts = [_chunk("a"), _chunk("b", "stop")]
    from_dicts = assemble_sync(dicts)
    from_events = assemble_sync([structure_chunk(d) for d in dicts], ChatCompletion)
    assert type(from_events) is ChatCompletion
    assert from_events.choices[0].message.content == "ab"
    assert to_dict(from_dicts) == to_dict(from_events)
    assert to_dict(from_dicts) == {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ab"}, "finish_reason": "stop"}
        ],
    }
    # the same rules as the async entry points
    with pytest.raises(StreamError, match="expected a Completion"):
        assemble_sync(dicts, Completion)
    with pytest.raises(IncompleteStreamError) as info:
        assemble_sync([_chunk("a")], name="part")
    assert info.value.result.reason is EndReason.EXHAUSTED
    assert not info.value.result.finished
    assert str(info.value) == "part: stream incomplete (exhausted)"
    with pytest.raises(StreamError, match="no completion in the input"):
        assemble_sync([], name="none")
    with pytest.raises(StreamError, match="2 completions"):
        assemble_sync([_chunk("a", "stop", "x"), _chunk("b", "stop", "y")])
    with pytest.raises(UsageError, match="not str"):
        assemble_sync(["data: x"])


async def test_assemble_dicts_and_events_sync_or_async() -> None:
    dicts = [_chunk("a"), _chunk("b", "stop")]
    from_dicts = await assemble(dicts)
    events = [structure_chunk(d) for d in dicts]
    from_events = await assemble(events)

    async def agen() -> AsyncIterator[dict[str, Any]]:
        for d in dicts:
            yield d

    from_async = await assemble(agen())
    for completion in (from_dicts, from_events, from_async):
        assert to_dict(completion)["choices"][0]["message"]["content"] == "ab"


async def test_cut_off_stream_raises_with_the_partial_result() -> None:
    data = RECORDING.read_bytes()
    cut = data[: data.index(b"data: [DONE]")]
    with pytest.raises(IncompleteStreamError) as info:
        await assemble(Pieces(cut, 100), name="cut.sse")
    result = info.value.result
    assert result.reason is EndReason.CUT_OFF
    assert result.where == "line 66"
    # the error names the place where the stream ended (the old message had no place)
    assert str(info.value) == "cut.sse, line 66: stream incomplete (cut_off)"
    whole = await assemble(Pieces(data, 100))
    assert to_dict(result.completion) == to_dict(whole)


async def test_source_that_raises_becomes_an_error_result() -> None:
    source = Pieces(RECORDING.read_bytes(), 1000, fail_after=3)
    (result,), report = await assemble_all(source, name="flaky")
    assert result.reason is EndReason.ERROR
    assert not result.complete
    assert result.error is not None
    assert "the source raised ConnectionResetError: peer went away" in str(result.error)
    assert result.chunks > 0
    assert source.closed
    # the source's report says how it ended, with the same error
    assert report.source == "flaky"
    assert report.reason is EndReason.ERROR
    assert report.error is result.error
    assert report.completions == 1
    assert not report.ok


async def test_cancellation_closes_the_source() -> None:
    data = RECORDING.read_bytes()

    class Slow(Pieces):
        async def _gen(self) -> AsyncIterator[bytes]:
            try:
                yield data[:50]
                await anyio.sleep_forever()
                yield b""  # pragma: no cover
            finally:
                self.closed = True

    source = Slow(data, 1)
    with anyio.move_on_after(0.05) as scope:
        await assemble_all(source)
    assert scope.cancelled_caught
    assert source.closed


async def test_no_completion_and_several_completions() -> None:
    with pytest.raises(StreamError, match="no completion"):
        await assemble([b": just a comment\n\n"], name="empty")
    with pytest.raises(StreamError, match="invalid JSON"):
        await assemble([b"data: {nope}\n\n"], name="junk")
    two = [_chunk("a", "stop", "x"), _chunk("b", "stop", "y")]
    with pytest.raises(StreamError, match="2 completions"):
        await assemble(two)
    results, report = await assemble_all(two)
    assert [r.completion.id for r in results] == ["x", "y"]
    assert all(r.complete for r in results)
    assert [r.key for r in results] == [("<stream>", 1), ("<stream>", 2)]
    assert report.ok
    assert report.completions == 2


async def test_assemble_all_of_a_source_with_no_completion() -> None:
    for source in ([b": just a comment\n\n"], []):
        found, report = await assemble_all(source, name="empty")
        assert found == []
        assert isinstance(report, SourceReport)
        assert report.source == "empty"
        assert report.error is not None
        assert type(report.error) is StreamError
        assert report.error.detail == "no completion in the input"
        assert report.problems == ()
        assert report.completions == 0
        assert not report.ok


async def test_assemble_all_reports_a_lenient_problem_outside_any_completion() -> None:
    data = (
        b"data: {broken\n\n"
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    (result,), report = await assemble_all([data], name="s", strict=False)
    assert result.complete  # the problem came before the completion: not its problem
    assert result.problems == ()
    assert to_dict(result.completion)["choices"][0]["message"]["content"] == "a"
    assert report.error is None
    assert [str(p) for p in report.problems] == [
        "s, line 1 (event 1): invalid JSON: unexpected character, expected a string key: "
        "line 1 column 2 (char 1)"
    ]
    assert report.reason is EndReason.DONE
    assert report.completions == 1
    assert not report.ok
    # strict, the same input ends the source before any completion
    found, strict = await assemble_all([data], name="s")
    assert found == []
    assert strict.reason is EndReason.ERROR
    assert strict.error is not None
    assert str(strict.error).startswith("s, line 1 (event 1): invalid JSON")


async def test_lenient_mode_skips_and_reports() -> None:
    data = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        b"data: {broken\n\n"
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    (strict,), _ = await assemble_all([data], name="s")
    assert strict.reason is EndReason.ERROR
    assert to_dict(strict.completion)["choices"][0]["message"]["content"] == "a"
    (lenient,), report = await assemble_all([data], name="s", strict=False)
    assert lenient.reason is EndReason.DONE
    assert to_dict(lenient.completion)["choices"][0]["message"]["content"] == "ab"
    assert [str(p) for p in lenient.problems] == [
        "s, line 3 (event 2): invalid JSON: unexpected character, expected a string key: "
        "line 1 column 2 (char 1)"
    ]
    assert not lenient.complete
    assert report.problems == ()  # the problem is the completion's, not the source's
    assert report.ok


async def test_wrong_item_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not str"):
        await assemble(["data: x"])


async def test_a_bug_in_one_source_does_not_end_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    real_parse = ChatProtocol.parse

    def parse(self: ChatProtocol, obj: Any, where: Any) -> Any:
        if self.source == "buggy":
            raise RuntimeError("boom")
        return real_parse(self, obj, where)

    monkeypatch.setattr(ChatProtocol, "parse", parse)
    sources = {"buggy": [_chunk("a")], "fine": [_chunk("b", "stop", "f")]}
    async with aggregator.fan_in(sources) as items:
        everything = [r async for r in items]
    results = sorted([r for r in everything if isinstance(r, Result)], key=lambda r: r.source)
    reports = sorted([r for r in everything if isinstance(r, SourceReport)], key=lambda r: r.source)
    # the bug struck before the buggy source's first completion opened: its report says so
    assert [(r.source, r.reason) for r in results] == [("fine", EndReason.EXHAUSTED)]
    assert results[0].complete
    assert [(r.source, r.reason) for r in reports] == [
        ("buggy", EndReason.ERROR),
        ("fine", EndReason.EXHAUSTED),
    ]
    assert str(reports[0].error) == (
        "buggy, item 1: internal error (a bug: please report it): RuntimeError: boom"
    )
    assert reports[0].completions == 0
    assert reports[1].ok
