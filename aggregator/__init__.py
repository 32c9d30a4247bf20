"""Turn OpenAI-compatible streamed completions back into whole responses.

The public surface is this module; everything else is private. See README.md and docs/.
"""

from __future__ import annotations

from ._accumulate import Accumulator
from ._api import Source, assemble, assemble_all
from ._assembler import Assembler
from ._completions import (
    ChatChoice,
    ChatCompletion,
    ChatMessage,
    Completion,
    CompletionChoice,
    FunctionCall,
    ToolCall,
)
from ._converter import structure_chunk, to_dict
from ._decode import Format
from ._errors import (
    AggregatorError,
    DecodeError,
    IncompleteStreamError,
    StreamError,
    StructureError,
    UpstreamError,
    UsageError,
)
from ._events import (
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
from ._results import EndReason, Result
from ._sse import JSONLinesReader, ServerSentEvent, SSEDecoder

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "AggregatorError",
    "Assembler",
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
    "DecodeError",
    "EndReason",
    "Format",
    "FunctionCall",
    "FunctionDelta",
    "IncompleteStreamError",
    "JSONLinesReader",
    "PromptTokensDetails",
    "Result",
    "SSEDecoder",
    "ServerSentEvent",
    "Source",
    "StreamError",
    "StructureError",
    "TextChunkChoice",
    "TextLogprobs",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "UpstreamError",
    "Usage",
    "UsageError",
    "assemble",
    "assemble_all",
    "structure_chunk",
    "to_dict",
]
