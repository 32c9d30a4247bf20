"""Every limit: passing it fails the stream with a LimitError naming the place, and keeps what
was assembled; memory never grows with a number the server chose."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aggregator
from aggregator import Assembler, EndReason, LimitError, Limits, Result, SourceReport, to_dict


def chunk(cid: str = "c", index: int = 0, **delta: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta}],
    }


def run(
    chunks: list[Any], limits: Limits, *, strict: bool = True, interleaved: bool = False
) -> list[Result]:
    """Feed ``chunks`` (bytes, or chunk dicts: dict number n is ``item n``) and close."""
    assembler = Assembler("src", limits=limits, strict=strict, interleaved=interleaved)
    results: list[Result] = []
    for c in chunks:
        if isinstance(c, bytes):
            results += assembler.feed(c)
        else:
            results += assembler.add(c)
    results += assembler.close()
    assert assembler.report is not None
    assert assembler.report.completions == len(results)
    return results


def test_limits_validate_themselves() -> None:
    with pytest.raises(ValueError, match="max_choices must be positive"):
        Limits(max_choices=0)
    assert Limits(max_choices=None).max_choices is None


def test_max_choices_keeps_what_was_assembled() -> None:
    (r,) = run([chunk(index=i, content=str(i)) for i in range(5)], Limits(max_choices=2))
    assert r.reason is EndReason.LIMIT
    assert isinstance(r.error, LimitError)
    assert r.error.limit == "max_choices"
    assert str(r.error) == "src, item 3: more than 2 choices"
    assert [c["message"]["content"] for c in to_dict(r.completion)["choices"]] == ["0", "1"]
    assert not r.complete


def test_max_choice_index_and_negative_indexes() -> None:
    (r,) = run(
        [chunk(index=0, content="a"), chunk(index=8, content="b")], Limits(max_choice_index=7)
    )
    assert r.reason is EndReason.LIMIT
    assert str(r.error) == "src, item 2: choice index 8 outside 0..7"
    (r,) = run([chunk(index=-1, content="a")], Limits())
    assert r.reason is EndReason.LIMIT


def test_huge_index_costs_what_a_small_one_costs() -> None:
    def peak(index: int) -> int:
        tracemalloc.start()
        run([chunk(index=index, content="x", tool_calls=[{"index": index, "id": "t"}])], Limits())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, huge = peak(1), peak(1_000_000_000)
    assert huge < small * 1.2 + 4096


def test_max_tool_calls_and_index() -> None:
    calls = [
        chunk(tool_calls=[{"index": i, "id": f"t{i}", "function": {"name": "f"}}]) for i in range(4)
    ]
    (r,) = run(calls, Limits(max_tool_calls=3))
    assert r.reason is EndReason.LIMIT
    assert str(r.error) == "src, item 4: more than 3 tool calls in one choice"
    assert len(to_dict(r.completion)["choices"][0]["message"]["tool_calls"]) == 3
    (r,) = run([chunk(tool_calls=[{"index": 99, "id": "t"}])], Limits(max_tool_call_index=10))
    assert isinstance(r.error, LimitError)
    assert r.error.limit == "max_tool_call_index"


def test_chunks_after_a_limit_are_not_merged() -> None:
    chunks = [chunk(index=0, content="a"), chunk(index=1, content="b"), chunk(index=0, content="c")]
    (r,) = run(chunks, Limits(max_choices=1))
    assert to_dict(r.completion)["choices"][0]["message"]["content"] == "a"


def test_max_depth() -> None:
    deep: Any = "x"
    for _ in range(10):
        deep = {"k": deep}
    payload = chunk(content="a")
    payload["extra"] = deep
    (r,) = run([chunk(content="ok"), payload], Limits(max_depth=8))
    assert r.reason is EndReason.LIMIT
    assert isinstance(r.error, LimitError)
    assert r.error.limit == "max_depth"
    assert to_dict(r.completion)["choices"][0]["message"]["content"] == "ok"
    (r,) = run([chunk(content="ok"), payload], Limits(max_depth=8), strict=False)
    assert r.reason is EndReason.EXHAUSTED
    assert [p.detail for p in r.problems] == ["JSON nested deeper than 8 levels"]


def test_max_line_in_bytes() -> None:
    line = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}'
    big = b"data: " + b"x" * 200 + b"\n\n"
    results = run([line + b"\n\n", big, b"data: [DONE]\n\n"], Limits(max_line=150))
    (r,) = results
    assert r.reason is EndReason.ERROR  # a broken line is malformed input, not a limit on state
    assert str(r.error) == "src, line 3: line longer than 150 bytes"


def test_max_streams_per_source() -> None:
    chunks = [chunk(f"c{i}", content=str(i)) for i in range(4)]
    results = run(chunks, Limits(max_streams=2), interleaved=True)
    reasons = sorted((r.completion.id, r.reason.value) for r in results)
    assert [r for r in reasons if r[1] != "limit"] == [("c0", "exhausted"), ("c1", "exhausted")]
    refused = [r for r in results if r.reason is EndReason.LIMIT]
    assert [str(r.error) for r in refused] == [
        "src, item 3: too many streams open at once; completion 'c2' refused",
        "src, item 4: too many streams open at once; completion 'c3' refused",
    ]
    assert [r.key for r in refused] == [("src", 3), ("src", 4)]
    assert all(isinstance(r.error, LimitError) and r.error.limit == "max_streams" for r in refused)


@pytest.mark.anyio
async def test_max_open_streams_across_a_fan_in() -> None:
    sources = {f"s{i}": [chunk(f"c{i}", content="x")] for i in range(5)}
    hold = anyio.Event()

    async def slow() -> AsyncIterator[dict[str, Any]]:
        yield chunk("held", content="y")
        await hold.wait()

    sources_any: dict[str, Any] = {"first": slow(), **sources}
    got: list[Result] = []
    reports: dict[str, SourceReport] = {}
    async with aggregator.fan_in(sources_any, limits=Limits(max_open_streams=1)) as items:
        async for item in items:
            if isinstance(item, SourceReport):
                assert item.source not in reports  # one report per source
                reports[item.source] = item
                continue
            assert isinstance(item, Result)
            assert item.source not in reports  # a source's report comes after its results
            got.append(item)
            if len(got) == 5:
                hold.set()
    assert sorted((r.source, r.completion.id, r.reason.value) for r in got) == [
        ("first", "held", "exhausted"),
        *[(f"s{i}", "", "limit") for i in range(5)],
    ]
    refused = [r.error for r in got if r.reason is EndReason.LIMIT]
    assert len(refused) == 5
    assert {e.limit for e in refused if isinstance(e, LimitError)} == {"max_open_streams"}
    # a refused completion is a result of its source, not trouble of the source itself
    assert sorted(reports) == sorted(sources_any)
    assert {(r.reason, r.error, r.problems, r.completions) for r in reports.values()} == {
        (EndReason.EXHAUSTED, None, (), 1)
    }


@pytest.mark.anyio
async def test_idle_timeout_and_deadline_keep_the_partial() -> None:
    async def stalls() -> AsyncIterator[dict[str, Any]]:
        yield chunk(content="partial")
        await anyio.sleep(10)
        yield chunk(content="never")  # pragma: no cover

    with anyio.fail_after(5):
        (r,), report = await aggregator.assemble_all(
            stalls(), name="slow", limits=Limits(idle_timeout=0.05)
        )
    assert r.reason is EndReason.LIMIT
    assert str(r.error) == "slow, after item 1: nothing received for 0.05 s (idle_timeout)"
    assert to_dict(r.completion)["choices"][0]["message"]["content"] == "partial"
    # the limit ended the open completion and the source: the same error on both
    assert (report.source, report.reason, report.where, report.error, report.completions) == (
        "slow",
        EndReason.LIMIT,
        "after item 1",
        r.error,
        1,
    )

    async def trickles() -> AsyncIterator[dict[str, Any]]:
        for i in range(1000):
            await anyio.sleep(0.01)
            yield chunk(content=str(i % 10))

    with anyio.fail_after(5):
        (r,), report = await aggregator.assemble_all(
            trickles(), name="t", limits=Limits(deadline=0.2)
        )
    assert r.reason is EndReason.LIMIT
    assert isinstance(r.error, LimitError)
    assert r.error.limit == "deadline"
    assert 3 <= r.chunks < 30
    assert (report.reason, report.error, report.completions) == (EndReason.LIMIT, r.error, 1)


@pytest.mark.anyio
async def test_a_time_limit_with_no_completion_open_is_the_reports_error() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await anyio.sleep(10)
        yield b""  # pragma: no cover

    with anyio.fail_after(5):
        found, report = await aggregator.assemble_all(
            silent(), name="quiet", limits=Limits(idle_timeout=0.05)
        )
    assert found == []
    assert report.reason is EndReason.LIMIT
    assert isinstance(report.error, LimitError)
    assert report.error.limit == "idle_timeout"
    assert str(report.error) == "quiet, after item 0: nothing received for 0.05 s (idle_timeout)"
    assert not report.ok


def test_command_idle_timeout_on_a_silent_pipe(tmp_path: Any) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            'import sys, time; sys.stdout.write(\'data: {"id":"x"\'); '
            "sys.stdout.flush(); time.sleep(5)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "aggregator", "assemble", "--idle-timeout", "0.3", "-"],
            stdin=writer.stdout,
            capture_output=True,
            timeout=4,
            check=False,
        )
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        "<stdin>, after item 1: nothing received for 0.3 s (idle_timeout)"
    ]
