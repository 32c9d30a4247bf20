"""Hostile benchmark (issue 17): peak memory and time per input byte of each hostile shape, with
the default limits.

Theory of operation: each shape is generated lazily, 64 KiB at a time (what the shell feeds the
engine: ``_reading.PIECE``), so the generator holds nothing; the bytes are fed to one
:class:`~aggregator.lowlevel.Engine`, and the engine is closed. Peak memory is tracemalloc's
peak during the run (the engine's allocations, plus one piece in flight); time is measured in a
separate run without tracemalloc, at two sizes side by side (``size`` and ``4 * size``), and the
ratio of their time *per byte* is printed: about 1 is linear, 4 would be quadratic. A shared
machine makes absolute times noise; the ratios survive it.

Run ``python -m tests.benchmarks.hostile [--size MiB] [--quick]``: the default size is 64 MiB
(and 256 MiB for the ratio); ``--size 1024 --peak-only`` measures the peak for 1 GiB of each
shape (about a minute per shape), without the timing.
The bound checked: peak memory at most ``3 * max_completion + 32 MiB`` (224 MiB) whatever the
size (a completion stops growing at ``max_completion`` of payload bytes, whose Python objects
cost up to about three times as much), which a shape that kept what the server sent would pass
within its first 224 MiB; past ``max_completion`` of input, peak memory no longer grows.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from aggregator import Limits
from aggregator.lowlevel import Engine

MiB = 1024 * 1024
PIECE = 64 * 1024
LIMITS = Limits()
assert LIMITS.max_completion is not None
#: Python objects cost up to about three times the JSON they come from (an annotation's dict).
BOUND = 3 * LIMITS.max_completion + 32 * MiB


def _chunk(cid: str, delta: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        },
        separators=(",", ":"),
    ).encode()


def _repeat(block: Callable[[int], bytes], size: int) -> Iterator[bytes]:
    """``size`` bytes made of ``block(n)`` for n = 0, 1, ..., cut in pieces of 64 KiB."""
    buffer = bytearray()
    given = n = 0
    while given < size:
        while len(buffer) < PIECE:
            buffer += block(n)
            n += 1
        piece = bytes(buffer[:PIECE])
        del buffer[:PIECE]
        given += len(piece)
        yield piece


def never_ending(size: int) -> Iterator[bytes]:
    """One completion that never ends: plain content chunks (the fast lane's shape)."""
    line = b"data: " + _chunk("c", {"content": "w" * 1000}) + b"\n\n"
    return _repeat(lambda _: line, size)


def blank_lines(size: int) -> Iterator[bytes]:
    """One chunk, then nothing but blank lines (a gzip bomb's usual payload)."""
    first = b"data: " + _chunk("c", {"content": "a"}) + b"\n\n"
    return _repeat(lambda n: first if n == 0 else b"\n" * 4096, size)


def one_event_of_short_lines(size: int) -> Iterator[bytes]:
    """``data: xy`` lines without a blank line: one event as large as the input."""
    return _repeat(lambda _: b"data: xy\n" * 512, size)


def long_dedupe_ids(size: int) -> Iterator[bytes]:
    """Every event with its own 64 KiB ``id:`` (dedupe state)."""
    body = _chunk("c", {"content": "x"})
    return _repeat(
        lambda n: b"id: " + b"i" * 65_536 + str(n).encode() + b"\ndata: " + body + b"\n\n", size
    )


def indexed_annotations(size: int) -> Iterator[bytes]:
    """A new ``annotations`` index in every chunk (a delta list merged by index)."""

    def block(n: int) -> bytes:
        entry = {"index": n, "type": "url_citation", "url": "https://example.com/" + "u" * 100}
        return b"data: " + _chunk("c", {"annotations": [entry]}) + b"\n\n"

    return _repeat(block, size)


def content_parts(size: int) -> Iterator[bytes]:
    """Content as parts of one type, merged into one part."""
    line = b"data: " + _chunk("c", {"content": [{"type": "text", "text": "ab" * 500}]}) + b"\n\n"
    return _repeat(lambda _: line, size)


def one_long_line(size: int) -> Iterator[bytes]:
    """A line that never ends, in 4 KiB pieces (past ``max_line``: skipped as it arrives)."""
    head = b"data: " + _chunk("c", {"content": "a"})[:-3]
    return _repeat(lambda n: head if n == 0 else b"t" * 4096, size)


def refused_completions(size: int) -> Iterator[bytes]:
    """An interleaved source opening a completion with a 4 KiB id in every chunk."""
    return _repeat(
        lambda n: b"data: " + _chunk(f"{n:08d}" + "r" * 4096, {"content": "x"}) + b"\n\n", size
    )


SHAPES: dict[str, tuple[Callable[[int], Iterator[bytes]], bool]] = {
    "never-ending completion": (never_ending, False),
    "blank lines": (blank_lines, False),
    "one event of short lines": (one_event_of_short_lines, False),
    "long dedupe ids": (long_dedupe_ids, False),
    "indexed annotations": (indexed_annotations, False),
    "same-type content parts": (content_parts, False),
    "one long line in pieces": (one_long_line, False),
    "refused completions, long ids": (refused_completions, True),
}


def feed(shape: Callable[[int], Iterator[bytes]], interleaved: bool, size: int) -> int:
    """Feed ``size`` bytes of ``shape`` to an engine, close it; the number of results."""
    engine = Engine("hostile", limits=LIMITS, interleaved=interleaved, strict=False)
    ended = 0
    for piece in shape(size):
        ended += len(engine.feed(piece))
    return ended + len(engine.close())


def peak(shape: Callable[[int], Iterator[bytes]], interleaved: bool, size: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        feed(shape, interleaved, size)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def seconds(shape: Callable[[int], Iterator[bytes]], interleaved: bool, size: int) -> float:
    gc.collect()
    started = time.process_time()
    feed(shape, interleaved, size)
    return time.process_time() - started


def run(size: int, *, judge: bool = True, timed: bool = True) -> dict[str, Any]:
    """Peak memory at ``size`` bytes and (``timed``) the per-byte time ratio of ``4 * size`` to
    ``size``, per shape; printed, and returned."""
    out: dict[str, Any] = {}
    failed = []
    print(
        f"hostile shapes, default limits; peak memory at {size / MiB:g} MiB (bound "
        f"{BOUND / MiB:g} MiB), time per byte at {4 * size / MiB:g} MiB over {size / MiB:g} MiB"
    )
    for name, (shape, interleaved) in SHAPES.items():
        top = peak(shape, interleaved, size)
        if not timed:
            out[name] = {"peak_mib": top / MiB}
            print(f"{name:32} peak {top / MiB:7.1f} MiB" + ("" if top <= BOUND else "   OVER"))
            if top > BOUND:
                failed.append(name)
            continue
        small = seconds(shape, interleaved, size)
        large = seconds(shape, interleaved, 4 * size)
        per_byte = (large / (4 * size)) / (small / size)
        ok = top <= BOUND and per_byte < 1.6
        if not ok:
            failed.append(name)
        out[name] = {
            "peak_mib": top / MiB,
            "us_per_kib": small / (size / 1024) * 1e6,
            "per_byte_ratio": per_byte,
        }
        print(
            f"{name:32} peak {top / MiB:7.1f} MiB   {small / (size / 1024) * 1e6:7.2f} µs/KiB   "
            f"per-byte time x{per_byte:.2f} at 4x the size" + ("" if ok or not judge else "   OVER")
        )
    if judge:
        print("all within bounds" if not failed else f"over: {', '.join(failed)}")
    out["failed"] = failed
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.hostile")
    parser.add_argument("--size", type=float, default=64, help="MiB per shape (default 64)")
    parser.add_argument("--quick", action="store_true", help="1 MiB, judging nothing")
    parser.add_argument(
        "--peak-only", action="store_true", help="peak memory only (no timing: for --size 1024)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        run(1 * MiB, judge=False)
        return 0
    return 1 if run(int(args.size * MiB), timed=not args.peak_only)["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
