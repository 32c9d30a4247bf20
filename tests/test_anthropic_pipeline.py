"""Everywhere chat works, Anthropic Messages works: ``results``, ``fan_in``, ``Tee``, chunk and
result stages (usage totals across protocols, by model), several messages in one source. On
the recordings of tests/data/anthropic/ (INDEX.md), with chat and Responses recordings beside
them (tests/data/openai/, tests/data/responses/, each with its INDEX.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import aggregator
import aggregator.stages as st
from aggregator import Result, SourceReport, Tee
from aggregator._core._anthropic import _models as m
from aggregator._core._converter import to_dict
from aggregator._core._engine import Engine
from aggregator._core._usage import Tokens
from aggregator.sources import from_file

from .conftest import DATA

pytestmark = pytest.mark.anyio

ANTHROPIC = sorted((DATA / "anthropic").glob("*.jsonl"))
CHAT = DATA / "openai" / "173417d55340.sse"
RESPONSES = DATA / "responses" / "azure_function_call.jsonl"
SEVERAL = DATA / "anthropic" / "anthropic_programmatic_tool_calling_prefilled_message_starts.jsonl"


def engine_results(path: Path) -> list[Result]:
    """The results of the recording, fed whole to one engine: what every path must equal."""
    engine = Engine(path.name)
    out = engine.feed(path.read_bytes()) + engine.close()
    return [r for r in out if isinstance(r, Result)]


def same(found: list[Result], path: Path) -> None:
    want = engine_results(path)
    assert [to_dict(r.completion) for r in found] == [to_dict(r.completion) for r in want]
    assert [(r.reason, r.complete, r.chunks) for r in found] == [
        (r.reason, r.complete, r.chunks) for r in want
    ]
    assert all(r.protocol == "anthropic" for r in found)


async def test_results_of_every_recording_from_a_file() -> None:
    for path in ANTHROPIC:
        async with aggregator.results(from_file(path), name=path.name) as items:
            found = [r async for r in items]
        same([r for r in found if isinstance(r, Result)], path)


async def test_several_messages_in_one_source_are_one_result_each() -> None:
    starts = SEVERAL.read_bytes().count(b'"type":"message_start"')
    found, report = await aggregator.assemble_all(from_file(SEVERAL), name="ptc")
    assert report.ok
    assert len(found) == starts == 15
    assert len({r.completion.id for r in found}) == 15
    assert [r.key for r in found] == [("ptc", n) for n in range(1, 16)]
    assert all(r.complete for r in found)
    same(found, SEVERAL)


async def test_fan_in_of_every_recording_beside_chat_and_responses() -> None:
    sources: dict[str, Any] = {p.name: from_file(p) for p in ANTHROPIC}
    sources["chat"] = from_file(CHAT)
    sources["responses"] = from_file(RESPONSES)
    async with aggregator.fan_in(sources, max_sources=8) as items:
        out = [item async for item in items]
    reports = {r.source: r for r in out if isinstance(r, SourceReport)}
    assert sorted(reports) == sorted(sources)
    assert all(r.ok for r in reports.values())
    by_source: dict[str, list[Result]] = {}
    for r in out:
        if isinstance(r, Result):
            by_source.setdefault(r.source, []).append(r)
    for path in ANTHROPIC:
        same(by_source[path.name], path)
    assert [r.protocol for r in by_source["chat"]] == ["chat"]
    assert [r.protocol for r in by_source["responses"]] == ["responses"]


async def test_tee_passes_the_bytes_unchanged_and_assembles() -> None:
    for path in (SEVERAL, DATA / "anthropic" / "anthropic_web_search_citations_delta.jsonl"):
        raw = path.read_bytes()
        pieces = [raw[i : i + 997] for i in range(0, len(raw), 997)]
        sent = []
        async with Tee(pieces, name=path.name) as upstream:
            async for data in upstream:
                sent.append(data)
        assert b"".join(sent) == raw
        same(upstream.results, path)


async def test_chunk_stages_see_typed_events_and_change_nothing() -> None:
    path = DATA / "anthropic" / "anthropic_thinking_signature_context_management.jsonl"
    seen: list[Any] = []
    pipe = (
        st.dedupe()
        | st.tap(lambda e: seen.append(e.event) if isinstance(e, st.Envelope) else None)
        | st.merge_deltas()
    )
    async with aggregator.results(from_file(path), pipe, name=path.name) as items:
        found = [r async for r in items]
    same([r for r in found if isinstance(r, Result)], path)
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "MessageStartEvent"
    assert "ContentBlockDeltaEvent" in kinds
    assert "MessageDeltaEvent" in kinds
    assert all(type(e) is not m.UnknownEvent for e in seen)


async def test_usage_totals_across_protocols_by_model_replace_never_sum() -> None:
    sources: dict[str, Any] = {p.name: from_file(p) for p in ANTHROPIC}
    sources["chat"] = from_file(CHAT)
    sources["responses"] = from_file(RESPONSES)
    pipe = st.dedupe() | st.collect_usage() | st.merge_deltas() | st.total_usage()
    async with aggregator.fan_in(sources, pipe) as items:
        out = [item async for item in items]
    (totals,) = [i for i in out if isinstance(i, st.UsageTotals)]
    # the expected totals: per message, the last usage of the recording (message_start's
    # fields updated by each message_delta's), summed across messages, by model
    want: dict[str, Tokens] = {}
    for path in ANTHROPIC:
        usage: dict[str, Any] = {}
        model = ""
        for line in path.read_bytes().splitlines():
            event = orjson.loads(line)
            if event["type"] == "message_start":
                if usage:
                    want[model] = want.get(model, Tokens()) + counted(usage)
                model, usage = event["message"]["model"], dict(event["message"].get("usage") or {})
            elif event["type"] == "message_delta":
                usage.update(event.get("usage") or {})
        if usage:
            want[model] = want.get(model, Tokens()) + counted(usage)
    for model, tokens in want.items():
        assert totals.tokens[model] == tokens, model
        assert isinstance(totals.by_model[model], m.Usage)
    basic = engine_results(DATA / "anthropic" / "anthropic_text_basic.jsonl")[0].completion
    assert isinstance(basic.usage, m.Usage)
    assert (basic.usage.input_tokens, basic.usage.output_tokens) == (12, 30)  # not 12 + 12, 31
    assert totals.streams == sum(1 for i in out if isinstance(i, Result) and i.usage is not None)


def counted(usage: dict[str, Any]) -> Tokens:
    read = usage.get("cache_read_input_tokens") or 0
    creation = usage.get("cache_creation_input_tokens") or 0
    return Tokens(
        input=(usage.get("input_tokens") or 0) + read + creation,
        output=usage.get("output_tokens") or 0,
        cache_read=read,
        cache_creation=creation,
    )
