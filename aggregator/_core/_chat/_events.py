"""The stream events: what one ``data:`` payload of a streamed completion holds.

Theory of operation: these classes mirror the seed field tables (``ChatCompletionStreamEvent``
and ``CompletionStreamEvent``) plus what real servers send besides. They are frozen and slotted
attrs classes, built from JSON by the private converter in ``_converter``. Enumerations such as
``finish_reason`` and ``role`` are plain strings, because providers send values beyond any list.
Every class has ``extras``: the keys the model does not name (``x_groq``, ``citations``,
``content_filter_results``...), kept as the server sent them, so nothing a server adds is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union, final

import attrs

from .._model import Model, extras

__all__ = [
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChoiceDelta",
    "ChoiceLogprobs",
    "CompletionChunk",
    "CompletionTokensDetails",
    "ContentDelta",
    "FunctionDelta",
    "PromptTokensDetails",
    "TextChunkChoice",
    "TextLogprobs",
    "TokenLogprob",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
]

#: ``delta.content``: a string, or (Mistral's Magistral) a list of typed parts.
ContentDelta = Union[str, list[dict[str, Any]], None]


@final
@attrs.frozen(repr=False)
class PromptTokensDetails(Model):
    """``usage.prompt_tokens_details``."""

    #: Prompt tokens served from the prompt cache.
    cached_tokens: int | None = None
    #: Audio input tokens.
    audio_tokens: int | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompletionTokensDetails(Model):
    """``usage.completion_tokens_details``."""

    #: Tokens the model spent reasoning.
    reasoning_tokens: int | None = None
    #: Audio output tokens.
    audio_tokens: int | None = None
    #: Tokens of a predicted output that appeared in the completion.
    accepted_prediction_tokens: int | None = None
    #: Tokens of a predicted output that did not appear in it (still billed as completion tokens).
    rejected_prediction_tokens: int | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class Usage(Model):
    """A usage report. Every field is optional: servers send partial and running reports."""

    #: Tokens in the prompt.
    prompt_tokens: int | None = None
    #: Tokens generated.
    completion_tokens: int | None = None
    #: The total, as the server sent it (never recomputed).
    total_tokens: int | None = None
    #: The prompt tokens' breakdown, when sent.
    prompt_tokens_details: PromptTokensDetails | None = None
    #: The generated tokens' breakdown, when sent.
    completion_tokens_details: CompletionTokensDetails | None = None
    #: The keys the server sent that the model does not name, as sent (written back by ``to_dict``).
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class TopLogprob(Model):
    """One alternative token in ``top_logprobs``."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class TokenLogprob(Model):
    """The log probability of one sampled token (chat ``logprobs.content[i]``)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChoiceLogprobs(Model):
    """Chat ``logprobs``: token entries for the content and for the refusal."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class FunctionDelta(Model):
    """A fragment of ``tool_calls[i].function`` or of the legacy ``function_call``."""

    name: str | None = None
    arguments: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ToolCallDelta(Model):
    """A fragment of one tool call, keyed by ``index``."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChoiceDelta(Model):
    """What one chunk adds to a chat choice's message."""

    role: str | None = None
    content: ContentDelta = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionDelta | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatChunkChoice(Model):
    """One choice of a chat chunk."""

    index: int
    delta: ChoiceDelta = attrs.field(factory=ChoiceDelta)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ChatCompletionChunk(Model):
    """One ``chat.completion.chunk`` event.

    ``error`` is set when a server puts an error object beside the choices (OpenRouter does);
    ``obfuscation`` is transport padding and never reaches an assembled object.
    """

    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChunkChoice]
    system_fingerprint: str | None = None
    service_tier: str | None = None
    usage: Usage | None = None
    obfuscation: str | None = None
    error: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class TextLogprobs(Model):
    """Text-completion ``logprobs``: parallel lists, one entry per token."""

    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class TextChunkChoice(Model):
    """One choice of a text-completion chunk."""

    index: int
    text: str = ""
    logprobs: TextLogprobs | None = None
    finish_reason: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompletionChunk(Model):
    """One text-completion chunk (``object`` is ``text_completion`` or ``completion``)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[TextChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None
    obfuscation: str | None = None
    error: Any = None
    extras: Mapping[str, Any] = extras()
