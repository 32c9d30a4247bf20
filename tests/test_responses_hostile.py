"""Hostile input for the Responses protocol, as for chat: indexes a server chose, items and parts
never added, a delta of 200 MB, nesting, too many items; each a clear error with its place, what
was assembled before kept, memory bounded by the limits. Built on an LM Studio recording of
tests/data/responses (vercel/ai, Apache-2.0: see its INDEX.md)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from aggregator import Limits, to_dict
from aggregator._core._engine import Engine
from aggregator._core._errors import ConflictError, LimitError, StreamError
from aggregator._core._results import EndReason, Result

DATA = Path(__file__).parent / "data" / "responses"
BASE = DATA / "lmstudio_gemma_text_no_obfuscation.jsonl"


def _events() -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in BASE.read_bytes().splitlines() if x.strip()]


def _first_delta(events: list[dict[str, Any]]) -> int:
    return next(i for i, e in enumerate(events) if e["type"] == "response.output_text.delta")


def _run(reads: Any, **kw: Any) -> tuple[list[Result], Any]:
    engine = Engine("h", **kw)
    out: list[Any] = []
    for read in reads:
        out += engine.feed(read)
    out += engine.close()
    return [r for r in out if isinstance(r, Result)], out[-1]


def _jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _streamed_text(result: Result) -> str:
    return str(orjson.dumps(to_dict(result.completion)).decode())


def test_an_item_at_output_index_a_billion_allocates_nothing() -> None:
    events = _events()
    at = _first_delta(events)
    far = {
        "type": "response.output_item.added",
        "sequence_number": 9000,
        "output_index": 10**9,
        "item": {"type": "message", "id": "far", "role": "assistant", "content": []},
    }
    cut = [*events[:at], far, *events[at : at + 3]]  # cut off: the terminal is not the answer
    tracemalloc.start()
    try:
        (result,), _ = _run([_jsonl(cut)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    output = to_dict(result.completion)["output"]
    assert [item["id"] for item in output][-1] == "far"  # in output order, after the first
    assert result.reason is EndReason.EXHAUSTED


def test_an_output_index_past_the_limit_fails_the_stream_with_its_place() -> None:
    events = _events()
    at = _first_delta(events)
    far = {
        "type": "response.output_item.added",
        "sequence_number": 9000,
        "output_index": 50,
        "item": {"type": "message", "id": "far", "content": []},
    }
    (result,), _ = _run(
        [_jsonl([*events[: at + 2], far, *events[at + 2 :]])], limits=Limits(max_choice_index=10)
    )
    assert result.reason is EndReason.LIMIT
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_choice_index"
    assert "line" in result.error.where
    first = events[at]["delta"] + events[at + 1]["delta"]
    assert first in _streamed_text(result)  # what came before is kept


def test_too_many_items_and_too_many_parts_are_limits() -> None:
    events = _events()
    at = _first_delta(events)
    items = [
        {
            "type": "response.output_item.added",
            "sequence_number": 9000 + i,
            "output_index": 1 + i,
            "item": {"type": "message", "id": f"m{i}", "content": []},
        }
        for i in range(5)
    ]
    (result,), _ = _run(
        [_jsonl([*events[:at], *items, *events[at:]])], limits=Limits(max_choices=3)
    )
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_choices"
    parts = [
        {
            "type": "response.content_part.added",
            "sequence_number": 9000 + i,
            "output_index": 0,
            "item_id": "x",
            "content_index": 1 + i,
            "part": {"type": "output_text", "text": ""},
        }
        for i in range(5)
    ]
    (result,), _ = _run(
        [_jsonl([*events[:at], *parts, *events[at:]])], limits=Limits(max_tool_calls=3)
    )
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_tool_calls"


def test_deltas_for_an_item_never_added_and_a_part_that_does_not_exist() -> None:
    events = _events()
    at = _first_delta(events)
    bad = [
        {
            "type": "response.function_call_arguments.delta",
            "sequence_number": 9000,
            "output_index": 7,
            "item_id": "fc_never",
            "delta": "{",
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 9001,
            "output_index": 0,
            "content_index": 3,
            "item_id": "x",
            "delta": "lost",
        },
        {
            "type": "response.output_text.annotation.added",
            "sequence_number": 9002,
            "output_index": 0,
        },
    ]
    (result,), report = _run([_jsonl([*events[: at + 1], *bad, *events[at + 1 :]])])
    assert len(result.problems) == 3
    assert all(isinstance(p, ConflictError) for p in result.problems)
    lines = [p.where.split(" (")[0] for p in result.problems]
    assert lines == [f"line {at + 2 + k}" for k in range(3)], lines
    assert "output_index 7" in result.problems[0].detail
    assert "content_index 3" in result.problems[1].detail
    assert not result.complete
    assert result.reason is EndReason.DONE
    assert to_dict(result.completion)["output"]  # the whole response is still there
    assert report.error is None


def _huge_delta(before: bytes, size: int, read: int) -> Iterator[bytes]:
    yield before
    yield b'{"type":"response.output_text.delta","sequence_number":99,"output_index":0,'
    yield b'"content_index":0,"item_id":"x","delta":"'
    block = b"x" * read
    for _ in range(size // read):
        yield block
    yield b'"}\n'


def test_a_200_mb_delta_is_refused_with_its_place_in_bounded_memory() -> None:
    events = _events()
    at = _first_delta(events)
    before = _jsonl(events[: at + 2])
    tracemalloc.start()
    try:
        (result,), report = _run(_huge_delta(before, 200 * 2**20, 2**20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20  # the 16 MB line limit, not 200 MB
    assert isinstance(result.error, StreamError)
    assert f"line {at + 3}" in str(result.error)
    assert "long" in str(result.error) or "limit" in str(result.error)
    first = events[at]["delta"] + events[at + 1]["delta"]
    assert first in _streamed_text(result)
    assert report.error is result.error


def test_nesting_deeper_than_the_limit_is_refused_with_its_place() -> None:
    events = _events()
    at = _first_delta(events)
    deep: Any = "x"
    for _ in range(60):
        deep = {"a": [deep]}
    item = {
        "type": "response.output_item.added",
        "sequence_number": 9000,
        "output_index": 3,
        "item": {"type": "message", "id": "deep", "content": [], "nested": deep},
    }
    (result,), report = _run([_jsonl([*events[: at + 1], item, *events[at + 1 :]])], strict=False)
    assert any(isinstance(p, LimitError) and p.limit == "max_depth" for p in result.problems)
    assert any(f"line {at + 2}" in p.where for p in result.problems)
    assert result.reason is EndReason.DONE
    assert report.error is None


def test_an_event_without_a_type_is_a_located_structure_error() -> None:
    events = _events()
    at = _first_delta(events)
    (result,), report = _run([_jsonl([*events[:at], {"sequence_number": 1}, *events[at:]])])
    assert result.reason is EndReason.ERROR
    assert isinstance(report.error, StreamError)
    assert f"line {at + 1}" in report.error.where
    (lenient,), report = _run([_jsonl([*events[:at], {"type": 7}, *events[at:]])], strict=False)
    assert lenient.reason is EndReason.DONE
    assert len(lenient.problems) == 1
