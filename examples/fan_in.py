"""Several concurrent streams, each result printed as soon as its own stream ends.

Each example stream is served as a "network" source that trickles its bytes with small delays,
the slower ones longer; fan_in() reads them all at once.

Run: python examples/fan_in.py
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

import aggregator
from aggregator import stages

STREAMS = Path(__file__).parent / "streams"


async def trickle(path: Path, delay: float, seed: int) -> AsyncIterator[bytes]:
    """The file's bytes in random pieces, as a slow server would send them."""
    rng = random.Random(seed)
    data = await anyio.Path(path).read_bytes()
    i = 0
    while i < len(data):
        n = rng.randint(200, 2000)
        await anyio.sleep(delay)
        yield data[i : i + n]
        i += n


async def main() -> None:
    files = sorted(STREAMS.iterdir())
    sources = {p.name: trickle(p, 0.001 * (n + 1), n) for n, p in enumerate(files)}
    totals = stages.total_usage()  # a result stage: after merge_deltas()
    pipeline = stages.dedupe() | stages.merge_deltas() | totals
    async with aggregator.fan_in(sources, pipeline) as items:
        async for item in items:
            if isinstance(item, aggregator.Result):
                completion = item.completion
                parts: list[object] = getattr(completion, "choices", None) or list(
                    getattr(completion, "output", ())
                )
                print(
                    f"{item.source}: {item.reason.value}, {item.chunks} chunks, "
                    f"{len(parts)} choice(s)"
                )
            elif isinstance(item, aggregator.SourceReport) and not item.ok:
                print(f"{item.source}: {item.error}")
    for model, usage in sorted(totals.totals.items()):
        print(f"total for {model}: {usage.total_tokens} tokens")


if __name__ == "__main__":
    anyio.run(main)
