"""Hostile streams (issue 17, findings 1-12): each finding as a test that failed before its fix.

Every quantity a server controls is bounded (bytes per completion, per event, per id, per error
message; dedupe and refusal state in bytes), work per input byte is bounded (no quadratic merge,
no event-loop stall), nothing is dropped without a record, and every deadline bounds its wait.
Speed is checked as a ratio of two sizes measured side by side (linear: about 4 for 4 times
the input; quadratic: 16), never as an absolute time.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import aggregator
from aggregator import (
    Assembler,
    DecodeError,
    EndReason,
    LimitError,
    Limits,
    Result,
    SourceReport,
    Tee,
)
from aggregator.lowlevel import Engine
from aggregator.stages import assemble, collect_usage, dedupe, merge_deltas, total_usage

MiB = 1024 * 1024
DEFAULTS = Limits()


def chunk(cid: str = "c", text: str | None = "x", *, model: str = "m", **more: Any) -> bytes:
    """One chat chunk's JSON (``text``: its content; ``more``: extra delta keys)."""
    delta: dict[str, Any] = dict(more)
    if text is not None:
        delta["content"] = text
    return json.dumps(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        },
        separators=(",", ":"),
    ).encode()


def finish(cid: str = "c") -> bytes:
    return json.dumps(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    ).encode()


def sse(*payloads: bytes, done: bytes = b"data: [DONE]\n\n") -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads) + done


def run(
    data: bytes | list[bytes],
    *,
    limits: Limits = DEFAULTS,
    strict: bool = True,
    interleaved: bool = False,
) -> tuple[list[Result], SourceReport]:
    """Feed bytes (one piece or many) to an :class:`Assembler` and close it."""
    assembler = Assembler("src", limits=limits, strict=strict, interleaved=interleaved)
    results: list[Result] = []
    for piece in [data] if isinstance(data, bytes) else data:
        results += assembler.feed(piece)
    results += assembler.close()
    assert assembler.report is not None
    return results, assembler.report


async def run_async(source: Any, **kwargs: Any) -> tuple[list[Result], SourceReport]:
    """The same through :func:`aggregator.results` (the async shell)."""
    results: list[Result] = []
    report: SourceReport | None = None
    async with aggregator.results(source, **kwargs) as items:
        async for item in items:
            if isinstance(item, Result):
                results.append(item)
            else:
                report = item
    assert report is not None
    return results, report


async def agen(pieces: list[Any]) -> AsyncIterator[Any]:
    for piece in pieces:
        yield piece


def content(result: Result) -> Any:
    return result.completion.choices[0].message.content  # type: ignore[union-attr]


def ratio(work: Callable[[int], object], n: int) -> float:
    """CPU time of ``work(4n)`` over that of ``work(n)``, each the best of five, side by side
    (CPU time of this process: other processes on a shared machine do not count)."""

    def best(size: int) -> float:
        times = []
        for _ in range(5):
            gc.collect()
            started = time.process_time()
            work(size)
            times.append(time.process_time() - started)
        return min(times)

    best(n)  # warm up
    return best(4 * n) / best(n)


# --- 1. bytes per completion -------------------------------------------------------------------


def test_max_completion_default_is_64_mib() -> None:
    assert Limits().max_completion == 64 * MiB


@pytest.mark.parametrize("fast_lane", [True, False])
def test_max_completion_fails_that_stream_only_and_keeps_its_partial(fast_lane: bool) -> None:
    limits = Limits(max_completion=20_000)
    big = [chunk("big", "y" * 100) for _ in range(400)]  # about 80 kB: past the limit
    small = [chunk("small", "z")] * 3 + [finish("small")]
    engine = Engine("src", limits=limits, interleaved=True, fast_lane=fast_lane)
    out = engine.feed(sse(*big[:10], *small, *big[10:], finish("big"))) + engine.close()
    by_id = {r.completion.id: r for r in out if isinstance(r, Result)}
    assert by_id["small"].complete
    assert content(by_id["small"]) == "zzz"
    failed = by_id["big"]
    assert failed.reason is EndReason.LIMIT
    assert isinstance(failed.error, LimitError)
    assert failed.error.limit == "max_completion"
    assert failed.error.source == "src"
    assert failed.error.where.startswith("line ")
    assert "completion 'big' larger than 20000 bytes (max_completion)" in str(failed.error)
    kept = content(failed)
    assert 0 < len(kept) <= 20_000
    assert set(kept) == {"y"}


@pytest.mark.anyio
async def test_max_completion_on_a_never_ending_source() -> None:
    async def endless() -> AsyncIterator[bytes]:
        piece = sse(*[chunk("c", "w" * 1000)] * 64, done=b"")
        while True:
            yield piece

    async with aggregator.results(endless(), limits=Limits(max_completion=4 * MiB)) as items:
        result = await anext(items)  # at once, though the source never ends
    assert isinstance(result, Result)
    assert result.reason is EndReason.LIMIT
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_completion"
    assert 3 * MiB < len(content(result)) <= 4 * MiB


def test_command_on_a_stream_past_max_completion(tmp_path: Path) -> None:
    path = tmp_path / "big.sse"
    with path.open("wb") as f:
        block = sse(*[chunk("c", "v" * 1000)] * 1000, done=b"")  # about 1.1 MB
        for _ in range(70):  # about 77 MB: past the default 64 MiB
            f.write(block)
        f.write(b"data: [DONE]\n\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", str(path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "larger than 67108864 bytes (max_completion)" in proc.stderr.decode()
    line = json.loads(proc.stdout)
    assert 50 * MiB < len(line["choices"][0]["message"]["content"]) <= 64 * MiB


# --- 2. bounded work between two turns of the event loop ----------------------------------------


class Ticker:
    """A concurrent task that notes the longest gap between its ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0

    async def run(self) -> None:
        last = anyio.current_time()
        while True:
            await anyio.sleep(0.002)
            now = anyio.current_time()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now


BLANK_BOMB = b"\n" * (64 * MiB)


@pytest.mark.anyio
@pytest.mark.parametrize("way", ["results", "tee", "sync"])
async def test_a_block_of_blank_lines_does_not_stall_the_loop(way: str) -> None:
    pieces = [sse(chunk("c", "a"), done=b""), BLANK_BOMB, sse(chunk("c", "b"), finish())]
    ticker = Ticker()
    got: list[Result] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        await anyio.sleep(0.01)
        if way == "tee":
            async with Tee(agen(pieces), name="bomb") as tee:
                async for _ in tee:
                    pass
            got = tee.results
        else:
            got, _ = await run_async(agen(pieces) if way == "results" else iter(pieces))
        tg.cancel_scope.cancel()
    (result,) = got
    assert result.complete
    assert content(result) == "ab"
    assert ticker.ticks > 10
    assert ticker.longest < 0.25  # about 100 ms asked; generous on a shared machine


@pytest.mark.anyio
async def test_a_source_that_never_awaits_still_lets_others_run() -> None:
    async def eager() -> AsyncIterator[bytes]:
        yield sse(chunk("c", "a"), done=b"")
        for _ in range(20_000):  # no await: the reader must give the loop its turns
            yield b"\n" * 1000
        yield sse(finish())

    ticker = Ticker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        await anyio.sleep(0.01)
        (result,), _ = await run_async(eager())
        tg.cancel_scope.cancel()
    assert result.complete
    assert ticker.longest < 0.25


# --- 3. max_line bounds a whole SSE event ------------------------------------------------------


def test_max_line_bounds_an_event_not_only_a_line() -> None:
    many = b"data: xy\n" * 2000 + b"\n"  # 18 kB in one event, each line 8 bytes
    results, _ = run(
        sse(chunk("c", "a"), done=b"") + many + sse(finish()),
        limits=Limits(max_line=1024),
        strict=False,
    )
    (result,) = results
    assert content(result) == "a"
    (problem,) = result.problems
    assert isinstance(problem, DecodeError)
    assert "event larger than 1024 bytes of data (max_line)" in str(problem)
    assert problem.where == "line 131"  # the line that passed it
    assert not result.complete
    assert result.finished  # the events after it were read


def test_an_event_past_max_line_is_fatal_when_strict() -> None:
    event = b"data: [\n" + b"data: 1,\n" * 2000 + b"data: 1]\n\n"  # valid JSON, 18 kB
    (result,), _ = run(sse(chunk("c", "a"), done=b"") + event, limits=Limits(max_line=1024))
    assert isinstance(result.error, DecodeError)
    assert "event larger than 1024 bytes" in str(result.error)
    assert result.reason is EndReason.ERROR
    assert content(result) == "a"


# --- 4. dedupe and refusal state bounded in bytes -------------------------------------------


def retained(feed: Callable[[], object]) -> int:
    """Bytes still allocated after ``feed()`` (the engine alive), as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = feed()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def test_dedupe_state_is_bounded_in_bytes_not_only_count() -> None:
    long_id = "i" * 64 * 1024

    def feed() -> Engine:
        engine = Engine("src")
        engine.feed(sse(chunk("c", "a"), done=b""))
        for n in range(512):  # 512 ids of 64 KiB: 32 MiB if kept as they are
            engine.feed(b"id: " + f"{long_id}{n}".encode() + b"\ndata: " + chunk("c") + b"\n\n")
        return engine

    assert retained(feed) < 2 * MiB


def test_refused_state_is_bounded_in_bytes() -> None:
    long_id = "r" * 64 * 1024

    def feed() -> Engine:
        engine = Engine("src", limits=Limits(max_streams=1), interleaved=True)
        engine.feed(sse(chunk("open", "a"), done=b""))
        for n in range(512):
            engine.feed(sse(chunk(f"{long_id}{n}"), done=b""))
        return engine

    assert retained(feed) < 4 * MiB


# --- 5. dedupe drops only exact replays -------------------------------------------------------


def with_id(event_id: bytes, payload: bytes) -> bytes:
    return b"id: " + event_id + b"\ndata: " + payload + b"\n\n"


def test_the_same_id_on_every_event_loses_nothing_and_says_so() -> None:
    data = b"".join(with_id(b"7", chunk("c", t)) for t in "abc") + sse(finish())
    (result,), _ = run(data)
    assert content(result) == "abc"
    assert result.duplicates == 0
    (problem,) = result.problems
    assert "the dedupe id '7' came again with another payload: kept" in str(problem)
    assert not result.complete  # dedupe by id could not tell a replay here


def test_an_exact_replay_is_dropped_and_counted() -> None:
    first = with_id(b"1", chunk("c", "a"))
    data = first + with_id(b"2", chunk("c", "b")) + first + sse(finish())
    (result,), _ = run(data)
    assert content(result) == "ab"
    assert result.duplicates == 1
    assert result.complete


@pytest.mark.anyio
async def test_pairs_with_a_reused_id_are_kept() -> None:
    def pairs() -> list[tuple[str, dict[str, Any]]]:
        return [("k", json.loads(chunk("c", t))) for t in "ab"] + [("k2", json.loads(finish()))]

    (result,), _ = await run_async(agen(pairs()))
    assert content(result) == "ab"
    assert result.problems
    (result,), _ = await run_async(agen([pairs()[0], *pairs()]))
    assert content(result) == "ab"
    assert result.duplicates == 1


def test_command_stats_show_a_reused_id(tmp_path: Path) -> None:
    path = tmp_path / "same-id.sse"
    path.write_bytes(b"".join(with_id(b"7", chunk("c", t)) for t in "abc") + sse(finish()))
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", "--stats", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert json.loads(proc.stdout)["choices"][0]["message"]["content"] == "abc"
    err = proc.stderr.decode()
    assert "came again with another payload" in err
    assert "incomplete: 1, problems: 1" in err
    assert proc.returncode == 1


# --- 6. linear merges ---------------------------------------------------------------------------


def indexed_annotations(n: int) -> None:
    engine = Engine("src")
    payloads = [
        chunk("c", None, annotations=[{"index": i, "type": "url_citation", "url": "u"}])
        for i in range(n)
    ]
    (result, _) = engine.feed(sse(*payloads, finish())) + engine.close()
    assert len(result.completion.choices[0].message.extras["annotations"]) == n


def parts(n: int) -> None:
    engine = Engine("src")
    payloads = [chunk("c", None, content=[{"type": "text", "text": "x" * 2000}])] * n
    (result, _) = engine.feed(sse(*payloads, finish())) + engine.close()
    assert content(result) == [{"type": "text", "text": "x" * 2000 * n}]


def long_line(n: int) -> None:
    text = "t" * (n * 4096)
    data = sse(chunk("c", text), finish())
    engine = Engine("src")
    out: list[Any] = []
    for at in range(0, len(data), 4096):
        out += engine.feed(data[at : at + 4096])
    out += engine.close()
    assert len(content(out[0])) == len(text)


@pytest.mark.parametrize(
    ("work", "n"),
    [(indexed_annotations, 5000), (parts, 1000), (long_line, 512)],
    ids=["annotations", "content parts", "a long line in 4 KiB pieces"],
)
def test_merges_and_framing_are_linear(work: Callable[[int], None], n: int) -> None:
    assert ratio(work, n) < 8  # linear: about 4; quadratic: about 16 (main: 14 to 29)


def test_indexed_entries_still_merge_by_index_and_type() -> None:
    payloads = [
        chunk("c", None, annotations=[{"index": 0, "type": "a", "text": "x"}]),
        chunk("c", None, annotations=[{"index": 1, "type": "a", "text": "y"}]),
        chunk("c", None, annotations=[{"index": 0, "type": "b", "text": "p"}]),
        chunk("c", None, annotations=[{"index": 0, "type": "a", "text": "z"}]),
        chunk("c", None, annotations=[{"index": 0, "type": "b", "text": "q"}]),
        chunk("c", None, annotations=[{"index": [1], "text": "odd"}]),
        chunk("c", None, annotations=[{"index": [1], "text": "!"}]),
    ]
    (result,), _ = run(sse(*payloads, finish()))
    assert result.completion.choices[0].message.extras["annotations"] == [  # type: ignore[union-attr]
        {"index": 0, "type": "a", "text": "xz"},
        {"index": 1, "type": "a", "text": "y"},
        {"index": 0, "type": "b", "text": "pq"},
        {"index": [1], "text": "odd!"},
    ]


# --- 7. the lane and the full path agree with json.loads on duplicated keys -------------------


SPELLINGS = [
    b'"content":"b","con\\u0074ent":"c"',
    b'"con\\u0074ent":"b","content":"c"',
    b'"content":"b","content":"c"',
    b'"content":"b","\\u0063ontent":"c"',
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_lane_and_full_path_agree_on_a_duplicated_key(spelling: bytes) -> None:
    plain = chunk("c", "a")
    twice = plain.replace(b'"content":"a"', spelling)
    data = sse(plain, plain, plain, twice, plain, finish())
    expected = "".join(
        json.loads(p)["choices"][0]["delta"].get("content") or ""
        for p in (plain, plain, plain, twice, plain)
    )
    got = []
    for lane in (True, False):
        engine = Engine("src", fast_lane=lane)
        got.append(content((engine.feed(data) + engine.close())[0]))
    assert got == [expected, expected]


# --- 8. a line not understood is a problem ---------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"\xef\xbb\xbfdata: ", b" data: ", b"da\x00ta: ", b"data : "],
    ids=["BOM mid-stream", "leading space", "NUL in the field name", "space before colon"],
)
def test_a_spoiled_field_name_is_a_problem_not_silence(line: bytes) -> None:
    data = sse(chunk("c", "a"), done=b"") + line + chunk("c", "b") + b"\n\n" + sse(finish())
    (result,), _ = run(data, strict=False)
    assert content(result) == "a"
    (problem,) = result.problems
    assert isinstance(problem, DecodeError)
    assert problem.where == "line 3"
    assert "spoiled" in str(problem)
    assert not result.complete
    (result,), _ = run(data)  # strict: malformed input ends the stream
    assert isinstance(result.error, DecodeError)


def test_unknown_fields_are_still_ignored() -> None:
    (result,), _ = run(b"foo: bar\nDATA: y\n" + sse(chunk("c", "a"), finish()))
    assert result.complete


# --- 9. refused completions are reported once -------------------------------------------------


def test_past_4096_refused_completions_each_is_reported_once() -> None:
    engine = Engine("src", limits=Limits(max_streams=1), interleaved=True)
    out = engine.feed(sse(chunk("open", "a"), done=b""))
    for n in range(6000):
        out += engine.feed(sse(chunk(f"r{n}"), chunk(f"r{n}"), done=b""))
    out += engine.feed(sse(finish("open")))
    out += engine.close()
    results = [r for r in out if isinstance(r, Result)]
    assert len(results) == 6001
    assert sum(r.reason is EndReason.LIMIT for r in results) == 6000
    assert sum(r.completion.id == "open" and r.complete for r in results) == 1


# --- 10. drain_timeout bounds the wait in "finish" mode --------------------------------------


class SlowSource:
    """Gives ``pieces``, but waits ``pause`` seconds before the one at ``at``."""

    def __init__(self, pieces: list[bytes], at: int, pause: float) -> None:
        self.pieces, self.at, self.pause = pieces, at, pause
        self.given = 0
        self.closes = 0
        #: set when the pause begins.
        self.paused = anyio.Event()

    def __aiter__(self) -> SlowSource:
        return self

    async def __anext__(self) -> bytes:
        if self.given >= len(self.pieces):
            raise StopAsyncIteration
        if self.given == self.at:
            self.paused.set()
            await anyio.sleep(self.pause)
        self.given += 1
        return self.pieces[self.given - 1]

    async def aclose(self) -> None:
        self.closes += 1


@pytest.mark.anyio
async def test_drain_timeout_bounds_finish_when_the_client_leaves_mid_read() -> None:
    pieces = [sse(chunk("c", t), done=b"") for t in "abcdef"] + [sse(finish())]
    source = SlowSource(pieces, at=3, pause=5.0)
    tee = Tee(source, name="tee", on_disconnect="finish", drain_timeout=0.3)

    async def client() -> None:
        async with tee:
            async for _ in tee:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(client)
        await source.paused.wait()
        await anyio.sleep(0.1)  # the client waits in the read of the silent upstream
        started = anyio.current_time()
        tg.cancel_scope.cancel()  # the client goes away mid-read, no deadline
    took = anyio.current_time() - started
    assert took < 2  # the 5 s silence is not waited for: drain_timeout is 0.3 s
    assert tee.disconnected
    (result,) = tee.results
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "drain_timeout"
    assert content(result) == "abc"
    assert source.closes == 1


@pytest.mark.anyio
async def test_finish_still_reads_the_rest_within_drain_timeout() -> None:
    pieces = [sse(chunk("c", t), done=b"") for t in "abcdef"] + [sse(finish())]
    source = SlowSource(pieces, at=3, pause=0.1)
    tee = Tee(source, name="tee", on_disconnect="finish", drain_timeout=2)
    async with anyio.create_task_group() as tg:

        async def client() -> None:
            async with tee:
                async for _ in tee:
                    if source.given == 3:
                        tg.cancel_scope.cancel()

        tg.start_soon(client)
    (result,) = tee.results
    assert result.complete
    assert content(result) == "abcdef"


# --- 11. leaving fan_in bounds a slow aclose ------------------------------------------------


class SlowClose:
    """A source whose ``aclose()`` takes 5 s, and which never ends."""

    def __init__(self) -> None:
        self.closing_took: float | None = None

    def __aiter__(self) -> SlowClose:
        return self

    async def __anext__(self) -> bytes:
        await anyio.sleep(0.01)
        return sse(chunk("c", "a"), finish())  # one completion after another, never the end

    async def aclose(self) -> None:
        started = anyio.current_time()
        try:
            await anyio.sleep(5)
        finally:
            self.closing_took = anyio.current_time() - started


@pytest.mark.anyio
@pytest.mark.parametrize("close_timeout", [None, 0.1])
async def test_leaving_fan_in_bounds_a_slow_aclose(close_timeout: float | None) -> None:
    limits = Limits() if close_timeout is None else Limits(close_timeout=close_timeout)
    source = SlowClose()
    started = anyio.current_time()
    async with aggregator.fan_in({"slow": source}, limits=limits) as items:
        async for _ in items:
            break
    took = anyio.current_time() - started
    assert took < (0.1 if close_timeout else 1.0) + 1.0  # not the 5 s of the slow close
    assert source.closing_took is not None
    assert source.closing_took < 2


# --- 12. [DONE] with whitespace, negative token counts, long ids in messages ---------------------


@pytest.mark.parametrize(
    "done", [b"data: [DONE] \n\n", b"data: [DONE]\t\r\n\r\n", b"data:  [DONE]\n\n"]
)
def test_done_with_whitespace_ends_the_stream_properly(done: bytes) -> None:
    (result,), report = run(sse(chunk("c", "a"), finish(), done=done))
    assert result.complete
    assert result.reason is EndReason.DONE
    assert report.ok


def usage_chunk(prompt: int, completion: int) -> bytes:
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    ).encode()


@pytest.mark.anyio
async def test_negative_token_counts_are_a_problem_and_not_summed() -> None:
    bad = sse(chunk("c", "a"), finish(), usage_chunk(-1000, 5))
    good = sse(chunk("c", "a"), finish(), usage_chunk(10, 5))
    (result,), _ = run(bad)
    (problem,) = result.problems
    assert "token counts below zero (prompt_tokens=-1000, total_tokens=-995)" in str(problem)
    assert not result.complete
    totals = []
    pipeline = dedupe() | collect_usage() | merge_deltas() | assemble() | total_usage()
    async with aggregator.fan_in({"bad": [bad], "good": [good]}, pipeline) as items:
        async for item in items:
            if not isinstance(item, Result | SourceReport):
                totals.append(item)
    (summed,) = totals
    usage = summed.by_model["m"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 10)
    assert summed.tokens["m"].input == 10
    pipeline = dedupe() | collect_usage() | merge_deltas() | assemble() | total_usage()
    async with aggregator.fan_in({"bad": [bad]}, pipeline) as items:
        totals = [item async for item in items if not isinstance(item, Result | SourceReport)]
    assert totals[0].by_model["m"].prompt_tokens == 0  # alone, still no count below zero


_COUNT = st.one_of(st.integers(-5, 5), st.floats(-2.0, 2.0, allow_nan=False), st.booleans())
_EXTRA = st.recursive(
    st.one_of(_COUNT, st.text(max_size=3), st.none()),
    lambda inner: st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=6,
)


def _below_zero_named(value: Any, name: str = "") -> list[str]:
    """Every number below zero in a usage's JSON, by its dotted path (extras are top-level)."""
    if value.__class__ in (int, float):
        return [f"{name}={value}"] if value < 0 else []
    if isinstance(value, dict):
        return [
            found
            for key, child in value.items()
            if child is not None
            for found in _below_zero_named(child, f"{name}.{key}" if name else key)
        ]
    return []


@settings(max_examples=300, deadline=None)
@given(
    counts=st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": st.integers(-3, 9),
            "completion_tokens": st.integers(-3, 9),
            "total_tokens": st.integers(-3, 9),
            "prompt_tokens_details": st.none()
            | st.fixed_dictionaries({}, optional={"cached_tokens": st.integers(-3, 9)}),
            "completion_tokens_details": st.none()
            | st.fixed_dictionaries(
                {}, optional={"reasoning_tokens": st.integers(-3, 9), "x_deep": _EXTRA}
            ),
            "x_extra": _EXTRA,
            "x_other": _EXTRA,
        },
    )
)
def test_every_count_below_zero_is_named_wherever_it_is(counts: dict[str, Any]) -> None:
    from aggregator._core._usage import negative_counts
    from aggregator.lowlevel import structure_chunk

    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    usage = structure_chunk({**chunk, "choices": [], "usage": counts}).usage
    expected = sorted(_below_zero_named(counts))
    assume(len(expected) <= 8)  # (it names at most 8)
    assert negative_counts(usage) == expected


def test_messages_never_repeat_an_id_of_any_length() -> None:
    huge = "I" * 1_000_000
    data = sse(
        chunk(huge, "a"), chunk("other", "b"), chunk(huge, "c", model="M" * 10**6), finish(huge)
    )
    (result,), _ = run(data, strict=False)
    texts = [*result.notes, *(str(p) for p in result.problems)]
    assert texts
    assert all(len(text) < 1000 for text in texts)
    assert any("..." in text for text in texts)


@pytest.mark.anyio
async def test_a_gzip_bomb_through_httpx_is_inflated_in_bounded_pieces() -> None:
    import gzip

    import httpx

    from aggregator.sources import from_httpx

    data = sse(chunk("c", "a"), done=b"") + BLANK_BOMB + sse(chunk("c", "b"), finish())
    packed = gzip.compress(data)
    assert len(packed) < MiB  # a small read that inflates to 64 MiB

    async def one_read() -> AsyncIterator[bytes]:
        yield packed  # the whole compressed body in one network read

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=one_read(), headers={"content-encoding": "gzip"})

    ticker = Ticker()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ticker.run)
        await anyio.sleep(0.01)
        request = client.build_request("POST", "http://upstream/v1/chat/completions")
        response = await client.send(request, stream=True)
        largest = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal largest
            async for piece in from_httpx(response, sync=False):  # type: ignore[union-attr]
                largest = max(largest, len(piece))
                yield piece

        (result,), _ = await run_async(body())
        tg.cancel_scope.cancel()
    assert result.complete
    assert content(result) == "ab"
    assert largest <= 64 * 1024
    assert ticker.longest < 0.25
