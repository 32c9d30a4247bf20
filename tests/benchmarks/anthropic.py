"""Benchmark: the Anthropic Messages protocol: ours against the floor and the anthropic SDK.

Theory of operation: each case is a stream held in memory (SSE with ``event:`` lines, as the
API sends it). ``ours`` feeds it whole to an :class:`Engine` and closes it; the ``floor`` splits
the lines, runs ``orjson.loads`` on each ``data:`` payload and joins the strings its deltas
carry (text, thinking, tool input JSON: the least any reassembly does); ``sdk`` folds the
events with the anthropic SDK's ``accumulate_event`` (its events built with ``construct_type``,
no validation), the accumulator ``messages.stream()`` uses. Contenders alternate and each figure
is the median of the repeats, so ratios measured side by side survive a loaded machine.

Figures: µs per event in process for every case; the whole process (``python -m aggregator
assemble FILE`` against the floor as a script) per event; the SDK against ours at a size where
the SDK finishes (it re-parses the whole tool input on every fragment: quadratic); and the
per-fragment cost of one tool input streamed in 10x as many fragments (linear: about 1).

Beside each SDK / ours figure, the same run measures the SDK against the floor: the ratio an
implementation that parses every payload as the floor does could reach at most. Where it is
below 30, the issue's "30x the SDK" cannot be met by parsing the JSON; the figure says by how
much. The same run also measures the SDK's whole path from the body's bytes, as
``messages.stream()`` runs it (:func:`sdk_stream`: its own SSE decoder and JSON, and the events
it builds for its caller), against ours and the floor. Times are CPU time
(``time.process_time``, and the children's for the whole process).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from aggregator._core._engine import Engine

DATA = Path(__file__).parent.parent / "data" / "anthropic"
_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
}
_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "text": ({"type": "text", "text": ""}, "text_delta", "text"),
    "thinking": (
        {"type": "thinking", "thinking": "", "signature": ""},
        "thinking_delta",
        "thinking",
    ),
    "tool": (
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        "input_json_delta",
        "partial_json",
    ),
}


def sse(events: list[Any]) -> bytes:
    """The events as the API sends them."""
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def stream(kind: str, n: int) -> bytes:
    """One message of one block of ``kind`` streamed in ``n`` deltas."""
    block, delta_type, field = _CASES[kind]
    pieces = ['{"a": [', *["1, "] * (n - 2), "1]}"] if kind == "tool" else ["word "] * n
    events: list[Any] = [
        _START,
        {"type": "content_block_start", "index": 0, "content_block": block},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": delta_type, field: p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": n},
        },
        {"type": "message_stop"},
    ]
    return sse(events)


def recordings() -> bytes:
    """Every recording of tests/data/anthropic, one after another, as SSE."""
    events = []
    for path in sorted(DATA.glob("*.jsonl")):
        events += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return sse(events)


def ours(data: bytes) -> Any:
    engine = Engine("bench")
    out = engine.feed(data)
    out += engine.close()
    return out


def floor(data: bytes) -> str:
    parts = []
    for line in data.split(b"\n"):
        if line.startswith(b"data: "):
            delta = orjson.loads(line[6:]).get("delta")
            if delta is not None:
                for key in ("text", "thinking", "partial_json"):
                    if key in delta:
                        parts.append(delta[key])
    return "".join(parts)


FLOOR_SCRIPT = """
import sys, orjson
parts = []
with open(sys.argv[1], "rb") as f:
    data = f.read()
for line in data.split(b"\\n"):
    if line.startswith(b"data: "):
        delta = orjson.loads(line[6:]).get("delta")
        if delta is not None:
            for key in ("text", "thinking", "partial_json"):
                if key in delta:
                    parts.append(delta[key])
sys.stdout.write(orjson.dumps("".join(parts)).decode() + "\\n")
"""


def sdk(data: bytes) -> Any:
    from anthropic._models import construct_type
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent

    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for line in data.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        obj = orjson.loads(line[6:])
        if obj["type"] in ("ping", "error"):
            continue
        if obj["type"] == "message_start":
            snapshot, buffers = None, {}
        event: Any = construct_type(type_=RawMessageStreamEvent, value=obj)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def sdk_stream(data: bytes) -> Any:
    """The SDK's whole path from the body's bytes, as ``messages.stream()`` runs it: its own SSE
    decoder and ``sse.json()`` (``Stream.__stream__``), then ``construct_type``,
    ``accumulate_event`` and ``build_events`` (``MessageStream.__stream__``). What a user of the
    SDK pays; :func:`sdk` is its accumulator alone, fed by our split and ``orjson``."""
    from anthropic._models import construct_type
    from anthropic._streaming import SSEDecoder
    from anthropic.lib.streaming._messages import accumulate_event, build_events
    from anthropic.types import RawMessageStreamEvent

    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for sse_event in SSEDecoder().iter_bytes(iter([data])):
        if sse_event.event in (None, "ping", "error") or not sse_event.data:
            continue
        event: Any = construct_type(type_=RawMessageStreamEvent, value=sse_event.json())
        if event.type == "message_start":
            snapshot, buffers = None, {}
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
        build_events(event=event, message_snapshot=snapshot)
    return snapshot


def _cpu() -> float:
    """The CPU time of this process and of its waited-for children, in s."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Run the contenders in turn (alternating), ``repeats`` times: the median of each, in s of
    CPU time (this process's; a child process's for :func:`_process`)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = _cpu()
            fn()
            times[name].append(_cpu() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _process(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)


def run(
    n: int = 10_000, *, sdk_n: int = 1_000, process_n: int = 200_000, repeats: int = 5
) -> dict[str, Any]:
    """The figures (see the module's docstring): µs per event and the ratios."""
    out: dict[str, Any] = {}
    warm = stream("text", 3)
    # the imports and the converter's first hooks: not measured
    ours(warm), sdk(warm), sdk_stream(warm)
    cases = {kind: stream(kind, n) for kind in _CASES}
    cases["recordings"] = recordings()
    for name, data in cases.items():
        events = data.count(b"\ndata: ") + data.startswith(b"data: ")
        t = medians({"ours": partial(ours, data), "floor": partial(floor, data)}, repeats)
        out[f"in process, {name}: ours / floor"] = t["ours"] / t["floor"]
        out[f"in process, {name}: ours µs/event"] = t["ours"] / events * 1e6
    sdk_cases = {
        f"{kind}, {size:,} deltas": stream(kind, size)
        for kind, size in (("text", sdk_n), ("text", n), ("tool", sdk_n), ("tool", n))
    }
    sdk_cases["recordings"] = recordings()
    for name, data in sdk_cases.items():
        t = medians(
            {
                "ours": partial(ours, data),
                "sdk": partial(sdk, data),
                "sdk_stream": partial(sdk_stream, data),
                "floor": partial(floor, data),
            },
            repeats,
        )
        out[f"{name}: sdk / ours"] = t["sdk"] / t["ours"]
        # the most any implementation that parses each payload can reach: 30x needs >= 30 here
        out[f"{name}: sdk / floor"] = t["sdk"] / t["floor"]
        out[f"{name}: sdk's whole stream path / ours"] = t["sdk_stream"] / t["ours"]
        out[f"{name}: sdk's whole stream path / floor"] = t["sdk_stream"] / t["floor"]
    small, large = stream("tool", n // 10), stream("tool", n)
    t = medians({"small": lambda: ours(small), "large": lambda: ours(large)}, repeats)
    out[f"tool input, per fragment at {n:,} / at {n // 10:,}"] = (t["large"] / n) / (
        t["small"] / (n // 10)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path, script = Path(tmp) / "text.sse", Path(tmp) / "floor.py"
        path.write_bytes(stream("text", process_n))
        script.write_text(FLOOR_SCRIPT)
        cli = [sys.executable, "-m", "aggregator", "assemble", str(path)]
        flr = [sys.executable, str(script), str(path)]
        t = medians({"ours": lambda: _process(cli), "floor": lambda: _process(flr)}, repeats)
        out[f"whole process, {process_n:,} text deltas: ours / floor"] = t["ours"] / t["floor"]
        out["whole process: ours s"] = t["ours"]
        out["whole process: floor s"] = t["floor"]
    return out


if __name__ == "__main__":
    from .responses import costs

    quick = "--quick" in sys.argv
    figures = run(1_000, sdk_n=200, process_n=2_000, repeats=1) if quick else run()
    for key, value in figures.items():
        print(f"{key}: {value:.2f}")
    size = 2_000 if quick else 200_000
    shares = costs(stream("text", size), floor, 1 if quick else 5)
    print(
        f"µs per event, {size:,} text deltas: "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
    )
