"""What timings and telemetry cost: the full pipeline with and without them, side by side.

Run ``python -m tests.benchmarks.timings`` (``--quick`` for a smoke run). Each figure is the
best of alternating repeats in this one process, so both sides see the same machine, in
CPU time (``time.process_time``: the sources are in memory, so the loop never waits, and the
time other processes take on a shared machine is not counted; the best, not the median, since
the rest of that load only ever adds time).

1. Timings: ``aggregator.results()`` with its default pipeline, on an async source that yields
   one SSE event per read (as a network body does, so the clock is read once per chunk: the
   worst case), with ``timings=True`` (the default) against ``timings=False`` (no clock read),
   on asyncio and trio. Issue 15's target: at most 5% more per chunk.
2. Telemetry: ``fan_in()`` of many short streams (4 chunks, fresh ids) with the default
   pipeline, against the same with ``stages.genai_telemetry()`` after it: once with the
   OpenTelemetry API's no-op providers (nothing configured), once with the SDK's providers
   exporting to memory (a span processor and a metric reader). What the stage costs per stream
   is the difference, divided by the number of streams.
3. ``Tee`` in its two ``on_disconnect`` modes: ``finish`` reads each item in a task of its own
   (so that a client leaving mid-read bounds that read by ``drain_timeout``), ``stop`` in the
   caller's task.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson

import aggregator
from aggregator import Result, stages
from tests.benchmarks.__main__ import sse_bytes, stream_chunks


def _events(n: int) -> list[bytes]:
    data = sse_bytes(stream_chunks(n))
    return [event + b"\n\n" for event in data.split(b"\n\n") if event]


async def _reads(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def _median_pair(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: min(ts) for name, ts in times.items()}


def timings_cost(n: int, repeats: int, backend: str) -> dict[str, float]:
    """µs per chunk of the full pipeline with timings on and off, and their ratio."""
    events = _events(n)

    def run(timings: bool) -> Callable[[], object]:
        async def main() -> None:
            async with aggregator.results(_reads(events), timings=timings) as items:
                got = [item async for item in items if isinstance(item, Result)]
            assert len(got) == 1
            assert got[0].complete
            assert (got[0].timings is not None) is timings

        return lambda: anyio.run(main, backend=backend)

    t = _median_pair({"on": run(True), "off": run(False)}, repeats)
    return {
        "on_us": t["on"] / n * 1e6,
        "off_us": t["off"] / n * 1e6,
        "on_over_off": t["on"] / t["off"],
    }


def _short_sources(streams: int) -> dict[str, Any]:
    template = stream_chunks(4)
    return {
        f"s{i}": [sse_bytes([{**c, "id": f"chatcmpl-{i}"} for c in template])]
        for i in range(streams)
    }


def telemetry_cost(streams: int, repeats: int, backend: str) -> dict[str, float]:
    """µs per stream of fan-in with the default pipeline, and with the telemetry stage."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NoOpTracerProvider

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    pipelines: dict[str, Any] = {
        "default": stages.default_pipeline(),
        "noop": stages.default_pipeline()
        | stages.genai_telemetry(NoOpTracerProvider(), NoOpMeterProvider()),
        "sdk": stages.default_pipeline() | stages.genai_telemetry(tracer_provider, meter_provider),
    }

    def run(pipeline: Any) -> Callable[[], object]:
        async def main() -> None:
            count = 0
            async with aggregator.fan_in(_short_sources(streams), stages=pipeline) as items:
                async for item in items:
                    if isinstance(item, Result):
                        assert item.complete
                        count += 1
            assert count == streams

        def go() -> None:
            anyio.run(main, backend=backend)
            exporter.clear()

        return go

    t = _median_pair({name: run(p) for name, p in pipelines.items()}, repeats)
    reader.get_metrics_data()
    return {
        "default_us": t["default"] / streams * 1e6,
        "noop_us": t["noop"] / streams * 1e6,
        "sdk_us": t["sdk"] / streams * 1e6,
        "noop_cost_us": (t["noop"] - t["default"]) / streams * 1e6,
        "sdk_cost_us": (t["sdk"] - t["default"]) / streams * 1e6,
    }


def tee_cost(n: int, repeats: int, backend: str) -> dict[str, float]:
    """µs per item through a :class:`~aggregator.Tee` in ``stop`` and in ``finish`` mode."""
    events = _events(n)

    def run(mode: Any) -> Callable[[], object]:
        async def main() -> None:
            async with aggregator.Tee(_reads(events), on_disconnect=mode) as tee:
                async for _item in tee:
                    pass
            assert len(tee.results) == 1

        return lambda: anyio.run(main, backend=backend)

    t = _median_pair({"stop": run("stop"), "finish": run("finish")}, repeats)
    return {"stop_us": t["stop"] / n * 1e6, "finish_us": t["finish"] / n * 1e6}


def run(n: int = 10_000, streams: int = 2_000, repeats: int = 15) -> dict[str, Any]:
    """Both measurements on both backends, printed; the rows returned."""
    out: dict[str, Any] = {}
    for backend in ("asyncio", "trio"):
        t = timings_cost(n, repeats, backend)
        out[f"timings_{backend}"] = t
        print(
            f"{backend}: full pipeline, {n:,} chunks, one per read: timings on "
            f"{t['on_us']:.2f} us/chunk, off {t['off_us']:.2f}: on / off {t['on_over_off']:.3f}"
            " (target <= 1.05)"
        )
    for backend in ("asyncio", "trio"):
        t = telemetry_cost(streams, repeats, backend)
        out[f"telemetry_{backend}"] = t
        print(
            f"{backend}: fan-in of {streams:,} streams of 4 chunks: {t['default_us']:.1f} "
            f"us/stream; with genai_telemetry, no-op providers +{t['noop_cost_us']:.1f} "
            f"us/stream, SDK providers (in-memory export) +{t['sdk_cost_us']:.1f} us/stream"
        )
    for backend in ("asyncio", "trio"):
        t = tee_cost(n // 2, max(3, repeats // 2), backend)
        out[f"tee_{backend}"] = t
        print(
            f"{backend}: Tee, {n // 2:,} items: on_disconnect='stop' {t['stop_us']:.1f} us/item, "
            f"'finish' {t['finish_us']:.1f} us/item"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = run(300, 50, 3) if args.quick else run()
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
