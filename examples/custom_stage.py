"""Your own stages between ours: a synchronous one (count tokens of content as they stream)
and an asynchronous one (an awaited write of every result).

Run: python examples/custom_stage.py
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import anyio

import aggregator
from aggregator import stages

STREAM = Path(__file__).parent / "streams" / "three_choices.sse"


class CountDeltas(stages.Stage):
    """Counts content deltas per stream, before they are merged (a metrics hook)."""

    def __init__(self) -> None:
        self.deltas: dict[aggregator.StreamKey, int] = {}

    def process(self, item: Any, out: list[Any]) -> None:
        if isinstance(item, aggregator.Envelope):
            n = sum(
                1
                for c in item.event.choices
                if isinstance(c, aggregator.ChatChunkChoice) and c.delta.content
            )
            self.deltas[item.key] = self.deltas.get(item.key, 0) + n
        out.append(item)


written: list[str] = []


@stages.stage
async def write_results(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """An awaited side effect per result (stands for a database or log write)."""
    async for item in items:
        if isinstance(item, aggregator.Result):
            await anyio.sleep(0.001)  # stands for the write
            written.append(item.completion.id)
        yield item


async def main() -> None:
    counter = CountDeltas()
    pipeline = counter | stages.merge_deltas() | stages.assemble() | write_results
    body = [STREAM.read_bytes()]
    async for item in aggregator.results(body, pipeline, name=STREAM.name):
        assert isinstance(item, aggregator.Result)
        print(f"{item.completion.id}: {item.reason.value}, {counter.deltas[item.key]} deltas")
    print("written:", written)


if __name__ == "__main__":
    anyio.run(main)
