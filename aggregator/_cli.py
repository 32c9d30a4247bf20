"""The command line: ``aggregator assemble PATH...`` (and ``python -m aggregator``).

Theory of operation: each input is read in its own task, in pieces, and fed to an
:class:`Assembler`; each completion is printed on stdout the moment it ends, one line of JSON.
Problems go to stderr, one line each, naming the file and the place. The exit status is 0 when
every input held at least one completion and every completion ended properly, 1 otherwise, 2
for a usage error. Whatever the input, no traceback is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import IO, Any

import anyio
import orjson

from ._converter import to_dict

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio brings on 3.10
    from exceptiongroup import BaseExceptionGroup
from ._limits import Limits
from ._results import EndReason, Result
from ._run import fan_in

__all__ = ["main"]

_READ_SIZE = 1 << 20
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
        "--idle-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="fail an input that delivers nothing for this long",
    )
    assemble.add_argument(
        "--deadline", type=_seconds, metavar="SECONDS", help="fail an input not done by then"
    )
    assemble.add_argument(
        "--lenient",
        action="store_true",
        help="skip malformed payloads (reported on stderr) instead of ending the stream",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


class _Run:
    def __init__(self, args: argparse.Namespace, out: IO[bytes], err: IO[str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.failed = False
        self.option = orjson.OPT_INDENT_2 if args.pretty else 0

    def emit(self, result: Result) -> None:
        if result.key[1] != 0:
            self.out.write(orjson.dumps(to_dict(result.completion), option=self.option) + b"\n")
            self.out.flush()
        for problem in result.problems:
            self.problem(str(problem))
        if result.complete:
            return
        place = f"{result.stream}, {result.where}" if result.where else result.stream
        ident = f" (completion {result.completion.id})" if result.completion.id else ""
        if result.error is not None:
            self.problem(str(result.error))
        elif result.reason is EndReason.CUT_OFF and result.key[1] != 0:
            self.problem(f"{place}: stream ended without [DONE]{ident}")
        elif not result.problems and result.key[1] != 0:
            self.problem(f"{place}: input ended before every choice had a finish_reason{ident}")

    def problem(self, line: str) -> None:
        self.failed = True
        print(line, file=self.err, flush=True)

    async def sources(self) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        names: dict[str, int] = {}
        for path in self.args.paths:
            name = "<stdin>" if path == "-" else path
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:  # the same file twice: two sources, two names
                name = f"{name}#{names[name]}"
            if path == "-":
                yield name, _read_stdin()
                continue
            try:
                stream = await anyio.open_file(path, "rb")
            except OSError as exc:
                self.problem(f"{name}: cannot read: {exc.strerror or exc}")
                continue
            yield name, _read(stream)

    async def all(self) -> None:
        async with fan_in(
            self.sources(),
            format=self.args.format,
            strict=not self.args.lenient,
            max_sources=_MAX_OPEN_FILES,
            limits=Limits(idle_timeout=self.args.idle_timeout, deadline=self.args.deadline),
        ) as items:
            async for item in items:
                if isinstance(item, Result):
                    self.emit(item)


async def _read(stream: Any) -> AsyncIterator[bytes]:
    try:
        while data := await stream.read(_READ_SIZE):
            yield data
    finally:
        await stream.aclose()


async def _read_stdin() -> AsyncIterator[bytes]:
    """Standard input as it arrives (``read1``: what the pipe holds, not a full buffer); a
    read that blocks is abandoned on cancellation, so time limits apply to a live pipe."""
    read1 = sys.stdin.buffer.read1  # type: ignore[union-attr]
    while data := await anyio.to_thread.run_sync(read1, _READ_SIZE, abandon_on_cancel=True):
        yield data


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    run = _Run(args, sys.stdout.buffer, sys.stderr)
    try:
        anyio.run(run.all)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract is: never a traceback
        if _only(exc, BrokenPipeError):
            return 1
        print(f"aggregator: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 1 if run.failed else 0


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` is ``kind``, or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(e, kind) for e in exc.exceptions)
    return isinstance(exc, kind)


def main_exit() -> None:
    """The console script's entry point: run :func:`main` and exit with its status.

    It exits at once, without waiting for a read of standard input that a time limit
    abandoned (a thread blocked on a silent pipe would otherwise hold the process).
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away (| head): nothing more to say
            status = status or 1
    os._exit(status)
