"""Benchmark of the Responses protocol, in process: µs per event, ours against a floor (split the
lines, ``orjson.loads`` each payload, join the text deltas) and openai-python's
``ResponseStreamState``, on an ``n``-event text stream and on the recordings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).parent.parent / "data" / "responses"
WORDS = [" the", " stream", "ed", " answer", ",", " token", " by", " token", ".", "\n"]


def text_stream(n: int) -> bytes:
    """A Responses text stream of ``n`` events, as JSON Lines."""
    events: list[dict[str, Any]] = [
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {
                "id": "resp_b",
                "object": "response",
                "model": "m",
                "status": "in_progress",
                "output": [],
            },
        },
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": {
                "id": "msg_b",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "sequence_number": 2,
            "output_index": 0,
            "item_id": "msg_b",
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        },
    ]
    deltas = max(n - 7, 1)
    for i in range(deltas):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": 3 + i,
                "item_id": "msg_b",
                "output_index": 0,
                "content_index": 0,
                "delta": WORDS[i % len(WORDS)],
                "logprobs": [],
                "obfuscation": "Xy3" * (1 + i % 3),
            }
        )
    text = "".join(WORDS[i % len(WORDS)] for i in range(deltas))
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {**events[1]["item"], "status": "completed", "content": [part]}
    seq = 3 + deltas
    tail: list[dict[str, Any]] = [
        {
            "type": "response.output_text.done",
            "item_id": "msg_b",
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": "msg_b",
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {
            "type": "response.completed",
            "response": {
                "id": "resp_b",
                "object": "response",
                "model": "m",
                "status": "completed",
                "output": [item],
                "usage": {"input_tokens": 5, "output_tokens": deltas, "total_tokens": deltas + 5},
            },
        },
    ]
    for k, event in enumerate(tail):
        events.append({**event, "sequence_number": seq + k})
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def _floor(data: bytes) -> int:
    text = []
    for line in data.splitlines():
        if line:
            obj = orjson.loads(line)
            if obj["type"] == "response.output_text.delta":
                text.append(obj["delta"])
    return len("".join(text))


def _ours(data: bytes) -> int:
    from aggregator._core._engine import Engine

    engine = Engine("bench")
    return len(engine.feed(data) + engine.close())


def _sdk(data: bytes) -> int:
    from openai import omit
    from openai._models import construct_type
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    state: Any = None
    for line in data.splitlines():
        if line:
            raw = orjson.loads(line)
            if raw["type"] == "response.created":
                state = ResponseStreamState(input_tools=omit, text_format=omit)
            if state is not None:
                try:
                    state.handle_event(construct_type(type_=ResponseStreamEvent, value=raw))
                except Exception:  # noqa: BLE001 - it raises on some recordings
                    state = None
    return 0


def _per_event(fn: Any, data: bytes, events: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - start)
    return best / events * 1e6


def run(n: int, repeats: int = 5) -> dict[str, Any]:
    """µs per event of ours, the floor and openai-python (the best of ``repeats`` runs each),
    and the ratios, printed."""
    out: dict[str, Any] = {}
    cases = {"text": text_stream(n)}
    cases["recordings"] = (
        b"\n".join(p.read_bytes().strip() for p in sorted(DATA.glob("*.jsonl"))) + b"\n"
    )
    for name, data in cases.items():
        events = sum(1 for line in data.splitlines() if line.strip())
        ours, floor, sdk = (_per_event(f, data, events, repeats) for f in (_ours, _floor, _sdk))
        out[name] = {
            "events": events,
            "ours_us": ours,
            "floor_us": floor,
            "sdk_us": sdk,
            "ours_over_floor": ours / floor,
            "sdk_over_ours": sdk / ours,
        }
        print(
            f"{name}: {events} events; ours {ours:.2f} µs, floor {floor:.2f} µs, "
            f"openai-python {sdk:.2f} µs; ours/floor {ours / floor:.2f}x, "
            f"openai-python/ours {sdk / ours:.1f}x"
        )
    return out


if __name__ == "__main__":
    run(10_000)
