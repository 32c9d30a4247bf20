"""The assembled objects: what the non-streaming API would have returned.

Theory of operation: accumulators build these once, at the end of a stream (or when a snapshot
is asked for). They reuse the leaf classes of ``_events`` (``Usage``, logprob entries) so that
nothing is converted twice. ``extras`` holds the keys the model does not name; the converter
writes them back beside the named fields, so the JSON shape is the server's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import attrs

from .._model import Model, extras
from ._events import ChoiceLogprobs, TextLogprobs, Usage

__all__ = [
    "ChatChoice",
    "ChatCompletion",
    "ChatMessage",
    "Completion",
    "CompletionChoice",
    "FunctionCall",
    "ToolCall",
]


@final
@attrs.frozen(repr=False)
class FunctionCall(Model):
    """A function call: its name and the JSON text of its arguments."""

    #: The function's name.
    name: str = ""
    #: The arguments, as the JSON text the model wrote (fragments concatenated).
    arguments: str = ""
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ToolCall(Model):
    """One assembled tool call of a chat message."""

    #: The call's id, which the tool's answer refers to.
    id: str = ""
    #: The kind of tool: ``"function"``.
    type: str = "function"
    #: The function called, and its arguments.
    function: FunctionCall = attrs.field(factory=FunctionCall)
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatMessage(Model):
    """The assembled message of a chat choice."""

    #: Who wrote it: ``"assistant"`` unless the stream named another role.
    role: str = "assistant"
    #: The text (deltas concatenated), or a list of typed parts (Mistral's Magistral); ``None`` when
    #: no delta carried any.
    content: str | list[dict[str, Any]] | None = None
    #: The reasoning text (DeepSeek and others), concatenated; ``None`` when not sent.
    reasoning_content: str | None = None
    #: The reasoning text under the ``reasoning`` key (OpenRouter, vLLM...), concatenated.
    reasoning: str | None = None
    #: The model's refusal message, concatenated; ``None`` when it did not refuse.
    refusal: str | None = None
    #: The tool calls, their fragments merged by index, in index order; ``None`` when none.
    tool_calls: list[ToolCall] | None = None
    #: The legacy single function call; ``None`` when not sent.
    function_call: FunctionCall | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatChoice(Model):
    """One assembled chat choice."""

    #: The choice's position among the ``n`` asked for.
    index: int
    #: The assembled message.
    message: ChatMessage = attrs.field(factory=ChatMessage)
    #: The token log probabilities, concatenated; ``None`` when not asked for.
    logprobs: ChoiceLogprobs | None = None
    #: Why the model stopped (``"stop"``, ``"length"``, ``"tool_calls"``...); ``None`` when the
    #: stream ended without one.
    finish_reason: str | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(kw_only=True, repr=False)
class ChatCompletion(Model):
    """An assembled ``chat.completion``."""

    #: The completion's id (the chunks').
    id: str
    #: Always ``"chat.completion"``.
    object: str = "chat.completion"
    #: When it was created, in Unix seconds.
    created: int
    #: The model that answered.
    model: str
    #: The choices, in ``index`` order.
    choices: list[ChatChoice]
    #: The backend configuration's fingerprint, when sent.
    system_fingerprint: str | None = None
    #: The service tier that processed the request, when sent.
    service_tier: str | None = None
    #: The token usage, when the stream reported it (the last report, gaps filled from earlier
    #: ones).
    usage: Usage | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompletionChoice(Model):
    """One assembled text-completion choice."""

    #: The choice's position among the ``n`` asked for.
    index: int
    #: The text, concatenated.
    text: str = ""
    #: The token log probabilities, concatenated; ``None`` when not asked for.
    logprobs: TextLogprobs | None = None
    #: Why the model stopped (``"stop"``, ``"length"``...); ``None`` when the stream ended without
    #: one.
    finish_reason: str | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(kw_only=True, repr=False)
class Completion(Model):
    """An assembled text completion; ``object`` mirrors the stream's convention."""

    #: The completion's id (the chunks').
    id: str
    #: The stream's own ``object``: ``"text_completion"`` from OpenAI.
    object: str = "text_completion"
    #: When it was created, in Unix seconds.
    created: int
    #: The model that answered.
    model: str
    #: The choices, in ``index`` order.
    choices: list[CompletionChoice]
    #: The backend configuration's fingerprint, when sent.
    system_fingerprint: str | None = None
    #: The token usage, when the stream reported it.
    usage: Usage | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()
