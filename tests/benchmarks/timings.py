"""What timings and telemetry cost: the full pipeline with and without them, side by side.

Run ``python -m tests.benchmarks.timings`` (``--quick`` for a smoke run). Each figure is the
best of alternating repeats in this one process, so both sides see the same machine, in
CPU time (``time.process_time``: the loop never waits on an in-memory source, and the time
other processes take on a shared machine is not counted; the best, not the median, since the
rest of that load only ever adds time). The on / off ratios are the median of each round's own
ratio: the two runs of a round are back to back, so they see the same load.

1. Timings: ``aggregator.results()`` with its default pipeline, on an async source that yields
   one SSE event per read (as a network body does, so the clock is read once per chunk: the
   worst case, since the source itself costs nothing), with ``timings=True`` (the default)
   against ``timings=False`` (no clock read), on asyncio and trio. Issue 15's target: at most
   5% more per chunk.
2. Timings over a real connection: the same, with ``sources.from_httpx`` reading a streamed
   HTTP response from a server on loopback in another process (so that only the client's CPU
   time is counted), which writes each SSE event on its own, as a model server does; the
   reads are a network body's, and the number of events per read is printed.
3. Telemetry: ``fan_in()`` of many short streams (4 chunks, fresh ids) with the default
   pipeline, against the same with ``stages.genai_telemetry()`` after it: once with the
   OpenTelemetry API's no-op providers (nothing configured), once with the SDK's providers
   exporting to memory (a span processor and a metric reader). What the stage costs per stream
   is the difference, divided by the number of streams.
4. ``Tee`` in its two ``on_disconnect`` modes: ``finish`` reads each item in a task of its own
   (so that a client leaving mid-read bounds that read by ``drain_timeout``), ``stop`` in the
   caller's task.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import anyio
import orjson

import aggregator
from aggregator import Result, stages
from tests.benchmarks.__main__ import ROOT as _ROOT
from tests.benchmarks.__main__ import sse_bytes, stream_chunks


def _events(n: int) -> list[bytes]:
    data = sse_bytes(stream_chunks(n))
    return [event + b"\n\n" for event in data.split(b"\n\n") if event]


async def _reads(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def _alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """The CPU times of ``repeats`` rounds, each running every function once, in turn."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return times


def _best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The best CPU time of each function over alternating rounds."""
    return {name: min(ts) for name, ts in _alternate(fns, repeats).items()}


def _on_off(
    on: Callable[[], object], off: Callable[[], object], repeats: int, n: int
) -> dict[str, float]:
    """Timings on against off: the best of each (µs per chunk), and the ratio as the median of
    the rounds' own ratios (each round runs the two back to back, so both see the same load:
    on a shared machine, that is steadier than the ratio of the two bests)."""
    times = _alternate({"on": on, "off": off}, repeats)
    ratios = sorted(a / b for a, b in zip(times["on"], times["off"], strict=True))
    return {
        "on_us": min(times["on"]) / n * 1e6,
        "off_us": min(times["off"]) / n * 1e6,
        "on_over_off": ratios[len(ratios) // 2],
    }


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

    return _on_off(run(True), run(False), repeats, n)


#: The server of measurement 2, run as ``python -c`` in a process of its own: an HTTP/1.1 server
#: on a loopback port (printed on its first line) answering ``GET /N`` with the SSE events of an
#: N-chunk stream, each event a chunk of the chunked body written on its own (TCP_NODELAY, as
#: asyncio sets it), the loop given a turn after each; keep-alive, so one connection serves
#: every repeat.
_SERVER = """
import asyncio, sys
from tests.benchmarks.timings import _events

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            n = int(head.split(b" ", 2)[1][1:])
            writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\n"
                         b"transfer-encoding: chunked\\r\\n\\r\\n")
            for event in _events(n):
                writer.write(b"%x\\r\\n%s\\r\\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0)
            writer.write(b"0\\r\\n\\r\\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def http_timings_cost(n: int, repeats: int, backend: str) -> dict[str, float]:
    """µs per chunk (the client's CPU time) of ``results(from_httpx(...))`` with timings on and
    off, their ratio, and the events per read the connection gave."""
    import subprocess

    import httpx

    from aggregator import sources

    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, cwd=_ROOT, text=True
    )
    pinned = _pin(server.pid)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/{n}"

        async def count() -> int:
            async with httpx.AsyncClient() as client, client.stream("GET", url) as response:
                body = cast("AsyncIterator[bytes]", sources.from_httpx(response))
                return len([read async for read in body])

        reads = anyio.run(count, backend=backend)

        def run(timings: bool) -> Callable[[], object]:
            async def main() -> None:
                async with httpx.AsyncClient() as client, client.stream("GET", url) as response:
                    source = sources.from_httpx(response)
                    async with aggregator.results(source, timings=timings) as items:
                        got = [item async for item in items if isinstance(item, Result)]
                assert len(got) == 1
                assert got[0].complete
                assert (got[0].timings is not None) is timings

            return lambda: anyio.run(main, backend=backend)

        t = _on_off(run(True), run(False), repeats, n)
    finally:
        server.kill()
        server.wait()
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
    return {**t, "events_per_read": len(_events(n)) / reads}


def _pin(server: int) -> set[int] | None:
    """Put the server on one CPU and this process on another, where there are two (Linux):
    else the two share both, and the client's CPU time moves with where the scheduler puts
    them, by more than timings cost. This process's CPUs before, to be given back."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        return None
    client, other = sorted(mine)[:2]
    os.sched_setaffinity(server, {other})
    os.sched_setaffinity(0, {client})
    return mine


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

    t = _best({name: run(p) for name, p in pipelines.items()}, repeats)
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

    t = _best({"stop": run("stop"), "finish": run("finish")}, repeats)
    return {"stop_us": t["stop"] / n * 1e6, "finish_us": t["finish"] / n * 1e6}


def run(
    n: int = 10_000, streams: int = 2_000, repeats: int = 15, http: int = 5_000
) -> dict[str, Any]:
    """Both measurements on both backends, printed; the rows returned. The two judged ones
    (timings on / off) take ``2 * repeats + 1`` rounds: the cost measured is a few percent of
    a read in memory, and under one over loopback, where a round's own ratio moves by 10%."""
    out: dict[str, Any] = {}
    rounds = 2 * repeats + 1
    for backend in ("asyncio", "trio"):
        t = timings_cost(n, rounds, backend)
        out[f"timings_{backend}"] = t
        print(
            f"{backend}: full pipeline, {n:,} chunks, one per read: timings on "
            f"{t['on_us']:.2f} us/chunk, off {t['off_us']:.2f}: on / off {t['on_over_off']:.3f}"
            " (target <= 1.05)"
        )
    for backend in ("asyncio", "trio"):
        t = http_timings_cost(http, rounds, backend)
        out[f"http_timings_{backend}"] = t
        print(
            f"{backend}: full pipeline on from_httpx over loopback, {http:,} chunks "
            f"({t['events_per_read']:.2f} events per read): timings on {t['on_us']:.2f} "
            f"us/chunk, off {t['off_us']:.2f}: on / off {t['on_over_off']:.3f} (target <= 1.05)"
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
    rows = run(300, 50, 3, 300) if args.quick else run()
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
