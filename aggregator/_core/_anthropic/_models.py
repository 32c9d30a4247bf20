"""The Anthropic Messages models: the assembled :class:`Message`, its blocks, and every event.

Theory of operation: every class is a frozen attrs :class:`~aggregator._core._model.Model` with
an ``extras`` field, so the one converter structures it, keeps the keys the model does not name
and writes them back (``to_dict`` is the API's JSON, nulls dropped). A content block, a delta
and an event are each a union told apart by its ``type``: the hooks registered here pick the
class by that name, and a type this module does not know becomes :class:`UnknownBlock`,
:class:`UnknownDelta` or :class:`UnknownEvent`, its fields kept in ``extras``: data, never an
error. The accumulator checks each part as it is merged by structuring it (its start, each
block, its usage) and keeps what the checks built: a result is the typed message with its
blocks, only those that deltas changed structured again (``MessageAccumulator.result``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union, final

import attrs

from .. import _converter
from .._model import Model, extras
from .._protocol import typed_events

__all__ = [
    "BLOCKS",
    "DELTAS",
    "EVENTS",
    "AdvisorToolResultBlock",
    "BashCodeExecutionToolResultBlock",
    "CacheCreation",
    "CitationsDelta",
    "CodeExecutionToolResultBlock",
    "CompactionBlock",
    "CompactionDelta",
    "Container",
    "ContainerUploadBlock",
    "ContentBlock",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "ContextManagement",
    "Delta",
    "ErrorEvent",
    "Event",
    "InputJsonDelta",
    "McpToolResultBlock",
    "McpToolUseBlock",
    "Message",
    "MessageDelta",
    "MessageDeltaEvent",
    "MessageStartEvent",
    "MessageStopEvent",
    "PingEvent",
    "RedactedThinkingBlock",
    "ServerToolUsage",
    "ServerToolUseBlock",
    "SignatureDelta",
    "TextBlock",
    "TextDelta",
    "TextEditorCodeExecutionToolResultBlock",
    "ThinkingBlock",
    "ThinkingDelta",
    "ToolSearchToolResultBlock",
    "ToolUseBlock",
    "UnknownBlock",
    "UnknownDelta",
    "UnknownEvent",
    "Usage",
    "WebFetchToolResultBlock",
    "WebSearchToolResultBlock",
]

# -- usage ----------------------------------------------------------------------------------


@final
@attrs.frozen(repr=False)
class CacheCreation(Model):
    """``usage.cache_creation``: the input tokens written to the cache, by lifetime."""

    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ServerToolUsage(Model):
    """``usage.server_tool_use``: requests made by server tools."""

    web_search_requests: int | None = None
    web_fetch_requests: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class Usage(Model):
    """A message's usage: ``message_start``'s, updated field by field by each
    ``message_delta`` (the counts are cumulative: replaced, never summed).

    ``output_tokens_details`` and ``iterations`` (the usage of each step of a server-side
    loop) arrive only in ``message_delta``; ``cache_creation``, ``service_tier`` and
    ``inference_geo`` only in ``message_start``.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: CacheCreation | None = None
    server_tool_use: ServerToolUsage | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    output_tokens_details: dict[str, Any] | None = None
    iterations: list[dict[str, Any]] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class Container(Model):
    """The code-execution container a message used (``message_delta.delta.container``)."""

    id: str = ""
    expires_at: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ContextManagement(Model):
    """What context management did (``message_delta.context_management``)."""

    applied_edits: list[dict[str, Any]] = attrs.Factory(list)
    extras: Mapping[str, Any] = extras()


# -- content blocks ---------------------------------------------------------------------------


@final
@attrs.frozen(repr=False)
class TextBlock(Model):
    """Text, with the citations its ``citations_delta`` events added."""

    type: str = "text"
    text: str = ""
    citations: list[dict[str, Any]] | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ThinkingBlock(Model):
    """Extended thinking, with the signature that certifies it."""

    type: str = "thinking"
    thinking: str = ""
    signature: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class RedactedThinkingBlock(Model):
    """Thinking the API encrypted (it arrives whole in ``content_block_start``)."""

    type: str = "redacted_thinking"
    data: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ToolUseBlock(Model):
    """A client tool call; ``input`` is parsed once, when the block stops (a block cut off
    keeps its text as ``extras["partial_json"]``)."""

    type: str = "tool_use"
    id: str = ""
    name: str = ""
    input: Any = attrs.Factory(dict)
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ServerToolUseBlock(Model):
    """A server tool call (web search, web fetch, code execution, tool search...)."""

    type: str = "server_tool_use"
    id: str = ""
    name: str = ""
    input: Any = attrs.Factory(dict)
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class McpToolUseBlock(Model):
    """A call of a tool of an MCP server."""

    type: str = "mcp_tool_use"
    id: str = ""
    name: str = ""
    server_name: str = ""
    input: Any = attrs.Factory(dict)
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class McpToolResultBlock(Model):
    """The result of an MCP tool call."""

    type: str = "mcp_tool_result"
    tool_use_id: str = ""
    is_error: bool | None = None
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class WebSearchToolResultBlock(Model):
    """Web search results."""

    type: str = "web_search_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class WebFetchToolResultBlock(Model):
    """A fetched document (or the fetch's error)."""

    type: str = "web_fetch_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CodeExecutionToolResultBlock(Model):
    """The result of code execution."""

    type: str = "code_execution_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class BashCodeExecutionToolResultBlock(Model):
    """The result of a bash command in the container."""

    type: str = "bash_code_execution_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class TextEditorCodeExecutionToolResultBlock(Model):
    """The result of a text editor command in the container."""

    type: str = "text_editor_code_execution_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ToolSearchToolResultBlock(Model):
    """The tools a tool search found."""

    type: str = "tool_search_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class AdvisorToolResultBlock(Model):
    """An advisor model's answer."""

    type: str = "advisor_tool_result"
    tool_use_id: str = ""
    content: Any = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ContainerUploadBlock(Model):
    """A file uploaded to the code-execution container."""

    type: str = "container_upload"
    file_id: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompactionBlock(Model):
    """A summary of the earlier conversation (context compaction); its ``content`` arrives in
    one ``compaction_delta``."""

    type: str = "compaction"
    content: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class UnknownBlock(Model):
    """A block of a type this module does not know: its fields kept in ``extras``."""

    type: str = ""
    extras: Mapping[str, Any] = extras()


ContentBlock = Union[
    TextBlock,
    ThinkingBlock,
    RedactedThinkingBlock,
    ToolUseBlock,
    ServerToolUseBlock,
    McpToolUseBlock,
    McpToolResultBlock,
    WebSearchToolResultBlock,
    WebFetchToolResultBlock,
    CodeExecutionToolResultBlock,
    BashCodeExecutionToolResultBlock,
    TextEditorCodeExecutionToolResultBlock,
    ToolSearchToolResultBlock,
    AdvisorToolResultBlock,
    ContainerUploadBlock,
    CompactionBlock,
    UnknownBlock,
]


@final
@attrs.frozen(repr=False)
class Message(Model):
    """A message as the non-streaming Messages API returns it."""

    id: str = ""
    type: str = "message"
    role: str = "assistant"
    model: str = ""
    content: list[ContentBlock] = attrs.Factory(list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    usage: Usage | None = None
    container: Container | None = None
    context_management: ContextManagement | None = None
    extras: Mapping[str, Any] = extras()


# -- deltas -----------------------------------------------------------------------------------


@final
@attrs.frozen(repr=False)
class TextDelta(Model):
    """A fragment of a text block's ``text``."""

    type: str = "text_delta"
    text: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class InputJsonDelta(Model):
    """A fragment of a tool call's input JSON text."""

    type: str = "input_json_delta"
    partial_json: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ThinkingDelta(Model):
    """A fragment of a thinking block's ``thinking``."""

    type: str = "thinking_delta"
    thinking: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class SignatureDelta(Model):
    """A thinking block's ``signature``."""

    type: str = "signature_delta"
    signature: str = ""
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CitationsDelta(Model):
    """One citation, appended to a text block's ``citations``."""

    type: str = "citations_delta"
    citation: dict[str, Any] = attrs.Factory(dict)
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class CompactionDelta(Model):
    """A compaction block's ``content``."""

    type: str = "compaction_delta"
    content: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class UnknownDelta(Model):
    """A delta of a type this module does not know: its fields (kept in ``extras``) are set
    on the block."""

    type: str = ""
    extras: Mapping[str, Any] = extras()


Delta = Union[
    TextDelta,
    InputJsonDelta,
    ThinkingDelta,
    SignatureDelta,
    CitationsDelta,
    CompactionDelta,
    UnknownDelta,
]

# -- events -----------------------------------------------------------------------------------


@final
@attrs.frozen(repr=False)
class MessageStartEvent(Model):
    """Opens a message: its id, model and first usage (and, prefilled, its first blocks)."""

    message: Message
    type: str = "message_start"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ContentBlockStartEvent(Model):
    """Opens the block at ``index``."""

    index: int
    content_block: ContentBlock
    type: str = "content_block_start"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ContentBlockDeltaEvent(Model):
    """A fragment of the open block at ``index``."""

    index: int
    delta: Delta
    type: str = "content_block_delta"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ContentBlockStopEvent(Model):
    """Closes the block at ``index``."""

    index: int
    type: str = "content_block_stop"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class MessageDelta(Model):
    """``message_delta.delta``: how the message ended, and its container."""

    stop_reason: str | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    container: Container | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class MessageDeltaEvent(Model):
    """The message's end: stop reason, the cumulative usage, context management."""

    delta: MessageDelta = attrs.Factory(MessageDelta)
    usage: Usage | None = None
    context_management: ContextManagement | None = None
    type: str = "message_delta"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class MessageStopEvent(Model):
    """The message is whole."""

    type: str = "message_stop"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class PingEvent(Model):
    """A keep-alive."""

    type: str = "ping"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ErrorEvent(Model):
    """The server's error (``overloaded_error``...), mid-stream."""

    error: dict[str, Any] = attrs.Factory(dict)
    type: str = "error"
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class UnknownEvent(Model):
    """An event of a type this module does not know: kept as data, in ``extras``."""

    type: str = ""
    extras: Mapping[str, Any] = extras()


Event = Union[
    MessageStartEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    MessageDeltaEvent,
    MessageStopEvent,
    PingEvent,
    ErrorEvent,
    UnknownEvent,
]

#: the block, delta and event classes by their ``type``.
BLOCKS: dict[str, type] = {}
DELTAS: dict[str, type] = {}
EVENTS: dict[str, type] = {}
for _union, _by_type, _unknown in (
    (ContentBlock, BLOCKS, UnknownBlock),
    (Delta, DELTAS, UnknownDelta),
    (Event, EVENTS, UnknownEvent),
):
    for _cls in _union.__args__:  # type: ignore[attr-defined]
        if _cls is not _unknown:
            _by_type[str(attrs.fields_dict(_cls)["type"].default)] = _cls


def _picker(classes: dict[str, type], unknown: type) -> Callable[[Any], type]:
    def pick(value: Any) -> type:
        kind = value.get("type") if value.__class__ is dict else None
        return classes.get(kind, unknown) if kind.__class__ is str else unknown

    return pick


_converter.register_dispatch_hook(ContentBlock, _picker(BLOCKS, UnknownBlock))
_converter.register_dispatch_hook(Delta, _picker(DELTAS, UnknownDelta))
_converter.register_dispatch_hook(Event, _picker(EVENTS, UnknownEvent))
typed_events("anthropic", Event.__args__)  # type: ignore[attr-defined]
