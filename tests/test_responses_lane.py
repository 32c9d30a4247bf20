"""The Responses fast lane against the full path: every recording of tests/data/responses
(vercel/ai, Apache-2.0: see its INDEX.md), as JSON Lines and as SSE, read whole and cut where
Hypothesis says, with events replayed and deltas changed; the same results with the lane on and
off, and the lane merging most deltas where it can."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator._core._engine import Engine
from aggregator._core._responses._lane import Lane
from aggregator._core._results import Result

from .test_engine import TEXT, summary

DATA = Path(__file__).parent / "data" / "responses"
RECORDINGS = sorted(DATA.glob("*.jsonl"))
_DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")
_REASONING = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


def _events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _frame(events: list[dict[str, Any]], sse: bool) -> bytes:
    if sse:
        return b"".join(
            b"event: " + str(e.get("type")).encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
            for e in events
        )
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _run(reads: list[bytes], lane: bool, **kw: Any) -> tuple[list[Any], int]:
    engine = Engine("s", fast_lane=lane, **kw)
    out: list[Any] = []
    for read in reads:
        out += engine.feed(read)
    out += engine.close()
    merged = 0 if engine._lane is None else engine._lane.merged
    return out, merged


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def assert_same(reads: list[bytes], **kw: Any) -> int:
    """The lane on and off give the same results; how many payloads the lane merged."""
    on, merged = _run(reads, True, **kw)
    off, _ = _run(reads, False, **kw)
    assert summary(on) == summary(off)
    return merged


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("sse", [False, True], ids=["jsonl", "sse"])
def test_every_recording_read_whole(path: Path, sse: bool) -> None:
    events = _events(path)
    merged = assert_same([_frame(events, sse)])
    deltas = sum(1 for e in events if e["type"] in _DELTAS + _REASONING)
    if deltas > 4 and "rotating_item_ids" not in path.stem:  # (a new item id on every event)
        # the lane takes most of them (each part's first delta takes the full path)
        assert merged >= deltas // 2, (merged, deltas)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    path=st.sampled_from(RECORDINGS),
    sse=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    replays=st.lists(st.integers(min_value=0), max_size=8),
    texts=st.lists(TEXT, max_size=8),
    strict=st.booleans(),
)
def test_cut_replayed_and_changed_recordings(
    path: Path, sse: bool, cuts: list[int], replays: list[int], texts: list[str], strict: bool
) -> None:
    events = _events(path)
    deltas = [i for i, e in enumerate(events) if e["type"] in _DELTAS]
    for k, text in enumerate(texts):  # tricky strings where the lane cuts: escapes, quotes
        if deltas:
            at = deltas[k * 7 % len(deltas)]
            events[at] = {**events[at], "delta": text}
    for r in replays:  # a proxy's retry sends an event again, now or later
        events.insert(min(len(events), r % (len(events) + 1) + 1), events[r % len(events)])
    assert_same(_cut(_frame(events, sse), cuts), strict=strict)


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=30),
    keys=st.permutations(["type", "sequence_number", "item_id", "output_index", "delta"]),
    obfuscate=st.booleans(),
    spaced=st.booleans(),
)
def test_key_order_spacing_and_obfuscation(
    texts: list[str], keys: list[str], obfuscate: bool, spaced: bool
) -> None:
    base = _events(DATA / "azure_function_call.jsonl")
    at = next(i for i, e in enumerate(base) if e["type"] == _DELTAS[1])
    template = base[at]
    made = []
    for i, text in enumerate(texts):
        event = {**template, "delta": text, "sequence_number": 1000 + i}
        event = {k: event[k] for k in keys if k in event} | event
        if obfuscate:
            event["obfuscation"] = "ab" * (i % 4)
        made.append(event)
    separators = (", ", ": ") if spaced else (",", ":")
    lines = [orjson.dumps(e) + b"\n" for e in base[:at]]
    lines += [
        json.dumps(e, separators=separators, ensure_ascii=spaced).encode() + b"\n" for e in made
    ]
    lines += [orjson.dumps(e) + b"\n" for e in base[at:]]
    merged = assert_same([b"".join(lines)])
    assert merged >= len(texts) - 1


def test_a_replayed_delta_through_the_lane_merges_once() -> None:
    events = _events(DATA / "openai_web_search_six_calls_url_citations.jsonl")
    at = [i for i, e in enumerate(events) if e["type"] == _DELTAS[0]]
    doubled = [*events[: at[5]], events[at[3]], events[at[4]], *events[at[5] :]]
    on, merged = _run([_frame(doubled, False)], True)
    assert merged
    (result,) = [r for r in on if isinstance(r, Result)]
    assert result.duplicates == 2
    assert result.complete


def test_an_item_added_again_drops_the_shapes_of_the_one_before() -> None:
    events = _events(DATA / "azure_function_call.jsonl")
    at = [i for i, e in enumerate(events) if e["type"] == _DELTAS[1]]
    added = next(e for e in events if e["type"] == "response.output_item.added")
    again = {**added, "sequence_number": 10_000}
    cut = [*events[: at[3]], again, *events[at[3] : at[-1]]]  # cut off: no item.done
    assert_same([_frame(cut, False)])
    assert_same([_frame(cut, False)], dedupe_ids=None)
    assert_same([_frame([*events[: at[3]], again, *events[at[3] :]], False)])


def _run_record_by_record(reads: list[bytes], **kw: Any) -> list[Any]:
    """:func:`_run` with the lane on but its runs off: each payload asked of ``try_merge``."""
    runs = Lane.merge_run
    try:
        Lane.merge_run = None  # type: ignore[assignment, method-assign]  # (the engine asks)
        return _run(reads, True, **kw)[0]
    finally:
        Lane.merge_run = runs  # type: ignore[method-assign]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    again=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0)), max_size=8),
    changed=st.lists(st.integers(min_value=0), max_size=4),
    lowered=st.lists(st.integers(min_value=0, max_value=10_000), max_size=4),
    window=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    budget=st.one_of(st.none(), st.integers(min_value=2_000, max_value=200_000)),
)
def test_the_lanes_runs_decide_as_record_by_record_and_the_full_path(
    cuts: list[int],
    again: list[tuple[int, int]],
    changed: list[int],
    lowered: list[int],
    window: int | None,
    budget: int | None,
) -> None:
    """A long run of deltas, with what ends a run inside it: exact replays near and far (beyond
    a small dedupe window, so the run's ids push older ones out), an id sent again with another
    delta, a sequence number lower than the one before, and a ``max_completion`` the stream
    passes mid-run; read whole or cut. The lane's runs, the lane record by record and the full
    path give the same results."""
    from aggregator import Limits

    events = _events(DATA / "openai_compaction_item_long_text.jsonl")
    deltas = [i for i, e in enumerate(events) if e["type"] == _DELTAS[0]]
    for at in changed:  # the same sequence number, another delta: kept, with a problem
        i = deltas[at % len(deltas)]
        events.insert(i + 1, {**events[i], "delta": "changed"})
    for at in lowered:  # a number below the last: not a replay, merged by the full path
        i = deltas[at % len(deltas)]
        events[i] = {**events[i], "sequence_number": 1_000_000 + at}
        events.insert(i + 1, {**events[i + 1], "sequence_number": 500_000 + at})
    for source, distance in again:  # an exact replay, soon after or long after
        i = deltas[source % len(deltas)]
        events.insert(min(len(events), i + 1 + distance % 300), events[i])
    kw: dict[str, Any] = {"dedupe_ids": window}
    if budget is not None:
        kw["limits"] = Limits(max_completion=budget)
    reads = _cut(_frame(events, False), cuts)
    runs, merged = _run(reads, True, **kw)
    assert summary(runs) == summary(_run_record_by_record(reads, **kw))
    assert summary(runs) == summary(_run(reads, False, **kw)[0])
    if not cuts and budget is None:
        assert merged > len(deltas) // 2


def test_a_run_stops_where_the_dedupe_must_decide() -> None:
    """A replay and a reused id inside a long run end it there; each is decided by the dedupe
    (one duplicate dropped, one reuse kept with its problem), and the runs go on after them."""
    events = _events(DATA / "openai_compaction_item_long_text.jsonl")
    deltas = [i for i, e in enumerate(events) if e["type"] == _DELTAS[0]]
    replay, reused = events[deltas[100]], {**events[deltas[200]], "delta": "again"}
    events.insert(deltas[200] + 1, reused)
    events.insert(deltas[100] + 1, replay)
    calls: list[int] = []
    runs = Lane.merge_run

    def counted(
        self: Lane, records: list[Any], start: int, room: int, seen: Any, dedupe: bool
    ) -> tuple[int, int]:
        stop, size = runs(self, records, start, room, seen, dedupe)
        calls.append(stop - start)
        return stop, size

    Lane.merge_run = counted  # type: ignore[method-assign]
    try:
        out, _ = _run([_frame(events, False)], True)
    finally:
        Lane.merge_run = runs  # type: ignore[method-assign]
    (result,) = [r for r in out if isinstance(r, Result)]
    assert result.duplicates == 1
    assert [str(p) for p in result.problems] == [
        str(p)
        for p in next(
            r for r in _run([_frame(events, False)], False)[0] if isinstance(r, Result)
        ).problems
    ]
    assert len(result.problems) == 1
    assert "came again with another payload" in str(result.problems[0])
    long_runs = [n for n in calls if n > 50]
    assert len(long_runs) >= 3, calls  # before the replay, between the two, after the reuse
    assert summary(out) == summary(_run([_frame(events, False)], False)[0])
