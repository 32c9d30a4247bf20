"""The command line: ``aggregator assemble PATH...`` (and ``python -m aggregator``).

Theory of operation: each input is read in its own task, in pieces, and fed to an
:class:`Assembler`; each completion is printed on stdout the moment it ends, one line of JSON.
Problems go to stderr, one line each, naming the file and the place. The exit status is 0 when
every input held at least one completion and every completion ended properly, 1 otherwise, 2
for a usage error. Whatever the input, no traceback is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO, Any

import anyio
import orjson

from ._assembler import Assembler
from ._converter import to_dict
from ._results import EndReason, Result

__all__ = ["main"]

_READ_SIZE = 1 << 16
_MAX_OPEN_FILES = 64


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Turn OpenAI-compatible streamed completions back into whole responses.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    assemble = commands.add_parser(
        "assemble",
        help="assemble the completions of SSE or JSON Lines streams",
        description=(
            "Assemble every completion in each input (SSE as a server sent it, or JSON Lines of "
            "chunk objects, told apart automatically) and print each as one line of JSON, in "
            "the OpenAI non-streaming shape, as soon as it is complete. Exit status: 0 when "
            "every input held at least one completion and all ended properly; 1 otherwise; "
            "2 for a usage error."
        ),
    )
    assemble.add_argument("paths", nargs="+", metavar="PATH", help="an input file, or - for stdin")
    assemble.add_argument("--pretty", action="store_true", help="indent the JSON output")
    assemble.add_argument(
        "--format", choices=("auto", "sse", "jsonl"), default="auto", help="input framing"
    )
    assemble.add_argument(
        "--lenient",
        action="store_true",
        help="skip malformed payloads (reported on stderr) instead of ending the stream",
    )
    return parser


class _Run:
    def __init__(self, args: argparse.Namespace, out: IO[bytes], err: IO[str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.failed = False
        self.option = orjson.OPT_INDENT_2 if args.pretty else 0

    def emit(self, result: Result, assembler: Assembler) -> None:
        self.out.write(orjson.dumps(to_dict(result.completion), option=self.option) + b"\n")
        self.out.flush()
        for problem in result.problems:
            self.problem(str(problem))
        if result.complete:
            return
        if result.error is not None:
            self.problem(str(result.error))
        elif result.reason is EndReason.CUT_OFF:
            self.problem(f"{self._place(assembler)}: stream ended without [DONE]{self._id(result)}")
        elif not result.problems:
            self.problem(
                f"{self._place(assembler)}: input ended before every choice had a "
                f"finish_reason{self._id(result)}"
            )

    def problem(self, line: str) -> None:
        self.failed = True
        print(line, file=self.err, flush=True)

    @staticmethod
    def _place(assembler: Assembler) -> str:
        return f"{assembler.name}, line {assembler.line}"

    @staticmethod
    def _id(result: Result) -> str:
        return f" (completion {result.completion.id})" if result.completion.id else ""

    async def one(self, path: str, limiter: anyio.CapacityLimiter) -> None:
        name = "<stdin>" if path == "-" else path
        assembler = Assembler(name, format=self.args.format, strict=not self.args.lenient)
        count = 0
        async with limiter:
            try:
                if path == "-":
                    stream: Any = anyio.wrap_file(sys.stdin.buffer)
                else:
                    stream = await anyio.open_file(path, "rb")
            except OSError as exc:
                self.problem(f"{name}: cannot read: {exc.strerror or exc}")
                return
            try:
                while not assembler.stopped:
                    try:
                        data = await stream.read(_READ_SIZE)
                    except OSError as exc:
                        self.problem(f"{name}: read failed: {exc.strerror or exc}")
                        break
                    if not data:
                        break
                    for result in assembler.feed(data):
                        count += 1
                        self.emit(result, assembler)
            finally:
                if path != "-":
                    await stream.aclose()
        for result in assembler.close():
            count += 1
            self.emit(result, assembler)
        for error in assembler.errors:
            self.problem(str(error))
        if count == 0 and not assembler.errors:
            self.problem(f"{name}: no completion in the input")

    async def all(self) -> None:
        limiter = anyio.CapacityLimiter(_MAX_OPEN_FILES)
        async with anyio.create_task_group() as tg:
            for path in self.args.paths:
                tg.start_soon(self.one, path, limiter)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    run = _Run(args, sys.stdout.buffer, sys.stderr)
    try:
        anyio.run(run.all)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the contract is: never a traceback
        print(f"aggregator: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 1 if run.failed else 0


def main_exit() -> None:
    """The console script's entry point: run :func:`main` and exit with its status."""
    sys.exit(main())
