"""Conversion of assembled objects to the SDKs' own types: ``openai`` and ``anthropic``.

Needs the ``[openai]`` or ``[anthropic]`` extra; each SDK is imported when its function is called.

Theory of operation: an assembled object is first written as the server's JSON, nulls kept as
the server sent them (``to_dict(obj, nulls=True)``), and that JSON is validated by the SDK's
own pydantic model, so every field is checked as the SDK checks it and the unknown keys the
server sent stay on the SDK object (its ``model_extra``). One difference between what a server
sends and what the SDK's model declares is bridged: a chat message whose ``content`` is a list of
typed parts (Mistral's ``thinking`` and ``text`` parts) has the text of its ``text`` parts as
``content``, which the SDK types as a string, and the whole list under the extra key
``content_parts``. Nothing is made up: a field the SDK requires that the server did not send (a
usage count a newer SDK declares, such as ``cache_write_tokens``) fails validation.

An Anthropic message whose blocks only the SDK's beta types know (``mcp_tool_use``,
``compaction``, server tools) validates as ``anthropic.types.beta.BetaMessage``.

Whatever else does not fit the SDK's model (an unfinished completion with no ``finish_reason``,
a provider's item of another shape) raises :class:`~aggregator.UsageError` with the SDK's own
message, unless ``strict=False``: then the object is built as the SDK builds the responses it
receives (``construct``: no validation, nested models built, nothing dropped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core._converter import to_dict
from ._core._errors import UsageError
from ._core._model import Model
from ._core._results import Result

if TYPE_CHECKING:
    import anthropic.types
    import anthropic.types.beta
    import openai.types
    import openai.types.chat
    import openai.types.responses
    from pydantic import BaseModel

__all__ = ["to_anthropic", "to_openai"]


def to_openai(
    obj: Any, *, strict: bool = True
) -> openai.types.chat.ChatCompletion | openai.types.Completion | openai.types.responses.Response:
    """The OpenAI SDK's object for an assembled chat completion, text completion or Responses
    response (or a :class:`~aggregator.Result` holding one).

    Returns:
        ``openai.types.chat.ChatCompletion``, ``openai.types.Completion`` or
        ``openai.types.responses.Response``.

    Raises:
        UsageError: ``obj`` is none of those, or (``strict``) it does not fit the SDK's model.
    """
    from openai.types import Completion
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    data = _json(obj)
    kind = data.get("object")
    cls: type[BaseModel]
    if kind == "chat.completion":
        cls = ChatCompletion
        _content_parts(data)
    elif kind == "text_completion":
        cls = Completion
    elif kind == "response":
        cls = Response
    else:
        raise UsageError(f"not an OpenAI completion or response: object {kind!r}")
    return _build(cls, data, strict=strict)


def to_anthropic(
    obj: Any, *, strict: bool = True
) -> anthropic.types.Message | anthropic.types.beta.BetaMessage:
    """The Anthropic SDK's ``anthropic.types.Message`` for an assembled message (or a
    :class:`~aggregator.Result` holding one); ``anthropic.types.beta.BetaMessage`` when only
    the beta types know its blocks.

    Raises:
        UsageError: ``obj`` is no message, or (``strict``) it fits neither SDK model.
    """
    from anthropic.types import Message
    from anthropic.types.beta import BetaMessage

    data = _json(obj)
    if data.get("type") != "message":
        raise UsageError(f"not an Anthropic message: type {data.get('type')!r}")
    if not strict:
        return _build(Message, data, strict=False)  # type: ignore[return-value]
    try:
        return _build(Message, data, strict=True)  # type: ignore[return-value]
    except UsageError as first:
        try:
            return _build(BetaMessage, data, strict=True)  # type: ignore[return-value]
        except UsageError:
            raise first from None


def _json(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Result):
        obj = obj.completion
    if not isinstance(obj, Model):
        raise UsageError(f"not an assembled object: {type(obj).__name__}")
    return to_dict(obj, nulls=True)


def _content_parts(data: dict[str, Any]) -> None:
    """A message's list of content parts: its text as ``content``, the list kept beside it."""
    for choice in data.get("choices", ()):
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            parts = message["content"]
            message["content_parts"] = parts
            message["content"] = "".join(
                p["text"]
                for p in parts
                if isinstance(p, dict)
                and p.get("type") == "text"
                and isinstance(p.get("text"), str)
            )


def _build(cls: type[BaseModel], data: dict[str, Any], *, strict: bool) -> BaseModel:
    if not strict:
        built: BaseModel = cls.construct(**data)  # the SDKs' own lenient building
        return built
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"does not fit the SDK's {cls.__name__}: {exc}") from exc
