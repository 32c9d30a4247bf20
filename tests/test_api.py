"""The async entry points, on asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aggregator
from aggregator import (
    ChatCompletion,
    EndReason,
    IncompleteStreamError,
    Result,
    StreamError,
    UsageError,
    assemble,
    assemble_all,
    structure_chunk,
    to_dict,
)

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
    assert str(info.value).startswith("cut.sse: stream incomplete (cut_off)")
    whole = await assemble(Pieces(data, 100))
    assert to_dict(result.completion) == to_dict(whole)


async def test_source_that_raises_becomes_an_error_result() -> None:
    source = Pieces(RECORDING.read_bytes(), 1000, fail_after=3)
    (result,) = await assemble_all(source, name="flaky")
    assert result.reason is EndReason.ERROR
    assert not result.complete
    assert result.error is not None
    assert "the source raised ConnectionResetError: peer went away" in str(result.error)
    assert result.chunks > 0
    assert source.closed


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
    results = await assemble_all(two)
    assert [r.completion.id for r in results] == ["x", "y"]
    assert all(r.complete for r in results)


async def test_lenient_mode_skips_and_reports() -> None:
    data = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        b"data: {broken\n\n"
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    (strict,) = await assemble_all([data], name="s")
    assert strict.reason is EndReason.ERROR
    assert to_dict(strict.completion)["choices"][0]["message"]["content"] == "a"
    (lenient,) = await assemble_all([data], name="s", strict=False)
    assert lenient.reason is EndReason.DONE
    assert to_dict(lenient.completion)["choices"][0]["message"]["content"] == "ab"
    assert [str(p) for p in lenient.problems] == [
        "s, line 3 (event 2): invalid JSON: unexpected character, expected a string key: "
        "line 1 column 2 (char 1)"
    ]
    assert not lenient.complete


async def test_wrong_item_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not str"):
        await assemble(["data: x"])


async def test_a_bug_in_one_source_does_not_end_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from aggregator._streams import SourceDecoder

    real_add = SourceDecoder.add

    def add(self: SourceDecoder, item: Any, **kw: Any) -> Any:
        if self.name == "buggy":
            raise RuntimeError("boom")
        return real_add(self, item, **kw)

    monkeypatch.setattr(SourceDecoder, "add", add)
    sources = {"buggy": [_chunk("a")], "fine": [_chunk("b", "stop", "f")]}
    async with aggregator.fan_in(sources) as items:
        results = sorted([r async for r in items if isinstance(r, Result)], key=lambda r: r.stream)
    assert [(r.stream, r.reason) for r in results] == [
        ("buggy", EndReason.ERROR),
        ("fine", EndReason.EXHAUSTED),
    ]
    assert str(results[0].error) == (
        "buggy, item 1: internal error (a bug: please report it): RuntimeError: boom"
    )
    assert results[1].complete
