"""The benchmark suite: ours, the raw-JSON floor and the OpenAI SDK, side by side in one run.

Run ``python -m tests.benchmarks`` (full sizes, a few minutes) or ``python -m tests.benchmarks
--quick`` (tiny sizes, a smoke run). Every figure is a median of alternating repeats, and each
target of issue 5 is printed with its measured ratio and whether it is met.

What is measured (see docs/performance.md for the latest table):

1. whole process, raw SSE file to assembled JSON: ``aggregator assemble FILE`` against a
   floor script (read the file, split it, ``orjson.loads`` every payload, join the content);
2. the OpenAI SDK's own path (its SSE decoder, ``construct_type`` and
   ``ChatCompletionStreamState``), whole process and per chunk in process;
3. linearity: per-chunk cost at the large size against the small one;
4. the full pipeline (decode, dedupe, collect usage, merge deltas, assemble) against the bare
   sync accumulator fed the same events;
5. fan-in of many streams against one stream of the same total size, and peak memory;
6. ``import aggregator``;
7. trio against asyncio;
8. every shape of stream (tool calls, text completions, reasoning, obfuscation, n > 1) at
   10,000 chunks, a stream of 4 chunks, and every recording in tests/data, each against a floor
   that joins the strings that shape carries;
9. the Responses protocol (``responses.py``): per event in process against its floor and
   openai-python, and whole process against a floor script;
10. the Anthropic protocol (``anthropic.py``), in process.

``--quick`` runs everything at tiny sizes and judges nothing: such sizes say nothing of ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

WORDS = [" the", " stream", "ed", " answer", ",", " token", " by", " token", ".", "\n"]


def chunk(n: int, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1727346171,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_5050236cbd",
        "choices": [
            {"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}
        ],
    }


def stream_chunks(n: int) -> list[dict[str, Any]]:
    """A realistic OpenAI chat stream of ``n`` chunks: role, content tokens, finish, usage."""
    chunks = [chunk(0, "")]
    chunks[0]["choices"][0]["delta"] = {"role": "assistant", "content": "", "refusal": None}
    chunks += [chunk(i, WORDS[i % len(WORDS)]) for i in range(1, n - 2)]
    last = chunk(n, "")
    last["choices"][0]["delta"] = {}
    last["choices"][0]["finish_reason"] = "stop"
    usage = chunk(n, "")
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}
    return [*chunks, last, usage]


def sse_bytes(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


#: The most chunks in one completion of the stream files: 64 MiB of payload (the default
#: ``max_completion``) holds about 280,000 of them, so a larger file is several completions in
#: sequence (each its own id and ``[DONE]``), as a client that logs its requests writes them.
BODY = 100_000


def sse_file(n: int) -> bytes:
    """``n`` chunks of realistic streams: one completion of ``n`` chunks, or bodies of ``BODY``."""
    bodies = []
    for start in range(0, n, BODY):
        chunks = stream_chunks(min(BODY, n - start))
        if start:
            for c in chunks:
                c["id"] = f"chatcmpl-bench-{start}"
        bodies.append(sse_bytes(chunks))
    return b"".join(bodies)


# -- in-process contenders -------------------------------------------------------------------


def floor(data: bytes) -> str:
    parts = []
    for line in data.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            choices = orjson.loads(line[6:])["choices"]
            if choices:
                parts.append(choices[0]["delta"].get("content") or "")
    return "".join(parts)


def ours(data: bytes) -> Any:
    from aggregator import Assembler

    assembler = Assembler("bench")
    results = assembler.feed(data) + assembler.close()
    return [r.completion for r in results[:-1]]  # (the last: the source's report)


def sdk(data: bytes) -> Any:
    from openai._models import construct_type
    from openai._streaming import SSEDecoder
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState()
    for sse in SSEDecoder().iter_bytes(iter([data])):
        if sse.data.startswith("[DONE]"):
            break
        state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=sse.json()))
    return state.current_completion_snapshot


FLOOR_SCRIPT = """
import sys, orjson
parts = []
with open(sys.argv[1], "rb") as f:
    data = f.read()
for line in data.split(b"\\n"):
    if line.startswith(b"data: ") and line != b"data: [DONE]":
        choices = orjson.loads(line[6:])["choices"]
        if choices:
            parts.append(choices[0]["delta"].get("content") or "")
sys.stdout.write(orjson.dumps("".join(parts)).decode() + "\\n")
"""

SDK_SCRIPT = """
import sys
from openai._models import construct_type
from openai._streaming import SSEDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
state = ChatCompletionStreamState()
with open(sys.argv[1], "rb") as f:
    data = f.read()
for sse in SSEDecoder().iter_bytes(iter([data])):
    if sse.data.startswith("[DONE]"):
        break
    state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=sse.json()))
sys.stdout.write(state.current_completion_snapshot.model_dump_json(exclude_none=True) + "\\n")
"""


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Run the contenders in turn (alternating), ``repeats`` times; the median of each."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


# Child processes run with bytecode caching on, as an installed package does (some environments
# set PYTHONDONTWRITEBYTECODE, which would make every run compile every module again).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_process(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=CHILD_ENV)
    return time.perf_counter() - start


# -- pipeline, fan-in, memory (each in its own process for a clean peak RSS) ------------------

PIPELINE_CHILD = """
import sys, time, statistics, anyio, orjson
sys.path.insert(0, {root!r})
from tests.benchmarks.__main__ import stream_chunks
from aggregator import Result, results
from aggregator.lowlevel import Accumulator, structure_chunk
n, backend, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
events = [structure_chunk(c) for c in stream_chunks(n)]
def bare():
    acc = Accumulator()
    for e in events:
        acc.add(e)
    return acc.result()
async def piped():
    async with results(events) as items:
        out = [r async for r in items if isinstance(r, Result)]
    assert len(out) == 1 and out[0].complete
b, p = [], []
for _ in range(repeats):
    t = time.perf_counter(); bare(); b.append(time.perf_counter() - t)
    t = time.perf_counter(); anyio.run(piped, backend=backend); p.append(time.perf_counter() - t)
print(orjson.dumps({{"bare": statistics.median(b), "pipeline": statistics.median(p)}}).decode())
"""

FANIN_CHILD = """
import sys, time, anyio, orjson
sys.path.insert(0, {root!r})
from tests.benchmarks.__main__ import high_water_kb, stream_chunks
import aggregator
streams, per, backend, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
template = stream_chunks(per)
# sources make their chunks as they are read, as a network would: memory measures what the
# pipeline holds, not the input
def source(i):
    cid = f"chatcmpl-{{i}}"
    for c in template:
        yield {{**c, "id": cid}}
def single(n):
    one = stream_chunks(n)
    yield from one[:1]
    middle = one[1]
    for _ in range(n - 3):
        yield middle
    yield from one[-2:]
if mode == "single":
    sources = {{"one": single(streams * per)}}
else:
    sources = {{f"s{{i}}": source(i) for i in range(streams)}}
base = high_water_kb()
size = 0
async def main():
    global size
    async with aggregator.fan_in(sources, max_sources=max(streams, 1)) as items:
        async for r in items:
            if isinstance(r, aggregator.SourceReport):
                assert r.ok, r
                continue
            assert r.complete, r
            size += len(orjson.dumps(aggregator.to_dict(r.completion)))
t = time.perf_counter()
anyio.run(main, backend=backend)
elapsed = time.perf_counter() - t
peak = high_water_kb()
row = {{"seconds": elapsed, "peak_mb": (peak - base) / 1024, "output_mb": size / 2**20}}
print(orjson.dumps(row).decode())
"""


def high_water_kb() -> int:
    """This process's peak RSS in KiB (for the children that measure memory). ``VmHWM`` is this
    process's own peak; ``ru_maxrss`` is not: Linux carries it over from the parent through fork
    and exec, so a child of a big parent would read the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(code: str, *args: object) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code.format(root=str(ROOT)), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env=CHILD_ENV,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def import_time(repeats: int) -> float:
    def once(code: str) -> float:
        return run_process([sys.executable, "-c", code])

    once("import aggregator")  # compile and cache the bytecode first
    base = statistics.median(once("pass") for _ in range(repeats))
    full = statistics.median(once("import aggregator") for _ in range(repeats))
    return full - base


class Report:
    def __init__(self, *, judge: bool = True) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failed = 0
        self.judge = judge

    def line(self, what: str, figure: str) -> None:
        self.rows.append((what, figure, ""))
        print(f"  {what:<62} {figure}", flush=True)

    def target(self, what: str, value: float, limit: float, *, at_least: bool = False) -> None:
        ok = value >= limit if at_least else value <= limit
        bound = f">= {limit:g}" if at_least else f"<= {limit:g}"
        if self.judge:
            self.failed += not ok
            verdict = "met" if ok else "NOT MET"
        else:
            verdict = "not judged"
        self.rows.append((what, f"{value:.2f} (target {bound})", verdict))
        print(f"  {what:<62} {value:8.2f}  target {bound:<8} {verdict}", flush=True)


# -- 8. every shape -----------------------------------------------------------------------------


def _head(obj: str = "chat.completion.chunk", **more: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-b", "object": obj, "created": 1, "model": "gpt-4o", **more}


def _delta(delta: dict[str, Any], index: int = 0, **more: Any) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
    return _head(choices=[choice], **more)


def shape_streams(n: int) -> dict[str, list[dict[str, Any]]]:
    """Streams of ``n`` chunks of each shape, as servers send them."""
    start = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "f"}}
    words = [f" w{i}" for i in range(n)]
    finish = _head(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    text_finish = _head(
        "text_completion", choices=[{"text": "", "index": 0, "finish_reason": "stop"}]
    )
    lp = [
        {"tokens": [w], "token_logprobs": [-0.1], "top_logprobs": [{w: -0.1}], "text_offset": [i]}
        for i, w in enumerate(words)
    ]
    return {
        "tool-call arguments": [
            _delta(
                {
                    "role": "assistant",
                    "tool_calls": [{**start, "function": {"name": "f", "arguments": ""}}],
                }
            ),
            *(_delta({"tool_calls": [{"index": 0, "function": {"arguments": w}}]}) for w in words),
            finish,
        ],
        "parallel tool calls": [
            *(
                _delta(
                    {
                        "tool_calls": [
                            {
                                **start,
                                "index": k,
                                "id": f"call_{k}",
                                "function": {"name": "f", "arguments": ""},
                            }
                        ]
                    }
                )
                for k in range(3)
            ),
            *(
                _delta({"tool_calls": [{"index": i % 3, "function": {"arguments": w}}]})
                for i, w in enumerate(words)
            ),
            finish,
        ],
        "text completion": [
            *(
                _head(
                    "text_completion",
                    choices=[{"text": w, "index": 0, "logprobs": None, "finish_reason": None}],
                )
                for w in words
            ),
            text_finish,
        ],
        "text completion, logprobs": [
            *(
                _head(
                    "text_completion",
                    choices=[{"text": w, "index": 0, "logprobs": p, "finish_reason": None}],
                )
                for w, p in zip(words, lp, strict=True)
            ),
            text_finish,
        ],
        "reasoning_content": [
            *(_delta({"reasoning_content": w, "content": None}) for w in words),
            finish,
        ],
        "reasoning": [*(_delta({"reasoning": w}) for w in words), finish],
        "obfuscated content": [
            *(_delta({"content": w}, obfuscation="x" * (i % 9)) for i, w in enumerate(words)),
            finish,
        ],
        "n = 3 interleaved": [
            *(_delta({"content": w}, index=i % 3) for i, w in enumerate(words)),
            _head(choices=[{"index": k, "delta": {}, "finish_reason": "stop"} for k in range(3)]),
        ],
    }


def strings_floor(data: bytes) -> str:
    """The floor for any shape: split, ``orjson.loads`` each payload, join its strings."""
    pieces: list[str] = []
    add = pieces.append
    for line in data.split(b"\n"):
        if line[:6] == b"data: " and line != b"data: [DONE]":
            for choice in orjson.loads(line[6:]).get("choices") or ():
                if "text" in choice:
                    add(choice["text"] or "")
                    continue
                delta = choice.get("delta") or {}
                for key in ("content", "reasoning_content", "reasoning", "refusal"):
                    value = delta.get(key)
                    if value.__class__ is str:
                        add(value)
                for call in delta.get("tool_calls") or ():
                    add((call.get("function") or {}).get("arguments") or "")
    return "".join(pieces)


def ours_all(data: bytes) -> Any:
    from aggregator import Assembler

    assembler = Assembler("bench")
    return assembler.feed(data) + assembler.close()


def shapes(report: Report, n: int, repeats: int) -> None:
    print(f"\n8. every shape, {n:,} chunks, in process (ours / its floor)")
    for name, chunks in shape_streams(n).items():
        data = sse_bytes(chunks)
        t = medians(
            {
                "ours": lambda data=data: ours_all(data),  # type: ignore[misc]
                "floor": lambda data=data: strings_floor(data),  # type: ignore[misc]
            },
            repeats,
        )
        report.target(f"8. {name}", t["ours"] / t["floor"], 1.5)
    four = sse_bytes(stream_chunks(4))
    loops = 200 if repeats == 1 else 2000
    t = medians(
        {
            "ours": lambda: [ours_all(four) for _ in range(loops)],
            "floor": lambda: [strings_floor(four) for _ in range(loops)],
        },
        repeats,
    )
    report.line("a stream of 4 chunks: ours (us)", f"{t['ours'] / loops * 1e6:.1f}")
    report.line("a stream of 4 chunks: floor (us)", f"{t['floor'] / loops * 1e6:.1f}")
    report.target("8. a stream of 4 chunks", t["ours"] / t["floor"], 2.0)
    data_dir = Path(__file__).parent.parent / "data"
    paths = sorted(p for p in data_dir.rglob("*") if p.suffix in (".sse", ".jsonl"))
    ratios, ours_total, floor_total = [], 0.0, 0.0
    for path in paths:
        raw = path.read_bytes()
        if path.suffix == ".jsonl":  # the floor reads SSE: frame the lines as a server would
            raw = b"".join(b"data: " + line + b"\n\n" for line in raw.splitlines() if line.strip())
        t = medians(
            {
                "ours": lambda raw=raw: [ours_all(raw) for _ in range(20)],  # type: ignore[misc]
                "floor": lambda raw=raw: [strings_floor(raw) for _ in range(20)],  # type: ignore[misc]
            },
            repeats,
        )
        ratios.append(t["ours"] / t["floor"])
        ours_total, floor_total = ours_total + t["ours"], floor_total + t["floor"]
    report.line(f"recordings: {len(paths)}, median ratio", f"{statistics.median(ratios):.2f}")
    report.target("8. the worst recording", max(ratios), 2.0)
    report.target("8. all recordings, chunk-weighted", ours_total / floor_total, 1.2)


# -- 9. and 10. the other protocols -----------------------------------------------------------


def responses_protocol(report: Report, n: int, repeats: int) -> None:
    """The OpenAI Responses stream: in process against its floor and openai-python's
    ``ResponseStreamState``, per event; whole process against a floor script, as SSE."""
    from . import responses

    print(f"\n9. the Responses protocol, {n:,} events (whole process) and 10,000 (in process)")
    rows = responses.run(1_000 if n < 10_000 else 10_000, repeats)
    for name, row in rows.items():
        report.line(
            f"9. {name}: ours / floor (us per event)",
            f"{row['ours_us']:.2f} / {row['floor_us']:.2f}",
        )
    report.target("9a. text, in process, ours / floor", rows["text"]["ours_over_floor"], 2.0)
    report.target(
        "9b. text, in process, openai-python / ours",
        rows["text"]["sdk_over_ours"],
        30.0,
        at_least=True,
    )
    report.target(
        "9c. recordings, in process, openai-python / ours",
        rows["recordings"]["sdk_over_ours"],
        30.0,
        at_least=True,
    )
    t = responses.whole_process(n, repeats)  # CPU time, alternating, median
    report.line("9. whole process: aggregator assemble (s)", f"{t['ours_s']:.2f}")
    report.line("9. whole process: floor script (s)", f"{t['floor_s']:.2f}")
    report.target("9d. whole process, ours / floor", t["ours_over_floor"], 2.0)


def anthropic_protocol(report: Report, quick: bool) -> None:
    """The Anthropic Messages stream: ``tests/benchmarks/anthropic.py``'s cases. (The SDK at
    a smaller size: its ``accumulate_event`` is quadratic in a tool input's fragments.)"""
    from . import anthropic

    n, sdk_n, process_n, repeats = (1_000, 200, 2_000, 1) if quick else (10_000, 1_000, 200_000, 5)
    print(f"\n10. the Anthropic protocol, {n:,} events in process, {process_n:,} whole process")
    rows = anthropic.run(n, sdk_n=sdk_n, process_n=process_n, repeats=repeats)
    for label, value in rows.items():
        report.line(f"10. {label}", f"{value:.2f}")
    report.target(
        "10a. text, in process, ours / floor", rows["in process, text: ours / floor"], 2.0
    )
    report.target(
        "10b. tool input, in process, ours / floor", rows["in process, tool: ours / floor"], 2.0
    )
    report.target(
        "10c. text, anthropic SDK / ours",
        rows[f"text, {sdk_n:,} deltas: sdk / ours"],
        30.0,
        at_least=True,
    )
    report.target(
        "10d. tool input, anthropic SDK / ours",
        rows[f"tool, {n:,} deltas: sdk / ours"],
        30.0,
        at_least=True,
    )
    report.target(
        "10e. recordings, anthropic SDK / ours", rows["recordings: sdk / ours"], 30.0, at_least=True
    )
    report.target(
        "10f. tool input, per fragment, 10x the fragments",
        rows[f"tool input, per fragment at {n:,} / at {n // 10:,}"],
        1.25,
    )
    report.target(
        "10g. whole process, ours / floor",
        rows[f"whole process, {process_n:,} text deltas: ours / floor"],
        2.0,
    )


def only(section: str, quick: bool, json_path: Path | None) -> int:
    """One of the sections 8 to 10 alone, at the sizes of the full run (or of ``--quick``)."""
    repeats = 1 if quick else 5
    report = Report(judge=not quick)
    if section == "shapes":
        shapes(report, 300 if quick else 10_000, repeats)
    elif section == "responses":
        responses_protocol(report, 2_000 if quick else 200_000, repeats)
    else:
        anthropic_protocol(report, quick)
    judged = len([r for r in report.rows if r[2]])
    if quick:
        print(f"\nsmoke run: {judged} ratios measured, none judged (the sizes are too small)")
    else:
        print(f"\n{judged - report.failed} targets met, {report.failed} not met")
    if json_path:
        json_path.write_text(json.dumps(report.rows, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument(
        "--only",
        choices=["shapes", "responses", "anthropic"],
        help="run that section alone (8, 9 or 10): quick to iterate on",
    )
    args = parser.parse_args()
    quick = args.quick
    if args.only is not None:
        return only(args.only, quick, args.json)
    small, large = (2_000, 8_000) if quick else (100_000, 800_000)
    sdk_n = 1_000 if quick else 50_000
    repeats = 1 if quick else 5
    fan_streams, fan_per = (100, 20) if quick else (10_000, 100)

    report = Report(judge=not quick)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for n in {small, large, sdk_n}:
            path = Path(tmp) / f"stream-{n}.sse"
            path.write_bytes(sse_file(n))
            files[n] = path
        floor_py = Path(tmp) / "floor.py"
        floor_py.write_text(FLOOR_SCRIPT)
        sdk_py = Path(tmp) / "sdk.py"
        sdk_py.write_text(SDK_SCRIPT)

        print(f"\n1. whole process, {large:,} chunks")
        cli = [sys.executable, "-m", "aggregator", "assemble", str(files[large])]
        flr = [sys.executable, str(floor_py), str(files[large])]
        t = medians({"ours": lambda: run_process(cli), "floor": lambda: run_process(flr)}, repeats)
        report.line("aggregator assemble (s)", f"{t['ours']:.2f}")
        report.line("floor script (s)", f"{t['floor']:.2f}")
        report.target("1. whole process, ours / floor", t["ours"] / t["floor"], 3.0)

        print(f"\n2. against the OpenAI SDK, {sdk_n:,} chunks")
        cli = [sys.executable, "-m", "aggregator", "assemble", str(files[sdk_n])]
        sdk_cmd = [sys.executable, str(sdk_py), str(files[sdk_n])]
        sdk_repeats = 1 if quick else 3
        t = medians(
            {"ours": lambda: run_process(cli), "sdk": lambda: run_process(sdk_cmd)}, sdk_repeats
        )
        report.line("whole process: aggregator assemble (s)", f"{t['ours']:.2f}")
        report.line("whole process: OpenAI SDK (s)", f"{t['sdk']:.2f}")
        report.target("2a. whole process, SDK / ours", t["sdk"] / t["ours"], 10.0, at_least=True)
        data = files[sdk_n].read_bytes()
        ours(data), sdk(data)  # warm imports
        t = medians({"ours": lambda: ours(data), "sdk": lambda: sdk(data)}, sdk_repeats)
        report.line("in process: ours (us/chunk)", f"{t['ours'] / sdk_n * 1e6:.2f}")
        report.line("in process: OpenAI SDK (us/chunk)", f"{t['sdk'] / sdk_n * 1e6:.2f}")
        report.target(
            "2b. in process per chunk, SDK / ours", t["sdk"] / t["ours"], 30.0, at_least=True
        )

        print(f"\n3. linearity, {small:,} and {large:,} chunks, in process")
        d_small, d_large = files[small].read_bytes(), files[large].read_bytes()
        t = medians(
            {
                "small": lambda: ours(d_small),
                "large": lambda: ours(d_large),
                "floor": lambda: floor(d_large),
            },
            repeats,
        )
        per_small, per_large = t["small"] / small * 1e6, t["large"] / large * 1e6
        report.line("in process: ours, small (us/chunk)", f"{per_small:.2f}")
        report.line("in process: ours, large (us/chunk)", f"{per_large:.2f}")
        report.line("in process: floor, large (us/chunk)", f"{t['floor'] / large * 1e6:.2f}")
        report.target("3. per-chunk cost, large / small", per_large / per_small, 1.25)

    print(f"\n4. pipeline against the bare accumulator, {small:,} events")
    by_backend = {}
    for backend in ("asyncio", "trio"):
        r = child(PIPELINE_CHILD, small, backend, repeats)
        by_backend[backend] = r
        report.line(f"{backend}: bare accumulator (us/event)", f"{r['bare'] / small * 1e6:.2f}")
        report.line(f"{backend}: full pipeline (us/event)", f"{r['pipeline'] / small * 1e6:.2f}")
    report.target(
        "4. pipeline / bare accumulator (asyncio)",
        by_backend["asyncio"]["pipeline"] / by_backend["asyncio"]["bare"],
        1.3,
    )

    total = fan_streams * fan_per
    print(
        f"\n5. fan-in of {fan_streams:,} streams x {fan_per} chunks, "
        f"against one stream of {total:,}"
    )
    fan = {}
    for backend in ("asyncio", "trio"):
        many = child(FANIN_CHILD, fan_streams, fan_per, backend, "many")
        one = child(FANIN_CHILD, fan_streams, fan_per, backend, "single")
        fan[backend] = many
        report.line(f"{backend}: fan-in (s)", f"{many['seconds']:.2f}")
        report.line(f"{backend}: one stream of the same size (s)", f"{one['seconds']:.2f}")
        report.line(f"{backend}: fan-in peak RSS growth (MB)", f"{many['peak_mb']:.1f}")
        report.line(f"{backend}: assembled outputs (MB)", f"{many['output_mb']:.1f}")
        if backend == "asyncio":
            report.target(
                "5a. fan-in / one stream (asyncio)", many["seconds"] / one["seconds"], 1.5
            )
            budget = 2 * many["output_mb"] + 50
            report.target(
                "5b. fan-in peak MB / (2 x outputs + 50 MB)", many["peak_mb"] / budget, 1.0
            )

    print("\n6. import")
    ms = import_time(3 if quick else 11) * 1000
    report.target("6. python -c 'import aggregator' (ms over bare python)", ms, 150.0)

    print("\n7. trio against asyncio")
    report.target(
        "7a. pipeline, trio / asyncio",
        by_backend["trio"]["pipeline"] / by_backend["asyncio"]["pipeline"],
        1.3,
    )
    report.target(
        "7b. fan-in, trio / asyncio", fan["trio"]["seconds"] / fan["asyncio"]["seconds"], 1.3
    )

    shapes(report, 300 if quick else 10_000, repeats)
    responses_protocol(report, 2_000 if quick else 200_000, repeats)
    anthropic_protocol(report, quick)

    judged = len([r for r in report.rows if r[2]])
    if quick:
        print(f"\nsmoke run: {judged} ratios measured, none judged (the sizes are too small)")
    else:
        print(f"\n{judged - report.failed} targets met, {report.failed} not met")
    if args.json:
        args.json.write_text(json.dumps(report.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
