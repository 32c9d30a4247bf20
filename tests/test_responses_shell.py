"""The Responses protocol everywhere chat works: ``results``, ``fan_in``, ``Tee`` and the stages
(dedupe, usage totals across protocols), on asyncio and trio, on the recordings of
tests/data/responses (vercel/ai, Apache-2.0: see its INDEX.md), with tests/data/openai and
tests/data/anthropic (see their INDEX.md) beside them for the totals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import aggregator
from aggregator import EndReason, Result, SourceReport, Tee, to_dict
from aggregator._core._engine import Engine
from aggregator._core._usage import tokens
from aggregator.models import responses
from aggregator.stages import total_usage

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent / "data"
DATA = ROOT / "responses"
RECORDINGS = sorted(DATA.glob("*.jsonl"))
LOOP = DATA / "openai_reasoning_encrypted_summary_tool_loop_4_responses.jsonl"


def _sse(path: Path, *, ids: bool = False) -> bytes:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    out = []
    for n, line in enumerate(lines):
        head = f"id: {n}\n".encode() if ids else b""
        kind = orjson.loads(line)["type"].encode()
        out.append(head + b"event: " + kind + b"\ndata: " + line + b"\n\n")
    return b"".join(out)


def _engine(data: bytes, name: str) -> list[Any]:
    engine = Engine(name)
    return [to_dict(r.completion) for r in engine.feed(data) + engine.close() if type(r) is Result]


def _pieces(data: bytes, size: int = 613) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_results_on_every_recording() -> None:
    for path in RECORDINGS:
        data = _sse(path)
        async with aggregator.results(_pieces(data), name=path.name) as items:
            found = [item async for item in items]
        report = found.pop()
        assert isinstance(report, SourceReport)
        results = [r for r in found if isinstance(r, Result) and r.protocol == "responses"]
        assert len(results) == len(found)
        assert [to_dict(r.completion) for r in results] == _engine(data, path.name), path.name
        assert report.completions == len(found) >= 1


async def test_several_responses_in_one_source_come_out_one_result_each() -> None:
    async with aggregator.results(_pieces(_sse(LOOP)), name="loop") as items:
        found = [item async for item in items if isinstance(item, Result)]
    created = [
        orjson.loads(line)["response"]["id"]
        for line in LOOP.read_bytes().splitlines()
        if b'"response.created"' in line
    ]
    assert len(found) == len(created) == 4
    assert [r.completion.id for r in found] == created
    assert all(isinstance(r.completion, responses.Response) for r in found)
    assert all(r.complete and r.reason is EndReason.DONE for r in found)


async def test_fan_in_of_every_recording() -> None:
    sources = {path.name: _pieces(_sse(path)) for path in RECORDINGS}
    found: dict[str, list[Any]] = {name: [] for name in sources}
    reports = []
    async with aggregator.fan_in(sources, max_sources=8) as items:
        async for item in items:
            if isinstance(item, Result):
                found[item.source].append(to_dict(item.completion))
            else:
                reports.append(item)
    assert len(reports) == len(RECORDINGS)
    for path in RECORDINGS:
        assert found[path.name] == _engine(_sse(path), path.name), path.name


@pytest.mark.parametrize("on_disconnect", ["finish", "stop"])
async def test_tee_passes_the_bytes_on_and_assembles(on_disconnect: Any) -> None:
    data = _sse(LOOP)
    seen = []
    async with Tee(_pieces(data), name="tee", on_disconnect=on_disconnect) as upstream:
        async for piece in upstream:
            seen.append(piece)
    assert b"".join(seen) == data
    assert [to_dict(r.completion) for r in upstream.results] == _engine(data, "tee")


async def test_tee_when_the_client_leaves_early_finishes_the_responses() -> None:
    data = _sse(LOOP)
    async with Tee(_pieces(data), name="tee", on_disconnect="finish") as upstream:
        async for _ in upstream:
            break
    assert [to_dict(r.completion) for r in upstream.results] == _engine(data, "tee")
    assert all(r.complete for r in upstream.results)


async def test_dedupe_drops_replayed_events_by_sequence_number_and_by_sse_id() -> None:
    path = DATA / "openai_web_search_six_calls_url_citations.jsonl"
    events = [line for line in path.read_bytes().splitlines() if line.strip()]
    replayed = b"".join(line + b"\n" for line in events[:40] + events[20:])  # a retry's replay
    async with aggregator.results([replayed], name="replay") as items:
        (result,) = [item async for item in items if isinstance(item, Result)]
    assert result.duplicates == 20
    assert to_dict(result.completion) == _engine(path.read_bytes(), "plain")[0]
    assert result.complete
    data = _sse(path, ids=True)
    cut = data.index(b"id: 30\n")
    again = data[: data.index(b"id: 40\n")] + data[cut:]
    async with aggregator.results([again], name="sse") as items:
        (result,) = [item async for item in items if isinstance(item, Result)]
    assert result.duplicates == 10
    assert to_dict(result.completion) == _engine(path.read_bytes(), "plain")[0]


async def test_usage_totals_across_protocols_by_model() -> None:
    chat = ROOT / "openai" / "173417d55340.sse"
    anthropic = sorted((ROOT / "anthropic").glob("*.jsonl"))[0]
    sources: dict[str, Any] = {"chat": [chat.read_bytes()], "anthropic": [anthropic.read_bytes()]}
    sources |= {p.name: [_sse(p)] for p in (LOOP, DATA / "azure_text_single_delta.jsonl")}
    stage = total_usage()
    async with aggregator.fan_in(sources, aggregator.stages.default_pipeline() | stage) as items:
        found = [item async for item in items]
    (totals,) = [item for item in found if isinstance(item, aggregator.stages.UsageTotals)]
    results = [item for item in found if isinstance(item, Result)]
    assert {r.protocol for r in results} == {"chat", "anthropic", "responses"}
    for model, counted in totals.tokens.items():
        mine = [r for r in results if (getattr(r.completion, "model", "") or "") == model]
        each = [t for r in mine if (t := tokens(r.usage)) is not None]
        assert counted.input == sum(t.input for t in each)
        assert counted.output == sum(t.output for t in each)
    loop = [r for r in results if r.source == LOOP.name]
    by_hand = [orjson.loads(x) for x in LOOP.read_bytes().splitlines() if b"completed" in x]
    usage = [e["response"]["usage"] for e in by_hand if e["type"] == "response.completed"]
    model = loop[0].completion.model
    assert totals.by_model[model].output_tokens == sum(u["output_tokens"] for u in usage)
    assert totals.by_model[model].input_tokens == sum(u["input_tokens"] for u in usage)
    assert totals.streams == len(results)
