"""Load: 10,000 streams open at once through one ``fan_in``, 1% of them faulty.

Every source is an async generator that yields its first chunk, then waits until all 10,000
sources have yielded theirs (so every stream is open at the same time, each with a chunk merged),
then delivers the rest. Sources come as SSE bytes, chunk dicts and JSON Lines bytes (chat and
text completions, 2 to 5 chunks each). One source in a hundred fails: it raises mid-stream,
sends bytes that are not JSON, stops without ``[DONE]``, or sends an error payload.

Every result is checked as it arrives against a dict built here from the source's number alone:
a healthy completion must be exact and complete, a faulty one reported with the right reason,
error and place, its partial completion exactly what was delivered. Nothing is kept but a count
per outcome, so the growth of resident memory is what the package holds for 10,000 open streams.

Memory is the resident set size (``/proc/self/statm``), sampled when every stream is open and
every 500 results, against the size before the run: ``tracemalloc`` would be exact but makes the
run three times slower (over 30 s per backend on a 2-core machine), and ``ru_maxrss`` only grows,
so earlier tests in the same process could hide this one's peak.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

import aggregator
from aggregator import (
    DecodeError,
    EndReason,
    Limits,
    Result,
    SourceReport,
    StreamError,
    UpstreamError,
    to_dict,
)

STREAMS = 10_000
#: One source in a hundred is faulty, each kind in turn.
FAULTY_EVERY = 100
FAULTS = ("raise", "garbage", "cut_off", "error_payload")
#: The bound on the growth of resident memory (measured: about 130 MB, 13 kB per open stream,
#: with CPython 3.11 on both backends).
MEMORY_BOUND = 200 * 1024 * 1024
#: The bound on the wall time of one run (measured: 10 to 12 s on a loaded 2-core machine).
TIME_BOUND = 60.0

JSON = dict[str, Any]


def name_of(number: int) -> str:
    return f"src-{number:05d}"


def fault_of(number: int) -> str | None:
    if number % FAULTY_EVERY != 37:
        return None
    return FAULTS[number // FAULTY_EVERY % len(FAULTS)]


def framing_of(number: int) -> str:
    """SSE chat, chat chunk dicts, or JSON Lines text completions; faulty ones but ``raise``
    are SSE (the faults are SSE's)."""
    fault = fault_of(number)
    if fault is not None and fault != "raise":
        return "sse"
    return ("sse", "dicts", "jsonl")[number % 3]


def chunk_count(number: int) -> int:
    return 2 + number % 4


def delivered_count(number: int) -> int:
    """How many chunks a source delivers: all, or (faulty) at least one but not the last."""
    if fault_of(number) is None:
        return chunk_count(number)
    return 1 + number // FAULTY_EVERY % (chunk_count(number) - 1)


def words(number: int) -> list[str]:
    return [f"w{number}.{k} " for k in range(chunk_count(number))]


def has_usage(number: int) -> bool:
    return number % 7 == 0


def usage_of(number: int) -> JSON:
    count = chunk_count(number)
    return {"prompt_tokens": 3, "completion_tokens": count, "total_tokens": 3 + count}


def chunk(number: int, k: int) -> JSON:
    """Chunk ``k`` of source ``number``: the role on the first, the finish reason (and maybe
    a usage report, as DeepSeek sends it) on the last."""
    last = k == chunk_count(number) - 1
    header: JSON = {
        "id": f"cmpl-{number}",
        "created": 1_700_000_000 + number,
        "model": "load-model",
    }
    if framing_of(number) == "jsonl":
        choice: JSON = {"index": 0, "text": words(number)[k], "logprobs": None}
        choice["finish_reason"] = "length" if last else None
        out = {**header, "object": "text_completion", "choices": [choice]}
    else:
        delta: JSON = {"content": words(number)[k]}
        if k == 0:
            delta["role"] = "assistant"
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        out = {**header, "object": "chat.completion.chunk", "choices": [choice]}
    if last and has_usage(number):
        out["usage"] = usage_of(number)
    return out


def expected(number: int) -> JSON:
    """``to_dict`` of the completion of what source ``number`` delivered, built by hand."""
    count = delivered_count(number)
    done = count == chunk_count(number)
    text = "".join(words(number)[:count])
    out: JSON = {"id": f"cmpl-{number}"}
    if framing_of(number) == "jsonl":
        choice: JSON = {"index": 0, "text": text}
        if done:
            choice["finish_reason"] = "length"
        out.update(object="text_completion", created=1_700_000_000 + number, model="load-model")
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        if done:
            choice["finish_reason"] = "stop"
        out.update(object="chat.completion", created=1_700_000_000 + number, model="load-model")
    out["choices"] = [choice]
    if done and has_usage(number):
        out["usage"] = usage_of(number)
    return out


def encoded(number: int, payload: JSON) -> Any:
    framing = framing_of(number)
    if framing == "sse":
        return b"data: " + orjson.dumps(payload) + b"\n\n"
    if framing == "jsonl":
        return orjson.dumps(payload) + b"\n"
    return payload


def resident() -> int:
    """The resident memory of this process now, in bytes (Linux); elsewhere its peak so far."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Memory:
    """The largest growth of resident memory seen since it was made."""

    def __init__(self) -> None:
        gc.collect()
        self.start = resident()
        self.peak = self.start

    def sample(self) -> None:
        self.peak = max(self.peak, resident())

    @property
    def growth(self) -> int:
        return self.peak - self.start


class Barrier:
    """Every source waits here after its first chunk until all of them have got there."""

    def __init__(self, parties: int, memory: Memory) -> None:
        self.waiting = 0
        self.parties = parties
        self.memory = memory
        self.event = anyio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        if self.waiting == self.parties:
            self.memory.sample()  # every stream is open
            self.event.set()
        await self.event.wait()


def tail(number: int) -> list[bytes]:
    """What a source sends after its chunks: ``[DONE]``, or its fault."""
    fault = fault_of(number)
    if fault == "garbage":
        return [b"data: \xff\xfe<html>502 Bad Gateway</html>\n\n"]
    if fault == "error_payload":
        return [b'data: {"error": {"message": "overloaded", "code": 529}}\n\n']
    if fault is None and framing_of(number) == "sse":
        return [b"data: [DONE]\n\n"]
    return []  # JSON Lines and dicts just end; "cut_off" ends without [DONE]; "raise" raises


async def source(number: int, barrier: Barrier) -> AsyncIterator[Any]:
    """The first chunk, then (once every source has sent its first) the rest in one read, or
    one dict at a time."""
    yield encoded(number, chunk(number, 0))
    await barrier.wait()
    rest = [encoded(number, chunk(number, k)) for k in range(1, delivered_count(number))]
    if framing_of(number) == "dicts":
        for item in rest:
            yield item
    elif rest or tail(number):
        yield b"".join([*rest, *tail(number)])
    if fault_of(number) == "raise":
        raise RuntimeError(f"connection reset ({number})")


async def sources(barrier: Barrier) -> AsyncIterator[tuple[str, AsyncIterator[Any]]]:
    for number in range(STREAMS):
        yield name_of(number), source(number, barrier)


def check(result: Result) -> str:
    """Check one result against its source; return its outcome's name."""
    number = int(result.source.removeprefix("src-"))
    assert result.source == name_of(number)
    assert result.key == (name_of(number), 1)
    assert to_dict(result.completion) == expected(number)
    count = delivered_count(number)
    assert result.chunks == count
    assert result.problems == ()
    assert result.notes == ()
    fault = fault_of(number)
    if fault is None:
        assert result.error is None
        assert result.complete
        assert result.finished
        if framing_of(number) == "sse":
            assert result.reason is EndReason.DONE
        else:
            assert result.reason is EndReason.EXHAUSTED
        return "healthy"
    assert not result.complete
    assert not result.finished
    event_place = f"line {2 * count + 1} (event {count + 1})"
    error = result.error
    if fault == "raise":
        assert result.reason is EndReason.ERROR
        assert type(error) is StreamError
        assert str(error) == (
            f"{name_of(number)}, after item {count}: "
            f"the source raised RuntimeError: connection reset ({number})"
        )
    elif fault == "garbage":
        assert result.reason is EndReason.ERROR
        assert type(error) is DecodeError
        assert str(error).startswith(f"{name_of(number)}, {event_place}: invalid JSON: ")
    elif fault == "error_payload":
        assert result.reason is EndReason.ERROR
        assert type(error) is UpstreamError
        assert str(error) == f"{name_of(number)}, {event_place}: upstream error: overloaded"
        assert error.payload == {"message": "overloaded", "code": 529}
    else:
        assert result.reason is EndReason.CUT_OFF
        assert error is None
        assert result.where == f"line {2 * count}"
    return fault


def check_report(report: SourceReport, errors: dict[str, StreamError | None]) -> str:
    """Check the report of a source whose result came first (its error is in ``errors``);
    return its outcome's name."""
    number = int(report.source.removeprefix("src-"))
    assert report.source == name_of(number)
    assert report.source in errors  # the result came before the report
    assert report.completions == 1
    assert report.problems == ()
    fault = fault_of(number)
    if fault is None:
        assert report.ok
        assert report.error is None
        sse = framing_of(number) == "sse"
        assert report.reason is (EndReason.DONE if sse else EndReason.EXHAUSTED)
        return "healthy"
    if fault == "cut_off":  # the completion is incomplete; the source had no trouble of its own
        assert report.ok
        assert report.reason is EndReason.CUT_OFF
        assert report.error is None
        assert report.where == f"line {2 * delivered_count(number)}"
    else:  # the error that ended the source ended its completion: the same one
        assert not report.ok
        assert report.reason is EndReason.ERROR
        assert report.error is not None
        assert report.error is errors[report.source]
    return fault


def expected_outcomes() -> Counter[str]:
    return Counter(fault_of(number) or "healthy" for number in range(STREAMS))


@pytest.mark.anyio
async def test_ten_thousand_streams_at_once() -> None:
    memory = Memory()
    barrier = Barrier(STREAMS, memory)
    outcomes: Counter[str] = Counter()
    reported: Counter[str] = Counter()
    #: the error of each source's result, until its report came
    errors: dict[str, StreamError | None] = {}
    started = time.perf_counter()
    with anyio.fail_after(TIME_BOUND):
        async with aggregator.fan_in(
            sources(barrier),
            max_sources=STREAMS,
            limits=Limits(max_open_streams=STREAMS),  # exactly enough: none may leak
        ) as items:
            async for item in items:
                if isinstance(item, SourceReport):
                    reported[check_report(item, errors)] += 1
                    del errors[item.source]
                    continue
                assert isinstance(item, Result), item
                assert item.source not in errors  # one completion per source
                outcomes[check(item)] += 1
                errors[item.source] = item.error
                if sum(outcomes.values()) % 500 == 0:
                    memory.sample()
    elapsed = time.perf_counter() - started

    assert barrier.event.is_set()  # all 10,000 streams were open at the same time
    assert barrier.waiting == STREAMS
    assert sum(outcomes.values()) == STREAMS
    assert outcomes == expected_outcomes()
    assert reported == outcomes  # every source reported once, after its result
    assert errors == {}
    assert outcomes["healthy"] == STREAMS - STREAMS // FAULTY_EVERY
    assert all(outcomes[fault] == STREAMS // FAULTY_EVERY // len(FAULTS) for fault in FAULTS)
    assert memory.growth < MEMORY_BOUND, f"resident memory grew {memory.growth / 2**20:.0f} MB"
    assert elapsed < TIME_BOUND
