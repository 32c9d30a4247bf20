"""Benchmark of the Responses protocol, in process: µs per event, ours against a floor (split the
lines, ``orjson.loads`` each payload, join the text deltas) and openai-python's
``ResponseStreamState``, on an ``n``-event text stream and on the recordings; and the whole
process (``python -m aggregator assemble FILE`` against the floor as a script) on SSE.

``python -m tests.benchmarks.responses`` (``--quick``: tiny sizes, a smoke run)."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
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


def _cpu() -> float:
    """The CPU time of this process and of its waited-for children, in s."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def best(contenders: dict[str, Any], repeats: int) -> dict[str, float]:
    """Run the contenders in turn (alternating), ``repeats`` times: the least CPU time of
    each, in s."""
    times: dict[str, float] = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = _cpu()
            fn()
            times[name] = min(times[name], _cpu() - start)
    return times


def run(n: int, repeats: int = 5) -> dict[str, Any]:
    """µs per event of ours, the floor and openai-python (alternating, the best of ``repeats``
    runs each, CPU time), and the ratios, printed. ``sdk_over_floor`` is the most an
    implementation that parses every payload as the floor does could reach against
    openai-python: where it is below 30, so is every such implementation's ``sdk_over_ours``."""
    out: dict[str, Any] = {}
    warm = text_stream(8)
    _ours(warm), _sdk(warm)  # the imports and the converter's first hooks: not measured
    cases = {"text": text_stream(n)}
    cases["recordings"] = (
        b"\n".join(p.read_bytes().strip() for p in sorted(DATA.glob("*.jsonl"))) + b"\n"
    )
    for name, data in cases.items():
        events = sum(1 for line in data.splitlines() if line.strip())
        t = best(
            {
                "ours": partial(_ours, data),
                "floor": partial(_floor, data),
                "sdk": partial(_sdk, data),
            },
            repeats,
        )
        ours, floor, sdk = (t[k] / events * 1e6 for k in ("ours", "floor", "sdk"))
        out[name] = {
            "events": events,
            "ours_us": ours,
            "floor_us": floor,
            "sdk_us": sdk,
            "ours_over_floor": ours / floor,
            "sdk_over_ours": sdk / ours,
            "sdk_over_floor": sdk / floor,
        }
        print(
            f"{name}: {events} events; ours {ours:.2f} µs, floor {floor:.2f} µs, "
            f"openai-python {sdk:.2f} µs; ours/floor {ours / floor:.2f}x, "
            f"openai-python/ours {sdk / ours:.1f}x, openai-python/floor {sdk / floor:.1f}x"
        )
    return out


def costs(data: bytes, floor: Any, repeats: int = 5) -> dict[str, float]:
    """Where ours spends its time on ``data``, in µs per payload (the least CPU time of
    ``repeats`` alternating runs): the whole engine, the engine without the dedupe
    (``dedupe_ids=None``) and without the lane, the framing alone (``Framing.feed``: the
    records, nothing parsed), and ``floor``. For routing work: the framing and the dedupe
    are the engine's, shared by every protocol."""
    from aggregator._core._engine import Engine
    from aggregator._core._framing import Framing

    def engine(**options: Any) -> None:
        run = Engine("bench", **options)
        run.feed(data)
        run.close()

    def framing() -> None:
        framer = Framing("auto")
        framer.feed(data)
        framer.close()

    contenders = {
        "engine": engine,
        "engine, no dedupe": partial(engine, dedupe_ids=None),
        "engine, no lane": partial(engine, fast_lane=False),
        "framing alone": framing,
        "floor": partial(floor, data),
    }
    payloads = sum(1 for line in data.splitlines() if line.startswith((b"data:", b"{")))
    return {k: v / payloads * 1e6 for k, v in best(contenders, repeats).items()}


FLOOR_SCRIPT = """
import sys, orjson
with open(sys.argv[1], "rb") as f:
    data = f.read()
parts = []
for line in data.split(b"\\n"):
    if line.startswith(b"data: "):
        obj = orjson.loads(line[6:])
        if obj["type"] == "response.output_text.delta":
            parts.append(obj["delta"])
sys.stdout.write(orjson.dumps("".join(parts)).decode() + "\\n")
"""


def sse(data: bytes) -> bytes:
    """The JSON Lines stream ``data`` as a server sends it over SSE (``event:`` lines)."""
    return b"".join(
        b"event: " + orjson.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n"
        for line in data.splitlines()
    )


def whole_process(n: int, repeats: int = 5) -> dict[str, float]:
    """``python -m aggregator assemble FILE`` against the floor as a script, on the SSE text
    stream of ``n`` events: the median CPU time of each (alternating), in s, and the ratio."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        path, script = Path(tmp) / "responses.sse", Path(tmp) / "floor.py"
        path.write_bytes(sse(text_stream(n)))
        script.write_text(FLOOR_SCRIPT)
        commands = {
            "ours": [sys.executable, "-m", "aggregator", "assemble", str(path)],
            "floor": [sys.executable, str(script), str(path)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                start = _cpu()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
                times[name].append(_cpu() - start)
    ours, floor = (statistics.median(times[k]) for k in ("ours", "floor"))
    print(
        f"whole process, {n:,} SSE events: ours {ours:.2f} s, floor {floor:.2f} s, "
        f"ours/floor {ours / floor:.2f}x"
    )
    return {"ours_s": ours, "floor_s": floor, "ours_over_floor": ours / floor}


def _sse_floor(data: bytes) -> int:
    text = []
    for line in data.split(b"\n"):
        if line.startswith(b"data: "):
            obj = orjson.loads(line[6:])
            if obj["type"] == "response.output_text.delta":
                text.append(obj["delta"])
    return len("".join(text))


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    run(1_000 if quick else 10_000, 1 if quick else 5)
    whole_process(2_000 if quick else 200_000, 1 if quick else 5)
    size = 2_000 if quick else 200_000
    shares = costs(sse(text_stream(size)), _sse_floor, 1 if quick else 5)
    print(
        f"µs per event, {size:,} SSE events: "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
    )
