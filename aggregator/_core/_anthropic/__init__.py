"""The Anthropic Messages stream protocol (``message_start`` ... ``message_stop``).

Theory of operation: each payload is a JSON object with a ``type``. ``message_start`` opens a
stream (START, the message id), ``message_stop`` ends it (LAST), ``ping`` is a keep-alive (SKIP),
``error`` is the server's error (ERROR: the engine ends the stream with it, the partial message
kept). Everything else is a CHUNK merged by :class:`MessageAccumulator`: content blocks kept by
their ``index`` in a dict (an index of 10**9 allocates nothing), text / thinking / signature /
tool input fragments gathered in lists and joined once, when the block stops (a tool input is
parsed then, once; ``""`` is ``{}``), usage from ``message_start`` replaced field by field by
each ``message_delta`` (never summed). Unknown event, block and delta types are kept as data,
never fatal. The blocks a ``message_start`` already carries (programmatic tool calling
prefills them) are blocks 0..n-1. A ``message_start`` while a message is open ends the open one
(cut off) and starts the new one (the engine's START rule).

A malformed event (a delta for a block never started, a usage count that is a string or
negative) is a :class:`ConflictError`: the engine records it, placed, as a problem, and keeps
the partial message (a usage with a bad count is refused whole, the usage before it kept, the
rest of its event taken). Every part is checked against its model as it is merged (a start's
fields, a block, a delta's fields, a usage), so what was merged always structures as a
:class:`Message` and :meth:`MessageAccumulator.result` never fails. More blocks than
``Limits.max_blocks``, or more text in one block than ``Limits.max_block_chars``, is a
:class:`LimitError` that fails the stream, what came before kept. A block still open when
the stream ends keeps its tool input as ``partial_json``, with a problem.

The :class:`Lane` is the protocol's byte-shape fast lane (the engine's ``fast_lane`` switches
it, in one place): a delta whose only news is one string, of a shape a full-path delta taught
it, is merged by parsing that string alone (see :class:`Lane`).
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, final

import attrs
import orjson

from .. import _converter
from .._chat._plain import string_of  # the one way a lane finds its string
from .._errors import (
    ConflictError,
    LimitError,
    StreamError,
    StructureError,
    Where,
    upstream_error,
    where_text,
)
from .._limits import DEFAULT_LIMITS, Limits
from .._protocol import CHUNK, ERROR, LAST, SKIP, START, Parsed, Protocol
from ._models import DELTAS, EVENTS, ContentBlock, Event, Message, UnknownEvent, Usage

__all__ = ["AnthropicProtocol", "Lane", "Message", "MessageAccumulator"]


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


_TEXT_FIELD = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}
_KIND = {"text": "content", "thinking": "reasoning", "signature": "reasoning"}
_KIND_JSON = "tool_call"
_BLOCK: Any = ContentBlock  # (a union: what the converter's hook tells apart)


@final
class _Block:
    """One content block: the object its ``content_block_start`` gave, and the text fragments
    its deltas gathered, joined once (when the block stops, or a result is asked for)."""

    __slots__ = ("base", "citations", "open", "parts", "size", "typed")

    def __init__(self, base: dict[str, Any], open_: bool, typed: Any) -> None:
        self.base = base
        self.open = open_
        self.parts: dict[str, list[str]] = {}
        self.size = 0
        self.citations: list[Any] | None = None
        #: the typed block the check of ``base`` built (see ``MessageAccumulator._check``):
        #: the block's result while no fragment or citation is added to it.
        self.typed = typed

    def result(self, source: str) -> Any:
        """The typed block as the API returns it (see :meth:`joined`)."""
        if self.typed is not None and not self.parts and self.citations is None:
            return self.typed
        block = _converter._without_nones(self.joined()[0])
        return _converter.structure(block, _BLOCK, source=source)

    def joined(self) -> tuple[dict[str, Any], bool]:
        """The block as the API returns it, its fragments joined (a tool input parsed, ``""``
        meaning ``{}``), and whether its tool input failed to parse (kept as ``partial_json``).
        An open block's tool input is not parsed: it is kept as ``partial_json``."""
        out = dict(self.base)
        bad = False
        if self.citations is not None:
            before = out.get("citations")
            out["citations"] = (before if before.__class__ is list else []) + self.citations
        for field, pieces in self.parts.items():
            text = "".join(pieces)
            if field != "partial_json":
                before = out.get(field)
                out[field] = before + text if before.__class__ is str else text
            elif self.open:
                out["partial_json"] = text
            else:
                try:
                    out["input"] = orjson.loads(text) if text else {}
                except orjson.JSONDecodeError:
                    out["partial_json"] = text
                    bad = True
        return out, bad

    def stop(self) -> bool:
        """Close the block, joining its fragments once; whether its tool input is not JSON."""
        self.open = False
        if self.parts or self.citations is not None:
            self.base, bad = self.joined()
            self.parts, self.citations, self.typed = {}, None, None
            return bad
        return False  # nothing to join: its base, and the typed block, are as they were


@final
class MessageAccumulator:
    """Folds one message's events into its :class:`Message` (see the module's docstring)."""

    def __init__(self, source: str = "<stream>", limits: Limits = DEFAULT_LIMITS) -> None:
        self.source = source
        self.limits = limits
        self.chunks = 0
        self.notes: list[str] = []
        self._problems: list[StreamError] = []
        self.finished = False
        self.output_kind: str | None = None
        self.message: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.blocks: dict[int, _Block] = {}
        #: the typed message (without content and usage) and usage the checks of ``message``
        #: and ``usage`` built, kept for :meth:`result` (``None``: none, or no longer true).
        self._typed_message: Message | None = None
        self._typed_usage: Usage | None = None

    @property
    def problems(self) -> list[StreamError]:
        """What was wrong, and the blocks still open inside their tool input (cut off)."""
        cut: list[StreamError] = [
            StructureError(
                f"block {index}: the stream ended inside its tool input", source=self.source
            )
            for index, block in sorted(self.blocks.items())
            if block.open and "partial_json" in block.parts
        ]
        return self._problems + cut if cut else self._problems

    def add(self, event: Any) -> None:
        """Merge one event object (its JSON, through the one converter)."""
        self.add_plain(_converter.to_dict(event))

    def absorb_ids(self) -> None:
        pass

    def open_block(self, index: Any) -> _Block | None:
        """The open block ``index`` names, or ``None``."""
        block = self.blocks.get(index) if index.__class__ is int else None
        return block if block is not None and block.open else None

    def _index(self, payload: dict[str, Any]) -> int:
        index = payload.get("index")
        if index.__class__ is not int or index < 0:
            raise ConflictError(f"a block index that is not a count: {_preview(index)}")
        return index

    def _room(self, index: int) -> None:
        most = self.limits.max_blocks
        if most is not None and index not in self.blocks and len(self.blocks) >= most:
            raise LimitError(f"more than {most} content blocks", limit="max_blocks")

    def add_plain(self, payload: dict[str, Any]) -> None:
        self.chunks += 1
        kind = payload.get("type")
        if kind == "content_block_delta":
            index = self._index(payload)
            block = self.open_block(index)
            if block is None:
                raise ConflictError(f"a delta for block {index}, which is not open")
            delta = payload.get("delta")
            if delta.__class__ is not dict:
                raise ConflictError(f"block {index}: a delta that is not an object")
            self._delta(index, block, delta)
        elif kind == "content_block_start":
            index = self._index(payload)
            base = payload.get("content_block")
            if base.__class__ is not dict:
                raise ConflictError(f"block {index}: a content_block that is not an object")
            self._room(index)
            typed = self._check(base, ContentBlock, f"block {index}")
            old = self.blocks.get(index)
            if old is not None:
                old.stop()  # a lane shape holding it merges no more
                self.notes.append(f"block {index} started again: the later start kept")
            self.blocks[index] = _Block(dict(base), True, typed)
        elif kind == "content_block_stop":
            index = self._index(payload)
            block = self.open_block(index)
            if block is None:
                raise ConflictError(f"a stop for block {index}, which is not open")
            if block.stop():
                self._problems.append(
                    StructureError(f"block {index}: its tool input is not JSON", source=self.source)
                )
        elif kind == "message_delta":
            delta = payload.get("delta")
            if delta is not None and delta.__class__ is not dict:
                raise ConflictError("a message_delta whose delta is not an object")
            fields = dict(self.message)
            if delta:
                fields.update(delta)
            for key, value in payload.items():
                if key not in ("type", "delta", "usage"):
                    fields[key] = value
            self._typed_message = self._check(fields, Message, "message_delta")
            self.message = fields
            self._usage(payload.get("usage"))  # last: a bad usage is refused, the rest taken
        elif kind == "message_start":
            message = payload.get("message")
            if message.__class__ is not dict:
                raise ConflictError("a message_start without a message object")
            fields = {k: v for k, v in message.items() if k not in ("content", "usage")}
            typed = self._check(fields, Message, "message_start")
            prefilled = message.get("content")
            if prefilled.__class__ is list:  # a prefilled message_start: its blocks, by place
                most = self.limits.max_blocks
                if most is not None and len(prefilled) > most:
                    raise LimitError(f"more than {most} content blocks", limit="max_blocks")
                blocks = [
                    _Block(dict(b), False, self._check(b, ContentBlock, f"prefilled block {i}"))
                    for i, b in enumerate(prefilled)
                ]
                self.blocks = dict(enumerate(blocks))
            self.message, self._typed_message = fields, typed
            self._usage(message.get("usage"))  # last: a bad usage is refused, the rest taken
        elif kind == "message_stop":
            self.finished = True
        else:
            self.notes.append(f"an event of unknown type {_preview(kind)} kept as data")
            self.message.setdefault("unknown_events", []).append(payload)
            self._typed_message = None  # (structured again, with them, by result)

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        if usage.__class__ is not dict:
            raise ConflictError(f"a usage that is not an object: {_preview(usage)}")
        for key, value in usage.items():
            if value is None:
                continue
            if value.__class__ is bool or (
                key.endswith("_tokens") and not (value.__class__ is int and value >= 0)
            ):
                raise ConflictError(f"usage {key} is not a count: {_preview(value)}")
        merged = {**self.usage, **usage} if self.usage else dict(usage)
        self._typed_usage = self._check(merged, Usage, "usage")
        self.usage = merged

    def _check(self, value: Any, cls: Any, what: str) -> Any:
        """Refuse ``value`` (a :class:`ConflictError`) unless it structures as ``cls``: what
        is merged always makes a :class:`Message`, so :meth:`result` never fails. The typed
        object (nulls dropped: the API's shape), which :meth:`result` keeps where it can."""
        if value.__class__ is not dict:
            raise ConflictError(f"{what}: not an object but {_preview(value)}")
        try:
            return _converter.structure(_converter._without_nones(value), cls, source=self.source)
        except StructureError as exc:
            raise ConflictError(f"{what}: {exc.detail} (at {exc.field})") from None

    def _delta(self, index: int, block: _Block, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        field = _TEXT_FIELD.get(kind) if kind.__class__ is str else None
        if field is not None:
            piece = delta.get(field)
            if piece.__class__ is not str:
                raise ConflictError(f"block {index}: a {kind} whose {field} is not text")
            size = block.size + len(piece)
            most = self.limits.max_block_chars
            if most is not None and size > most:
                raise LimitError(
                    f"block {index} holds more than {most} characters", limit="max_block_chars"
                )
            block.size = size
            pieces = block.parts.get(field)
            if pieces is None:
                pieces = block.parts[field] = []
                if self.output_kind is None:
                    self.output_kind = _KIND.get(field, _KIND_JSON)
            pieces.append(piece)
        elif kind == "citations_delta":
            citation = delta.get("citation")
            if citation.__class__ is not dict:
                raise ConflictError(f"block {index}: a citation that is not an object")
            if block.citations is None:
                block.citations = []
            most = self.limits.max_blocks
            if most is not None and len(block.citations) >= most:
                raise LimitError(f"block {index}: more than {most} citations", limit="max_blocks")
            block.citations.append(citation)
        else:  # compaction_delta, or a type not known: its fields set on the block
            base = {**block.base, **{k: v for k, v in delta.items() if k != "type"}}
            block.typed = self._check(base, ContentBlock, f"block {index}")
            block.base = base
            if kind not in DELTAS:
                self.notes.append(
                    f"block {index}: a delta of unknown type {_preview(kind)} kept as data"
                )

    def result(self) -> Message:
        """The message as of now (partial while the stream is open); changes nothing.

        The objects the checks built are kept: the typed message (less its content and
        usage), the usage, and each block to which no fragment or citation was added; the
        other blocks are joined and structured once, and the message is the typed one with
        them (``attrs.evolve``). What that gives is what :meth:`structured` gives, the whole
        message built as JSON and structured once, nulls dropped (the tests hold the two
        equal); a message with no typed fields kept, or whose fields hold a content or a usage
        of their own, is made so."""
        typed = self._typed_message
        if typed is None or "content" in self.message or "usage" in self.message:
            return self.structured()
        blocks = self.blocks
        content = [blocks[index].result(self.source) for index in sorted(blocks)]
        usage = self._typed_usage if self.usage is not None else None
        return attrs.evolve(typed, content=content, usage=usage)

    def structured(self) -> Message:
        """The message as of now, built as JSON and structured once (nulls dropped: the API's
        shape): what :meth:`result` gives, by the long way."""
        data = dict(self.message)
        data["content"] = [self.blocks[index].joined()[0] for index in sorted(self.blocks)]
        if self.usage is not None:
            data["usage"] = self.usage
        # every part was checked as it was merged (``_check``): this cannot fail
        return _converter.structure(_converter._without_nones(data), Message, source=self.source)


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
#: the bytes of the key of each delta field the lane cuts out.
_KEYS = {field: b'"' + field.encode() + b'":' for field in _TEXT_FIELD.values()}
_DELTA_KEYS = frozenset({"type", "index", "delta"})
_MAX_SHAPES = 8


@final
class _Shape:
    """The bytes around the one string of one block's deltas, and the fragments it joins."""

    __slots__ = ("acc", "block", "cut", "most", "pieces", "prefix", "start", "suffix")

    def __init__(
        self,
        acc: MessageAccumulator,
        block: _Block,
        pieces: list[str],
        prefix: bytes,
        suffix: bytes,
    ) -> None:
        self.acc = acc
        self.block = block
        self.pieces = pieces
        self.prefix = prefix
        self.suffix = suffix
        self.start = len(prefix)
        self.cut = len(suffix)
        most = acc.limits.max_block_chars
        self.most = sys.maxsize if most is None else most


@final
class Lane:
    """The byte shapes of one source's text, thinking, signature and tool-input deltas.

    A ``content_block_delta`` whose only news is one string (``{"type":"content_block_delta",
    "index":0,"delta":{"type":"text_delta","text":"..."}}``), merged by the full path, teaches
    the lane its bytes before and after that string; a later payload with the same bytes around
    a JSON string is merged by parsing only that string (:meth:`try_merge`). This is
    exact for the reason the chat lane's is (``_chat/_plain``): the key appears once and no
    escape stands outside the string, so the payload is the learnt object with that one string
    changed. A shape merges only into its block while that block is open and under its limit;
    anything else says no and takes the full path, which explains what is wrong. The engine
    clears the lane when its stream stops being the current one.
    """

    __slots__ = ("merged", "shapes")

    def __init__(self) -> None:
        self.shapes: list[_Shape] = []
        #: how many payloads the lane merged (for tests and statistics).
        self.merged = 0

    def try_merge(self, payload: bytes) -> bool:
        """Merge ``payload`` if it has a shape learnt (what ``add_plain`` does with it: the
        string joins its block's fragments, the block's size is checked); whether it did."""
        for shape in self.shapes:
            if payload.startswith(shape.prefix) and payload.endswith(shape.suffix):
                try:  # a suffix is never empty (``learn``): ``-cut`` is the string's end
                    value = _loads(payload[shape.start : -shape.cut])
                except _JSONDecodeError:
                    return False
                block = shape.block
                if value.__class__ is not str or not block.open:
                    return False
                size = block.size + len(value)
                if size > shape.most:
                    return False  # the full path says so
                block.size = size
                shape.pieces.append(value)
                shape.acc.chunks += 1
                self.merged += 1
                return True
        return False

    def learn(self, payload: bytes, obj: Any, plain: bool, acc: MessageAccumulator) -> None:
        """Learn the shape of ``obj``, parsed from ``payload`` and just merged into ``acc``, if
        it is a delta of one string for an open block and nothing else."""
        if obj.__class__ is not dict or obj.get("type") != "content_block_delta":
            return
        delta = obj.get("delta")
        if obj.keys() != _DELTA_KEYS or delta.__class__ is not dict or len(delta) != 2:
            return
        field = _TEXT_FIELD.get(delta.get("type"))  # type: ignore[arg-type]
        block = acc.open_block(obj.get("index"))
        if field is None or block is None or delta.get(field).__class__ is not str:
            return
        pieces = block.parts.get(field)
        if pieces is None:
            return
        found = string_of(payload, _KEYS[field])
        if found is None:
            return
        start, end = found
        prefix, suffix = payload[:start], payload[end + 1 :]
        if b"\\" in prefix or b"\\" in suffix or not suffix:
            return  # an escape outside the string: a key may be spelled twice
        self.shapes.insert(0, _Shape(acc, block, pieces, prefix, suffix))
        del self.shapes[_MAX_SHAPES:]

    def clear(self) -> None:
        """Forget every shape (their stream is no longer the current one)."""
        self.shapes.clear()


@final
class AnthropicProtocol(Protocol):
    """The Anthropic Messages stream (see the module's docstring)."""

    name: ClassVar[str] = "anthropic"
    events: ClassVar[tuple[type, ...]] = tuple(Event.__args__)  # type: ignore[attr-defined]

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        if event in _TYPES:
            return True
        return isinstance(obj, dict) and obj.get("type") in ("message_start", "ping")

    def parse(self, obj: Any, where: Where) -> Parsed:
        if obj.__class__ in self.events:  # an event object a source yielded: its JSON
            obj = _converter.to_dict(obj)
        if obj.__class__ is not dict:
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
        return MessageAccumulator(self.source, self.limits)

    def lane(self) -> Lane:
        return Lane()

    def event(self, payload: dict[str, Any], where: str) -> Any:
        kind = payload.get("type")
        cls = EVENTS.get(kind, UnknownEvent) if kind.__class__ is str else UnknownEvent
        plain = _converter._without_nones(payload)  # the API's shape, as results are
        return _converter.structure(plain, cls, source=self.source, where=where)
