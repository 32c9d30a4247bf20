"""The models: the chunk events of each protocol, and the assembled objects they rebuild.

Frozen, slotted attrs classes. Each has ``extras``: the keys the model does not name, kept as
the server sent them (``aggregator.to_dict`` writes them back).
"""

from __future__ import annotations

from ._core._chat._completions import (
    ChatChoice,
    ChatCompletion,
    ChatMessage,
    Completion,
    CompletionChoice,
    FunctionCall,
    ToolCall,
)
from ._core._chat._events import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceLogprobs,
    CompletionChunk,
    CompletionTokensDetails,
    FunctionDelta,
    PromptTokensDetails,
    TextChunkChoice,
    TextLogprobs,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

__all__ = [
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChoiceDelta",
    "ChoiceLogprobs",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionTokensDetails",
    "FunctionCall",
    "FunctionDelta",
    "PromptTokensDetails",
    "TextChunkChoice",
    "TextLogprobs",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
]
