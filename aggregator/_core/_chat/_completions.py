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

    name: str = ""
    arguments: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ToolCall(Model):
    """One assembled tool call of a chat message."""

    id: str = ""
    type: str = "function"
    function: FunctionCall = attrs.field(factory=FunctionCall)
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatMessage(Model):
    """The assembled message of a chat choice."""

    role: str = "assistant"
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatChoice(Model):
    """One assembled chat choice."""

    index: int
    message: ChatMessage = attrs.field(factory=ChatMessage)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(kw_only=True, repr=False)
class ChatCompletion(Model):
    """An assembled ``chat.completion``."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    system_fingerprint: str | None = None
    service_tier: str | None = None
    usage: Usage | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompletionChoice(Model):
    """One assembled text-completion choice."""

    index: int
    text: str = ""
    logprobs: TextLogprobs | None = None
    finish_reason: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(kw_only=True, repr=False)
class Completion(Model):
    """An assembled text completion; ``object`` mirrors the stream's convention."""

    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None
    extras: Mapping[str, Any] = extras()
