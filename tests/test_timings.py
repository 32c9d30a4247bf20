"""Timings on every result: a fake clock in the core, a real one in the shell."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregator
from aggregator import Assembler, EndReason, Result, Timings
from aggregator._core._engine import Engine

from .conftest import DATA

JSON = dict[str, Any]


def chunk(delta: JSON, finish: str | None = None, id_: str = "c1", index: int = 0) -> bytes:
    payload = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def timings(result: Result | aggregator.SourceReport) -> Timings:
    assert isinstance(result, Result)
    assert result.timings is not None
    return result.timings


def test_no_times_given_no_timings() -> None:
    assembler = Assembler()
    assembler.feed(chunk({"role": "assistant", "content": "hi"}, "stop"))
    (result,) = assembler.feed(DONE)
    assert result.timings is None


def test_each_reading_is_the_time_of_the_feed_that_brought_it() -> None:
    assembler = Assembler()
    assert assembler.feed(chunk({"role": "assistant", "content": ""}), now=10.0) == []
    assembler.feed(chunk({"content": ""}), now=10.5)  # empty content is no output yet
    assembler.feed(chunk({"content": "Hel"}) + chunk({"content": "lo"}), now=11.0)
    assembler.feed(chunk({"content": "!"}), now=12.0)
    assembler.feed(chunk({}, "stop"), now=13.0)
    (result,) = assembler.feed(DONE, now=14.0)
    assert timings(result) == Timings(
        started=10.0,
        first_byte=10.0,
        first_chunk=10.0,
        first_output=11.0,
        output_kind="content",
        last_chunk=13.0,
        ended=14.0,
        chunks=6,
        output_chunks=4,  # from the feed that brought the first output on
    )
    t = timings(result)
    assert (t.time_to_first_chunk, t.time_to_first_token, t.duration) == (0.0, 1.0, 4.0)
    assert t.time_per_output_chunk == pytest.approx(2.0 / 3)
    assert aggregator.to_dict(result.completion)["choices"][0]["message"]["content"] == "Hello!"


@pytest.mark.parametrize(
    ("delta", "kind"),
    [
        ({"reasoning_content": "think"}, "reasoning"),
        ({"reasoning": "think"}, "reasoning"),
        ({"refusal": "no"}, "refusal"),
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "t", "type": "function", "function": {"name": "f"}}
                ]
            },
            None,  # a name is no output: the arguments are
        ),
    ],
)
def test_the_kind_of_the_first_output_is_said(delta: JSON, kind: str | None) -> None:
    assembler = Assembler()
    assembler.feed(chunk({"role": "assistant", **delta}), now=1.0)
    args = {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assembler.feed(chunk(args, "stop"), now=2.0)
    (result,) = assembler.feed(DONE, now=3.0)
    t = timings(result)
    assert (t.output_kind, t.first_output) == (kind or "tool_call", 1.0 if kind else 2.0)


def test_a_text_completion_and_a_stream_with_no_output() -> None:
    payload = {"id": "x", "object": "text_completion", "created": 1, "model": "m"}
    payload["choices"] = [{"index": 0, "text": "a"}]
    text = b"data: " + orjson.dumps(payload) + b"\n\n"
    assembler = Assembler()
    assembler.feed(text, now=5.0)
    (result,) = assembler.feed(DONE, now=6.0)
    assert (timings(result).output_kind, timings(result).first_output) == ("content", 5.0)
    assembler = Assembler()
    assembler.feed(chunk({"role": "assistant"}, "stop"), now=1.0)
    (result,) = assembler.feed(DONE, now=2.0)
    t = timings(result)
    assert (t.first_output, t.output_kind, t.output_chunks) == (None, None, 0)
    assert (t.time_to_first_token, t.time_per_output_chunk) == (None, None)


def test_a_sequence_of_streams_each_starts_when_the_one_before_ended() -> None:
    assembler = Assembler()
    assembler.feed(chunk({"content": "a"}, "stop", id_="one"), now=1.0)
    first = assembler.feed(chunk({"content": "b"}, id_="two"), now=4.0)
    assembler.feed(chunk({}, "stop", id_="two"), now=5.0)
    second = assembler.feed(DONE, now=6.0)
    assert (timings(first[0]).started, timings(first[0]).ended) == (1.0, 4.0)
    assert (timings(second[0]).started, timings(second[0]).first_chunk) == (4.0, 4.0)
    # the source's first byte was at 1.0; the second stream's came after it started
    assert timings(first[0]).first_byte == 1.0
    assert timings(second[0]).first_byte == 4.0


def test_interleaved_streams_all_start_with_the_source() -> None:
    assembler = Assembler(interleaved=True)
    assembler.started = 0.5  # the caller knows when it sent the request
    assembler.feed(chunk({"content": "a"}, id_="one"), now=1.0)
    assembler.feed(chunk({"content": "b"}, id_="two"), now=2.0)
    assembler.feed(chunk({"content": "c"}, "stop", id_="one"), now=3.0)
    assembler.feed(chunk({}, "stop", id_="two"), now=4.0)
    one, two = assembler.feed(DONE, now=5.0)
    assert (timings(one).started, timings(one).first_chunk, timings(one).last_chunk) == (
        0.5,
        1.0,
        3.0,
    )
    assert (timings(two).started, timings(two).first_chunk, timings(two).last_chunk) == (
        0.5,
        2.0,
        4.0,
    )


def _recordings() -> list[Path]:
    return sorted(p for p in DATA.rglob("*") if p.suffix in {".sse", ".jsonl"})


def _pieces(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[start:cut]
        start = cut
    yield data[start:]


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10**7), max_size=30),
    lane=st.booleans(),
)
def test_readings_are_ordered_on_every_recording_however_split(
    index: int, cuts: list[int], lane: bool
) -> None:
    recordings = _recordings()
    path = recordings[index % len(recordings)]
    engine = Engine(path.name, strict=False, fast_lane=lane)
    out: list[Any] = []
    for now, piece in enumerate(_pieces(path.read_bytes(), cuts)):
        out += engine.feed(piece, now=float(now))
    out += engine.close(now=1e6)
    for result in out:
        if not isinstance(result, Result) or not result.chunks:
            continue
        t = timings(result)
        assert t.started <= t.first_chunk <= t.last_chunk <= t.ended
        assert t.started <= t.first_byte <= t.first_chunk
        if t.first_output is not None:
            assert t.first_chunk <= t.first_output <= t.last_chunk
            assert 1 <= t.output_chunks <= t.chunks == result.chunks


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10**7), max_size=30),
    lane=st.booleans(),
)
def test_a_read_at_a_time_notes_the_times_a_feed_does(
    index: int, cuts: list[int], lane: bool
) -> None:
    """``feed_item`` (the shell's way in, a read at a time) notes a steady stream's times
    itself, without ``_stamp``: the same times as ``feed`` of the same pieces, reads that
    bring no chunk (a line cut in two, an empty read after each piece) included."""
    recordings = _recordings()
    path = recordings[index % len(recordings)]
    pieces = [read for piece in _pieces(path.read_bytes(), cuts) for read in (piece, b"")]
    got = []
    for by_item in (False, True):
        engine = Engine(path.name, strict=False, fast_lane=lane)
        out: list[Any] = []
        for now, piece in enumerate(pieces):
            out += (engine.feed_item if by_item else engine.feed)(piece, float(now))
        out += engine.close(now=1e6)
        got.append([(r.key, r.reason, r.chunks, r.timings) for r in out if isinstance(r, Result)])
    assert got[0] == got[1]


def test_the_lane_and_the_full_path_read_the_same_times() -> None:
    pieces = [chunk({"role": "assistant", "content": ""})]
    pieces += [chunk({"content": f"w{i} "}) for i in range(40)] + [chunk({}, "stop"), DONE]
    got = []
    for lane in (True, False):
        engine = Engine(fast_lane=lane)
        out: list[Any] = []
        for now, piece in enumerate(pieces):
            out += engine.feed(piece, now=float(now))
        got.append(timings(out[0]))
    assert got[0] == got[1]
    assert (got[0].first_output, got[0].last_chunk, got[0].ended) == (1.0, 41.0, 42.0)


# -- the shell reads anyio's clock -------------------------------------------------------------


async def _paced(pieces: list[bytes], pause: float) -> AsyncIterator[bytes]:
    for piece in pieces:
        await anyio.sleep(pause)
        yield piece


PACED = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, "stop"),
    DONE,
]


def _check_real(t: Timings, pause: float) -> None:
    assert t.started < t.first_byte <= t.first_chunk < t.first_output  # type: ignore[operator]
    assert t.first_output <= t.last_chunk <= t.ended  # type: ignore[operator]
    assert t.time_to_first_chunk >= pause * 0.9
    assert t.time_to_first_token is not None
    assert t.time_to_first_token >= 2 * pause * 0.9
    assert t.time_per_output_chunk is not None
    assert t.time_per_output_chunk >= pause * 0.9
    assert t.output_kind == "content"


@pytest.mark.anyio
async def test_results_reads_the_clock_when_each_read_returns() -> None:
    async with aggregator.results(_paced(PACED, 0.02)) as items:
        got = [item async for item in items]
    result = got[0]
    assert isinstance(result, Result)
    assert result.reason is EndReason.DONE
    _check_real(timings(result), 0.02)


@pytest.mark.anyio
async def test_fan_in_and_tee_time_each_source() -> None:
    sources = {f"s{i}": _paced(PACED, 0.01 * (i + 1)) for i in range(3)}
    async with aggregator.fan_in(sources) as items:
        got = [item async for item in items if isinstance(item, Result)]
    assert len(got) == 3
    for result in got:
        _check_real(timings(result), 0.01 * (int(result.source[1:]) + 1))
    async with aggregator.Tee(_paced(PACED, 0.02)) as tee:
        assert b"".join([piece async for piece in tee]) == b"".join(PACED)
    _check_real(timings(tee.results[0]), 0.02)


@pytest.mark.anyio
async def test_a_sync_source_and_a_failing_one_are_timed_too() -> None:
    async with aggregator.results(iter(PACED)) as items:
        (result, _report) = [item async for item in items]
    t = timings(result)
    assert t.started <= t.first_chunk == t.last_chunk <= t.ended  # one read of all of it

    async def broken() -> AsyncIterator[bytes]:
        yield PACED[0]
        yield PACED[1]
        await anyio.sleep(0.02)
        raise OSError("reset")

    async with aggregator.results(broken()) as items:
        (result, _report) = [item async for item in items]
    assert result.reason is EndReason.ERROR
    t = timings(result)
    assert t.ended - t.last_chunk >= 0.018
    assert t.output_kind == "content"


@pytest.mark.anyio
async def test_the_shell_reads_anyios_own_clock() -> None:
    from aggregator._run import clock

    read, epoch = clock()
    before = anyio.current_time()
    now = read() + epoch
    after = anyio.current_time()
    assert before <= now <= after  # the same clock, not one like it
    await anyio.sleep(0.01)
    assert read() + epoch - now >= 0.009


@pytest.mark.anyio
async def test_every_way_in_hands_out_times_on_anyios_clock() -> None:
    """The times of each result are anyio's clock's (on trio the shell reads the clock's raw
    readings, and the engine adds its offset back: a slip would put them hours away)."""

    def within(result: Result | aggregator.SourceReport, before: float, after: float) -> None:
        t = timings(result)
        assert before <= t.started <= t.first_byte <= t.first_chunk <= t.last_chunk
        assert t.first_output is not None
        assert t.first_chunk <= t.first_output <= t.last_chunk <= t.ended <= after

    before = anyio.current_time()
    async with aggregator.results(_paced(PACED, 0.0)) as items:
        (result, _report) = [item async for item in items]
    sources: dict[str, Any] = {"a": _paced(PACED, 0.0), "b": iter(PACED)}
    async with aggregator.fan_in(sources) as items:
        fanned = [item async for item in items if isinstance(item, Result)]
    async with aggregator.Tee(_paced(PACED, 0.0)) as tee:
        async for _ in tee:
            pass
    async with aggregator.Tee(_paced(PACED, 0.0), on_disconnect="stop") as cut:
        await cut.__anext__()  # and left mid-stream: aclose ends it
        await cut.__anext__()
    after = anyio.current_time()
    for each in (result, *fanned, *tee.results, *cut.results):
        within(each, before, after)
    assert len(fanned) == 2
    assert cut.results[0].reason is EndReason.CANCELLED


def test_a_trio_clock_of_the_callers_is_the_one_read() -> None:
    """A run given a clock of its own (trio.testing's, which jumps over sleeps) is timed on it,
    as ``anyio.current_time()`` reads it."""
    from trio.testing import MockClock

    async def main() -> tuple[float, float, Result]:
        before = anyio.current_time()
        async with aggregator.results(_paced(PACED, 60.0)) as items:
            (result, _report) = [item async for item in items]
        assert isinstance(result, Result)
        return before, anyio.current_time(), result

    clock = MockClock(autojump_threshold=0)
    before, after, result = anyio.run(main, backend="trio", backend_options={"clock": clock})
    t = timings(result)
    assert before <= t.started
    assert t.ended <= after
    assert t.time_to_first_chunk == pytest.approx(60.0, abs=0.01)  # the mock's jumps, not seconds
    assert t.duration == pytest.approx(300.0, abs=0.05)


@pytest.mark.anyio
async def test_timings_can_be_turned_off_and_nothing_else_changes() -> None:
    async with aggregator.results(_paced(PACED, 0.0), timings=False) as items:
        off = [item async for item in items]
    async with aggregator.results(_paced(PACED, 0.0)) as items:
        on = [item async for item in items]
    assert off == on  # timings take no part in equality; all else is the same
    assert isinstance(off[0], Result)
    assert isinstance(on[0], Result)
    assert off[0].timings is None
    assert on[0].timings is not None
    sources: dict[str, Any] = {"a": _paced(PACED, 0.0), "b": iter(PACED)}
    async with aggregator.fan_in(sources, timings=False) as items:
        got = [item async for item in items if isinstance(item, Result)]
    assert len(got) == 2
    assert all(result.timings is None for result in got)


def test_the_cli_adds_timings_when_asked(tmp_path: Path) -> None:
    from .test_cli import run

    path = tmp_path / "one.sse"
    path.write_bytes(b"".join(PACED))
    status, plain, _ = run("assemble", str(path))
    assert status == 0
    assert "timings" not in plain[0]
    status, (line,), _ = run("assemble", "--timings", "-", stdin=b"".join(PACED))
    assert status == 0
    timed = line.pop("timings")
    assert line == plain[0]  # the completion itself is unchanged
    assert timed["output_kind"] == "content"
    assert (timed["chunks"], timed["output_chunks"]) == (4, 4)  # one read brought them all
    assert 0 <= timed["first_byte"] <= timed["first_chunk"] <= timed["last_chunk"]
    assert timed["last_chunk"] <= timed["ended"]
    assert timed["time_to_first_token"] == timed["first_output"]
