"""The OpenAI Responses API protocol on every recording in tests/data/responses (vercel/ai,
Apache-2.0: see its INDEX.md), whole and wrapped as SSE; hostile input; replays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator._core._errors import ConflictError, UpstreamError
from aggregator._core._responses import Response
from aggregator._core._results import EndReason, Result

from .conftest import without_nulls

DATA = Path(__file__).parent / "data" / "responses"
RECORDINGS = sorted(DATA.glob("*.jsonl"))
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def _response(result: Result) -> Response:
    completion: Any = result.completion
    assert isinstance(completion, Response)
    return completion


def _events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _run(data: bytes, name: str = "s", **kw: Any) -> list[Result]:
    engine = Engine(name, **kw)
    out = engine.feed(data) + engine.close()
    return [r for r in out if isinstance(r, Result)]


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def test_there_are_forty_recordings() -> None:
    assert len(RECORDINGS) == 40


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("framing", ["jsonl", "sse"])
def test_each_response_equals_its_terminal_response(path: Path, framing: str) -> None:
    events = _events(path)
    data = path.read_bytes() if framing == "jsonl" else _sse(events)
    terminals = [e["response"] for e in events if e["type"] in TERMINAL]
    results = _run(data, path.name)
    assert len(results) == len(terminals)
    for result, terminal in zip(results, terminals, strict=True):
        if terminal["status"] != "failed":
            assert to_dict(result.completion) == without_nulls(terminal)
        else:  # an ``error`` event ended it first: the failed snapshot after it is skipped
            assert _response(result).output == terminal["output"]
            assert result.reason is EndReason.ERROR
            assert isinstance(result.error, UpstreamError)
        if terminal["status"] != "failed":
            assert result.complete, (result.error, result.problems)
            assert result.reason is EndReason.DONE


@pytest.mark.parametrize("path", RECORDINGS[:10], ids=lambda p: p.stem)
def test_split_at_every_byte_gives_the_same(path: Path) -> None:
    data = path.read_bytes()
    whole = [to_dict(r.completion) for r in _run(data)]
    engine = Engine("s")
    out: list[Any] = []
    for i in range(0, len(data), 7):
        out += engine.feed(data[i : i + 7])
    out += engine.close()
    assert [to_dict(r.completion) for r in out if isinstance(r, Result)] == whole


def test_a_replayed_event_merges_once() -> None:
    path = DATA / "azure_text_single_delta.jsonl"
    events = _events(path)
    doubled = [e for e in events for _ in (0, 1)]
    (result,) = _run(b"\n".join(orjson.dumps(e) for e in doubled))
    (plain,) = _run(path.read_bytes())
    assert to_dict(result.completion) == to_dict(plain.completion)
    assert result.duplicates == len(events) - 1  # the replayed created is routed, then dropped


def test_cut_off_keeps_the_streamed_text() -> None:
    events = [
        e for e in _events(DATA / "azure_text_single_delta.jsonl") if e["type"] not in TERMINAL
    ]
    (result,) = _run(_sse(events))
    assert result.reason is EndReason.CUT_OFF
    assert not result.complete
    texts = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    part = _response(result).output[0]
    assert "".join(texts) in orjson.dumps(part).decode()


def test_an_empty_terminal_output_keeps_the_streamed_output() -> None:
    events = _events(DATA / "azure_text_single_delta.jsonl")
    events[-1] = {**events[-1], "response": {**events[-1]["response"], "output": []}}
    (result,) = _run(_sse(events))
    assert _response(result).output
    assert _response(result).output[0]["type"] == "message"
    assert any(isinstance(p, ConflictError) for p in result.problems)


def test_hostile_indexes_are_located_problems() -> None:
    events = _events(DATA / "azure_text_single_delta.jsonl")
    bad = [
        {
            "type": "response.output_text.delta",
            "output_index": 10**9,
            "content_index": 0,
            "delta": "x",
            "sequence_number": 10**6,
        },
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 10**9,
            "delta": "x",
            "sequence_number": 10**6 + 1,
        },
    ]
    at = next(i for i, e in enumerate(events) if e["type"] == "response.output_text.delta")
    (result,) = _run(_sse(events[:at] + bad + events[at:]))
    assert len(result.problems) == 2
    assert all("never added" in p.detail and "line" in p.where for p in result.problems)


def test_unknown_events_and_events_after_the_end_are_not_fatal() -> None:
    events = _events(DATA / "azure_text_single_delta.jsonl")
    extra = [
        {"type": "keepalive", "sequence_number": 999},
        {"type": "response.rate_limits.updated", "sequence_number": 1000},
    ]
    (result,) = _run(
        _sse(
            [
                *events[:3],
                {"type": "response.new_thing", "sequence_number": 998},
                *events[3:],
                *extra,
            ]
        )
    )
    assert result.complete


def _sdk_final(events: list[dict[str, Any]]) -> Any:
    """openai-python's own accumulator on one response's events: its final response's JSON,
    or the exception it raises."""
    from openai import omit
    from openai._models import construct_type
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    state: Any = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    try:
        for raw in events:
            event = construct_type(type_=ResponseStreamEvent, value=raw)
            state.handle_event(event)
            if raw["type"] == "response.completed":
                final = state.accumulate_event(event)  # its own snapshot, parsed
        if final is None:
            raise RuntimeError("Didn't receive a response.completed event.")
    except Exception as exc:  # noqa: BLE001 - what the SDK raises is what we compare against
        return exc
    return final.to_dict(mode="json", warnings=False)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_differential_against_openai_python(path: Path) -> None:
    events = _events(path)
    segments: list[list[dict[str, Any]]] = []
    for event in events:
        if event["type"] == "response.created" or not segments:
            segments.append([])
        segments[-1].append(event)
    results = _run(path.read_bytes(), path.name)
    assert len(results) == len(segments)
    for result, segment in zip(results, segments, strict=True):
        theirs = _sdk_final(segment)
        if isinstance(theirs, Exception):  # it raises: ours gives the result, with its reason
            assert result.reason in (EndReason.ERROR, EndReason.DONE)
            assert result.complete or result.error is not None
        else:
            ours = _digest(to_dict(result.completion)["output"])
            if ours != _digest(theirs["output"]):  # where they part, the terminal says who is right
                terminal = next(e["response"] for e in segment if e["type"] in TERMINAL)
                assert ours == _digest(without_nulls(terminal["output"]))
                DIFFERED.add(path.stem)


#: the recordings where openai-python's final response differs from ours (ours is the terminal's)
DIFFERED: set[str] = set()


def _digest(items: list[dict[str, Any]]) -> list[Any]:
    """What openai-python accumulates: each item's type, text parts and arguments."""
    return [
        (
            item.get("type"),
            [part.get("text") for part in item.get("content") or [] if isinstance(part, dict)],
            item.get("arguments"),
        )
        for item in items
    ]


@pytest.mark.anyio
async def test_aggregator_assemble_recognises_a_responses_stream() -> None:
    import aggregator

    path = DATA / "azure_text_single_delta.jsonl"
    terminal = next(e["response"] for e in _events(path) if e["type"] == "response.completed")
    completion = await aggregator.assemble([path.read_bytes()], name=path.name)
    assert to_dict(completion) == without_nulls(terminal)


def test_the_cli_recognises_a_responses_stream_by_itself() -> None:
    import subprocess
    import sys

    path = DATA / "azure_text_single_delta.jsonl"
    terminal = next(e["response"] for e in _events(path) if e["type"] == "response.completed")
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", str(path)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.splitlines()[0]) == without_nulls(terminal)
