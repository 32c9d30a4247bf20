"""Your own stages between ours: a chunk stage (count content deltas as they stream, before
merge_deltas()) and a result stage that awaits (a write of every result, after it).

Run: python examples/custom_stage.py
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import anyio

import aggregator
from aggregator import stages
from aggregator.models import ChatChunkChoice

STREAM = Path(__file__).parent / "streams" / "three_choices.sse"


class CountDeltas(stages.Stage):
    """Counts content deltas per stream, before they are merged (a metrics hook). A chunk stage:
    it runs in the source's task, on each chunk's Envelope and each stream's End."""

    def __init__(self) -> None:
        self.deltas: dict[stages.StreamKey, int] = {}

    def process(self, item: Any, out: list[Any]) -> None:
        if isinstance(item, stages.Envelope):
            n = sum(
                1 for c in item.event.choices if isinstance(c, ChatChunkChoice) and c.delta.content
            )
            self.deltas[item.key] = self.deltas.get(item.key, 0) + n
        out.append(item)


written: list[str] = []


@stages.stage
async def write_results(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """An awaited side effect per result (stands for a database or log write). A result stage:
    it runs in the consumer's task, on Results and SourceReports."""
    async for item in items:
        if isinstance(item, aggregator.Result):
            await anyio.sleep(0.001)  # stands for the write
            written.append(item.completion.id)
        yield item


async def main() -> None:
    counter = CountDeltas()
    pipeline = stages.dedupe() | counter | stages.merge_deltas() | write_results
    body = [STREAM.read_bytes()]
    async with aggregator.results(body, pipeline, name=STREAM.name) as items:
        async for item in items:
            if isinstance(item, aggregator.Result):
                print(
                    f"{item.completion.id}: {item.reason.value}, {counter.deltas[item.key]} deltas"
                )
            else:
                assert isinstance(item, aggregator.SourceReport)
                assert item.ok, item
    print("written:", written)


if __name__ == "__main__":
    anyio.run(main)
