"""Chat Completions and legacy text completions: the protocol of ``data:`` chunks and ``[DONE]``.

Theory of operation: a payload is a ``chat.completion.chunk`` or a text-completion chunk (told
apart by ``object``, else by the first choice's ``text`` or ``delta``), or an ``{"error": ...}``
object. Its stream is its ``id``. A plain chat chunk (``is_plain_chat``) is merged from its dict;
anything else is structured into an event by the one converter, which also says what is wrong
with a bad one. A chunk carrying an ``error`` beside its choices (OpenRouter) is merged, then ends
the source's streams with that error. The merge rules are ``_accumulate``'s; the fast lane is
``_plain``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, final

from .. import _converter
from .._errors import Where, upstream_error, where_text
from .._protocol import CHUNK, ERROR, LAST_ERROR, Parsed, Protocol, typed_events
from ._accumulate import Accumulator
from ._events import ChatCompletionChunk, CompletionChunk, ContentDelta
from ._plain import Lane, is_plain_text, plain_chat_kind

__all__ = ["ChatProtocol", "chunk_class", "structure_chunk"]

_TEXT_OBJECTS = frozenset({"text_completion", "completion"})


def _content(value: Any, _: Any) -> Any:
    if value is None or value.__class__ is str:
        return value
    if value.__class__ is list and all(part.__class__ is dict for part in value):
        return value
    return _converter.fail(value, "a string or a list of content parts")


def _dict_or_none(value: Any, _: Any) -> Any:
    """``dict[str, float] | None``: text ``top_logprobs`` entries, token to log probability."""
    if value is None:
        return value
    if value.__class__ is dict and all(
        v.__class__ is float or v.__class__ is int for v in value.values()
    ):
        return value
    return _converter.fail(value, "an object of numbers")


_converter.register_structure_hook(ContentDelta, _content, plain_json=True)
_converter.register_structure_hook(dict[str, float] | None, _dict_or_none)


def chunk_class(obj: Mapping[str, Any]) -> type[ChatCompletionChunk | CompletionChunk]:
    """Tell a chat chunk from a text-completion chunk (see docs/merge-rules.md)."""
    kind = obj.get("object")
    if kind == "chat.completion.chunk":
        return ChatCompletionChunk
    if kind.__class__ is str and kind in _TEXT_OBJECTS:
        return CompletionChunk
    choices = obj.get("choices")
    if choices.__class__ is list:
        for choice in choices:
            if choice.__class__ is dict:
                if "text" in choice:
                    return CompletionChunk
                if "delta" in choice:
                    return ChatCompletionChunk
    return ChatCompletionChunk


def structure_chunk(
    obj: Any, *, source: str = "<stream>", where: str = ""
) -> ChatCompletionChunk | CompletionChunk:
    """Build the event of one parsed JSON payload.

    Args:
        obj: the parsed JSON payload of one chunk.
        source: the name of the source, for error messages.
        where: the place in that source (``line 3``), for error messages.

    Raises:
        StructureError: the payload is not a chunk object, or a field has the wrong type.
    """
    cls = chunk_class(obj) if obj.__class__ is dict else ChatCompletionChunk  # (refused: no object)
    return _converter.structure(obj, cls, source=source, where=where)


def _plain_chunk_id(event: ChatCompletionChunk) -> str | None:
    """The id of a chat chunk event that :meth:`ChatProtocol.parse` passes as a ``CHUNK``."""
    return event.id if event.error is None else None


@final
class ChatProtocol(Protocol):
    """OpenAI-compatible Chat Completions and legacy text completions."""

    name: ClassVar[str] = "chat"

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        return True  # the last protocol asked: what no other one knows is a chat payload

    def parse(self, obj: Any, where: Where) -> Parsed:
        if obj.__class__ is dict:
            kind = plain_chat_kind(obj)
            if kind or is_plain_text(obj):  # shallow, but for extras (2)
                if kind == 2:
                    self.check_depth(obj, where)
                return (CHUNK, obj["id"], obj, None, None)
            self.check_depth(obj, where)
            if "error" in obj and "choices" not in obj:
                place = where_text(where)
                return (ERROR, "", upstream_error(obj["error"], self.source, place), None, None)
            event = structure_chunk(obj, source=self.source, where=where_text(where))
        elif obj.__class__ is ChatCompletionChunk or obj.__class__ is CompletionChunk:
            event = obj
        else:
            event = structure_chunk(obj, source=self.source, where=where_text(where))
        if event.error is not None:
            error = upstream_error(event.error, self.source, where_text(where))
            return (LAST_ERROR, event.id, event, None, error)
        return (CHUNK, event.id, event, None, None)

    def accumulator(self) -> Accumulator:
        return Accumulator(self.limits)

    def event(self, payload: dict[str, Any], where: str) -> Any:
        return structure_chunk(payload, source=self.source, where=where)

    def hot_event(self) -> tuple[type, Any]:
        return (ChatCompletionChunk, _plain_chunk_id)

    def lane(self) -> Lane:
        return Lane()


typed_events(ChatProtocol.name, (ChatCompletionChunk, CompletionChunk))
