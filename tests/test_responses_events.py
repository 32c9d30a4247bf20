"""The Responses stream's event classes: one per type of openai-python's union, every event of
every recording in tests/data/responses (vercel/ai, Apache-2.0: see its INDEX.md) structured
into its class and written back as sent, and the typed view the chunk stages get."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from aggregator import Result, to_dict
from aggregator._core._engine import Engine
from aggregator._core._errors import StructureError
from aggregator.models import responses

from .conftest import without_nulls

DATA = Path(__file__).parent / "data" / "responses"
RECORDINGS = sorted(DATA.glob("*.jsonl"))


def _union() -> tuple[Any, ...]:
    from openai.types.responses import response_stream_event

    union = response_stream_event.ResponseStreamEvent
    return typing.get_args(typing.get_args(union)[0])


def test_one_class_per_type_of_openai_pythons_union_with_its_fields() -> None:
    union = _union()
    assert len(union) == len(responses.EVENT_CLASSES) >= 50
    for theirs in union:
        ours = getattr(responses, theirs.__name__)
        (kind,) = typing.get_args(theirs.model_fields["type"].annotation)
        assert responses.EVENT_CLASSES[kind] is ours
        assert ours().type == kind
        names = {f.name for f in attrs.fields(ours)} - {"extras"}  # type: ignore[arg-type]
        assert names == set(theirs.model_fields), theirs.__name__


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_every_event_of_every_recording_structures_and_writes_back(path: Path) -> None:
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        raw = orjson.loads(line)
        event = responses.structure_event(raw)
        expected = responses.EVENT_CLASSES.get(raw["type"], responses.UnknownEvent)
        assert type(event) is expected
        assert event.type == raw["type"]
        assert event.sequence_number == raw.get("sequence_number")
        assert to_dict(event) == without_nulls(raw)  # unknown fields kept (extras)


def test_unknown_types_and_fields_are_kept_as_data() -> None:
    raw = {"type": "response.rate_limits.updated", "sequence_number": 9, "rate_limits": [{}]}
    event = responses.structure_event(raw)
    assert isinstance(event, responses.UnknownEvent)
    assert event.extras == {"rate_limits": [{}]}
    text = {"type": "response.output_text.delta", "delta": "a", "obfuscation": "xyz"}
    known = responses.structure_event(text)
    assert isinstance(known, responses.ResponseTextDeltaEvent)
    assert known.delta == "a"
    assert known.extras == {"obfuscation": "xyz"}
    created = responses.structure_event(
        {"type": "response.created", "response": {"id": "r", "model": "m", "output": []}}
    )
    assert isinstance(created, responses.ResponseCreatedEvent)
    assert isinstance(created.response, responses.Response)


def test_a_field_of_the_wrong_type_is_a_located_structure_error() -> None:
    with pytest.raises(StructureError) as caught:
        responses.structure_event(
            {"type": "response.output_text.delta", "sequence_number": "7"},
            source="s",
            where="line 3",
        )
    assert "sequence_number" in str(caught.value)
    assert "line 3" in str(caught.value)


class _Recorder:
    """A chunk stage that reads each envelope's typed event, and lets it through."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def process_batch(self, batch: list[Any]) -> list[Any]:
        for item in batch:
            event = getattr(item, "event", None)
            if event is not None:
                self.events.append(event)
        return batch

    def finish(self, batch: list[Any]) -> None:
        pass


@pytest.mark.parametrize(
    "name", ["openai_mcp_approved_call", "xai_reasoning_summary_text_uuid_ids"]
)
def test_the_chunk_stages_see_the_typed_events(name: str) -> None:
    path = DATA / f"{name}.jsonl"
    recorder = _Recorder()
    engine = Engine("s", stages=[recorder])
    out = engine.feed(path.read_bytes()) + engine.close()
    bare = Engine("s")
    (plain,) = [r for r in bare.feed(path.read_bytes()) + bare.close() if isinstance(r, Result)]
    results = [r for r in out if isinstance(r, Result)]
    assert [to_dict(r.completion) for r in results] == [to_dict(plain.completion)]
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
    assert len(recorder.events) == len(lines) > 10
    assert all(isinstance(e, responses.ResponseEvent) for e in recorder.events)
    assert [e.type for e in recorder.events] == [x["type"] for x in lines]
