"""Fan-in of many short real streams: issue 11's target 3.

Run ``python -m tests.benchmarks.fan_in_short`` (``--quick`` for a smoke run). Every chat and
text-completion recording in tests/data (``openai/`` and ``providers/``, as sent; JSON Lines
framed as SSE, as a server sends them) is replayed over and over, each replay with fresh ids
(the chunk ``id`` the recording carries, with the replay's number appended, so no two replays
are one completion), until there are ``--streams`` sources: ``aggregator.fan_in()`` with its
default pipeline assembles them all, on asyncio and on trio. The floor reads the same bytes
(split the lines, ``orjson.loads`` every ``data:`` payload, join the strings the chunks carry:
``strings_floor`` of the suite's section 8). Each side runs in a child process of its own, so
its peak RSS (``VmHWM``) is its own; the sources make their bytes as they are read, as a network
would (one read per event, as a live server's body arrives), so memory measures what the
pipeline holds, not the input. The floor reads the same sources (their reads joined), and a
third side only makes the reads: its time is taken from both, so the ratio compares the work
on the bytes, not the making of them. The size of each output (for the memory budget) is
measured as it comes, and the CPU time of that measuring is taken from ours. CPU time, median
of repeats.

Targets: ours / floor at most 1.5; peak memory within target 5b's budget (2 x the assembled
outputs + 50 MB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from tests.benchmarks.__main__ import child

CHILD = """
import sys, time, anyio, orjson
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.benchmarks.__main__ import high_water_kb, strings_floor
import aggregator

streams, backend, side = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = Path({root!r}) / "tests" / "data"
recordings = []
for path in sorted([*data.glob("openai/*.sse"), *data.glob("providers/*")]):
    if path.suffix not in (".sse", ".jsonl"):
        continue
    raw = path.read_bytes()
    if path.suffix == ".jsonl":
        raw = b"".join(b"data: " + line.strip() + b"\\n\\n" for line in raw.splitlines()
                       if line.strip()) + b"data: [DONE]\\n\\n"
    ids = []
    for line in raw.splitlines():
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            try:
                found = orjson.loads(line[5:]).get("id")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(found, str) and found and found not in ids:
                ids.append(found)
    events = [event + b"\\n\\n" for event in raw.split(b"\\n\\n") if event]
    recordings.append((raw, events, [orjson.dumps(i)[:-1] for i in ids]))

def fresh(data, ids, i):  # '"chatcmpl-x"' -> '"chatcmpl-x~i"': the replay's own ids
    for quoted in ids:
        data = data.replace(quoted + b'"', quoted + b"~%d" % i + b'"')
    return data

def replay(i):
    raw, _, ids = recordings[i % len(recordings)]
    return fresh(raw, ids, i)

base = high_water_kb()
size = 0
results = 0
total = 0

def source(i):  # one read per event, made as it is read, as a live server's body arrives
    global total
    _, events, ids = recordings[i % len(recordings)]
    for event in events:  # the recording's events, shared by its replays
        data = fresh(event, ids, i)
        total += len(data)
        yield data

measuring = 0.0  # the CPU time of measuring the outputs' size (the benchmark's, not ours)

async def main():
    global size, results, measuring
    sources = {{f"r{{i}}": source(i) for i in range(streams)}}
    async with aggregator.fan_in(sources, max_sources=streams) as items:
        async for r in items:
            if isinstance(r, aggregator.SourceReport):
                continue
            results += 1
            if r.completion is not None:
                began = time.process_time()
                size += len(orjson.dumps(aggregator.to_dict(r.completion)))
                measuring += time.process_time() - began

start = time.process_time()
if side == "ours":
    anyio.run(main, backend=backend)
elif side == "floor":  # the same reads, made the same way, joined: then the floor's work
    for i in range(streams):
        strings_floor(b"".join(source(i)))
else:  # "reads": making the reads alone, what both sides pay
    for i in range(streams):
        for _ in source(i):
            pass
elapsed = time.process_time() - start - measuring
row = {{"seconds": elapsed, "peak_mb": (high_water_kb() - base) / 1024,
        "output_mb": size / 2**20, "results": results, "input_mb": total / 2**20,
        "recordings": len(recordings)}}
print(orjson.dumps(row).decode())
"""


def run(streams: int = 10_000, repeats: int = 3, judge: bool = True) -> dict[str, object]:
    """Ours and the floor on both backends, printed; the rows returned."""
    rows: dict[str, object] = {}
    print(f"fan-in of {streams:,} short real recordings, replayed with fresh ids")
    for backend in ("asyncio", "trio"):
        ours, floor, reads = [], [], []
        for _ in range(repeats):  # alternating, each in a fresh process
            ours.append(child(CHILD, streams, backend, "ours"))
            floor.append(child(CHILD, streams, backend, "floor"))
            reads.append(child(CHILD, streams, backend, "reads"))
        mine = min(ours, key=lambda r: r["seconds"])
        t_reads = statistics.median(r["seconds"] for r in reads)
        # each side less the making of its reads (the same generators on both sides)
        t_ours = statistics.median(r["seconds"] for r in ours) - t_reads
        t_floor = statistics.median(r["seconds"] for r in floor) - t_reads
        peak = max(r["peak_mb"] for r in ours)
        budget = 2 * mine["output_mb"] + 50
        rows[backend] = {
            "reads_s": t_reads,
            "ours_s": t_ours,
            "floor_s": t_floor,
            "ratio": t_ours / t_floor,
            "peak_mb": peak,
            "budget_mb": budget,
            "results": mine["results"],
            "input_mb": mine["input_mb"],
            "recordings": mine["recordings"],
        }
        verdict = ""
        if judge:
            fast = "met" if t_ours / t_floor <= 1.5 else "not met"
            small = "met" if peak <= budget else "not met"
            verdict = f" (targets: ours / floor <= 1.5 {fast}, peak <= budget {small})"
        print(
            f"{backend}: {int(mine['recordings'])} recordings, {int(mine['results']):,} results, "
            f"{mine['input_mb']:.1f} MB in: making the reads {t_reads:.2f} s CPU, and after it "
            f"ours {t_ours:.2f} s, floor {t_floor:.2f} s, ours / floor {t_ours / t_floor:.2f}; "
            f"peak RSS growth {peak:.1f} MB, budget "
            f"{budget:.1f} MB{verdict}"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = run(200, 1, judge=False) if args.quick else run(args.streams)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
