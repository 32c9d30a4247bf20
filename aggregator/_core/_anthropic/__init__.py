"""The Anthropic Messages stream protocol (``message_start`` ... ``message_stop``).

Theory of operation: each payload is a JSON object with a ``type``. ``message_start`` opens a
stream (START, the message id), ``message_stop`` ends it (LAST), ``ping`` is a keep-alive (SKIP),
``error`` is the server's error (ERROR: the engine ends the stream with it, the partial message
kept). Everything else is a CHUNK merged by :class:`MessageAccumulator`: content blocks kept by
their ``index`` in a dict (an index of 10**9 allocates nothing), text / thinking / signature /
tool input fragments joined once when the block stops (a tool input of ``""`` is ``{}``), usage
from ``message_start`` replaced field by field by each ``message_delta`` (never summed).
Unknown event, block and delta types are kept as data, never fatal. The blocks a
``message_start`` already carries (programmatic tool calling prefills them) are blocks 0..n-1.
A ``message_start`` while a message is open ends the open one (cut off) and starts the new
one (the engine's START rule).

A malformed event (a delta for a block never started, a usage count that is a string or
negative) is a :class:`ConflictError`: the engine records it, placed, as a problem, and keeps
the partial message; a block past the limits is a :class:`LimitError` that fails the stream.

Status: a first increment; the payloads are merged as plain dicts, the result is a
:class:`Message` model whose ``content`` and ``usage`` are JSON objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import orjson

from .._errors import (
    ConflictError,
    LimitError,
    StreamError,
    StructureError,
    Where,
    upstream_error,
    where_text,
)
from .._limits import Limits
from .._model import Model, extras
from .._protocol import CHUNK, ERROR, LAST, SKIP, START, Parsed, Protocol

__all__ = ["AnthropicProtocol", "Message", "MessageAccumulator"]

_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)
#: The most bytes of text one block may gather (a hostile 200 MB partial_json is refused).
MAX_BLOCK_BYTES = 64 * 1024 * 1024
#: The most blocks one message may hold.
MAX_BLOCKS = 10_000


@attrs.frozen(repr=False)
class Message(Model):
    """A message as the non-streaming Messages API returns it."""

    id: str = ""
    type: str = "message"
    role: str = "assistant"
    model: str = ""
    content: list[dict[str, Any]] = attrs.Factory(list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] | None = None
    extras: Mapping[str, Any] = extras()


_TEXT_FIELD = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}


class MessageAccumulator:
    """Folds one message's events into its :class:`Message`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.chunks = 0
        self.notes: list[str] = []
        self.problems: list[StreamError] = []
        self.finished = False
        self.message: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.parts: dict[int, dict[str, list[str]]] = {}
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def add(self, event: Any) -> None:
        self.add_plain(event)

    def absorb_ids(self) -> None:
        pass

    def _index(self, payload: dict[str, Any]) -> int:
        index = payload.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ConflictError(f"a block index that is not a count: {index!r}")
        return index

    def add_plain(self, payload: dict[str, Any]) -> None:
        self.chunks += 1
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            if not isinstance(message, dict):
                raise ConflictError("a message_start without a message object")
            self.message = {k: v for k, v in message.items() if k not in ("content", "usage")}
            self._usage(message.get("usage"))
            prefilled = message.get("content")
            if isinstance(prefilled, list):  # a prefilled message_start: its blocks, by place
                if len(prefilled) > MAX_BLOCKS:
                    raise LimitError(f"more than {MAX_BLOCKS} content blocks")
                for index, block in enumerate(prefilled):
                    if isinstance(block, dict):
                        self.blocks[index] = dict(block)
        elif kind == "content_block_start":
            index = self._index(payload)
            block = payload.get("content_block")
            if not isinstance(block, dict):
                raise ConflictError(f"block {index}: a content_block that is not an object")
            if index not in self.blocks and len(self.blocks) >= MAX_BLOCKS:
                raise LimitError(f"more than {MAX_BLOCKS} content blocks")
            self.blocks[index] = dict(block)
            self.parts[index] = {}
            self.sizes[index] = 0
            self.open.add(index)
        elif kind == "content_block_delta":
            index = self._index(payload)
            if index not in self.open:
                raise ConflictError(f"a delta for block {index}, which is not open")
            delta = payload.get("delta")
            if not isinstance(delta, dict):
                raise ConflictError(f"block {index}: a delta that is not an object")
            self._delta(index, delta)
        elif kind == "content_block_stop":
            index = self._index(payload)
            if index not in self.open:
                raise ConflictError(f"a stop for block {index}, which is not open")
            self._close(index, cut=False)
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                self.message.update(delta)
            for key, value in payload.items():
                if key not in ("type", "delta", "usage"):
                    self.message[key] = value
            self._usage(payload.get("usage"))
        elif kind == "message_stop":
            self.finished = True
        else:
            self.notes.append(f"an event of unknown type {kind!r} kept as data")
            self.message.setdefault("unknown_events", []).append(payload)

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        if not isinstance(usage, dict):
            raise ConflictError(f"a usage that is not an object: {usage!r}"[:200])
        for key, value in usage.items():
            if (
                isinstance(value, bool)
                or (key.endswith("_tokens") and not (isinstance(value, int) and value >= 0))
            ) and value is not None:
                raise ConflictError(f"usage {key} is not a count: {value!r}"[:200])
        self.usage = {**(self.usage or {}), **usage}

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        parts = self.parts[index]
        if kind in _TEXT_FIELD or kind == "input_json_delta":
            field = "partial_json" if kind == "input_json_delta" else _TEXT_FIELD[str(kind)]
            piece = delta.get(field if kind != "input_json_delta" else "partial_json")
            if not isinstance(piece, str):
                raise ConflictError(f"block {index}: a {kind} whose {field} is not text")
            size = self.sizes[index] + len(piece)
            if size > MAX_BLOCK_BYTES:
                raise LimitError(f"block {index} holds more than {MAX_BLOCK_BYTES} characters")
            self.sizes[index] = size
            parts.setdefault(field, []).append(piece)
        elif kind == "citations_delta":
            self.blocks[index].setdefault("citations", None)
            citations = self.blocks[index]["citations"] or []
            citations.append(delta.get("citation"))
            self.blocks[index]["citations"] = citations
        else:
            for key, value in delta.items():
                if key != "type":
                    self.blocks[index][key] = value
            self.notes.append(f"block {index}: a delta of unknown type {kind!r} kept as data")

    def _close(self, index: int, *, cut: bool) -> None:
        self.open.discard(index)
        block = self.blocks[index]
        for field, pieces in self.parts.pop(index, {}).items():
            text = "".join(pieces)
            if field == "partial_json":
                if cut:
                    block["partial_json"] = text
                    self.problems.append(
                        StructureError(
                            f"block {index}: the stream ended inside its tool input",
                            source=self.source,
                        )
                    )
                    continue
                try:
                    block["input"] = orjson.loads(text) if text else {}
                except orjson.JSONDecodeError:
                    block["partial_json"] = text
                    self.problems.append(
                        StructureError(
                            f"block {index}: its tool input is not JSON", source=self.source
                        )
                    )
            else:
                block[field] = (
                    block.get(field, "") + text if isinstance(block.get(field), str) else text
                )

    def result(self) -> Message:
        for index in sorted(self.open):
            self._close(index, cut=True)
        message = dict(self.message)
        known = {a.name for a in attrs.fields(Message)} - {"extras"}
        fields = {k: message.pop(k) for k in list(message) if k in known}
        content = [self.blocks[i] for i in sorted(self.blocks)]
        return Message(**fields, content=content, usage=self.usage, extras=message)


class AnthropicProtocol(Protocol):
    """The Anthropic Messages stream (see the module's docstring)."""

    name: ClassVar[str] = "anthropic"
    events: ClassVar[tuple[type, ...]] = ()

    def __init__(self, source: str, limits: Limits) -> None:
        super().__init__(source, limits)

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        if event in _TYPES:
            return True
        return isinstance(obj, dict) and obj.get("type") in ("message_start", "ping")

    def parse(self, obj: Any, where: Where) -> Parsed:
        if not isinstance(obj, dict):
            raise StructureError("an event that is not a JSON object", source=self.source)
        kind = obj.get("type")
        if kind == "message_start":
            message = obj.get("message")
            ident = message.get("id") if isinstance(message, dict) else None
            return (START, ident if isinstance(ident, str) else "", obj, None, None)
        if kind == "message_stop":
            return (LAST, "", obj, None, None)
        if kind == "ping":
            return (SKIP, "", None, None, None)
        if kind == "error":
            error = upstream_error(obj.get("error", obj), self.source, where_text(where))
            return (ERROR, "", error, None, None)
        return (CHUNK, "", obj, None, None)

    def accumulator(self) -> MessageAccumulator:
        return MessageAccumulator(self.source)

    def event(self, payload: dict[str, Any], where: str) -> Any:
        return payload
