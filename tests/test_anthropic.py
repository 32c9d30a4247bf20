"""The Anthropic Messages stream protocol, on the recordings in tests/data/anthropic/ (INDEX.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator._core._limits import DEFAULT_LIMITS, Limits

from .conftest import without_nulls

DATA = Path(__file__).parent / "data" / "anthropic"
RECORDINGS = sorted(DATA.glob("*.jsonl"))


def run(
    name: str, pieces: list[bytes], limits: Limits = DEFAULT_LIMITS, *, fast_lane: bool = True
) -> tuple[Engine, list[Any]]:
    engine = Engine(name, limits=limits, fast_lane=fast_lane)
    out: list[Any] = []
    for piece in pieces:
        out += engine.feed(piece)
    out += engine.close()
    return engine, [o for o in out if hasattr(o, "completion")]


def as_json(result: Any) -> dict[str, Any]:
    """The result's message as the API's JSON."""
    return to_dict(result.completion)


def expected(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An independent, naive fold of the recording: per message, the block types, texts and
    tool inputs, and the last usage's output tokens."""
    messages: list[dict[str, Any]] = []
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            prefilled = dict(enumerate(event["message"].get("content") or []))
            messages.append({"blocks": prefilled, "json": {}, "output": None})
        elif kind == "content_block_start":
            messages[-1]["blocks"][event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            block = messages[-1]["blocks"][event["index"]]
            delta = event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                messages[-1]["json"].setdefault(event["index"], "")
                messages[-1]["json"][event["index"]] += delta["partial_json"]
        elif kind == "message_delta" and "usage" in event:
            messages[-1]["output"] = event["usage"].get("output_tokens")
    for message in messages:
        for index, text in message["json"].items():
            message["blocks"][index]["input"] = orjson.loads(text) if text else {}
    return messages


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_each_recording_assembles_whole_split_and_as_sse(path: Path) -> None:
    raw = path.read_bytes()
    events = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    want = expected(events)
    sse = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )
    for data, step in ((raw, len(raw)), (raw, 7), (raw, 1013), (sse, len(sse)), (sse, 11)):
        engine, results = run(path.name, [data[i : i + step] for i in range(0, len(data), step)])
        assert engine.protocol == "anthropic"
        assert len(results) == len(want)
        for result, message in zip(results, want, strict=True):
            assert result.complete
            content = as_json(result)["content"]
            blocks = [message["blocks"][i] for i in sorted(message["blocks"])]
            assert [b["type"] for b in content] == [b["type"] for b in blocks]
            for got, block in zip(content, blocks, strict=True):
                if block["type"] == "text":
                    assert got["text"] == block["text"]
                if "input" in block:
                    assert got["input"] == block["input"]
            if message["output"] is not None:
                assert as_json(result)["usage"]["output_tokens"] == message["output"]


MESSAGE = {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "c"}
START = (
    orjson.dumps(
        {
            "type": "message_start",
            "message": {**MESSAGE, "usage": {"input_tokens": 3, "output_tokens": 1}},
        }
    )
    + b"\n"
)


def test_a_huge_block_index_allocates_nothing_and_a_stray_delta_is_located() -> None:
    lines = [
        START,
        b'{"type":"content_block_start","index":1000000000,"content_block":{"type":"text","text":""}}\n',
        b'{"type":"content_block_delta","index":1000000000,"delta":{"type":"text_delta","text":"hi"}}\n',
        b'{"type":"content_block_delta","index":5,"delta":{"type":"text_delta","text":"x"}}\n',
    ]
    _, (result,) = run("s", lines)
    assert as_json(result)["content"] == [{"type": "text", "text": "hi"}]
    assert [str(p) for p in result.problems] == [
        "s, line 4 (event 4): a delta for block 5, which is not open"
    ]


def test_a_string_or_negative_usage_is_a_located_problem_and_the_partial_is_kept() -> None:
    for bad in (b'"7"', b"-1"):
        lines = [
            START,
            b'{"type":"message_delta","delta":{},"usage":{"output_tokens":' + bad + b"}}\n",
        ]
        _, (result,) = run("s", lines)
        assert as_json(result)["usage"] == {"input_tokens": 3, "output_tokens": 1}
        assert "line 2" in str(result.problems[0])
        assert "output_tokens" in str(result.problems[0])


def test_a_stream_cut_inside_a_tool_input_keeps_the_partial_json() -> None:
    lines = [
        START,
        b'{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}\n',
        orjson.dumps(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": 1'},
            }
        )
        + b"\n",
    ]
    _, (result,) = run("s", lines)
    assert not result.complete
    assert as_json(result)["content"][0]["partial_json"] == '{"a": 1'
    assert any("tool input" in str(p) for p in result.problems)


def test_usage_is_replaced_field_by_field_never_summed() -> None:
    lines = [
        START,
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5,"cache_read_input_tokens":2}}\n',
        b'{"type":"message_delta","delta":{},"usage":{"output_tokens":9}}\n',
        b'{"type":"message_stop"}\n',
    ]
    _, (result,) = run("s", lines)
    assert as_json(result)["usage"] == {
        "input_tokens": 3,
        "output_tokens": 9,
        "cache_read_input_tokens": 2,
    }
    assert result.completion.stop_reason == "end_turn"


# -- differential: the anthropic SDK's own accumulation -----------------------------------------

#: What the SDK (anthropic.lib.streaming.accumulate_event) loses, per top-level key or block
#: field; each is explained in docs/merge-rules-anthropic.md ("Differences from the SDK").
SDK_LOSES = {
    "container",  # sent only in message_delta.delta; the SDK copies stop_reason/sequence only
    "context_management",  # a top-level message_delta field the SDK does not copy
    "usage.iterations",  # a usage field of message_delta the SDK's update does not name
    "content.mcp_tool_use.input",  # the SDK joins input_json_delta for tool_use kinds it names
    "content.compaction.content",  # compaction_delta is a delta type the SDK does not apply
}


def _differences(sdk: dict[str, Any], ours: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for key in set(sdk) | set(ours):
        if sdk.get(key) == ours.get(key):
            continue
        if key == "content" and len(sdk[key]) == len(ours[key]):
            for a, b in zip(sdk[key], ours[key], strict=True):
                found |= {
                    f"content.{b['type']}.{k}" for k in set(a) | set(b) if a.get(k) != b.get(k)
                }
        elif key == "usage":
            found |= {
                f"usage.{k}"
                for k in set(sdk[key]) | set(ours[key])
                if sdk[key].get(k) != ours[key].get(k)
            }
        else:
            found.add(key)
    return found


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_against_the_sdks_accumulation(path: Path) -> None:
    from anthropic._models import construct_type
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    snapshots: list[Any] = []
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["type"] in ("ping", "error"):
            continue
        if event["type"] == "message_start":
            if snapshot is not None:
                snapshots.append(snapshot)
            snapshot, buffers = None, {}
        typed: Any = construct_type(type_=RawMessageStreamEvent, value=event)
        snapshot = accumulate_event(event=typed, current_snapshot=snapshot, json_bufs=buffers)
    snapshots.append(snapshot)
    _, results = run(path.name, [path.read_bytes()])
    assert len(results) == len(snapshots)
    for sdk, result in zip(snapshots, results, strict=True):
        found = _differences(
            without_nulls(sdk.to_dict()), without_nulls(to_dict(result.completion))
        )
        assert found <= SDK_LOSES, found - SDK_LOSES


def test_an_error_mid_stream_gives_the_partial_message_the_error_and_the_usage() -> None:
    lines = [
        START,
        b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n',
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n',
    ]
    _, (result,) = run("s", lines)
    assert not result.complete
    assert as_json(result)["content"] == [{"type": "text", "text": "Hel"}]
    assert as_json(result)["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert "Overloaded" in str(result.error)


def test_a_tool_input_past_the_block_limit_fails_the_stream_placed() -> None:
    piece = orjson.dumps(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "x" * 400},
        }
    )
    lines = [
        START,
        b'{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}\n',
        *[piece + b"\n"] * 5,
    ]
    _, (result,) = run("s", lines, Limits(max_block_chars=1000))
    assert not result.complete
    assert "line 5" in str(result.error)
    assert "more than 1000" in str(result.error)
    assert result.error.limit == "max_block_chars"
    assert len(as_json(result)["content"][0]["partial_json"]) == 800
