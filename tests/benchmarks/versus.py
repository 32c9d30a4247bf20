"""Section 8 (every shape) of two checkouts side by side: before and after a change, one run.

Run ``python -m tests.benchmarks.versus OLD [NEW]``: ``OLD`` and ``NEW`` are directories holding
an ``aggregator`` package (``NEW`` defaults to this checkout; make ``OLD`` with, say,
``mkdir /tmp/old && git archive main | tar -x -C /tmp/old``). Child processes alternate, one
checkout then the other (the order swapped each round), each with ``PYTHONPATH`` set to its
checkout and the same streams (this file's ``shape_streams``); each child measures every shape's
ratio to its floor in CPU time (``time.process_time``, best of ``--repeats``: the other load of a
shared machine only ever adds time), and the 4-chunk stream. The medians over ``--rounds`` are
printed side by side. ``--only NAME`` (repeatable) measures those shapes alone (``four``: the
4-chunk stream).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _child(n: int, repeats: int, only: list[str]) -> None:
    import importlib.util  # (this file's directory is the path's first entry, not ROOT)

    spec = importlib.util.spec_from_file_location("_bench", HERE / "__main__.py")
    assert spec is not None
    assert spec.loader is not None
    bench: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    out: dict[str, Any] = {}
    for name, chunks in bench.shape_streams(n).items():
        if only and name not in only:
            continue
        data = bench.sse_bytes(chunks)
        bench.ours_all(data)
        ours = best(lambda data=data: bench.ours_all(data))  # type: ignore[misc]
        floor = best(lambda data=data: bench.strings_floor(data))  # type: ignore[misc]
        out[name] = [ours / floor, ours / n * 1e6]
    if not only or "four" in only:
        four, loops = bench.sse_bytes(bench.stream_chunks(4)), 2000
        ours = best(lambda: [bench.ours_all(four) for _ in range(loops)])
        floor = best(lambda: [bench.strings_floor(four) for _ in range(loops)])
        out["four"] = [ours / floor, ours / loops * 1e6, floor / loops * 1e6]
    import aggregator

    out["_file"] = aggregator.__file__
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.versus")
    parser.add_argument("old", type=Path, help="the checkout before (holds aggregator/)")
    parser.add_argument("new", type=Path, nargs="?", default=ROOT, help="the checkout after")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.chunks, args.repeats, args.only)
        return 0
    sides = {"old": args.old.resolve(), "new": args.new.resolve()}
    rows: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for side in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
            env = {**os.environ, "PYTHONPATH": str(sides[side]), "PYTHONHASHSEED": "0"}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            command = [sys.executable, str(Path(__file__).resolve()), ".", "--child"]
            command += ["--chunks", str(args.chunks), "--repeats", str(args.repeats)]
            for name in args.only:
                command += ["--only", name]
            proc = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            rows[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"old: {rows['old'][0]['_file']}\nnew: {rows['new'][0]['_file']}")
    print(f"{'stream':<28} {'old':>7} {'new':>7}   ratio to its floor; us per chunk (medians)")
    for name in rows["old"][0]:
        if name == "_file":
            continue
        old = [statistics.median(r[name][i] for r in rows["old"]) for i in (0, 1)]
        new = [statistics.median(r[name][i] for r in rows["new"]) for i in (0, 1)]
        unit = "us per stream" if name == "four" else "us"
        line = f"{name:<28} {old[0]:7.2f} {new[0]:7.2f}   {old[1]:.2f} -> {new[1]:.2f} {unit}"
        if name == "four":
            line += f" (floor {statistics.median(r[name][2] for r in rows['new']):.1f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
