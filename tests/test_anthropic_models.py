"""The Anthropic models: every event, block and delta of the recordings (tests/data/anthropic/,
INDEX.md) structures to its class and writes back as sent; the assembled Message is typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from aggregator._core._anthropic import AnthropicProtocol
from aggregator._core._anthropic import _models as m
from aggregator._core._converter import structure, to_dict
from aggregator._core._engine import Engine
from aggregator._core._limits import DEFAULT_LIMITS

from .conftest import without_nulls

DATA = Path(__file__).parent / "data" / "anthropic"
RECORDINGS = sorted(DATA.glob("*.jsonl"))
FINALS = sorted(DATA.glob("*.final.json"))


def events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def results(pieces: list[Any], *, items: bool = False) -> list[Any]:
    engine = Engine("s")
    out: list[Any] = []
    for piece in pieces:
        out += engine.feed_item(piece) if items else engine.feed(piece)
    out += engine.close()
    return [r for r in out if hasattr(r, "completion")]


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_every_recorded_event_is_its_class_and_writes_back_as_sent(path: Path) -> None:
    protocol = AnthropicProtocol("s", DEFAULT_LIMITS)
    for number, payload in enumerate(events(path), 1):
        event: Any = protocol.event(payload, f"event {number}")
        cls: Any = type(event)
        assert cls is m.EVENTS[payload["type"]]
        if payload["type"] == "content_block_start":
            assert m.BLOCKS[payload["content_block"]["type"]] is type(event.content_block)
        if payload["type"] == "content_block_delta":
            assert m.DELTAS[payload["delta"]["type"]] is type(event.delta)
        assert to_dict(event) == without_nulls(payload)


@pytest.mark.parametrize("path", FINALS, ids=[p.stem for p in FINALS])
def test_the_non_streamed_messages_structure_typed_and_write_back_as_sent(path: Path) -> None:
    final = orjson.loads(path.read_bytes())
    message = structure(without_nulls(final), m.Message)  # as the accumulator does
    for block, sent in zip(message.content, final["content"], strict=True):
        assert type(block) is m.BLOCKS[sent["type"]]
    assert isinstance(message.usage, m.Usage)
    assert to_dict(message) == without_nulls(final)


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_the_assembled_message_is_typed_and_event_objects_assemble_as_bytes_do(
    path: Path,
) -> None:
    sent = events(path)
    from_bytes = results([path.read_bytes()])
    protocol = AnthropicProtocol("s", DEFAULT_LIMITS)
    objects = [protocol.event(e, "") for e in sent]
    from_objects = results(objects, items=True)
    assert [to_dict(r.completion) for r in from_objects] == [
        to_dict(r.completion) for r in from_bytes
    ]
    deltas = [e for e in sent if e["type"] == "message_delta"]
    for result in from_bytes:
        message = result.completion
        assert isinstance(message, m.Message)
        assert all(type(b) is not m.UnknownBlock for b in message.content)
        assert isinstance(message.usage, m.Usage)
        assert message.usage.output_tokens.__class__ is int
    last = from_bytes[-1].completion
    if deltas and "context_management" in deltas[-1]:
        assert isinstance(last.context_management, m.ContextManagement)
    if deltas and deltas[-1]["delta"].get("container"):
        assert isinstance(last.container, m.Container)
        assert to_dict(last.container) == without_nulls(deltas[-1]["delta"]["container"])
    if deltas and "iterations" in deltas[-1].get("usage", {}):
        assert last.usage.iterations == deltas[-1]["usage"]["iterations"]  # only message_delta


START = {
    "type": "message_start",
    "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "c"},
}


def test_unknown_event_block_and_delta_types_are_kept_as_data() -> None:
    lines: list[dict[str, Any]] = [
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "hologram", "x": 1}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "hologram_delta", "y": 2}},
        {"type": "content_block_stop", "index": 0},
        {"type": "weather_report", "sunny": True},
        {"type": "message_stop"},
    ]
    (result,) = results([b"".join(orjson.dumps(e) + b"\n" for e in lines)])
    assert result.complete
    (block,) = result.completion.content
    assert type(block) is m.UnknownBlock
    assert to_dict(block) == {"type": "hologram", "x": 1, "y": 2}
    assert result.completion.extras["unknown_events"] == [{"type": "weather_report", "sunny": True}]
    assert any("hologram_delta" in n for n in result.notes)
    protocol = AnthropicProtocol("s", DEFAULT_LIMITS)
    event: Any = protocol.event(lines[4], "")
    assert type(event) is m.UnknownEvent
    assert to_dict(event) == lines[4]
    delta: Any = protocol.event(lines[2], "")
    assert type(delta.delta) is m.UnknownDelta
    assert to_dict(delta) == lines[2]
