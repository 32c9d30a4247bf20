"""The commands of the Redis scale-out: ``aggregator publish``, ``worker`` and ``results``.

Theory of operation: :func:`add_commands` adds the three sub-commands to the parser of
``aggregator`` (``_cli.py`` calls it), and :func:`run` runs the one given, on its own event loop.
They are the three roles of :mod:`aggregator.redis` with their settings as flags: ``publish``
replays recordings chunk by chunk as a gateway would (one chunk per SSE event or JSON line, or
fixed-size pieces), ``worker`` assembles until SIGTERM or SIGINT (then hands its shards back and
exits 0), ``results`` prints each result as the JSON line ``aggregator assemble`` prints.
Nothing here imports coredis until a command runs, so ``aggregator assemble`` stays light. Every
failure is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from ._cli import positive

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio brings on 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["COMMANDS", "add_commands", "run"]

#: The sub-commands defined here.
COMMANDS = ("publish", "worker", "results")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db")
    parser.add_argument(
        "--shards", type=positive, default=4, metavar="N", help="shard streams (default 4)"
    )
    parser.add_argument("--prefix", default="agg", help="the first part of every key (agg)")
    parser.add_argument(
        "--results", metavar="NAME", help="the results stream (default PREFIX:results)"
    )
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="the event loop"
    )


def add_commands(commands: Any) -> None:
    """Add ``publish``, ``worker`` and ``results`` to ``aggregator``'s sub-command parsers."""
    publish = commands.add_parser(
        "publish",
        help="publish recordings to Redis shard streams, chunk by chunk, as a gateway would",
        description=(
            "Publish each input (SSE or JSON Lines) as one stream to the shard streams: one "
            "chunk per SSE event or JSON line (or --chunk-bytes pieces), then its end entry. "
            "Each stream's key is KEY-PREFIX + the path."
        ),
    )
    publish.add_argument("paths", nargs="+", metavar="PATH", help="an input file")
    _common(publish)
    publish.add_argument(
        "--key-prefix",
        metavar="TEXT",
        help="the start of each stream key (default: a fresh random one per run, then ':')",
    )
    publish.add_argument(
        "--chunk-bytes", type=positive, metavar="N", help="cut each input into N-byte pieces"
    )
    publish.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after each chunk (a live stream's pace; default: none, pipelined)",
    )
    publish.add_argument(
        "--maxlen", type=positive, default=1_000_000, help="MAXLEN ~ of each shard stream"
    )

    worker = commands.add_parser(
        "worker",
        help="assemble the streams of Redis shard streams until stopped",
        description=(
            "Take shards by lease and assemble their streams, writing each result to the "
            "results stream once. SIGTERM or SIGINT: finish the round, hand the shards back "
            "(their open streams are replayed by the next owner), exit 0."
        ),
    )
    _common(worker)
    worker.add_argument("--name", help="this worker's name (default: host:pid)")
    worker.add_argument(
        "--lease-ms", type=positive, default=3000, help="lease length (default 3000)"
    )
    worker.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="end a stream as cut off after this long without an entry (default 10)",
    )
    worker.add_argument(
        "--lenient", action="store_true", help="skip malformed payloads instead of ending"
    )

    results = commands.add_parser(
        "results",
        help="print the results stream as the JSON lines `aggregator assemble` prints",
        description="Print every result written so far, one line of JSON each.",
    )
    _common(results)
    results.add_argument("--follow", action="store_true", help="then wait for more")
    results.add_argument("--pretty", action="store_true", help="indent the JSON output")


def _keys(args: argparse.Namespace) -> Any:
    from .redis import Keys

    return Keys(args.prefix, args.shards, args.results)


def pieces(data: bytes, size: int | None) -> Iterator[bytes]:
    """A recording cut as a gateway would forward it: ``size``-byte pieces, or one piece per
    SSE event (ending at a blank line) when it has them, else one per line."""
    if size:
        for i in range(0, len(data), size):
            yield data[i : i + size]
        return
    sep = b"\n\n" if b"\n\n" in data else b"\n"
    start = 0
    while start < len(data):
        end = data.find(sep, start)
        end = len(data) if end < 0 else end + len(sep)
        yield data[start:end]
        start = end


async def _publish(args: argparse.Namespace) -> int:
    import anyio

    from .redis import Publisher, client

    prefix = args.key_prefix if args.key_prefix is not None else uuid.uuid4().hex[:12] + ":"
    status = 0
    async with client(args.redis) as redis:
        publisher = Publisher(redis, _keys(args), maxlen=args.maxlen)
        for path in args.paths:
            try:
                data = await anyio.Path(path).read_bytes()
            except OSError as exc:
                print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
                status = 1
                continue
            key = prefix + path
            if not args.delay:
                await publisher.publish_all(key, pieces(data, args.chunk_bytes))
                continue
            for seq, piece in enumerate(pieces(data, args.chunk_bytes)):
                await publisher.publish(key, seq, piece)
                await anyio.sleep(args.delay)
            await publisher.end(key)
    return status


async def _worker(args: argparse.Namespace) -> int:
    from .redis import serve

    await serve(
        args.redis,
        _keys(args),
        name=args.name,
        lease_ms=args.lease_ms,
        idle_timeout=args.idle_timeout,
        strict=not args.lenient,
        warn=lambda line: print(f"aggregator worker: {line}", file=sys.stderr, flush=True),
    )
    return 0


async def _results(args: argparse.Namespace) -> int:
    import orjson

    from .redis import client, read_results

    out = sys.stdout.buffer
    async with client(args.redis) as redis:
        async for line in read_results(redis, _keys(args), follow=args.follow):
            if args.pretty:
                line = orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2)
            out.write(line + b"\n")
            out.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the sub-command ``args`` names; return the exit status."""
    import anyio

    commands = {"publish": _publish, "worker": _worker, "results": _results}
    try:
        return anyio.run(commands[args.command], args, backend=args.backend)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"aggregator {args.command}: needs the [redis] extra: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the contract is: never a traceback
        leaf = _leaf(exc)
        if isinstance(leaf, BrokenPipeError):
            return 1
        from coredis.exceptions import ConnectionError as Disconnected

        if isinstance(leaf, (Disconnected, OSError)):
            message = f"cannot reach Redis at {args.redis}: {leaf}"
        else:
            message = f"{type(leaf).__name__}: {leaf}"
        print(f"aggregator {args.command}: {message}", file=sys.stderr)
        return 1


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups (or the group, holding several)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
