"""The command line: ``aggregator assemble PATH...`` (and ``python -m aggregator``).

Theory of operation: the inputs are read by :func:`fan_in` (each in its own task, fed to its own
engine); each completion is printed on stdout the moment it ends, one line of JSON (``--tag``
adds ``"input"``, the path it came from). With ``--ordered`` the lines come in the order of the
inputs instead: an input's completions are held until every input before it has ended (memory:
the completions of the inputs that finished early). Problems go to stderr, one line each, naming
the file and the place. The exit status is 0 when every input held at least one completion and
every completion ended properly, 1 otherwise, 2 for a usage error. Whatever the input, no
traceback is printed: an output that cannot be written (a full disk) is one line and status 1.

Pipes, FIFOs and ``/dev/fd/N`` are read without blocking a thread (``sources.from_file``), so
``--idle-timeout``, ``--deadline`` and Ctrl-C apply to them, and their completions are printed as
they end.

On a terminal, a progress bar on stderr counts the inputs read to their end (each source's bytes
are wrapped to tell when they run out or are closed), the chunks and the problems. A change is
drawn at once, or, within ``_REDRAW_EVERY`` of the last drawing, by a timer task, so the bar is
never behind by more than that. It is wiped before any other line goes to stderr (and redrawn
after it), and before each completion is written to stdout (stdout may be piped to the same
terminal, ``| cut``). ``--stats`` prints the counts and the usage by model at the end, summed
from each result as it comes (the default pipeline runs either way).

A source that held no completion with ``--format`` forced is told with what its first bytes
look like (each source keeps its first bytes for this).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import IO, Any, TypeVar

import anyio
import orjson

from ._core._converter import to_dict
from ._core._limits import Limits
from ._core._merge import add_usage
from ._core._results import EndReason, Result, SourceReport, Timings
from ._run import fan_in
from .sources import from_file, from_stdin

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio brings on 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["main"]

_MAX_OPEN_FILES = 64
#: How many of a source's first bytes are kept to say what it looked like.
_HEAD = 80
E = TypeVar("E", bound=BaseException)
_REDRAW_EVERY = 0.1  # seconds between two drawings of the progress bar, at least


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Turn OpenAI-compatible streamed completions back into whole responses.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
        type=seconds,
        metavar="SECONDS",
        help="fail an input that delivers nothing for this long",
    )
    assemble.add_argument(
        "--deadline", type=seconds, metavar="SECONDS", help="fail an input not done by then"
    )
    assemble.add_argument(
        "--lenient",
        action="store_true",
        help="skip malformed payloads (reported on stderr) instead of ending the stream",
    )
    assemble.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "show a progress bar on stderr (default: when stderr is a terminal and there are "
            "2 or more inputs)"
        ),
    )
    assemble.add_argument(
        "--timings",
        action="store_true",
        help=(
            'add a "timings" object to each completion: seconds from the start of its input '
            "(or of the completion before it) to the first byte, first chunk, first output "
            "and end, time to first token and per output chunk (for files: when they were read)"
        ),
    )
    assemble.add_argument(
        "--ordered",
        action="store_true",
        help=(
            "print the completions in the order of the inputs (an input's are held until the "
            "inputs before it have ended), not as each ends"
        ),
    )
    assemble.add_argument(
        "--tag",
        action="store_true",
        help='add an "input" key to each completion: the path it came from',
    )
    assemble.add_argument(
        "--stats",
        action="store_true",
        help="at the end, print on stderr the inputs, streams, chunks and usage by model",
    )
    from . import gateway  # its web libraries are imported only when it runs

    gateway.add_arguments(
        commands.add_parser("gateway", help=gateway.HELP, description=gateway.DESCRIPTION)
    )
    from ._redis_cli import add_commands  # publish, worker, results (aggregator.redis)

    add_commands(commands)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


class _OutputError(Exception):
    """Standard output could not be written (a full disk, a closed descriptor)."""


def seconds(text: str) -> float:
    """An argument type: a positive number of seconds (every command's time options)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def positive(text: str) -> int:
    """An argument type: a positive integer (counts, sizes)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


class _Run:
    def __init__(self, args: argparse.Namespace, out: IO[bytes], err: IO[str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.failed = False
        self.option = orjson.OPT_INDENT_2 if args.pretty else 0
        self.inputs = len(args.paths)
        self.inputs_done = self.streams = self.chunks = self.duplicates = 0
        self.incomplete = self.problems = 0
        self.usage: dict[str, Any] = {}
        #: per source, the error its results printed last (its report may end with it too)
        self.printed: dict[str, Any] = {}
        #: per source name: its path as given, and its place among the inputs
        self.paths: dict[str, str] = {}
        self.order: dict[str, int] = {}
        #: --ordered: the lines held per input, which inputs ended, the next one to print
        self.held: dict[int, list[bytes]] = {}
        self.ended: set[int] = set()
        self.next_input = 0
        #: per source, its first bytes (to say what a source with no completion looked like)
        self.heads: dict[str, bytes] = {}
        show = args.progress
        if show is None:
            show = self.inputs >= 2 and _isatty(err)
        self.bar = _Bar(err) if show else None
        # a bar on the terminal that stdout also writes to is wiped before each completion
        self.bar_on_out = self.bar is not None and _isatty(out)

    def emit(self, result: Result) -> None:
        line = to_dict(result.completion)
        if self.args.timings and result.timings is not None:
            line["timings"] = timings_record(result.timings)
        if self.args.tag:
            line["input"] = self.paths.get(result.source, result.source)
        data = orjson.dumps(line, option=self.option) + b"\n"
        index = self.order.get(result.source)
        if self.args.ordered and index is not None and index != self.next_input:
            self.held.setdefault(index, []).append(data)
        else:
            self.write(data)
        for problem in result.problems:
            self.problem(str(problem))
        if result.complete:
            return
        place = f"{result.source}, {result.where}" if result.where else result.source
        ident = f" (completion {result.completion.id})" if result.completion.id else ""
        if result.error is not None:
            self.printed[result.source] = result.error
            self.problem(str(result.error))
        elif result.reason is EndReason.CUT_OFF:
            inside = any(note.startswith("cut off inside an event") for note in result.notes)
            what = "cut off inside an event, " if inside else ""
            self.problem(f"{place}: {what}stream ended without [DONE]{ident}")
        elif not result.problems:
            self.problem(f"{place}: input ended before every choice had a finish_reason{ident}")

    def write(self, data: bytes) -> None:
        """Write one output line (the bar wiped first: stdout may go to its terminal)."""
        if self.bar is not None:
            self.bar.clear()
        try:
            self.out.write(data)
            self.out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(_os_error(exc)) from exc
        if self.bar is not None:  # not at once: a pipe's reader (| cut) may write it there yet
            self.bar.later(wait=True)

    def reported(self, report: SourceReport) -> None:
        for problem in report.problems:
            self.problem(str(problem))
        printed = self.printed.pop(report.source, None)
        if report.error is not None and report.error is not printed:  # once, not twice
            self.problem(str(report.error) + self.looked_like(report))
        self.heads.pop(report.source, None)
        index = self.order.get(report.source)
        if index is not None:
            self.input_ended(index)

    def input_ended(self, index: int) -> None:
        """--ordered: input ``index`` is over; print the held lines that are now due."""
        self.ended.add(index)
        while self.next_input in self.ended:
            self.ended.discard(self.next_input)
            self.next_input += 1
            for data in self.held.pop(self.next_input, ()):
                self.write(data)

    def looked_like(self, report: SourceReport) -> str:
        """For a source with no completion read with a forced ``--format``: what it looked
        like (its first bytes), so that a wrong format says so."""
        head = self.heads.get(report.source)
        if report.completions or self.args.format == "auto" or not head:
            return ""
        first = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        looks = "JSON Lines" if first[:1] in (b"{", b"[") else "SSE" if b":" in first else ""
        shown = first[:40].decode("utf-8", "replace").splitlines()[0] if first else ""
        text = f" (read as --format {self.args.format}; it starts with {shown!r}"
        if looks and looks != {"sse": "SSE", "jsonl": "JSON Lines"}[self.args.format]:
            return f"{text}, which looks like {looks}: try --format auto)"
        return f"{text})"

    def problem(self, line: str) -> None:
        self.failed = True
        self.problems += 1
        if self.bar is not None:
            self.bar.clear()
        print(line, file=self.err, flush=True)
        if self.bar is not None:
            self.bar.later()  # redrawn after the line, even if nothing else changes
        self.progress()

    def count(self, result: Result) -> None:
        self.chunks += result.chunks
        self.duplicates += result.duplicates
        self.streams += 1
        self.incomplete += not result.complete
        if self.args.stats and result.usage is not None:
            model = result.completion.model
            self.usage[model] = add_usage(self.usage.get(model), result.usage)
        self.progress()

    def input_done(self) -> None:
        self.inputs_done += 1
        self.progress()

    def progress(self) -> None:
        if self.bar is not None:
            self.bar.update(
                f"[{self.inputs_done:>{len(str(self.inputs))}}/{self.inputs} inputs] "
                f"{_plural(self.chunks, 'chunk')}  {_plural(self.problems, 'problem')}"
            )

    def stats(self) -> None:
        print(
            f"inputs: {self.inputs:,}, streams: {self.streams:,}, chunks: {self.chunks:,}, "
            f"duplicates dropped: {self.duplicates:,}, incomplete: {self.incomplete:,}, "
            f"problems: {self.problems:,}",
            file=self.err,
        )
        for model in sorted(self.usage):
            usage = self.usage[model]
            print(
                f"usage {model or '(no model)'}: prompt {_tokens(usage.prompt_tokens)}, "
                f"completion {_tokens(usage.completion_tokens)}, "
                f"total {_tokens(usage.total_tokens)}",
                file=self.err,
            )
        self.err.flush()

    async def watched(
        self, sources: AsyncIterator[tuple[str, AsyncIterator[bytes]]]
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """The sources, each counted done for the progress bar once read to its end; the
        inputs never yielded (they could not be opened) are counted when the sources are over."""
        given = 0
        try:
            async for name, source in sources:
                given += 1
                yield name, _Watched(source, self.input_done, None)
            self.inputs_done += self.inputs - given
            self.progress()
        finally:
            aclose = getattr(sources, "aclose", None)
            if aclose is not None:
                await aclose()

    async def sources(self) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        names: dict[str, int] = {}
        for index, path in enumerate(self.args.paths):
            name = "<stdin>" if path == "-" else path
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:  # the same file twice: two sources, two names
                name = f"{name}#{names[name]}"
            self.paths[name] = path
            self.order[name] = index
            if path == "-":
                yield name, self.headed(name, from_stdin())
                continue
            try:
                source = from_file(path)
            except OSError as exc:
                self.problem(f"{name}: cannot read: {exc.strerror or exc}")
                self.input_ended(index)
                continue
            yield name, self.headed(name, source)

    def headed(self, name: str, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``source``, its first bytes kept (only with a forced ``--format``)."""
        if self.args.format == "auto":
            return source

        def seen(data: bytes) -> None:
            head = self.heads.get(name, b"")
            if len(head) < _HEAD:
                self.heads[name] = head + data[: _HEAD - len(head)]

        return _Watched(source, None, seen)

    async def all(self) -> None:
        limits = Limits(idle_timeout=self.args.idle_timeout, deadline=self.args.deadline)
        sources = self.sources()
        if self.bar is not None:
            sources = self.watched(sources)
        try:
            self.progress()
            async with anyio.create_task_group() as tasks:
                if self.bar is not None:
                    tasks.start_soon(self.bar.run)
                async with fan_in(
                    sources,
                    format=self.args.format,
                    strict=not self.args.lenient,
                    max_sources=_MAX_OPEN_FILES,
                    limits=limits,
                ) as items:
                    async for item in items:
                        if isinstance(item, Result):
                            self.emit(item)
                            self.count(item)
                        else:
                            self.reported(item)
                for index in range(self.inputs):  # --ordered: whatever is still held
                    self.input_ended(index)
                tasks.cancel_scope.cancel()
        finally:
            if self.bar is not None:
                self.bar.finish()
        if self.args.stats:
            self.stats()


class _Bar:
    """A line on a terminal redrawn in place, and wiped (``\\r\\x1b[K``) before anything else
    is written there.

    :meth:`update` gives the latest text: it is drawn at once if the last drawing is at least
    ``_REDRAW_EVERY`` old, else kept, and :meth:`run` (a task) draws it when that time is up. No
    update is lost: what the terminal shows is at most ``_REDRAW_EVERY`` behind.
    """

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.shown = False
        self.due = float("-inf")
        self.text = ""
        #: the latest text is not on the terminal yet
        self.pending = False

    def update(self, text: str) -> None:
        self.text = text
        self.pending = True
        self.tick()

    def later(self, *, wait: bool = False) -> None:
        """Draw the latest text again (after a wipe), at the next chance (``wait``: not before
        ``_REDRAW_EVERY`` from now)."""
        if self.text:
            self.pending = True
        if wait:
            self.due = max(self.due, time.monotonic() + _REDRAW_EVERY)

    def tick(self) -> None:
        """Draw the latest text if it is not shown and the last drawing is old enough."""
        if not self.pending:
            return
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + _REDRAW_EVERY
        self.pending = False
        self.err.write(f"\r{self.text}\x1b[K")
        self.err.flush()
        self.shown = True

    async def run(self) -> None:
        """Draw what :meth:`update` kept, every ``_REDRAW_EVERY`` (until cancelled)."""
        while True:
            await anyio.sleep(max(_REDRAW_EVERY, 0.01))
            self.tick()

    def clear(self) -> None:
        if self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = False

    def finish(self) -> None:
        """The end: the final counts drawn (if not shown yet), then the line wiped."""
        if self.pending and self.text:
            self.err.write(f"\r{self.text}\x1b[K")
            self.shown = True
        self.pending = False
        self.clear()


class _Watched:
    """A source's bytes, calling ``ended`` once when they run out or are closed, and ``seen``
    with each piece read (either may be ``None``)."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        ended: Callable[[], None] | None,
        seen: Callable[[bytes], None] | None,
    ) -> None:
        self.source = source
        self.ended = ended
        self.seen = seen

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await anext(self.source)
        except StopAsyncIteration:
            self.end()
            raise
        if self.seen is not None:
            self.seen(data)
        return data

    async def aclose(self) -> None:
        self.end()
        aclose = getattr(self.source, "aclose", None)
        if aclose is not None:
            await aclose()

    def end(self) -> None:
        if self.ended is not None:
            ended, self.ended = self.ended, None
            ended()


def timings_record(t: Timings) -> dict[str, Any]:
    """A result's timings as printed (``--timings``) and logged (the gateway): the readings as
    seconds from the stream's start, and what they give."""

    def since(when: float | None) -> float | None:
        return None if when is None else round(when - t.started, 6)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    return {
        "first_byte": since(t.first_byte),
        "first_chunk": since(t.first_chunk),
        "first_output": since(t.first_output),
        "output_kind": t.output_kind,
        "last_chunk": since(t.last_chunk),
        "ended": since(t.ended),
        "chunks": t.chunks,
        "output_chunks": t.output_chunks,
        "time_to_first_chunk": rounded(t.time_to_first_chunk),
        "time_to_first_token": rounded(t.time_to_first_token),
        "time_per_output_chunk": rounded(t.time_per_output_chunk),
        "duration": rounded(t.duration),
    }


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _tokens(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "gateway":
        from .gateway import run as gateway

        return gateway(args)
    if args.command in ("publish", "worker", "results"):  # the Redis scale-out (_redis_cli)
        from ._redis_cli import run as run_redis

        return run_redis(args)
    run = _Run(args, sys.stdout.buffer, sys.stderr)
    try:
        anyio.run(run.all)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract is: never a traceback
        if _only(exc, BrokenPipeError):
            return 1
        output = _find(exc, _OutputError)
        if output is not None:
            print(f"aggregator: cannot write the output: {output}", file=sys.stderr)
            return 1
        print(f"aggregator: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 1 if run.failed else 0


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` is ``kind``, or a group holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(e, kind) for e in exc.exceptions)
    return isinstance(exc, kind)


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc`` or the groups it holds, if any."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


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
