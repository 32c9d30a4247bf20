"""The Responses accumulator and lane, event by event: malformed events of every kind (each a
ConflictError or a LimitError, never a crash), values of the wrong type ignored as the merge
rules say, what a stream cut off holds, and a failed response's error."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator import Limits, to_dict
from aggregator._core._engine import Engine
from aggregator._core._errors import ConflictError, LimitError, UpstreamError
from aggregator._core._responses import Accumulator, Response
from aggregator._core._responses._lane import Lane
from aggregator._core._results import EndReason, Result

MESSAGE = {"type": "message", "id": "m", "role": "assistant", "content": []}
REASONING = {"type": "reasoning", "id": "r", "summary": []}
CALL = {"type": "function_call", "id": "f", "name": "g", "arguments": ""}


def _acc(*events: dict[str, Any], limits: Limits | None = None) -> Accumulator:
    acc = Accumulator() if limits is None else Accumulator(limits)
    for event in events:
        acc.add_plain(event)
    return acc


def _added(index: int, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def _part(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "output_index": 0, **more}


def _output(acc: Accumulator) -> list[Any]:
    return list(acc.result().output)


def test_a_cut_off_stream_keeps_its_annotations_summaries_and_fields() -> None:
    acc = _acc(
        _added(0, MESSAGE),
        _part("response.content_part.added", content_index=0, part={"type": "output_text"}),
        _part("response.output_text.delta", content_index=0, delta="see "),
        _part("response.output_text.delta", content_index=0, delta=7),  # not a string: ignored
        _part(
            "response.output_text.annotation.added",
            content_index=0,
            annotation_index=1,
            annotation={"type": "url_citation", "url": "b"},
        ),
        _part(
            "response.output_text.annotation.added",
            content_index=0,
            annotation_index=0,
            annotation={"type": "url_citation", "url": "a"},
        ),
        _added(1, REASONING),
        {
            "type": "response.reasoning_summary_part.added",
            "output_index": 1,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "output_index": 1,
            "summary_index": 0,
            "delta": "think",
        },
        _added(2, CALL),
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "{}"},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": None},
        {"type": "response.function_call_arguments.done", "output_index": 2, "arguments": 3},
        {"type": "response.function_call_arguments.other", "output_index": 2},
    )
    message, reasoning, call = _output(acc)
    assert message["content"] == [
        {
            "type": "output_text",
            "text": "see ",
            "annotations": [
                {"type": "url_citation", "url": "a"},
                {"type": "url_citation", "url": "b"},
            ],
        }
    ]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "think"}]
    assert call["arguments"] == "{}"
    assert len(acc.problems) == 0
    assert not acc.finished


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (_added(0, "not an item"), "output_item.added without"),  # type: ignore[arg-type]
        ({"type": "response.output_item.added", "item": MESSAGE}, "output_item.added without"),
        (_part("response.content_part.added", content_index=1), "without an int content_index"),
        (_part("response.content_part.added", part={}), "without an int content_index"),
        (_part("response.output_text.annotation.added", content_index=0), "annotation_index"),
        (_part("response.output_text.delta", content_index=5, delta="x"), "content_index 5"),
        ({"type": "response.output_item.done", "output_index": 4, "item": {}}, "output_index 4"),
        ({"type": "response.output_text.delta", "output_index": "0"}, "never added"),
    ],
)
def test_malformed_events_are_conflicts(event: dict[str, Any], words: str) -> None:
    acc = _acc(
        _added(0, MESSAGE),
        _part("response.content_part.added", content_index=0, part={"type": "output_text"}),
    )
    with pytest.raises(ConflictError) as caught:
        acc.add_plain(event)
    assert words in str(caught.value)


def test_values_of_the_wrong_type_are_ignored_and_done_values_win() -> None:
    acc = _acc(
        _added(0, MESSAGE),
        _part("response.content_part.added", content_index=0, part={"type": "output_text"}),
        _part("response.output_text.delta", content_index=0, delta="a"),
        _part("response.output_text.done", content_index=0, text=None),
        _part("response.output_text.other", content_index=0),
        _part("response.content_part.done", content_index=0, part="not a part"),
        _part("response.content_part.done", content_index=0, part={"type": "output_text"}),
        {"type": "response.output_item.done", "output_index": 0, "item": "not an item"},
        {"type": "response.in_progress", "response": None},
        {"type": 5},
    )
    assert _output(acc)[0]["content"] == [{"type": "output_text", "text": "a"}]
    acc.add_plain(_part("response.content_part.done", content_index=0, part={"text": "b"}))
    assert _output(acc)[0]["content"] == [{"text": "b"}]
    acc.absorb_ids()  # an id that changes is the engine's business: nothing to do here


def test_too_many_annotations_is_a_limit() -> None:
    events = [
        _part(
            "response.output_text.annotation.added",
            content_index=0,
            annotation_index=i,
            annotation={},
        )
        for i in range(3)
    ]
    with pytest.raises(LimitError):
        _acc(
            _added(0, MESSAGE),
            _part("response.content_part.added", content_index=0, part={"type": "output_text"}),
            *events,
            limits=Limits(max_tool_calls=2),
        )


def test_an_empty_terminal_output_is_one_problem_however_often_the_result_is_asked() -> None:
    acc = _acc(
        _added(0, MESSAGE),
        {"type": "response.completed", "response": {"id": "r", "model": "m", "output": []}},
    )
    first, second = acc.result(), acc.result()
    assert first == second
    assert isinstance(first, Response)
    assert len(acc.problems) == 1


def _engine(events: list[dict[str, Any]]) -> Result:
    engine = Engine("f")
    out = engine.feed(b"".join(orjson.dumps(e) + b"\n" for e in events)) + engine.close()
    (result,) = [r for r in out if isinstance(r, Result)]
    return result


@pytest.mark.parametrize("error", [{"code": "server_error", "message": "boom"}, None])
def test_a_failed_response_ends_with_its_error_and_keeps_the_output(error: Any) -> None:
    created = {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}
    failed = {
        "type": "response.failed",
        "sequence_number": 4,
        "response": {"id": "r", "status": "failed", "output": [], "error": error},
    }
    delta = _part("response.output_text.delta", content_index=0, delta="half", sequence_number=3)
    added = {
        **_part("response.content_part.added", content_index=0, part={"type": "output_text"}),
        "sequence_number": 2,
    }
    result = _engine([created, {**_added(0, MESSAGE), "sequence_number": 1}, added, delta, failed])
    assert result.reason is EndReason.ERROR
    assert isinstance(result.error, UpstreamError)
    assert ("boom" if error else "response failed") in str(result.error)
    assert "half" in orjson.dumps(to_dict(result.completion)).decode()


def test_the_lane_on_its_own_and_on_what_it_cannot_take() -> None:
    lane = Lane()
    assert lane.duplicate(1) is False  # no engine: nothing is a duplicate
    acc = _acc(
        _added(0, MESSAGE),
        _part("response.content_part.added", content_index=0, part={"type": "output_text"}),
    )
    delta = _part("response.output_text.delta", content_index=0, delta="a", sequence_number=1)
    acc.add_plain(delta)
    payload = orjson.dumps(delta)
    lane.learn(payload, {**delta, "delta": None}, True, acc)  # not a delta string: not learnt
    lane.learn(payload, _part("response.output_text.done", delta="a", sequence_number=1), True, acc)
    lane.learn(payload, {**delta, "output_index": 9}, True, acc)  # no such item
    lane.learn(payload, {**delta, "sequence_number": "1"}, True, acc)  # no dedupe id of its own
    assert not lane.shapes
    lane.learn(payload, delta, True, acc)
    lane.learn(payload, delta, True, acc)  # the same shape once
    assert len(lane.shapes) == 1
    assert not lane.try_merge(payload[:-1])  # not JSON
    assert not lane.try_merge(orjson.dumps({**delta, "sequence_number": "2"}))
    assert not lane.try_merge(orjson.dumps({**delta, "obfuscation": 5}))
    assert not lane.try_merge(orjson.dumps({**delta, "content_index": 1}))
    assert lane.try_merge(orjson.dumps({**delta, "sequence_number": 2, "delta": "b"}))
    assert _output(acc)[0]["content"][0]["text"] == "ab"
    lane.clear()
    assert not lane.shapes


def test_a_response_whose_output_is_no_list_of_objects_is_a_structure_error() -> None:
    from aggregator._core._converter import structure
    from aggregator._core._errors import StructureError

    with pytest.raises(StructureError, match="a list of objects"):
        structure({"id": "r", "output": ["x"]}, Response)
