"""Hostile Anthropic streams: a clear error with the place, the partial kept, memory bounded."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator._core._errors import LimitError
from aggregator._core._limits import DEFAULT_LIMITS, Limits
from aggregator._core._results import EndReason

MIB = 1 << 20
START = orjson.dumps(
    {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "c",
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
    }
)
TOOL = orjson.dumps(
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    }
)


def line(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event) + b"\n"


def run(pieces: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Any], int]:
    """The results, and the peak of memory allocated while feeding (bytes)."""
    engine = Engine("hostile", limits=limits)
    out: list[Any] = []
    tracemalloc.start()
    try:
        for piece in pieces:
            out += engine.feed(piece)
        out += engine.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return [r for r in out if hasattr(r, "completion")], peak


def test_block_indexes_of_a_billion_allocate_nothing() -> None:
    pieces = [START + b"\n"]
    for index in (10**9, 2 * 10**9, 2**62):
        pieces.append(
            line(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
        )
        pieces.append(
            line(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": "hi"},
                }
            )
        )
    (result,), peak = run(pieces)
    assert peak < 1 * MIB
    assert [b["text"] for b in to_dict(result.completion)["content"]] == ["hi"] * 3
    assert not result.problems


def test_more_blocks_than_the_limit_fail_the_stream_at_their_line_the_partial_kept() -> None:
    blocks = [
        line({"type": "content_block_start", "index": i, "content_block": {"type": "text"}})
        for i in range(0, 60, 2)
    ]
    (result,), _ = run([START + b"\n", *blocks], Limits(max_blocks=25))
    assert result.reason is EndReason.LIMIT
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_blocks"
    assert str(result.error) == "hostile, line 27 (event 27): more than 25 content blocks"
    assert len(result.completion.content) == 25


def test_a_delta_for_a_block_never_started_is_a_placed_problem_and_changes_nothing() -> None:
    stray = line(
        {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "x"}}
    )
    stop = line({"type": "content_block_stop", "index": 4})
    (result,), _ = run([START + b"\n", stray, stop, b'{"type":"message_stop"}\n'])
    assert result.reason is EndReason.DONE
    assert result.finished
    assert result.completion.content == []
    assert [str(p) for p in result.problems] == [
        "hostile, line 2 (event 2): a delta for block 3, which is not open",
        "hostile, line 3 (event 3): a stop for block 4, which is not open",
    ]


def test_a_200_mb_partial_json_line_is_refused_at_its_line_in_bounded_memory() -> None:
    def pieces() -> Iterator[bytes]:
        yield START + b"\n" + TOOL + b"\n"
        yield b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
        yield b'"partial_json":"{\\"a\\": \\"'
        chunk = b"x" * MIB
        for _ in range(200):
            yield chunk
        yield b'\\"}"}}\n'
        yield b'{"type":"content_block_stop","index":0}\n{"type":"message_stop"}\n'

    (result,), peak = run(pieces())
    assert peak < 40 * MIB  # the line limit (16 MiB) and a piece, never the 200 MB
    # the framing refuses the line (the engine's own error for it), the message before it kept
    assert str(result.error) == "hostile, line 3: line longer than 16777216 bytes"
    assert not result.complete
    (block,) = to_dict(result.completion)["content"]
    assert block["type"] == "tool_use"


def test_200_mb_of_partial_json_fragments_stop_at_the_block_limit() -> None:
    fragment = line(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "x" * MIB},
        }
    )

    def pieces() -> Iterator[bytes]:
        yield START + b"\n" + TOOL + b"\n"
        for _ in range(200):
            yield fragment

    limits = Limits(max_block_chars=8 * MIB)
    (result,), peak = run(pieces(), limits)
    assert peak < 40 * MIB
    assert isinstance(result.error, LimitError)
    assert result.error.limit == "max_block_chars"
    assert str(result.error).startswith("hostile, line 11 (event 11): block 0 holds more than")
    (block,) = to_dict(result.completion)["content"]
    assert len(block["partial_json"]) == 8 * MIB  # the fragments before the limit, kept
    assert any("ended inside its tool input" in str(p) for p in result.problems)


def test_usage_counts_that_are_strings_or_negative_are_placed_and_the_rest_is_taken() -> None:
    bad_start = orjson.loads(START)
    bad_start["message"]["usage"] = {"input_tokens": "many", "output_tokens": 1}
    pieces = [
        line(bad_start),
        line(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": -5},
            }
        ),
        line({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}),
        line({"type": "message_delta", "delta": {}, "usage": {"cache_read_input_tokens": True}}),
        b'{"type":"message_stop"}\n',
    ]
    (result,), _ = run(pieces)
    message = to_dict(result.completion)
    assert (message["id"], message["model"], message["stop_reason"]) == ("m", "c", "end_turn")
    assert message["usage"] == {"output_tokens": 7}
    assert [str(p) for p in result.problems] == [
        "hostile, line 1 (event 1): usage input_tokens is not a count: 'many'",
        "hostile, line 2 (event 2): usage output_tokens is not a count: -5",
        "hostile, line 4 (event 4): usage cache_read_input_tokens is not a count: True",
    ]


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_KEYS = ["type", "text", "index", "delta", "content_block", "usage", "message", "model", "id"]
_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text",
    "tool_use",
    "text_delta",
    "input_json_delta",
    "citations_delta",
    "compaction_delta",
    "thinking",
    "mystery",
]


@st.composite
def _values(draw: st.DrawFn, depth: int = 0) -> Any:
    if depth < 3 and draw(st.booleans()):
        keys = draw(
            st.lists(st.sampled_from([*_KEYS, "citation", "partial_json", "input"]), max_size=5)
        )
        out = {}
        for key in keys:
            if key == "type":
                out[key] = draw(st.sampled_from(_TYPES) | _ANY_JSON)
            elif key == "index":
                out[key] = draw(st.sampled_from([0, 1, 10**9, -1, "0", None, True]))
            else:
                out[key] = draw(_values(depth + 1))
        return out
    return draw(_ANY_JSON)


@settings(max_examples=400, deadline=None)
@given(
    events=st.lists(_values(), max_size=12),
    strict=st.booleans(),
)
def test_no_sequence_of_payloads_escapes_as_anything_but_a_result(
    events: list[Any], strict: bool
) -> None:
    data = START + b"\n" + b"".join(orjson.dumps(e) + b"\n" for e in events)
    engine = Engine("fuzz", strict=strict)
    out = engine.feed(data) + engine.close()  # never raises for upstream data
    for result in out:
        if hasattr(result, "completion"):
            to_dict(result.completion)  # and every result writes back
