"""OpenTelemetry GenAI telemetry as a result stage, with the SDK's in-memory exporter and reader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aggregator
from aggregator import EndReason, Result, stages
from aggregator._core._usage import tokens

from .conftest import DATA

JSON = dict[str, Any]


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer = TracerProvider()
        self.tracer.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter = MeterProvider(metric_readers=[self.reader])

    def stage(self, **options: Any) -> stages.genai_telemetry:
        return stages.genai_telemetry(self.tracer, self.meter, **options)

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out[metric.name] = list(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer.shutdown()
    telemetry.meter.shutdown()


def chunk(delta: JSON, finish: str | None = None, **more: Any) -> bytes:
    payload = {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **more,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
GOOD = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, "stop"),
    b'data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test",'
    b'"choices":[],"usage":' + orjson.dumps(USAGE) + b"}\n\n",
    b"data: [DONE]\n\n",
]


async def paced(pieces: list[bytes], pause: float = 0.005) -> AsyncIterator[bytes]:
    for piece in pieces:
        await anyio.sleep(pause)
        yield piece


async def run(source: Any, stage: stages.genai_telemetry) -> list[Result]:
    pipeline = stages.default_pipeline() | stage
    async with aggregator.results(source, stages=pipeline) as items:
        return [item async for item in items if isinstance(item, Result)]


@pytest.mark.anyio
async def test_a_stream_gives_one_span_whose_attributes_are_the_results(otel: Telemetry) -> None:
    (result,) = await run(paced(GOOD), otel.stage())
    (span,) = otel.finished()
    assert span.name == "chat gpt-test"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    timings = result.timings
    assert timings is not None
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "openai.api.type": "chat_completions",
        "gen_ai.request.stream": True,
        "gen_ai.response.id": result.completion.id,
        "gen_ai.response.model": "gpt-test",
        "gen_ai.response.finish_reasons": ("stop",),
        "openai.response.system_fingerprint": "fp_1",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "gen_ai.response.time_to_first_chunk": timings.time_to_first_chunk,
    }
    assert span.start_time is not None
    assert span.end_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(timings.duration, abs=1e-3)
    metrics = otel.metrics()
    by_type = {
        p.attributes["gen_ai.token.type"]: p.sum for p in metrics["gen_ai.client.token.usage"]
    }
    assert by_type == {"input": 11, "output": 7}
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.sum == pytest.approx(timings.duration)
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-test",
    }
    (first,) = metrics["gen_ai.client.operation.time_to_first_chunk"]
    assert first.sum == pytest.approx(timings.time_to_first_chunk)
    (per_chunk,) = metrics["gen_ai.client.operation.time_per_output_chunk"]
    assert per_chunk.sum == pytest.approx(timings.time_per_output_chunk)


@pytest.mark.anyio
async def test_a_cut_off_stream_and_an_error_payload_each_give_one_span_with_the_error(
    otel: Telemetry,
) -> None:
    (cut,) = await run(paced(GOOD[:3]), otel.stage(provider_name="azure.ai.openai"))
    error = b'data: {"error": {"message": "overloaded", "code": "server_overloaded"}}\n\n'
    (failed,) = await run(paced([*GOOD[:2], error]), otel.stage())
    assert (cut.reason, failed.reason) == (EndReason.CUT_OFF, EndReason.ERROR)
    first, second = otel.finished()
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["error.type"] == "cut_off"
    assert first.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["error.type"] == "server_overloaded"
    assert second.status.status_code is StatusCode.ERROR
    assert second.status.description is not None
    assert "overloaded" in second.status.description
    errors = {
        p.attributes["error.type"] for p in otel.metrics()["gen_ai.client.operation.duration"]
    }
    assert errors == {"cut_off", "server_overloaded"}


@pytest.mark.anyio
async def test_a_client_that_left_a_tee_still_gives_its_span(otel: Telemetry) -> None:
    telemetry = otel.stage()
    tee = aggregator.Tee(paced(GOOD, 0.01), on_disconnect="stop")
    async with tee:
        async for _piece in tee:
            break  # the downstream client left after the first piece
    for result in tee.results:
        telemetry.record(result)
    (span,) = otel.finished()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "cancelled"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.anyio
async def test_attributes_on_a_span_of_the_callers(otel: Telemetry) -> None:
    tracer = otel.tracer.get_tracer("gateway")
    with tracer.start_as_current_span("POST /v1/chat/completions") as span:
        await run(paced(GOOD), otel.stage(span=span, attributes={"server.port": 8080}))
    (only,) = otel.finished()
    assert only.name == "POST /v1/chat/completions"
    assert only.attributes is not None
    assert only.attributes["gen_ai.usage.output_tokens"] == 7
    assert only.attributes["server.port"] == 8080


@pytest.mark.anyio
async def test_every_recording_gives_one_span_per_completion(otel: Telemetry) -> None:
    paths = sorted(DATA.rglob("*.sse")) + sorted(DATA.rglob("*.jsonl"))
    sources = {str(p.relative_to(DATA)): [p.read_bytes()] for p in paths}
    pipeline = stages.default_pipeline() | otel.stage()
    async with aggregator.fan_in(sources, stages=pipeline, strict=False) as items:
        got = [item async for item in items if isinstance(item, Result)]
    spans = otel.finished()
    assert len(spans) == len(got) > 20
    for span, result in zip(spans, got, strict=True):  # the stage sees them in this order
        assert span.attributes is not None
        attributes, error_type = otel_attributes(result)
        assert dict(span.attributes) == {
            k: tuple(v) if isinstance(v, list) else v for k, v in attributes.items()
        }
        assert span.attributes.get("error.type") == error_type
        assert (error_type is None) == result.complete
        counted = tokens(result.usage)
        if counted is not None:
            assert span.attributes["gen_ai.usage.output_tokens"] == counted.output
        if result.completion.id:
            assert span.attributes["gen_ai.response.id"] == result.completion.id


def otel_attributes(result: Result) -> tuple[dict[str, Any], str | None]:
    return stages.genai_telemetry().attributes(result)


def test_tokens_speak_one_vocabulary_for_every_protocol() -> None:
    chat = aggregator.models.Usage(prompt_tokens=10, completion_tokens=5)
    assert tokens(chat) == stages.Tokens(input=10, output=5)
    responses = {
        "input_tokens": 10,
        "output_tokens": 5,
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    assert tokens(responses) == stages.Tokens(input=10, output=5, cache_read=3, reasoning=1)
    anthropic = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    counted = tokens(anthropic)
    assert counted == stages.Tokens(input=130, output=5, cache_read=100, cache_creation=20)
    assert counted is not None
    assert counted.total == 135
    assert tokens({"input_tokens": "9", "output_tokens": -1}) == stages.Tokens()
    assert tokens(None) is None


# -- every protocol: the attributes are the stream's, and every bad end gives one span --------

PROTOCOL_RECORDINGS = {
    "chat": "openai/e2aad469b71d.sse",
    "responses": "responses/azure_text_single_delta.jsonl",
    "anthropic": "anthropic/anthropic_text_basic.jsonl",
}
PROTOCOL_ERRORS: dict[str, tuple[JSON, str]] = {
    "chat": (
        {"error": {"message": "overloaded", "code": "server_overloaded"}},
        "server_overloaded",
    ),
    "responses": (
        {
            "type": "error",
            "code": "server_error",
            "message": "boom",
            "param": None,
            "sequence_number": 999,
        },
        "server_error",
    ),
    "anthropic": (
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        "overloaded_error",
    ),
}


def protocol_events(protocol: str) -> list[JSON]:
    """The recording's payloads, read here with orjson, not through the library."""
    data = (DATA / PROTOCOL_RECORDINGS[protocol]).read_bytes()
    if protocol == "chat":
        lines = [line[6:] for line in data.splitlines() if line.startswith(b"data: ")]
        return [orjson.loads(line) for line in lines if line != b"[DONE]"]
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def as_sse(events: list[JSON], protocol: str, done: bool) -> list[bytes]:
    """As a server sends them: one read per event (with its SSE name where the protocol has
    one), ``[DONE]`` at the end for chat."""
    out = []
    for event in events:
        name = b"" if protocol == "chat" else b"event: " + str(event["type"]).encode() + b"\n"
        out.append(name + b"data: " + orjson.dumps(event) + b"\n\n")
    if done and protocol == "chat":
        out.append(b"data: [DONE]\n\n")
    return out


def expected_attributes(protocol: str, events: list[JSON]) -> JSON:
    """id, model and token counts as the recording itself states them."""
    if protocol == "chat":
        usage = next(e["usage"] for e in events if e.get("usage"))
        return {
            "gen_ai.response.id": events[0]["id"],
            "gen_ai.response.model": events[0]["model"],
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["completion_tokens"],
        }
    if protocol == "responses":
        final = next(e["response"] for e in events if e["type"] == "response.completed")
        return {
            "gen_ai.response.id": final["id"],
            "gen_ai.response.model": final["model"],
            "gen_ai.usage.input_tokens": final["usage"]["input_tokens"],
            "gen_ai.usage.output_tokens": final["usage"]["output_tokens"],
        }
    message = events[0]["message"]
    usage = {**message["usage"]}
    for event in events:
        if event["type"] == "message_delta":
            usage.update({k: v for k, v in event["usage"].items() if v is not None})
    return {
        "gen_ai.response.id": message["id"],
        "gen_ai.response.model": message["model"],
        "gen_ai.usage.input_tokens": usage["input_tokens"]
        + (usage.get("cache_creation_input_tokens") or 0)
        + (usage.get("cache_read_input_tokens") or 0),
        "gen_ai.usage.output_tokens": usage["output_tokens"],
    }


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", sorted(PROTOCOL_RECORDINGS))
async def test_every_protocol_whole_cut_off_failed_and_left(otel: Telemetry, protocol: str) -> None:
    events = protocol_events(protocol)
    half = len(events) // 2
    error, code = PROTOCOL_ERRORS[protocol]
    (whole,) = await run(paced(as_sse(events, protocol, True), 0), otel.stage())
    (cut,) = await run(paced(as_sse(events[:half], protocol, False), 0), otel.stage())
    (failed,) = await run(paced(as_sse([*events[:half], error], protocol, False), 0), otel.stage())
    tee = aggregator.Tee(paced(as_sse(events, protocol, True), 0.005), on_disconnect="stop")
    async with tee:
        async for _piece in tee:
            break  # the client left after the first event
    (left,) = tee.results
    otel.stage().record(left)
    spans = otel.finished()
    assert len(spans) == 4  # exactly one span for each stream, however it ended
    assert (whole.protocol, cut.protocol, failed.protocol) == (protocol,) * 3
    assert whole.complete
    attributes = dict(spans[0].attributes or {})
    for key, value in expected_attributes(protocol, events).items():
        assert attributes[key] == value, key
    assert "error.type" not in attributes
    assert spans[0].status.status_code is StatusCode.UNSET
    for span, error_type in zip(spans[1:], ("cut_off", code, "cancelled"), strict=True):
        assert span.attributes is not None
        assert span.attributes["error.type"] == error_type
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["gen_ai.response.id"] == attributes["gen_ai.response.id"]


@pytest.mark.anyio
async def test_a_json_lines_source_that_ran_out_early_is_cut_off_not_malformed(
    otel: Telemetry,
) -> None:
    events = protocol_events("responses")
    lines = [orjson.dumps(event) + b"\n" for event in events[: len(events) // 2]]
    (result,) = await run(paced(lines, 0), otel.stage())
    assert result.reason is EndReason.EXHAUSTED  # no end marker in JSON Lines
    assert not result.complete
    (span,) = otel.finished()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "cut_off"
