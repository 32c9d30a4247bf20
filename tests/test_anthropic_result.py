"""The Anthropic message's result keeps the typed objects its checks built (the message's fields,
its usage, the blocks no delta changed): ``MessageAccumulator.result`` against the long way,
``structured`` (the whole message built as JSON and structured once), after every event of
every recording in tests/data/anthropic (INDEX.md), and of streams Hypothesis makes from them:
events dropped, repeated, moved and changed, unknown events and deltas, fields a delta should
not carry."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator._core._anthropic._accumulate import MessageAccumulator
from aggregator._core._converter import to_dict
from aggregator._core._errors import ConflictError, LimitError
from aggregator._core._limits import Limits

DATA = Path(__file__).parent / "data" / "anthropic"
RECORDINGS = sorted(DATA.glob("*.jsonl"))


def _events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _same(acc: MessageAccumulator, *, written: bool) -> None:
    fast, slow = acc.result(), acc.structured()
    assert fast == slow
    if written:  # (and as JSON, less often: it is slower)
        assert to_dict(fast) == to_dict(slow)
        assert to_dict(fast, nulls=True) == to_dict(slow, nulls=True)


def _fold(events: list[Any], limits: Limits | None = None) -> int:
    """Feed ``events`` as the engine would (a new message at each ``message_start``, refused
    events kept out), comparing the two ways after each; how many messages."""
    acc: MessageAccumulator | None = None
    messages = 0
    for event in events:
        if acc is None or (event.__class__ is dict and event.get("type") == "message_start"):
            acc = MessageAccumulator(limits=limits or Limits())
            messages += 1
        if event.__class__ is dict and event.get("type") in ("ping", "error"):
            continue
        with contextlib.suppress(ConflictError, LimitError):  # refused: the engine's rule
            acc.add_plain(event)
        _same(acc, written=event.get("type") != "content_block_delta")
    return messages


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_every_recording_after_every_event(path: Path) -> None:
    assert _fold(_events(path)) >= 1


_ODD_EVENTS: list[Any] = [
    {"type": "content_block_delta", "index": 0, "delta": {"type": "compaction_delta", "x": 1}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "new_delta", "y": None}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta"}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "citations_delta", "citation": {"type": "char_location", "n": None}},
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "a"}},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "mystery", "z": None}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
    {"type": "message_delta", "delta": {"usage": {"output_tokens": 9}}},
    {"type": "message_delta", "delta": {"content": []}},
    {"type": "message_delta", "delta": {"stop_reason": None}, "context_management": None},
    {"type": "message_delta", "delta": {}, "usage": {"output_tokens": "many"}},
    {"type": "message_delta", "delta": {}, "usage": {"cache_read_input_tokens": None}},
    {"type": "message_delta", "delta": {}, "container": {"id": "c", "expires_at": "t"}},
    {"type": "some_new_event", "a": [None, {"b": None}]},
    {"type": "message_stop"},
]


_CHANGES = st.lists(
    st.tuples(
        st.sampled_from(["drop", "repeat", "move", "odd"]),
        st.integers(min_value=0, max_value=10**6),
        st.integers(min_value=0, max_value=10**6),
    ),
    max_size=6,
)


def _changed(path: Path, changes: list[tuple[str, int, int]]) -> list[Any]:
    events: list[Any] = _events(path)
    for how, a, b in changes:
        at = a % (len(events) or 1)
        if how == "drop" and events:
            del events[at]
        elif how == "repeat" and events:
            events.insert(at, events[at])
        elif how == "move" and events:
            events.insert(b % len(events), events.pop(at))
        else:
            events.insert(at, _ODD_EVENTS[b % len(_ODD_EVENTS)])
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(RECORDINGS),
    changes=_CHANGES,
    limit=st.sampled_from([None, 2, 5]),
)
def test_changed_recordings_after_every_event(
    path: Path, changes: list[tuple[str, int, int]], limit: int | None
) -> None:
    _fold(_changed(path, changes), Limits(max_blocks=limit) if limit else None)
