"""Benchmark: the Anthropic Messages protocol, in process, µs per event.

Theory of operation: each case is a stream of JSON lines held in memory; ``ours`` feeds it
whole to an :class:`Engine`; the ``floor`` splits the lines, ``orjson.loads`` each payload and
joins the text deltas (the least any reassembly does); ``sdk`` folds the events with the
anthropic SDK's ``accumulate_event`` (its events built with ``construct_type``, no validation).
The tool case streams one input in ``n`` and ``8 n`` fragments: the per-fragment cost ratio
shows whether the cost is linear. Not wired into ``__main__`` (the integrator does that).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from aggregator._core._engine import Engine

DATA = Path(__file__).parent.parent / "data" / "anthropic"
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


def _stream(kind: str, n: int) -> bytes:
    if kind == "text":
        block: dict[str, Any] = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": "word "}
    else:
        block = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": "1,"}
    events: list[Any] = [
        _START,
        {"type": "content_block_start", "index": 0, "content_block": block},
    ]
    if kind == "tool":
        events.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": ['},
            }
        )
    events += [{"type": "content_block_delta", "index": 0, "delta": delta}] * n
    if kind == "tool":
        events.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "1]}"},
            }
        )
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": n},
        },
        {"type": "message_stop"},
    ]
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _ours(data: bytes) -> None:
    engine = Engine("bench")
    engine.feed(data)
    engine.close()


def _floor(data: bytes) -> None:
    text = []
    for line in data.splitlines():
        obj = orjson.loads(line)
        delta = obj.get("delta")
        if delta is not None and "text" in delta:
            text.append(delta["text"])
    "".join(text)


def _sdk(data: bytes) -> None:
    from anthropic._models import construct_type
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for line in data.splitlines():
        obj = orjson.loads(line)
        if obj["type"] in ("ping", "error"):
            continue
        if obj["type"] == "message_start":
            snapshot, buffers = None, {}
        event: Any = construct_type(type_=RawMessageStreamEvent, value=obj)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)


def _time(fn: Any, data: bytes, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - start)
    return best


def run(n: int = 10_000) -> dict[str, Any]:
    """µs per event for ours, the floor and the SDK on each case, and the ratios."""
    cases = {
        "text": _stream("text", n),
        "tool": _stream("tool", n),
        "tool_8x": _stream("tool", 8 * n),
    }
    cases["recordings"] = b"".join(
        p.read_bytes().rstrip(b"\n") + b"\n" for p in sorted(DATA.glob("*.jsonl"))
    )
    out: dict[str, Any] = {}
    for name, data in cases.items():
        events = data.count(b"\n")
        row = {
            who: _time(fn, data) * 1e6 / events
            for who, fn in (("ours", _ours), ("floor", _floor), ("sdk", _sdk))
        }
        row["ours/floor"] = row["ours"] / row["floor"]
        row["sdk/ours"] = row["sdk"] / row["ours"]
        out[name] = row
    out["tool_linearity"] = out["tool_8x"]["ours"] / out["tool"]["ours"]
    return out


if __name__ == "__main__":
    for key, value in run().items():
        print(
            key,
            {k: round(v, 2) for k, v in value.items()}
            if isinstance(value, dict)
            else round(value, 2),
        )
