"""OpenTelemetry GenAI telemetry of assembled streams: one span and the client metrics per result.

Theory of operation: a result stage (after ``merge_deltas()``), so it sees each stream once,
whole or partial, with its end reason, usage and :class:`~aggregator.Timings`: what the
instrumentation libraries each re-derive from the chunks, and often get wrong on streams that
fail or are left early. For each :class:`~aggregator.Result` it starts and ends a span (kind
``CLIENT``), its start and end times those the shell read when the stream's request started and
when it ended, and records the GenAI client metrics. Nothing is done per chunk, so the hot path
is the same with or without it. The names follow the OpenTelemetry GenAI semantic conventions
(Development stability; the names as of semantic-conventions 7b0c0fe, kept in this one module).

Only ``opentelemetry-api`` is imported (the ``[otel]`` extra); with no SDK configured, the API's
no-op providers make this cost a few calls per stream.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, final

from ._core._errors import LimitError, UpstreamError
from ._core._results import EndReason, Result
from ._core._usage import tokens
from ._stages import Stage

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["genai_telemetry"]

#: The provider each protocol speaks for, unless the caller says (``provider_name``).
_PROVIDERS = {"chat": "openai", "responses": "openai", "anthropic": "anthropic"}
#: ``openai.api.type`` by protocol.
_OPENAI_API = {"chat": "chat_completions", "responses": "responses"}


@final
class genai_telemetry(Stage):
    """A span and the GenAI client metrics for each result (a result stage; extra ``[otel]``).

    Args:
        tracer_provider: where spans go (default: the global one).
        meter_provider: where metrics go (default: the global one).
        provider_name: ``gen_ai.provider.name`` (default: ``openai`` for Chat Completions and
            the Responses API, ``anthropic`` for Anthropic Messages; say ``azure.ai.openai``,
            ``groq``... for the server you call).
        span: a span of yours to put each result's attributes on, instead of starting one
            (for a source of one stream, inside the span of its request); it is not ended.
        attributes: more attributes for every span and metric point (``server.address``...).

    Each span has ``gen_ai.operation.name``, ``gen_ai.provider.name``,
    ``gen_ai.request.stream``, ``gen_ai.response.id``, ``gen_ai.response.model``,
    ``gen_ai.response.finish_reasons``, the usage (``gen_ai.usage.input_tokens``, cached tokens
    included, ``output_tokens``, ``cache_read.input_tokens``, ``cache_creation.input_tokens``,
    ``reasoning.output_tokens``), ``gen_ai.response.time_to_first_chunk``, and ``error.type``
    with an error status for a stream that ended badly (``cut_off``, ``cancelled``: the client
    left, ``limit``, an upstream error's code). The metrics are the histograms
    ``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``,
    ``gen_ai.client.operation.time_to_first_chunk`` and
    ``gen_ai.client.operation.time_per_output_chunk`` (one point per stream: its mean).

    For a :class:`~aggregator.Tee`, call :meth:`record` with each of its results.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        provider_name: str | None = None,
        span: Span | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        from opentelemetry import metrics, trace

        from . import __version__

        self._tracer = trace.get_tracer("aggregator", __version__, tracer_provider)
        meter = metrics.get_meter("aggregator", __version__, meter_provider)
        self._provider = provider_name
        self._span = span
        self._attributes = dict(attributes or {})
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of tokens used"
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration"
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
        )
        self._per_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Mean time between output chunks after the first, per stream",
        )

    def process(self, item: Any, out: list[Any]) -> None:
        if item.__class__ is Result:
            self.record(item)
        out.append(item)

    def record(self, result: Result) -> None:
        """Emit the span and the metrics of one result."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        attributes, error_type = self.attributes(result)
        common: dict[str, Any] = {
            k: attributes[k]
            for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.response.model")
            if k in attributes
        }
        common.update(self._attributes)
        if error_type is not None:
            common["error.type"] = error_type
        timings = result.timings
        span = self._span
        if span is None:
            start = end = None
            if timings is not None:
                offset = _wall_offset()
                if offset is not None:
                    start = int((timings.started + offset) * 1e9)
                    end = int((timings.ended + offset) * 1e9)
            model = attributes.get("gen_ai.response.model", "")
            span = self._tracer.start_span(
                f"{attributes['gen_ai.operation.name']} {model}".strip(),
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start,
            )
            owned, end_time = True, end
        else:
            span.set_attributes(attributes)
            owned, end_time = False, None
        span.set_attributes(self._attributes)
        if error_type is not None:
            detail = result.error.detail if result.error is not None else result.reason.value
            span.set_status(Status(StatusCode.ERROR, detail))
        if owned:
            span.end(end_time=end_time)
        counted = tokens(result.usage)
        if counted is not None:
            self._tokens.record(counted.input, {**common, "gen_ai.token.type": "input"})
            self._tokens.record(counted.output, {**common, "gen_ai.token.type": "output"})
        if timings is not None:
            self._duration.record(timings.duration, common)
            self._first_chunk.record(timings.time_to_first_chunk, common)
            per_chunk = timings.time_per_output_chunk
            if per_chunk is not None:
                self._per_chunk.record(per_chunk, common)

    def attributes(self, result: Result) -> tuple[dict[str, Any], str | None]:
        """The span attributes of ``result`` and its ``error.type`` (``None`` if it ended well)."""
        completion = result.completion
        protocol = result.protocol
        operation = "chat"
        if protocol == "chat" and getattr(completion, "object", "") == "text_completion":
            operation = "text_completion"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self._provider or _PROVIDERS.get(protocol, protocol),
            "gen_ai.request.stream": True,
        }
        if protocol in _OPENAI_API:
            attributes["openai.api.type"] = _OPENAI_API[protocol]
        if getattr(completion, "id", None):
            attributes["gen_ai.response.id"] = completion.id
        if getattr(completion, "model", None):
            attributes["gen_ai.response.model"] = completion.model
        reasons = _finish_reasons(completion)
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        choices = getattr(completion, "choices", None)
        if choices is not None and len(choices) != 1:
            attributes["gen_ai.request.choice.count"] = len(choices)
        for key in ("system_fingerprint", "service_tier"):
            value = getattr(completion, key, None)
            if isinstance(value, str) and protocol in _OPENAI_API:
                attributes[f"openai.response.{key}"] = value
        counted = tokens(result.usage)
        if counted is not None:
            attributes["gen_ai.usage.input_tokens"] = counted.input
            attributes["gen_ai.usage.output_tokens"] = counted.output
            for key, value in (
                ("gen_ai.usage.cache_read.input_tokens", counted.cache_read),
                ("gen_ai.usage.cache_creation.input_tokens", counted.cache_creation),
                ("gen_ai.usage.reasoning.output_tokens", counted.reasoning),
            ):
                if value:
                    attributes[key] = value
        if result.timings is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = result.timings.time_to_first_chunk
        error_type = None if result.complete else _error_type(result)
        if error_type is not None:
            attributes["error.type"] = error_type
        return attributes, error_type


def _finish_reasons(completion: Any) -> list[str]:
    choices = getattr(completion, "choices", None)
    if choices is not None:
        return [c.finish_reason for c in choices if isinstance(c.finish_reason, str)]
    stop = getattr(completion, "stop_reason", None)  # Anthropic
    if isinstance(stop, str):
        return [stop]
    status = getattr(completion, "status", None)  # the Responses API
    details = getattr(completion, "incomplete_details", None)
    reason = getattr(details, "reason", None) if details is not None else None
    if isinstance(reason, str):
        return [reason]
    return [status] if isinstance(status, str) else []


def _error_type(result: Result) -> str:
    """A low-cardinality ``error.type``: the upstream error's code or type, the limit, or how
    the stream ended."""
    error = result.error
    if isinstance(error, UpstreamError) and isinstance(error.payload, dict):
        for key in ("code", "type"):
            value = error.payload.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(error, LimitError) or result.reason is EndReason.LIMIT:
        return "limit"
    if result.reason is EndReason.DONE or (
        result.reason is EndReason.EXHAUSTED and result.problems
    ):
        return "malformed"  # ended properly, but with problems (lenient)
    if result.reason is EndReason.EXHAUSTED:
        return "cut_off"  # a source with no end marker ran out before the stream finished
    return str(result.reason.value)


def _wall_offset() -> float | None:
    """Wall-clock seconds minus anyio's clock now (the timings' clock), or ``None`` outside an
    event loop."""
    try:
        import anyio

        return time.time() - anyio.current_time()
    except Exception:  # noqa: BLE001 - no event loop: spans get the SDK's own times
        return None
