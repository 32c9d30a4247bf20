"""From bytes to chunk events: framing (SSE or JSON Lines), JSON, structuring (sans-I/O).

Theory of operation: a :class:`PayloadDecoder` tells the framing from the first byte that is not
whitespace (``{`` starts JSON Lines; anything else is SSE), cuts payloads with ``_sse``, parses
them with ``orjson`` (which also rejects invalid UTF-8) and structures them with the converter.
It never raises for bad upstream data: every payload becomes one :class:`Item`, an event, the
end marker ``[DONE]``, or an error that names the stream and the place. What to do with an error
(end the stream, or skip the payload) is the assembler's decision, not the decoder's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal, final

import orjson

from ._converter import is_plain_chat, structure_chunk
from ._errors import DecodeError, LimitError, StreamError, StructureError, UpstreamError
from ._events import ChatCompletionChunk, CompletionChunk
from ._limits import MAX_DEPTH_CEILING, depth_exceeds
from ._sse import JSONLinesReader, SSEDecoder

__all__ = ["Format", "Item", "ItemKind", "Lane", "PayloadDecoder", "payload_to_item"]

Format = Literal["auto", "sse", "jsonl"]

_BOM = b"\xef\xbb\xbf"
#: The most blank bytes kept while waiting for the first byte that tells the framing.
_SNIFF = 64 * 1024


class ItemKind(enum.Enum):
    """What a decoded :class:`Item` is."""

    CHUNK = "chunk"
    DONE = "done"
    ERROR = "error"


@final
class Item:
    """One decoded payload: a chunk event, ``[DONE]``, or an error.

    Attributes:
        kind: which of the three it is.
        where: the place in the source (``line 12 (event 5)``).
        event: the chunk, for ``CHUNK`` (built on first access when ``payload`` is of the
            common shape, see ``is_plain_chat``).
        error: the error, for ``ERROR`` (an :class:`UpstreamError` for an error payload).
        sse_id: the SSE ``id:`` the event carried itself, if any (what ``dedupe`` uses).
        payload: the validated payload of the common shape, for ``CHUNK``, else ``None``.
    """

    __slots__ = ("_event", "_where", "error", "kind", "payload", "sse_id")

    def __init__(
        self,
        kind: ItemKind,
        where: str | tuple[int, int],
        event: ChatCompletionChunk | CompletionChunk | None = None,
        error: StreamError | None = None,
        sse_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self._where = where
        self._event = event
        self.error = error
        self.sse_id = sse_id
        self.payload = payload

    @property
    def where(self) -> str:
        """The place in the source (``line 12 (event 5)``)."""
        return where_text(self._where)

    @property
    def event(self) -> ChatCompletionChunk | CompletionChunk | None:
        """The chunk event, for ``CHUNK``."""
        if self._event is None and self.payload is not None:
            self._event = structure_chunk(self.payload, where=self.where)
        return self._event

    def _fields(self) -> tuple[Any, ...]:
        return (self.kind, self.where, self.event, self.error, self.sse_id)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Item:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind, where, event, error, sse_id = self._fields()
        return f"Item({kind}, {where!r}, event={event!r}, error={error!r}, sse_id={sse_id!r})"


def where_text(where: str | tuple[int, int]) -> str:
    """The place as text; a ``(line, event)`` pair is formatted only when someone asks."""
    if where.__class__ is tuple:
        return f"line {where[0]} (event {where[1]})"
    return where  # type: ignore[return-value]


def payload_to_item(
    obj: Any,
    *,
    stream: str,
    where: str | tuple[int, int],
    sse_id: str | None = None,
    max_depth: int | None = None,
) -> Item:
    """Turn one parsed JSON payload into an :class:`Item` (never raises for bad data).

    ``where`` may be a ``(line, event)`` pair, formatted only if an error needs it.
    """
    if is_plain_chat(obj):  # the common shape, first; it is shallow: no depth to check
        return Item(ItemKind.CHUNK, where, None, None, sse_id, obj)
    place = where_text(where)
    if max_depth is None:
        max_depth = MAX_DEPTH_CEILING
    if depth_exceeds(obj, max_depth):
        error = LimitError(
            f"JSON nested deeper than {max_depth} levels",
            stream=stream,
            where=place,
            limit="max_depth",
        )
        return Item(ItemKind.ERROR, place, error=error)
    if obj.__class__ is dict and "error" in obj and "choices" not in obj:
        return Item(ItemKind.ERROR, place, error=upstream_error(obj["error"], stream, place))
    try:
        event = structure_chunk(obj, stream=stream, where=place)
    except StructureError as exc:
        return Item(ItemKind.ERROR, place, error=exc)
    return Item(ItemKind.CHUNK, place, event=event, sse_id=sse_id)


def upstream_error(
    payload: Any,
    stream: str = "<stream>",
    where: str = "",
    *,
    status: int | None = None,
    fallback: str = "",
) -> UpstreamError:
    """The :class:`UpstreamError` for an error object a server sent (in the stream, or as the
    body of an HTTP ``status``); ``fallback`` is the message when the object has none."""
    message = payload.get("message") if isinstance(payload, dict) else payload
    if not isinstance(message, str) or not message:
        message = fallback or orjson.dumps(payload, default=repr).decode()
    if len(message) > 500:
        message = message[:497] + "..."
    if status is not None:
        message = f"HTTP {status}: {message}"
    return UpstreamError(f"upstream error: {message}", stream=stream, where=where, payload=payload)


#: A fast lane for data payloads (see ``FusedSource``): called as ``lane(payload, line, items)``
#: for each data payload, in order, with the items decoded before it and not yet taken; it
#: either merges the payload itself (counting it with :meth:`PayloadDecoder.skip`) or appends
#: its item (:meth:`PayloadDecoder.payload`) to ``items``.
Lane = Callable[[bytes, int, list[Item]], None]


@final
class PayloadDecoder:
    """Bytes in, :class:`Item` s out, for one source.

    Args:
        name: the source's name, used in every error (a file name, ``<stdin>``...).
        format: ``"sse"``, ``"jsonl"``, or ``"auto"`` to tell them apart from the first byte.
        max_line: the longest line accepted, in bytes.
        max_depth: the deepest nesting of objects and lists accepted in a payload.
    """

    __slots__ = ("_events", "_format", "_head", "_jsonl", "_max_depth", "_sse", "name")

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        max_line: int = 16 << 20,
        max_depth: int | None = 64,
    ):
        self.name = name
        self._format: Format = format
        self._head = b""
        self._max_depth = max_depth
        self._sse = SSEDecoder(max_line=max_line)
        self._jsonl = JSONLinesReader(max_line=max_line)
        self._events = 0

    @property
    def format(self) -> Format:
        """``sse`` or ``jsonl`` once known, ``auto`` before the first non-blank byte."""
        return self._format

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._jsonl.line if self._format == "jsonl" else self._sse.line

    def feed(self, data: bytes, lane: Lane | None = None) -> list[Item]:
        """Decode the next bytes of the source.

        ``lane``, when given, takes each data payload instead (see :data:`Lane`).
        """
        if self._format == "auto":
            data = self._head + data
            if len(data) < 3 and _BOM.startswith(data):  # maybe a BOM split across reads
                self._head = data
                return []
            stripped = (data[3:] if data.startswith(_BOM) else data).lstrip(b" \t\r\n")
            if not stripped and len(data) <= _SNIFF:
                self._head = data
                return []
            self._head = b""
            # blank bytes only, and many: SSE, where blank lines are harmless (bounded memory)
            self._format = "jsonl" if stripped[:1] == b"{" else "sse"
        return self._decode(data, final=False, lane=lane)

    def close(self, lane: Lane | None = None) -> list[Item]:
        """End of the source: decode what is left."""
        return self._decode(b"", final=True, lane=lane)

    def _decode(self, data: bytes, *, final: bool, lane: Lane | None = None) -> list[Item]:
        items: list[Item] = []
        if self._format == "jsonl":
            for entry in self._jsonl.decode(data, final=final):
                if entry.__class__ is DecodeError:
                    items.append(self._decode_error(entry))
                else:
                    line_no, line = entry  # type: ignore[misc]
                    if lane is None:
                        items.append(self.payload(line, line_no, None))
                    else:
                        lane(line, line_no, items)
        else:
            for ev in self._sse.scan(data, final=final):
                if ev.__class__ is DecodeError:
                    items.append(self._decode_error(ev))
                    continue
                payload, event_type, sse_id, _, line, own_id = ev
                if payload == b"[DONE]":
                    items.append(Item(ItemKind.DONE, f"line {line}"))
                elif event_type == "error":
                    items.append(self._error_event(payload, f"line {line}"))
                elif lane is not None and not own_id:
                    lane(payload, line, items)
                else:
                    items.append(self.payload(payload, line, sse_id if own_id else None))
        return items

    def skip(self) -> None:
        """Count a data payload a lane merged without an item."""
        self._events += 1

    def _decode_error(self, exc: DecodeError) -> Item:
        error = DecodeError(exc.detail, stream=self.name, where=exc.where)
        return Item(ItemKind.ERROR, exc.where, error=error)

    def payload(self, data: bytes, line: int, sse_id: str | None = None) -> Item:
        """The item of one data payload (SSE ``data`` or a JSON line) found at ``line``."""
        self._events += 1
        place = (line, self._events)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            where = where_text(place)
            err = DecodeError(f"invalid JSON: {exc}", stream=self.name, where=where)
            return Item(ItemKind.ERROR, where, error=err)
        return payload_to_item(
            obj, stream=self.name, where=place, sse_id=sse_id, max_depth=self._max_depth
        )

    def _error_event(self, data: bytes, where: str) -> Item:
        self._events += 1
        where = f"{where} (event {self._events})"
        try:
            obj: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = data.decode("utf-8", "replace")
        if isinstance(obj, dict) and "error" in obj:
            obj = obj["error"]
        return Item(ItemKind.ERROR, where, error=upstream_error(obj, self.name, where))
