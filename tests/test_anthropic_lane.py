"""The Anthropic byte-shape lane is a branch of the one path: with it on or off, every stream
assembles to the same results (recordings in tests/data/anthropic/, INDEX.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator._core._anthropic import Lane
from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator._core._limits import DEFAULT_LIMITS, Limits

DATA = Path(__file__).parent / "data" / "anthropic"
RECORDINGS = sorted(DATA.glob("*.jsonl"))


def sse(raw: bytes) -> bytes:
    events = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def outcome(
    pieces: list[bytes], *, fast_lane: bool, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Any], int]:
    """What the engine gives for ``pieces``, as comparable data, and how many payloads its
    lane merged."""
    engine = Engine("s", fast_lane=fast_lane, limits=limits)
    out: list[Any] = []
    for piece in pieces:
        out += engine.feed(piece)
    out += engine.close()
    results = [
        (
            to_dict(r.completion),
            r.reason,
            r.where,
            r.chunks,
            [str(p) for p in r.problems],
            list(r.notes),
            str(r.error),
        )
        for r in out
        if hasattr(r, "completion")
    ]
    lane = engine._lane
    return results, lane.merged if isinstance(lane, Lane) else 0


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_the_lane_changes_nothing_on_a_whole_recording_and_merges_its_deltas(path: Path) -> None:
    raw = path.read_bytes()
    for data in (raw, sse(raw)):
        fast, merged = outcome([data], fast_lane=True)
        slow, _ = outcome([data], fast_lane=False)
        assert fast == slow
        deltas = raw.count(b'"content_block_delta"')
        if deltas > 20:
            assert merged > deltas // 2  # the lane took most of them


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10**9), max_size=40), as_sse=st.booleans())
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_the_lane_changes_nothing_on_split_reads(path: Path, cuts: list[int], as_sse: bool) -> None:
    raw = path.read_bytes()
    data = sse(raw) if as_sse else raw
    pieces = split(data, cuts)
    assert outcome(pieces, fast_lane=True)[0] == outcome(pieces, fast_lane=False)[0]


_START = {
    "type": "message_start",
    "message": {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "c",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    },
}
_BLOCKS = {
    "text_delta": {"type": "text", "text": ""},
    "thinking_delta": {"type": "thinking", "thinking": "", "signature": ""},
    "signature_delta": {"type": "thinking", "thinking": "", "signature": ""},
    "input_json_delta": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
}
_FIELD = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}
# strings a lane must not cut wrongly: quotes, escapes, keys inside the text, unicode
_TEXTS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['"text":"x"', "\\", '\\"', "}}", '"}', "\u2028", "é", "", '{"a": [1, ']),
)
# a fragment's value as sent: usually a string, sometimes something the full path refuses
_VALUES = st.one_of(
    _TEXTS,
    _TEXTS,
    _TEXTS,
    st.integers(min_value=-(2**40), max_value=2**40),
    st.none(),
    st.just(["x"]),
)


@st.composite
def delta_streams(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(sorted(_BLOCKS)))
    index = draw(st.sampled_from([0, 1, 7, 10**9]))
    lines = [
        orjson.dumps(_START),
        orjson.dumps(
            {"type": "content_block_start", "index": index, "content_block": _BLOCKS[kind]}
        ),
    ]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        value = draw(_VALUES)
        which = draw(st.sampled_from([index, index, index, index + 1]))
        event: dict[str, Any] = {
            "type": "content_block_delta",
            "index": which,
            "delta": {"type": kind, _FIELD[kind]: value},
        }
        line = orjson.dumps(event)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            line = line.replace(b'"index"', b'"ind\\u0065x"')  # an escape outside the string
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            lines.append(orjson.dumps({"type": "content_block_stop", "index": which}))
        lines.append(line)
    if draw(st.booleans()):
        lines.append(orjson.dumps({"type": "content_block_stop", "index": index}))
        lines.append(orjson.dumps({"type": "message_stop"}))
    return b"".join(line + b"\n" for line in lines)


@settings(max_examples=300, deadline=None)
@given(data=delta_streams(), limit=st.sampled_from([None, 5, 40]))
def test_the_lane_changes_nothing_on_generated_deltas(data: bytes, limit: int | None) -> None:
    limits = Limits(max_block_chars=limit)
    assert (
        outcome([data], fast_lane=True, limits=limits)[0]
        == (outcome([data], fast_lane=False, limits=limits)[0])
    )
