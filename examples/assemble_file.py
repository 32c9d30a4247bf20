"""Assemble a streamed completion read from a file, in pieces, as from a network.

Run: python examples/assemble_file.py examples/streams/parallel_tool_calls.sse
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio

import aggregator
from aggregator.models import ChatChoice


async def pieces(path: str, size: int = 512) -> AsyncIterator[bytes]:
    """Yield the file's bytes in small pieces, as an HTTP body would arrive."""
    async with await anyio.open_file(path, "rb") as f:
        while data := await f.read(size):
            yield data


async def main(path: str) -> None:
    completion = await aggregator.assemble(pieces(path), name=path)
    for choice in completion.choices:
        if isinstance(choice, ChatChoice):
            calls = choice.message.tool_calls or []
            print(choice.index, choice.finish_reason, repr(choice.message.content))
            for call in calls:
                print("   ", call.function.name, call.function.arguments)
        else:
            print(choice.index, choice.finish_reason, repr(choice.text))
    if completion.usage is not None:
        print("usage:", aggregator.to_dict(completion.usage))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "examples/streams/three_choices.sse")
