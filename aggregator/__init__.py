"""Turn OpenAI-compatible streamed completions back into whole responses.

The public surface is this module; everything else is private. See README.md and docs/.
"""

from __future__ import annotations

from . import sources, stages
from ._accumulate import Accumulator
from ._api import assemble, assemble_all
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
    LimitError,
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
from ._items import End, Envelope, Failure, Item, Snapshot, SnapshotRequest, StreamKey
from ._limits import DEFAULT_LIMITS, Limits
from ._results import EndReason, Result
from ._run import Source, Sources, fan_in, results
from ._sse import JSONLinesReader, ServerSentEvent, SSEDecoder
from ._stages import AsyncStage, Pipeline, Stage, UsageTotals, pipeline
from ._tee import Tee

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS",
    "Accumulator",
    "AggregatorError",
    "Assembler",
    "AsyncStage",
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
    "End",
    "EndReason",
    "Envelope",
    "Failure",
    "Format",
    "FunctionCall",
    "FunctionDelta",
    "IncompleteStreamError",
    "Item",
    "JSONLinesReader",
    "LimitError",
    "Limits",
    "Pipeline",
    "PromptTokensDetails",
    "Result",
    "SSEDecoder",
    "ServerSentEvent",
    "Snapshot",
    "SnapshotRequest",
    "Source",
    "Sources",
    "Stage",
    "StreamError",
    "StreamKey",
    "StructureError",
    "Tee",
    "TextChunkChoice",
    "TextLogprobs",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "UpstreamError",
    "Usage",
    "UsageError",
    "UsageTotals",
    "assemble",
    "assemble_all",
    "fan_in",
    "pipeline",
    "results",
    "sources",
    "stages",
    "structure_chunk",
    "to_dict",
]
