"""The events of the Responses stream: one attrs class per event type, and the unknown ones.

Theory of operation: the classes mirror the union ``ResponseStreamEvent`` of openai-python
(``types/responses/response_stream_event.py``, openai 3.57.0: 59 types), one class
per ``type``, each a frozen attrs class structured by the one converter. Every field but
``type`` may be missing (``None``): real servers leave out what the schema calls required (LM
Studio, xAI), and an event is data to look at, never a reason to fail. Nested objects (an
output item, a content part, an annotation, log probabilities) are the JSON the server sent;
``response`` is the :class:`Response` model. ``extras`` keeps every key a class does not name,
and an event of a type not in the union (``keepalive``, ``response.rate_limits.updated``) is an
:class:`UnknownEvent` with all its keys in ``extras``. :func:`structure_event` picks the class
by ``type``. The accumulator does not build these on its hot path (it folds the parsed dicts);
``ResponsesProtocol.event`` does, for the chunk stages that read ``Envelope.event``.

Generated from openai-python's union (the field lists are checked against it by
tests/test_responses_events.py); edit by hand only with that test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import attrs

from .. import _converter
from .._model import Model, extras
from ._models import JSONArray, JSONObject, Response

__all__ = [
    "EVENT_CLASSES",
    "Response",
    "ResponseAudioDeltaEvent",
    "ResponseAudioDoneEvent",
    "ResponseAudioTranscriptDeltaEvent",
    "ResponseAudioTranscriptDoneEvent",
    "ResponseCodeInterpreterCallCodeDeltaEvent",
    "ResponseCodeInterpreterCallCodeDoneEvent",
    "ResponseCodeInterpreterCallCompletedEvent",
    "ResponseCodeInterpreterCallInProgressEvent",
    "ResponseCodeInterpreterCallInterpretingEvent",
    "ResponseCompactionCompactingEvent",
    "ResponseCompletedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseCustomToolCallInputDeltaEvent",
    "ResponseCustomToolCallInputDoneEvent",
    "ResponseErrorEvent",
    "ResponseEvent",
    "ResponseFailedEvent",
    "ResponseFileSearchCallCompletedEvent",
    "ResponseFileSearchCallInProgressEvent",
    "ResponseFileSearchCallSearchingEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseImageGenCallCompletedEvent",
    "ResponseImageGenCallGeneratingEvent",
    "ResponseImageGenCallInProgressEvent",
    "ResponseImageGenCallPartialImageEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseMcpCallArgumentsDeltaEvent",
    "ResponseMcpCallArgumentsDoneEvent",
    "ResponseMcpCallCompletedEvent",
    "ResponseMcpCallFailedEvent",
    "ResponseMcpCallInProgressEvent",
    "ResponseMcpListToolsCompletedEvent",
    "ResponseMcpListToolsFailedEvent",
    "ResponseMcpListToolsInProgressEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseOutputTextAnnotationAddedEvent",
    "ResponseQueuedEvent",
    "ResponseReasoningSummaryPartAddedEvent",
    "ResponseReasoningSummaryPartDoneEvent",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningSummaryTextDoneEvent",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseRefusalDeltaEvent",
    "ResponseRefusalDoneEvent",
    "ResponseShellCallCommandAddedEvent",
    "ResponseShellCallCommandDeltaEvent",
    "ResponseShellCallCommandDoneEvent",
    "ResponseShellCallOutputContentDeltaEvent",
    "ResponseShellCallOutputContentDoneEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseWebSearchCallCompletedEvent",
    "ResponseWebSearchCallInProgressEvent",
    "ResponseWebSearchCallSearchingEvent",
    "UnknownEvent",
    "structure_event",
]


class ResponseEvent(Model):
    """The base of the Responses stream's event classes (``type`` and ``sequence_number``)."""

    __slots__ = ()
    type: str
    sequence_number: int | None


@final
@attrs.frozen(repr=False)
class UnknownEvent(ResponseEvent):
    """An event of a type the union does not name: its ``type``, and every other key in
    ``extras``, as the server sent it."""

    type: str = ""
    sequence_number: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseAudioDeltaEvent(ResponseEvent):
    """``response.audio.delta``: emitted when there is a partial audio response."""

    type: str = "response.audio.delta"
    sequence_number: int | None = None
    delta: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseAudioDoneEvent(ResponseEvent):
    """``response.audio.done``: emitted when the audio response is complete."""

    type: str = "response.audio.done"
    sequence_number: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseAudioTranscriptDeltaEvent(ResponseEvent):
    """``response.audio.transcript.delta``: emitted when there is a partial transcript of
    audio."""

    type: str = "response.audio.transcript.delta"
    sequence_number: int | None = None
    delta: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseAudioTranscriptDoneEvent(ResponseEvent):
    """``response.audio.transcript.done``: emitted when the full audio transcript is
    completed."""

    type: str = "response.audio.transcript.done"
    sequence_number: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCodeInterpreterCallCodeDeltaEvent(ResponseEvent):
    """``response.code_interpreter_call_code.delta``: emitted when a partial code snippet is
    streamed by the code interpreter."""

    type: str = "response.code_interpreter_call_code.delta"
    sequence_number: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCodeInterpreterCallCodeDoneEvent(ResponseEvent):
    """``response.code_interpreter_call_code.done``: emitted when the code snippet is finalized
    by the code interpreter."""

    type: str = "response.code_interpreter_call_code.done"
    sequence_number: int | None = None
    code: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCodeInterpreterCallCompletedEvent(ResponseEvent):
    """``response.code_interpreter_call.completed``: emitted when the code interpreter call is
    completed."""

    type: str = "response.code_interpreter_call.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCodeInterpreterCallInProgressEvent(ResponseEvent):
    """``response.code_interpreter_call.in_progress``: emitted when a code interpreter call is
    in progress."""

    type: str = "response.code_interpreter_call.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCodeInterpreterCallInterpretingEvent(ResponseEvent):
    """``response.code_interpreter_call.interpreting``: emitted when the code interpreter is
    actively interpreting the code snippet."""

    type: str = "response.code_interpreter_call.interpreting"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCompactionCompactingEvent(ResponseEvent):
    """``response.compaction.compacting``: emitted when new summary content is sampled for a
    compaction trigger."""

    type: str = "response.compaction.compacting"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCompletedEvent(ResponseEvent):
    """``response.completed``: emitted when the model response is complete."""

    type: str = "response.completed"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseContentPartAddedEvent(ResponseEvent):
    """``response.content_part.added``: emitted when a new content part is added."""

    type: str = "response.content_part.added"
    sequence_number: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    part: JSONObject = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseContentPartDoneEvent(ResponseEvent):
    """``response.content_part.done``: emitted when a content part is done."""

    type: str = "response.content_part.done"
    sequence_number: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    part: JSONObject = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCreatedEvent(ResponseEvent):
    """``response.created``: an event that is emitted when a response is created."""

    type: str = "response.created"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCustomToolCallInputDeltaEvent(ResponseEvent):
    """``response.custom_tool_call_input.delta``: event representing a delta (partial update) to
    the input of a custom tool call."""

    type: str = "response.custom_tool_call_input.delta"
    sequence_number: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseCustomToolCallInputDoneEvent(ResponseEvent):
    """``response.custom_tool_call_input.done``: event indicating that input for a custom tool
    call is complete."""

    type: str = "response.custom_tool_call_input.done"
    sequence_number: int | None = None
    input: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseErrorEvent(ResponseEvent):
    """``error``: emitted when an error occurs."""

    type: str = "error"
    sequence_number: int | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFailedEvent(ResponseEvent):
    """``response.failed``: an event that is emitted when a response fails."""

    type: str = "response.failed"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFileSearchCallCompletedEvent(ResponseEvent):
    """``response.file_search_call.completed``: emitted when a file search call is completed
    (results found)."""

    type: str = "response.file_search_call.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFileSearchCallInProgressEvent(ResponseEvent):
    """``response.file_search_call.in_progress``: emitted when a file search call is
    initiated."""

    type: str = "response.file_search_call.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFileSearchCallSearchingEvent(ResponseEvent):
    """``response.file_search_call.searching``: emitted when a file search is currently
    searching."""

    type: str = "response.file_search_call.searching"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFunctionCallArgumentsDeltaEvent(ResponseEvent):
    """``response.function_call_arguments.delta``: emitted when there is a partial function-call
    arguments delta."""

    type: str = "response.function_call_arguments.delta"
    sequence_number: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseFunctionCallArgumentsDoneEvent(ResponseEvent):
    """``response.function_call_arguments.done``: emitted when function-call arguments are
    finalized."""

    type: str = "response.function_call_arguments.done"
    sequence_number: int | None = None
    arguments: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseImageGenCallCompletedEvent(ResponseEvent):
    """``response.image_generation_call.completed``: emitted when an image generation tool call
    has completed and the final image is available."""

    type: str = "response.image_generation_call.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseImageGenCallGeneratingEvent(ResponseEvent):
    """``response.image_generation_call.generating``: emitted when an image generation tool call
    is actively generating an image (intermediate state)."""

    type: str = "response.image_generation_call.generating"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseImageGenCallInProgressEvent(ResponseEvent):
    """``response.image_generation_call.in_progress``: emitted when an image generation tool
    call is in progress."""

    type: str = "response.image_generation_call.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseImageGenCallPartialImageEvent(ResponseEvent):
    """``response.image_generation_call.partial_image``: emitted when a partial image is
    available during image generation streaming."""

    type: str = "response.image_generation_call.partial_image"
    sequence_number: int | None = None
    background: str | None = None
    item_id: str | None = None
    output_format: str | None = None
    output_index: int | None = None
    partial_image_b64: str | None = None
    partial_image_index: int | None = None
    quality: str | None = None
    size: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseInProgressEvent(ResponseEvent):
    """``response.in_progress``: emitted when the response is in progress."""

    type: str = "response.in_progress"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseIncompleteEvent(ResponseEvent):
    """``response.incomplete``: an event that is emitted when a response finishes as
    incomplete."""

    type: str = "response.incomplete"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpCallArgumentsDeltaEvent(ResponseEvent):
    """``response.mcp_call_arguments.delta``: emitted when there is a delta (partial update) to
    the arguments of an MCP tool call."""

    type: str = "response.mcp_call_arguments.delta"
    sequence_number: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpCallArgumentsDoneEvent(ResponseEvent):
    """``response.mcp_call_arguments.done``: emitted when the arguments for an MCP tool call are
    finalized."""

    type: str = "response.mcp_call_arguments.done"
    sequence_number: int | None = None
    arguments: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpCallCompletedEvent(ResponseEvent):
    """``response.mcp_call.completed``: emitted when an MCP  tool call has completed
    successfully."""

    type: str = "response.mcp_call.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpCallFailedEvent(ResponseEvent):
    """``response.mcp_call.failed``: emitted when an MCP  tool call has failed."""

    type: str = "response.mcp_call.failed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpCallInProgressEvent(ResponseEvent):
    """``response.mcp_call.in_progress``: emitted when an MCP  tool call is in progress."""

    type: str = "response.mcp_call.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpListToolsCompletedEvent(ResponseEvent):
    """``response.mcp_list_tools.completed``: emitted when the list of available MCP tools has
    been successfully retrieved."""

    type: str = "response.mcp_list_tools.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpListToolsFailedEvent(ResponseEvent):
    """``response.mcp_list_tools.failed``: emitted when the attempt to list available MCP tools
    has failed."""

    type: str = "response.mcp_list_tools.failed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseMcpListToolsInProgressEvent(ResponseEvent):
    """``response.mcp_list_tools.in_progress``: emitted when the system is in the process of
    retrieving the list of available MCP tools."""

    type: str = "response.mcp_list_tools.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseOutputItemAddedEvent(ResponseEvent):
    """``response.output_item.added``: emitted when a new output item is added."""

    type: str = "response.output_item.added"
    sequence_number: int | None = None
    item: JSONObject = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseOutputItemDoneEvent(ResponseEvent):
    """``response.output_item.done``: emitted when an output item is marked done."""

    type: str = "response.output_item.done"
    sequence_number: int | None = None
    item: JSONObject = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseOutputTextAnnotationAddedEvent(ResponseEvent):
    """``response.output_text.annotation.added``: emitted when an annotation is added to output
    text content."""

    type: str = "response.output_text.annotation.added"
    sequence_number: int | None = None
    annotation: JSONObject = None
    annotation_index: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseQueuedEvent(ResponseEvent):
    """``response.queued``: emitted when a response is queued and waiting to be processed."""

    type: str = "response.queued"
    sequence_number: int | None = None
    response: Response | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningSummaryPartAddedEvent(ResponseEvent):
    """``response.reasoning_summary_part.added``: emitted when a new reasoning summary part is
    added."""

    type: str = "response.reasoning_summary_part.added"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    part: JSONObject = None
    summary_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningSummaryPartDoneEvent(ResponseEvent):
    """``response.reasoning_summary_part.done``: emitted when a reasoning summary part is
    completed."""

    type: str = "response.reasoning_summary_part.done"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    part: JSONObject = None
    status: str | None = None
    summary_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningSummaryTextDeltaEvent(ResponseEvent):
    """``response.reasoning_summary_text.delta``: emitted when a delta is added to a reasoning
    summary text."""

    type: str = "response.reasoning_summary_text.delta"
    sequence_number: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    summary_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningSummaryTextDoneEvent(ResponseEvent):
    """``response.reasoning_summary_text.done``: emitted when a reasoning summary text is
    completed."""

    type: str = "response.reasoning_summary_text.done"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    summary_index: int | None = None
    text: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningTextDeltaEvent(ResponseEvent):
    """``response.reasoning_text.delta``: emitted when a delta is added to a reasoning text."""

    type: str = "response.reasoning_text.delta"
    sequence_number: int | None = None
    content_index: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseReasoningTextDoneEvent(ResponseEvent):
    """``response.reasoning_text.done``: emitted when a reasoning text is completed."""

    type: str = "response.reasoning_text.done"
    sequence_number: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    text: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseRefusalDeltaEvent(ResponseEvent):
    """``response.refusal.delta``: emitted when there is a partial refusal text."""

    type: str = "response.refusal.delta"
    sequence_number: int | None = None
    content_index: int | None = None
    delta: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseRefusalDoneEvent(ResponseEvent):
    """``response.refusal.done``: emitted when refusal text is finalized."""

    type: str = "response.refusal.done"
    sequence_number: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    refusal: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseShellCallCommandAddedEvent(ResponseEvent):
    """``response.shell_call_command.added``: a streaming event that indicated a shell command
    was added to a tool call."""

    type: str = "response.shell_call_command.added"
    sequence_number: int | None = None
    command: str | None = None
    command_index: int | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseShellCallCommandDeltaEvent(ResponseEvent):
    """``response.shell_call_command.delta``: a streaming event that indicated a shell command
    was incrementally updated."""

    type: str = "response.shell_call_command.delta"
    sequence_number: int | None = None
    command_index: int | None = None
    delta: str | None = None
    obfuscation: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseShellCallCommandDoneEvent(ResponseEvent):
    """``response.shell_call_command.done``: a streaming event that indicated a shell command
    was completed."""

    type: str = "response.shell_call_command.done"
    sequence_number: int | None = None
    command: str | None = None
    command_index: int | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseShellCallOutputContentDeltaEvent(ResponseEvent):
    """``response.shell_call_output_content.delta``: a streaming event that indicated shell call
    output was incrementally added."""

    type: str = "response.shell_call_output_content.delta"
    sequence_number: int | None = None
    command_index: int | None = None
    delta: JSONObject = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseShellCallOutputContentDoneEvent(ResponseEvent):
    """``response.shell_call_output_content.done``: a streaming event that indicated shell call
    output was completed."""

    type: str = "response.shell_call_output_content.done"
    sequence_number: int | None = None
    command_index: int | None = None
    item_id: str | None = None
    output: JSONArray = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseTextDeltaEvent(ResponseEvent):
    """``response.output_text.delta``: emitted when there is an additional text delta."""

    type: str = "response.output_text.delta"
    sequence_number: int | None = None
    content_index: int | None = None
    delta: str | None = None
    item_id: str | None = None
    logprobs: JSONArray = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseTextDoneEvent(ResponseEvent):
    """``response.output_text.done``: emitted when text content is finalized."""

    type: str = "response.output_text.done"
    sequence_number: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    logprobs: JSONArray = None
    output_index: int | None = None
    text: str | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseWebSearchCallCompletedEvent(ResponseEvent):
    """``response.web_search_call.completed``: emitted when a web search call is completed."""

    type: str = "response.web_search_call.completed"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseWebSearchCallInProgressEvent(ResponseEvent):
    """``response.web_search_call.in_progress``: emitted when a web search call is initiated."""

    type: str = "response.web_search_call.in_progress"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseWebSearchCallSearchingEvent(ResponseEvent):
    """``response.web_search_call.searching``: emitted when a web search call is executing."""

    type: str = "response.web_search_call.searching"
    sequence_number: int | None = None
    item_id: str | None = None
    output_index: int | None = None
    extras: Mapping[str, Any] = extras()


#: Every event class of the union, by its ``type``.
EVENT_CLASSES: Mapping[str, type[ResponseEvent]] = {
    cls.__dict__["__attrs_attrs__"].type.default: cls
    for cls in (
        ResponseAudioDeltaEvent,
        ResponseAudioDoneEvent,
        ResponseAudioTranscriptDeltaEvent,
        ResponseAudioTranscriptDoneEvent,
        ResponseCodeInterpreterCallCodeDeltaEvent,
        ResponseCodeInterpreterCallCodeDoneEvent,
        ResponseCodeInterpreterCallCompletedEvent,
        ResponseCodeInterpreterCallInProgressEvent,
        ResponseCodeInterpreterCallInterpretingEvent,
        ResponseCompactionCompactingEvent,
        ResponseCompletedEvent,
        ResponseContentPartAddedEvent,
        ResponseContentPartDoneEvent,
        ResponseCreatedEvent,
        ResponseCustomToolCallInputDeltaEvent,
        ResponseCustomToolCallInputDoneEvent,
        ResponseErrorEvent,
        ResponseFailedEvent,
        ResponseFileSearchCallCompletedEvent,
        ResponseFileSearchCallInProgressEvent,
        ResponseFileSearchCallSearchingEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionCallArgumentsDoneEvent,
        ResponseImageGenCallCompletedEvent,
        ResponseImageGenCallGeneratingEvent,
        ResponseImageGenCallInProgressEvent,
        ResponseImageGenCallPartialImageEvent,
        ResponseInProgressEvent,
        ResponseIncompleteEvent,
        ResponseMcpCallArgumentsDeltaEvent,
        ResponseMcpCallArgumentsDoneEvent,
        ResponseMcpCallCompletedEvent,
        ResponseMcpCallFailedEvent,
        ResponseMcpCallInProgressEvent,
        ResponseMcpListToolsCompletedEvent,
        ResponseMcpListToolsFailedEvent,
        ResponseMcpListToolsInProgressEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
        ResponseOutputTextAnnotationAddedEvent,
        ResponseQueuedEvent,
        ResponseReasoningSummaryPartAddedEvent,
        ResponseReasoningSummaryPartDoneEvent,
        ResponseReasoningSummaryTextDeltaEvent,
        ResponseReasoningSummaryTextDoneEvent,
        ResponseReasoningTextDeltaEvent,
        ResponseReasoningTextDoneEvent,
        ResponseRefusalDeltaEvent,
        ResponseRefusalDoneEvent,
        ResponseShellCallCommandAddedEvent,
        ResponseShellCallCommandDeltaEvent,
        ResponseShellCallCommandDoneEvent,
        ResponseShellCallOutputContentDeltaEvent,
        ResponseShellCallOutputContentDoneEvent,
        ResponseTextDeltaEvent,
        ResponseTextDoneEvent,
        ResponseWebSearchCallCompletedEvent,
        ResponseWebSearchCallInProgressEvent,
        ResponseWebSearchCallSearchingEvent,
    )
}


def structure_event(obj: Any, *, source: str = "<stream>", where: str = "") -> ResponseEvent:
    """The event of one parsed payload (an :class:`UnknownEvent` for a type not in the union).

    Raises:
        StructureError: ``obj`` is not an object with a string ``type``, or a field has the
            wrong type (a ``sequence_number`` that is a string, say).
    """
    kind = obj.get("type") if obj.__class__ is dict else None
    cls = EVENT_CLASSES.get(kind, UnknownEvent) if kind.__class__ is str else UnknownEvent
    return _converter.structure(obj, cls, source=source, where=where)
