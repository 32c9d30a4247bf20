"""``aggregator gateway``: an aggregating proxy for OpenAI-compatible and Anthropic servers.

The gateway sits between clients (any OpenAI or Anthropic SDK) and an upstream server. It
proxies ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/responses`` and
``/v1/messages``; a streamed answer is passed to the client as it arrives while it is assembled,
and when the stream is over each completion is written to a log as ONE JSON line: the whole
object the non-streaming API would have returned, its end reason, usage and timings.

Theory of operation: :func:`create_app` builds a Starlette app around one ``httpx.AsyncClient``
(opened and closed by the app's lifespan). A request's body is read up to ``max_body`` bytes
(413 past it) and sent upstream with an allow-list of headers. Whether the answer is a stream is
decided by what the upstream sent (``content-type: text/event-stream``), not by what the client
asked for, so ``"stream": "true"`` (a string) that an upstream honours is still assembled and
logged. A stream goes through an :class:`aggregator.Tee` (the engine recognises the protocol by
itself), whose ``on_disconnect`` (``finish`` by default: usage kept for billing) says what
happens when the client leaves; the bytes reach the client unchanged, but for two cases: with
``include_usage`` the usage-only chunk the gateway asked for is taken out again, and a failure of
the upstream mid-stream ends the client's stream with an error event in the API's own shape. A
whole answer is passed on as it came, with the upstream's status. Every failure of the upstream
(unreachable, no first byte in time, not JSON, cut off) becomes a 502, or the upstream's own
status when it sent one, with an error body in the API's shape and one log line; never a
traceback. Each line is written and flushed in one call from the event loop, so concurrent
requests never interleave or lose lines.

What is logged is sanitised: the client's ``x-request-id`` names the line only when it is short
and plain (else the gateway names the request itself), the client's API key (``authorization``
bearer token or ``x-api-key``) is replaced everywhere in the line, and ``sk-...`` keys and
bearer tokens are replaced in error texts and upstream error bodies. Upstream response headers
reach the client only from an allow-list.

:func:`run` serves the app under uvicorn (asyncio) or hypercorn (trio). SIGTERM (or Ctrl-C)
stops accepting connections and lets open streams end within ``--drain-timeout`` seconds, then
the process exits.

With ``--redis URL`` (``create_app(redis=...)`` or ``publisher=...``) the gateway also publishes
each streamed upstream body to Redis Streams for a group of ``aggregator worker`` processes
(:mod:`aggregator.redis`): the body goes through :meth:`aggregator.redis.Publisher.relay` in
front of the tee, so each piece is published (one ``XADD``, awaited) before it reaches the tee
and the client, and the end entry says how the body ended. The stream key is the key prefix
(fresh and random per process unless given), the gateway's request number and the request's
name, so it is unique across a fleet and across restarts (a worker writes a key's results once);
the log line carries it as ``stream_key``, and the in-process assembly and its log line are as
without Redis. A failure to publish (Redis unreachable) is logged as ``publish_error`` and
stops publishing that stream; the client's stream goes on. One coredis client serves the
app's lifetime: opened by the lifespan, closed at shutdown (a ``publisher`` given instead is
the caller's to close). Whole answers are not published. With ``--publish-only``
(``assemble=False``) the gateway publishes instead of assembling: the tee passes the body on
with the same ``on_disconnect`` and time limits but assembles nothing, the workers do, and the
log has one line per streamed request (its ``stream_key``, ``published: true``, whether the
client left, and the failure, if any) without a completion.

The web libraries (the ``[gateway]`` extra: starlette, httpx, uvicorn, hypercorn) are imported
only when the app is built or the command runs, and coredis (the ``[redis]`` extra) only when
Redis is used; :func:`add_arguments` needs none of them.
"""

from __future__ import annotations

import argparse
import itertools
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs
import orjson

from ._cli import positive, seconds, timings_record
from ._core._converter import to_dict
from ._core._limits import DEFAULT_LIMITS, Limits
from ._core._results import Result
from ._tee import Tee

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from ._telemetry import genai_telemetry
    from .redis import Keys, Publisher

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "create_app", "run"]

#: The endpoints proxied, and the API whose error shape each answers in.
ENDPOINTS: dict[str, Literal["openai", "anthropic"]] = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai",
    "/v1/responses": "openai",
    "/v1/messages": "anthropic",
}
#: The endpoints whose streams take ``stream_options.include_usage``.
USAGE_OPTION = ("/v1/chat/completions", "/v1/completions")
#: Request headers passed on to the upstream (others, such as ``host``, are the gateway's own).
FORWARDED = frozenset(
    {
        "authorization",
        "x-api-key",
        "content-type",
        "accept",
        "openai-organization",
        "openai-project",
        "openai-beta",
        "anthropic-version",
        "anthropic-beta",
    }
)
#: Response headers passed back to the client by name, and by prefix.
RETURNED = frozenset({"content-type", "x-request-id", "request-id", "retry-after"})
RETURNED_PREFIXES = ("openai-", "anthropic-", "x-ratelimit-", "ratelimit")
#: The default largest request body, in bytes.
MAX_BODY = 16 * 1024 * 1024
#: The largest whole (non-streamed) upstream answer read, in bytes.
MAX_RESPONSE = 64 * 1024 * 1024
#: A client's ``x-request-id`` names its log line when it matches this; else the gateway names it.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
#: What is redacted from error texts and upstream error bodies: API keys and bearer tokens.
SECRET = re.compile(r"\bsk-[A-Za-z0-9_-]{6,}|\b[Bb]earer\s+[A-Za-z0-9._~+/=-]+")
#: A key shorter than this is not searched for in the whole line (it would mangle the content).
MIN_SECRET = 8
#: The most characters of an upstream error body kept in a log line.
ERROR_TEXT = 2000

HELP = "run the aggregating gateway (an OpenAI- and Anthropic-compatible proxy)"
DESCRIPTION = (
    "Proxy POST /v1/chat/completions, /v1/completions, /v1/responses and /v1/messages to an "
    "upstream server. Streams reach the client as they arrive and are assembled on the way; "
    "each completion is logged as one JSON line (the whole object, its end reason, usage and "
    "timings). Needs the [gateway] extra."
)


# -- logging ---------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` (the client's keys), ``sk-...`` keys and bearer tokens
    replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return SECRET.sub("[redacted]", text)


def _scrub(value: Any, secrets: tuple[str, ...], text: Any = None) -> Any:
    """``value`` (JSON) with every string, keys included, passed through ``text`` (default:
    each of ``secrets`` replaced; :func:`redact` for upstream error bodies)."""
    if isinstance(value, str):
        if text is not None:
            return text(value, secrets)
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets, text): _scrub(v, secrets, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets, text) for v in value]
    return value


class CompletionLog:
    """One JSON line per completion (or per failed request), written and flushed in one call."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def write(self, record: dict[str, Any], secrets: tuple[str, ...] = ()) -> None:
        """Write ``record`` with ``secrets`` replaced everywhere in it."""
        if secrets:
            record = _scrub(record, secrets)
        self.file.write(orjson.dumps(record, default=str) + b"\n")
        self.file.flush()


# -- the client's stream ---------------------------------------------------------------------


def error_body(api: str, message: str, kind: str, code: str | None) -> dict[str, Any]:
    """An error object in the API's shape (OpenAI's ``{"error": ...}`` or Anthropic's)."""
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": code}}


def error_event(endpoint: str, message: str) -> bytes:
    """The SSE event that ends a client's stream when the upstream failed mid-stream."""
    if endpoint == "/v1/messages":
        data = orjson.dumps(error_body("anthropic", message, "api_error", None))
        return b"event: error\ndata: " + data + b"\n\n"
    if endpoint == "/v1/responses":
        payload = {"type": "error", "code": "upstream_error", "message": message, "param": None}
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
    data = orjson.dumps(error_body("openai", message, "upstream_error", "upstream_error"))
    return b"data: " + data + b"\n\n"


_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class UsageStripper:
    """Take the usage-only chunk (``"choices": []`` with ``usage``) out of an SSE stream: the
    one a gateway added with ``stream_options.include_usage`` for a client that did not ask.
    Every other event is passed on byte for byte; at most one event is held at a time."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        """The events of ``data`` (with what was held) that are complete, but the usage one."""
        self.held += data
        out = bytearray()
        start = 0
        for boundary in _BOUNDARY.finditer(self.held):
            event = self.held[start : boundary.end()]
            start = boundary.end()
            if not self._usage_only(event):
                out += event
        self.held = self.held[start:]
        return bytes(out)

    def close(self) -> bytes:
        """What was held at the end (an event the stream did not finish)."""
        rest, self.held = self.held, b""
        return rest

    @staticmethod
    def _usage_only(event: bytes) -> bool:
        data = b"".join(
            line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
        )
        if not data.startswith(b"{") or b'"usage"' not in data:
            return False
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        return (
            isinstance(chunk, dict)
            and chunk.get("choices") == []
            and chunk.get("usage") is not None
        )


class ClientStream:
    """What the client is sent of a tee's stream: its items (less the usage chunk, when asked),
    and, if the upstream fails mid-stream, an error event in the API's shape instead of an
    exception (the failure is in the tee's results, and so in the log)."""

    def __init__(
        self, tee: Tee[bytes], endpoint: str, strip_usage: bool, secrets: tuple[str, ...]
    ) -> None:
        self.tee = tee
        self.endpoint = endpoint
        self.stripper = UsageStripper() if strip_usage else None
        self.secrets = secrets
        self.tail = b"\n\n"  # the last bytes sent: whether they end an event
        self.done = False
        #: what the client was told of a failure of the upstream (redacted), if it failed.
        self.failure: str | None = None

    def __aiter__(self) -> ClientStream:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            try:
                data = await self.tee.__anext__()
            except StopAsyncIteration:
                self.done = True
                if self.stripper is not None and (rest := self.stripper.close()):
                    return self._sent(rest)
                raise
            except Exception as exc:  # noqa: BLE001 - the upstream failed: tell the client
                self.done = True
                message = redact(f"the upstream failed mid-stream: {exc}", self.secrets)
                self.failure = message
                event = error_event(self.endpoint, message)
                if not self.tail.endswith((b"\n\n", b"\r\r")):
                    event = b"\n\n" + event
                return self._sent(event)
            if self.stripper is not None:
                data = self.stripper.feed(data)
            if data:
                return self._sent(data)
        raise StopAsyncIteration

    def _sent(self, data: bytes) -> bytes:
        self.tail = (self.tail + data)[-2:]
        return data


# -- the app ---------------------------------------------------------------------------------


def upstream_base(url: str) -> str:
    """The upstream's base URL, with or without ``/v1`` (the gateway adds it)."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def request_name(header: str | None, numbers: Iterator[int]) -> str:
    """The log line's request name: the client's ``x-request-id`` when it is short and plain,
    else one of the gateway's own."""
    if header is not None and REQUEST_ID.fullmatch(header):
        return header
    return f"gateway-{next(numbers)}"


def _returned(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in RETURNED or k.startswith(RETURNED_PREFIXES)}


def _secrets(headers: Any) -> tuple[str, ...]:
    """The client's keys, as they would appear in text: the bearer token and ``x-api-key``."""
    found = []
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        found.append(auth[7:].strip())
    elif auth:
        found.append(auth.strip())
    found.append((headers.get("x-api-key") or "").strip())
    return tuple(s for s in found if len(s) >= MIN_SECRET)


def create_app(
    upstream: str,
    log: IO[bytes],
    *,
    on_disconnect: Literal["finish", "stop"] = "finish",
    connect_timeout: float = 10.0,
    upstream_keep_alive: float = 4.0,
    first_byte_timeout: float | None = 120.0,
    idle_timeout: float | None = 300.0,
    drain_timeout: float = 30.0,
    max_body: int = MAX_BODY,
    include_usage: bool = False,
    telemetry: genai_telemetry | None = None,
    limits: Limits | None = None,
    redis: str | None = None,
    redis_keys: Keys | None = None,
    redis_maxlen: int = 1_000_000,
    key_prefix: str | None = None,
    publisher: Publisher | None = None,
    assemble: bool = True,
) -> Starlette:
    """The gateway as an ASGI app (Starlette), proxying to ``upstream`` and logging to ``log``.

    Args:
        upstream: the upstream's URL, with or without ``/v1`` (``https://api.openai.com``).
        log: where the JSON lines go (a binary file, flushed after each line).
        on_disconnect: when a client leaves mid-stream: ``"finish"`` reads the upstream to its
            end so the completion and its usage are logged whole; ``"stop"`` lets it go and logs
            the partial completion.
        connect_timeout: seconds to connect to the upstream.
        upstream_keep_alive: how long an idle upstream connection stays in the pool: shorter
            than the upstream's own keep-alive (uvicorn and Node close an idle connection after
            5 s), so no request is sent on a connection the upstream is closing (it would be
            reset, a 502). undici's default is the same 4 s.
        first_byte_timeout: seconds from sending the request to the upstream's response headers.
        idle_timeout: seconds the upstream may go silent in a response.
        drain_timeout: seconds ``"finish"`` may read after the client left.
        max_body: the largest request body accepted, in bytes (413 past it).
        include_usage: ask the upstream for the usage of chat and text completion streams
            (``stream_options.include_usage``), and take the usage chunk out of the client's
            stream when the client had not asked for it.
        telemetry: a :class:`~aggregator.stages.genai_telemetry` to record each result with.
        limits: the engine's limits (``idle_timeout`` is set from the argument above).
        redis: a Redis URL (``redis://host:port/db``): publish each streamed body there too,
            through one client the app's lifespan opens and closes (needs the ``[redis]`` extra).
        redis_keys: the key names and shard count for ``redis`` (default ``Keys()``).
        redis_maxlen: the ``MAXLEN ~`` of each shard stream, for ``redis``.
        key_prefix: the start of each stream key (default: a fresh random one, then ``:``).
        publisher: an :class:`aggregator.redis.Publisher` to publish with instead of ``redis``
            (its client is the caller's: opened before the app serves, closed after).
        assemble: ``False`` to publish instead of assembling in process (needs ``redis`` or
            ``publisher``): the log line of a streamed request has no completion.
    """
    import anyio
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    from .sources import from_httpx

    if redis is not None and publisher is not None:
        raise ValueError("give redis (a URL) or publisher, not both")
    if not assemble and redis is None and publisher is None:
        raise ValueError("assemble=False publishes instead: it needs redis or publisher")
    completions = CompletionLog(log)
    numbers = itertools.count(1)
    tee_limits = attrs.evolve(limits or DEFAULT_LIMITS, idle_timeout=idle_timeout)
    state: dict[str, Any] = {"publisher": publisher}
    prefix = uuid.uuid4().hex[:12] + ":" if key_prefix is None else key_prefix
    streams = itertools.count(1)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(
            connect=connect_timeout, read=idle_timeout, write=idle_timeout, pool=connect_timeout
        )
        pool = httpx.Limits(
            max_connections=None,
            max_keepalive_connections=256,
            keepalive_expiry=upstream_keep_alive,
        )
        async with httpx.AsyncClient(
            base_url=upstream_base(upstream), timeout=timeout, limits=pool, trust_env=False
        ) as client:
            state["client"] = client
            if redis is None:
                yield
                return
            from .redis import Publisher
            from .redis import client as redis_client

            async with redis_client(redis) as connection:
                state["publisher"] = Publisher(connection, redis_keys, maxlen=redis_maxlen)
                try:
                    yield
                finally:
                    state["publisher"] = None

    class Streamed(Response):
        """The upstream's stream, to the client through a tee; logged when it ends."""

        def __init__(self, answer: httpx.Response, base: dict[str, Any], strip: bool) -> None:
            super().__init__(status_code=answer.status_code)
            self.answer, self.base, self.strip = answer, base, strip
            self.secrets: tuple[str, ...] = base.pop("secrets")

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            base = self.base
            source: Any = from_httpx(self.answer)
            publishing = state["publisher"]
            if publishing is not None:
                base["stream_key"] = f"{prefix}{next(streams)}:{base['request']}"
                base["publish_error"] = None

                def failed(exc: Exception) -> None:  # Redis is down: the client's stream goes on
                    base["publish_error"] = redact(f"{type(exc).__name__}: {exc}", self.secrets)

                source = publishing.relay(source, base["stream_key"], on_error=failed)
            tee = Tee(
                source,
                name=base["request"],
                on_disconnect=on_disconnect,
                drain_timeout=drain_timeout,
                limits=tee_limits,
                assemble=assemble,
            )
            client = ClientStream(tee, base["endpoint"], self.strip, self.secrets)
            try:
                async with tee:
                    body = StreamingResponse(
                        client, status_code=self.status_code, headers=_returned(self.answer.headers)
                    )
                    await body(scope, receive, send)
            except (ClientDisconnect, OSError):
                pass  # the client went away: the tee has ended the stream as asked
            finally:
                with anyio.CancelScope(shield=True):
                    await self.answer.aclose()
                self.logged(tee, client.failure)

        def logged(self, tee: Tee[bytes], failure: str | None = None) -> None:
            if not assemble:  # the workers assemble: the line says what was published
                record = {
                    **self.base,
                    "time": time.time(),
                    "streamed": True,
                    "published": True,
                    "client_disconnected": tee.disconnected,
                    "error": failure,
                }
                completions.write(record, self.secrets)
                return
            for result in tee.results:
                if telemetry is not None:
                    telemetry.record(result)
                completions.write(self.record(result, tee), self.secrets)
            if not tee.results:
                report = tee.report
                found = [] if report is None else [report.error, *report.problems]
                errors = [str(e) for e in found if e is not None] or ["no completion in the stream"]
                record = {
                    **self.base,
                    "time": time.time(),
                    "streamed": True,
                    "complete": False,
                    "partial": True,
                    "client_disconnected": tee.disconnected,
                    "reason": None if report is None else report.reason.value,
                    "error": redact("; ".join(errors), self.secrets),
                }
                completions.write(record, self.secrets)

        def record(self, result: Result, tee: Tee[bytes]) -> dict[str, Any]:
            usage = result.usage
            return {
                **self.base,
                "time": time.time(),
                "protocol": result.protocol,
                "streamed": True,
                "complete": result.complete,
                "partial": not result.complete,
                "client_disconnected": tee.disconnected,
                "reason": result.reason.value,
                "error": None if result.error is None else redact(str(result.error), self.secrets),
                "chunks": result.chunks,
                "usage": None if usage is None else _json(usage),
                "timings": None if result.timings is None else timings_record(result.timings),
                "completion": to_dict(result.completion),
            }

    def failure(
        base: dict[str, Any], secrets: tuple[str, ...], status: int, code: str, message: str
    ) -> Response:
        """Log a request that got no answer from the upstream; answer in the API's shape."""
        message = redact(message, secrets)
        completions.write(
            {**base, "time": time.time(), "status": status, "complete": False, "error": message},
            secrets,
        )
        api = ENDPOINTS[base["endpoint"]]
        if api == "anthropic":
            kind = {413: "request_too_large", 400: "invalid_request_error"}.get(status, "api_error")
        else:
            kind = "invalid_request_error" if status < 500 else "upstream_error"
        return Response(
            orjson.dumps(error_body(api, message, kind, code)),
            status,
            media_type=("application/json"),
        )

    async def read_body(request: Request) -> bytes | None:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            return None
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > max_body:
                return None
        return bytes(body)

    def proxy(endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            client = state["client"]
            name = request_name(request.headers.get("x-request-id"), numbers)
            secrets = _secrets(request.headers)
            base: dict[str, Any] = {"request": name, "endpoint": endpoint}
            try:
                body = await read_body(request)
            except ClientDisconnect:
                return failure(base, secrets, 400, "client_disconnected", "the client left")
            if body is None:
                message = f"the request body is larger than {max_body} bytes"
                return failure(base, secrets, 413, "request_too_large", message)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                return failure(base, secrets, 400, "invalid_json", "the body is not a JSON object")
            strip = False
            if (
                include_usage
                and endpoint in USAGE_OPTION
                and payload.get("stream") in (True, "true")
            ):
                options = payload.get("stream_options")
                options = options if isinstance(options, dict) else {}
                if not options.get("include_usage"):
                    strip = True
                    payload["stream_options"] = {**options, "include_usage": True}
                    body = orjson.dumps(payload)
            headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
            sent = client.build_request("POST", endpoint, content=body, headers=headers)
            try:
                with anyio.fail_after(first_byte_timeout):
                    try:
                        answer = await client.send(sent, stream=True)
                    except (
                        httpx.RemoteProtocolError,
                        httpx.ReadError,
                        httpx.WriteError,
                        httpx.ConnectError,
                    ):
                        # no response: a pooled connection the upstream had closed (or reset,
                        # closing it with the request unread, at its keep-alive's end), or a
                        # refused connect: the request was not taken, so it is sent once more
                        sent = client.build_request("POST", endpoint, content=body, headers=headers)
                        answer = await client.send(sent, stream=True)
            except TimeoutError:
                message = f"the upstream sent no response within {first_byte_timeout:g} s"
                return failure(base, secrets, 502, "upstream_timeout", message)
            except httpx.TimeoutException as exc:
                message = f"the upstream timed out: {type(exc).__name__}: {exc}"
                return failure(base, secrets, 502, "upstream_timeout", message)
            except httpx.HTTPError as exc:
                message = f"the upstream is unreachable: {type(exc).__name__}: {exc}"
                return failure(base, secrets, 502, "upstream_unreachable", message)
            base["status"] = answer.status_code
            content_type = answer.headers.get("content-type", "")
            if answer.status_code < 400 and content_type.startswith("text/event-stream"):
                return Streamed(answer, {**base, "secrets": secrets}, strip)
            return await whole(answer, base, secrets)

        return handle

    async def whole(
        answer: httpx.Response, base: dict[str, Any], secrets: tuple[str, ...]
    ) -> Response:
        """A whole (non-streamed) answer, or an error: passed on, logged."""
        status = answer.status_code
        try:
            content = bytearray()
            async for piece in answer.aiter_bytes():
                content += piece
                if len(content) > MAX_RESPONSE:
                    message = f"the upstream's answer is larger than {MAX_RESPONSE} bytes"
                    return failure(base, secrets, 502, "upstream_invalid_response", message)
        except httpx.HTTPError as exc:
            message = f"the upstream failed: {type(exc).__name__}: {exc}"
            return failure(base, secrets, 502, "upstream_error", message)
        finally:
            await answer.aclose()
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            parsed = None
        api = ENDPOINTS[base["endpoint"]]
        headers = _returned(answer.headers)
        if status >= 400:
            text = redact(bytes(content[:ERROR_TEXT]).decode("utf-8", "replace"), secrets)
            completions.write(
                {**base, "time": time.time(), "complete": False, "error": f"HTTP {status}: {text}"},
                secrets,
            )
            if _api_shaped(api, parsed):
                body = orjson.dumps(_scrub(parsed, secrets, redact))
            else:
                kind = "api_error" if api == "anthropic" else "upstream_error"
                message = f"the upstream answered HTTP {status}: {text}"
                body = orjson.dumps(error_body(api, message, kind, f"upstream_{status}"))
            headers["content-type"] = "application/json"
            return Response(body, status, headers=headers)
        if not isinstance(parsed, dict):
            text = bytes(content[:200]).decode("utf-8", "replace")
            message = f"the upstream's answer is not a JSON object: {text!r}"
            return failure(base, secrets, 502, "upstream_invalid_response", message)
        completions.write(
            {
                **base,
                "time": time.time(),
                "streamed": False,
                "complete": True,
                "usage": parsed.get("usage"),
                "completion": parsed,
            },
            secrets,
        )
        return Response(bytes(content), status, headers=headers)

    routes = [Route(path, proxy(path), methods=["POST"]) for path in ENDPOINTS]
    return Starlette(routes=routes, lifespan=lifespan)


def _json(value: Any) -> Any:
    """A model as JSON (``to_dict``); plain JSON as it is."""
    return value if isinstance(value, (dict, list, str, int, float)) else to_dict(value)


def _api_shaped(api: str, parsed: Any) -> bool:
    """Whether an upstream error body is already in the API's error shape."""
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return False
    return api == "openai" or parsed.get("type") == "error"


# -- the command -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``aggregator gateway``."""
    parser.add_argument(
        "--upstream", required=True, help="the upstream server, e.g. https://api.openai.com[/v1]"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "hypercorn"),
        default="uvicorn",
        help="uvicorn (asyncio) or hypercorn (trio)",
    )
    parser.add_argument(
        "--log", default="-", metavar="PATH", help="JSON Lines file to append to (- for stdout)"
    )
    parser.add_argument(
        "--on-disconnect",
        choices=("finish", "stop"),
        default="finish",
        help="when a client leaves mid-stream: read the upstream to its end (finish) or not",
    )
    parser.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--first-byte-timeout",
        type=seconds,
        default=120.0,
        metavar="SECONDS",
        help="seconds until the upstream's response headers",
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=300.0,
        metavar="SECONDS",
        help="seconds the upstream may go silent in a response",
    )
    parser.add_argument(
        "--drain-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, and for --on-disconnect finish: seconds open streams may take to end",
    )
    parser.add_argument(
        "--keep-alive",
        type=seconds,
        default=75.0,
        metavar="SECONDS",
        help="how long an idle client connection is kept open (longer than the clients' own "
        "pool expiry, so a client never reuses a connection the gateway is closing)",
    )
    parser.add_argument(
        "--upstream-keep-alive",
        type=seconds,
        default=4.0,
        metavar="SECONDS",
        help="how long an idle upstream connection is reused (shorter than the upstream's own "
        "keep-alive, so no request goes out on a connection the upstream is closing)",
    )
    parser.add_argument(
        "--max-body", type=positive, default=MAX_BODY, metavar="BYTES", help="largest request body"
    )
    parser.add_argument(
        "--include-usage",
        action="store_true",
        help=(
            "ask the upstream for chat/text completion usage (stream_options.include_usage); "
            "the usage chunk is taken out for clients that did not ask for it"
        ),
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="export OpenTelemetry GenAI spans and metrics (global providers; extra [otel])",
    )
    redis = parser.add_argument_group(
        "Redis Streams",
        "publish each streamed body to Redis for `aggregator worker` too (extra [redis]); "
        "the flags are those of `aggregator publish`",
    )
    redis.add_argument(
        "--redis", metavar="URL", help="publish to this Redis (redis://host:port/db) as well"
    )
    redis.add_argument(
        "--shards", type=positive, default=4, metavar="N", help="shard streams (default 4)"
    )
    redis.add_argument(
        "--redis-prefix", default="agg", metavar="PREFIX", help="the first part of every key (agg)"
    )
    redis.add_argument(
        "--key-prefix",
        metavar="TEXT",
        help="the start of each stream key (default: a fresh random one per process, then ':')",
    )
    redis.add_argument(
        "--maxlen",
        type=positive,
        default=1_000_000,
        metavar="N",
        help="MAXLEN ~ of each shard stream",
    )
    redis.add_argument(
        "--publish-only",
        action="store_true",
        help="publish instead of assembling: the workers assemble, the log has one line per "
        "streamed request without its completion",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``aggregator gateway`` until SIGTERM or Ctrl-C; return the exit status."""
    try:
        import httpx  # noqa: F401
        import starlette  # noqa: F401

        if args.server == "uvicorn":
            import uvicorn  # noqa: F401
        else:
            import hypercorn  # noqa: F401
            import trio  # noqa: F401
    except ImportError as exc:
        print(f"aggregator gateway: needs the [gateway] extra ({exc})", file=sys.stderr)
        return 2
    telemetry = None
    if args.otel:
        try:
            from ._telemetry import genai_telemetry
        except ImportError as exc:  # pragma: no cover - the [otel] extra missing
            print(f"aggregator gateway: --otel needs the [otel] extra ({exc})", file=sys.stderr)
            return 2
        telemetry = genai_telemetry()
    keys = None
    given = [
        flag
        for flag, value, default in (
            ("--shards", args.shards, 4),
            ("--redis-prefix", args.redis_prefix, "agg"),
            ("--key-prefix", args.key_prefix, None),
            ("--maxlen", args.maxlen, 1_000_000),
            ("--publish-only", args.publish_only, False),
        )
        if value != default
    ]
    if args.redis is None and given:
        print(f"aggregator gateway: {', '.join(given)}: only with --redis", file=sys.stderr)
        return 2
    if args.redis is not None:
        try:
            import coredis  # noqa: F401

            from .redis import Keys
        except ImportError as exc:
            print(f"aggregator gateway: --redis needs the [redis] extra ({exc})", file=sys.stderr)
            return 2
        keys = Keys(args.redis_prefix, args.shards)
    try:
        log: IO[bytes] = sys.stdout.buffer if args.log == "-" else open(args.log, "ab")  # noqa: SIM115
    except OSError as exc:
        print(f"aggregator gateway: cannot open the log: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(
            args.upstream,
            log,
            on_disconnect=args.on_disconnect,
            connect_timeout=args.connect_timeout,
            upstream_keep_alive=args.upstream_keep_alive,
            first_byte_timeout=args.first_byte_timeout,
            idle_timeout=args.idle_timeout,
            drain_timeout=args.drain_timeout,
            max_body=args.max_body,
            include_usage=args.include_usage,
            telemetry=telemetry,
            redis=args.redis,
            redis_keys=keys,
            redis_maxlen=args.maxlen,
            key_prefix=args.key_prefix,
            assemble=not args.publish_only,
        )
        if args.server == "uvicorn":
            return _uvicorn(app, args)
        return _hypercorn(app, args)
    finally:
        if log is not sys.stdout.buffer:
            log.close()


def _uvicorn(app: Starlette, args: argparse.Namespace) -> int:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=int(max(1, args.drain_timeout)),
        timeout_keep_alive=int(max(1, args.keep_alive)),
    )
    server = uvicorn.Server(config)
    server.run()  # handles SIGTERM and SIGINT: stop listening, drain, exit
    print("aggregator gateway: stopped", file=sys.stderr, flush=True)
    return 0 if server.started else 1


def _hypercorn(app: Starlette, args: argparse.Namespace) -> int:
    import hypercorn.config
    import hypercorn.trio
    import trio

    config = hypercorn.config.Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.graceful_timeout = args.drain_timeout
    config.keep_alive_timeout = args.keep_alive
    config.loglevel = "WARNING"

    async def serve() -> None:
        stop = trio.Event()

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                async for _ in received:
                    stop.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_signal)
            await hypercorn.trio.serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()

    trio.run(serve)
    print("aggregator gateway: stopped", file=sys.stderr, flush=True)
    return 0
