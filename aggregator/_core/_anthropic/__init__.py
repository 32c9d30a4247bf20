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
from typing import TYPE_CHECKING, Any, ClassVar, final

import orjson

from .. import _converter
from .._chat._plain import string_of  # the one way a lane finds its string
from .._errors import StructureError, Where, upstream_error, where_text
from .._protocol import CHUNK, ERROR, LAST, SKIP, START, TYPED_EVENTS, Parsed, Protocol

if TYPE_CHECKING:
    from ._accumulate import MessageAccumulator, _Block

__all__ = ["AnthropicProtocol", "Lane"]


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

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        if event in _TYPES:
            return True
        return isinstance(obj, dict) and obj.get("type") in ("message_start", "ping")

    def parse(self, obj: Any, where: Where) -> Parsed:
        if obj.__class__ is not dict and TYPED_EVENTS.get(obj.__class__) == self.name:
            # an event object a source yielded: its JSON
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
        from ._accumulate import MessageAccumulator  # (and the models: see ``_accumulate``)

        return MessageAccumulator(self.source, self.limits)

    def lane(self) -> Lane:
        return Lane()

    def event(self, payload: dict[str, Any], where: str) -> Any:
        from ._models import EVENTS, UnknownEvent

        kind = payload.get("type")
        cls = EVENTS.get(kind, UnknownEvent) if kind.__class__ is str else UnknownEvent
        plain = _converter._without_nones(payload)  # the API's shape, as results are
        return _converter.structure(plain, cls, source=self.source, where=where)
