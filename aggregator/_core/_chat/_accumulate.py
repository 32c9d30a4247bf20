"""The accumulator: folds the chunks of one completion into the assembled object (sans-I/O).

Theory of operation: every merge rule of docs/merge-rules.md for Chat Completions and text
completions lives in this module and in ``_merge``. An :class:`Accumulator` keeps, per choice index,
small mutable states that hold strings as lists of pieces (joined once, so the cost is linear in the
number of chunks) and tool calls keyed by index. No chunk is kept after it is merged.
:meth:`Accumulator.result` can be called at any time (for snapshots); it joins the pieces and leaves
the state usable.

Choices and tool calls are keyed by the server's index in dicts, so an index of 1,000,000,000
costs the same as an index of 1, and the result lists them in index order without gaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

from .._converter import structure
from .._errors import (
    ConflictError,
    LimitError,
    StreamError,
    StructureError,
    UsageError,
    quoted,
)
from .._limits import DEFAULT_LIMITS, Limits
from .._merge import _Text, materialize, merge_delta, merge_snapshot, merge_usage
from .._model import set_nulls
from ._completions import (
    ChatChoice,
    ChatCompletion,
    ChatMessage,
    Completion,
    CompletionChoice,
    FunctionCall,
    ToolCall,
)
from ._events import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChoiceLogprobs,
    CompletionChunk,
    FunctionDelta,
    TextChunkChoice,
    TextLogprobs,
    ToolCallDelta,
    Usage,
)
from ._plain import PLAIN_CHOICE, PLAIN_DELTA, PLAIN_TOP

__all__ = ["Accumulator"]


def _join(pieces: list[str] | None) -> str | None:
    if pieces is None:
        return None
    if len(pieces) > 1:
        pieces[:] = ["".join(pieces)]
    return pieces[0] if pieces else ""


class _Function:
    __slots__ = ("arguments", "extras", "name")

    def __init__(self) -> None:
        self.name = ""
        self.arguments: list[str] = []
        self.extras: dict[str, Any] = {}

    def add(self, delta: FunctionDelta) -> None:
        if delta.name and not self.name:
            self.name = delta.name
        if delta.arguments:
            self.arguments.append(delta.arguments)
        if delta.extras:
            merge_delta(self.extras, delta.extras)

    def result(self) -> FunctionCall:
        return FunctionCall(
            name=self.name,
            arguments=_join(self.arguments) or "",
            extras=materialize(self.extras),
        )


class _ToolCall:
    __slots__ = ("extras", "function", "id", "index", "type")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = ""
        self.type = ""
        self.function = _Function()
        self.extras: dict[str, Any] = {}

    def add(self, delta: ToolCallDelta) -> None:
        if delta.id and not self.id:
            self.id = delta.id
        if delta.type and not self.type:
            self.type = delta.type
        if delta.function is not None:
            self.function.add(delta.function)
        if delta.extras:
            merge_delta(self.extras, delta.extras)

    def result(self) -> ToolCall:
        return ToolCall(
            id=self.id,
            type=self.type or "function",
            function=self.function.result(),
            extras=materialize(self.extras),
        )


class _ToolCalls:
    """Tool calls of one choice, merged by index (see docs/merge-rules.md, *Tool calls*)."""

    __slots__ = ("by_index", "calls", "last", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.calls: list[_ToolCall] = []
        self.by_index: dict[int, _ToolCall] = {}
        self.last: _ToolCall | None = None

    def add(self, delta: ToolCallDelta) -> None:
        index = delta.index
        if index is None:
            call = self._without_index(delta.id)
        else:
            found = self.by_index.get(index)
            if found is None or (delta.id and found.id and delta.id != found.id):
                found = self._new(index)
            call = found
        call.add(delta)
        self.last = call

    def _without_index(self, id_: str | None) -> _ToolCall:
        if id_:
            for call in reversed(self.calls):
                if call.id == id_:
                    return call
            return self._new(None)
        return self.last if self.last is not None else self._new(None)

    def _new(self, index: int | None) -> _ToolCall:
        if index is None:
            index = max(self.by_index, default=-1) + 1
        limits = self.limits
        if limits.max_tool_calls is not None and len(self.calls) >= limits.max_tool_calls:
            raise LimitError(
                f"more than {limits.max_tool_calls} tool calls in one choice",
                limit="max_tool_calls",
            )
        if limits.max_tool_call_index is not None and not 0 <= index <= limits.max_tool_call_index:
            raise LimitError(
                f"tool call index {index} outside 0..{limits.max_tool_call_index}",
                limit="max_tool_call_index",
            )
        call = _ToolCall(index)
        self.calls.append(call)
        self.by_index[index] = call
        return call

    def result(self) -> list[ToolCall]:
        ordered = sorted(self.calls, key=lambda c: c.index)  # stable: arrival order within an index
        return [call.result() for call in ordered]


class _ChatChoice:
    __slots__ = (
        "choice_nulls",
        "content",
        "delta_extras",
        "extras",
        "finish_reason",
        "function_call",
        "index",
        "limits",
        "logprobs",
        "nulls",
        "parts",
        "reasoning",
        "reasoning_content",
        "refusal",
        "role",
        "tools",
    )

    def __init__(self, index: int, limits: Limits) -> None:
        self.index = index
        self.limits = limits
        self.role: str | None = None
        self.content: list[str] | None = None
        self.parts: list[dict[str, Any]] | None = None
        self.reasoning_content: list[str] | None = None
        self.reasoning: list[str] | None = None
        self.refusal: list[str] | None = None
        self.tools: _ToolCalls | None = None
        self.function_call: _Function | None = None
        self.delta_extras: dict[str, Any] = {}
        self.logprobs: _Logprobs | None = None
        self.finish_reason: str | None = None
        self.extras: dict[str, Any] = {}
        #: the message's and the choice's named keys sent as null (for ``to_dict(nulls=True)``)
        self.nulls: set[str] = set()
        self.choice_nulls: set[str] = set()

    def add(self, choice: ChatChunkChoice) -> None:
        delta = choice.delta
        sent = getattr(delta, "_nulls", None)
        if sent is not None and not sent <= self.nulls:
            self.nulls |= sent
        sent = getattr(choice, "_nulls", None)
        if sent is not None and not sent <= self.choice_nulls:
            self.choice_nulls |= sent
        if delta.role is not None and self.role is None:
            self.role = delta.role
        content = delta.content
        if content is not None:
            if content.__class__ is str:
                self.add_text("content", content)
            else:
                self._add_parts(content)
        if delta.reasoning_content is not None:
            self.add_text("reasoning_content", delta.reasoning_content)
        if delta.reasoning is not None:
            self.add_text("reasoning", delta.reasoning)
        if delta.refusal is not None:
            self.add_text("refusal", delta.refusal)
        if delta.tool_calls:
            if self.tools is None:
                self.tools = _ToolCalls(self.limits)
            for call in delta.tool_calls:
                self.tools.add(call)
        if delta.function_call is not None:
            if self.function_call is None:
                self.function_call = _Function()
            self.function_call.add(delta.function_call)
        if delta.extras:
            merge_delta(self.delta_extras, delta.extras)
        if choice.logprobs is not None:
            if self.logprobs is None:
                self.logprobs = _Logprobs()
            self.logprobs.add_chat(choice.logprobs)
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        if choice.extras:
            merge_snapshot(self.extras, choice.extras)

    def add_plain(self, delta: dict[str, Any], finish_reason: str | None) -> None:
        """``add`` for a validated plain delta: string fields, and extras (see
        ``plain_chat_kind``), merged by the delta rule as an event's are."""
        extras = None
        for key, value in delta.items():
            if value is None:
                self.nulls.add(key)
                continue
            if key == "role":
                if self.role is None:
                    self.role = value
            elif key in PLAIN_DELTA:
                self.add_text(key, value)
            else:
                if extras is None:
                    extras = {}
                extras[key] = value
        if extras is not None:
            merge_delta(self.delta_extras, extras)
        if finish_reason is not None:
            self.finish_reason = finish_reason

    def add_plain_extras(self, choice: dict[str, Any]) -> None:
        """A plain choice's extras (the keys the choice does not name), merged by the snapshot
        rule as ``add`` merges an event's, and its keys sent as null, as ``add`` notes them."""
        self.choice_nulls.update(k for k, v in choice.items() if v is None)
        merge_snapshot(self.extras, {k: v for k, v in choice.items() if k not in PLAIN_CHOICE})

    def add_text(self, field: str, value: str) -> None:
        """Append ``value`` to ``content``, ``reasoning_content``, ``reasoning`` or
        ``refusal``."""
        if field == "content":
            if self.parts is not None:
                self._add_parts(value)
            elif self.content is None:
                self.content = [value]
            elif value:  # (an empty piece adds nothing but the field, kept by the first)
                self.content.append(value)
        else:
            pieces = getattr(self, field)
            if pieces is None:
                setattr(self, field, [value])
            elif value:
                pieces.append(value)

    def output_kind(self) -> str | None:
        """What output the choice holds, if any (the first found, in the order a stream
        sends them: reasoning, then content, a refusal, tool calls)."""
        for field, kind in _OUTPUT_FIELDS:
            pieces = getattr(self, field)
            if pieces and (pieces[0] or len(pieces) > 1):
                return kind
        if self.parts:
            return "content"
        tools = self.tools
        if tools is not None and any(call.function.arguments for call in tools.calls):
            return "tool_call"
        if self.function_call is not None and self.function_call.arguments:
            return "tool_call"
        return None

    def _add_parts(self, content: Any) -> None:
        if self.parts is None:
            self.parts = []
            text = _join(self.content)
            if text:
                self.parts.append({"type": "text", "text": text})
            self.content = None
        if content.__class__ is str:
            content = [{"type": "text", "text": content}] if content else []
        _append_parts(self.parts, content)

    def result(self) -> ChatChoice:
        content: str | list[dict[str, Any]] | None = _join(self.content)
        if self.parts is not None:
            content = materialize(self.parts)
        message = ChatMessage(
            role=self.role or "assistant",
            content=content,
            reasoning_content=_join(self.reasoning_content),
            reasoning=_join(self.reasoning),
            refusal=_join(self.refusal),
            tool_calls=self.tools.result() if self.tools is not None else None,
            function_call=self.function_call.result() if self.function_call else None,
            extras=_message_extras(self.delta_extras),
        )
        set_nulls(message, self.nulls)
        choice = ChatChoice(
            index=self.index,
            message=message,
            logprobs=self.logprobs.chat() if self.logprobs is not None else None,
            finish_reason=self.finish_reason,
            extras=dict(self.extras),
        )
        set_nulls(choice, self.choice_nulls)
        return choice


#: The string fields of a chat choice that are output, and the kind each is.
_OUTPUT_FIELDS = (
    ("reasoning_content", "reasoning"),
    ("reasoning", "reasoning"),
    ("content", "content"),
    ("refusal", "refusal"),
)


def _message_extras(delta_extras: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = materialize(delta_extras)
    extras.pop("index", None)  # a stray choice index inside the delta (Mistral), not a message key
    return extras


def _append_parts(parts: list[Any], new: list[Any]) -> None:
    """Append typed content parts; a part of the previous part's type is merged into it.

    Only objects are parts; anything else in a list is appended as it is. Strings merged are
    kept as pieces (``_Text``), joined by ``materialize`` in ``result()``: linear, however many.
    """
    for part in new:
        if (
            part.__class__ is dict
            and parts
            and parts[-1].__class__ is dict
            and part.get("type") == parts[-1].get("type")
        ):
            last = parts[-1]
            for key, value in part.items():
                old = last.get(key)
                if key == "type" or value is None:
                    continue
                if value.__class__ is str and old.__class__ is _Text:
                    old.append(value)  # pieces, joined once by materialize: linear
                elif value.__class__ is str and old.__class__ is str:
                    last[key] = _Text((old, value))
                elif value.__class__ is list and old.__class__ is list:
                    _append_parts(old, value)
                else:
                    last[key] = materialize(value)
        else:
            parts.append(materialize(part))


class _Logprobs:
    """Concatenated logprob lists, for a chat or a text choice."""

    __slots__ = ("extras", "lists")

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {}
        self.extras: dict[str, Any] = {}

    def _extend(self, name: str, values: list[Any] | None) -> None:
        if values is not None:
            kept = self.lists.get(name)
            if kept is None:
                self.lists[name] = list(values)
            else:
                kept.extend(values)

    def add_chat(self, logprobs: ChoiceLogprobs) -> None:
        self._extend("content", logprobs.content)
        self._extend("refusal", logprobs.refusal)
        if logprobs.extras:
            merge_snapshot(self.extras, logprobs.extras)

    def add_text(self, logprobs: TextLogprobs | dict[str, Any]) -> None:
        """Take a text choice's ``logprobs``: an event's, or a plain payload's dict (no extras:
        see ``is_plain_text``)."""
        if logprobs.__class__ is dict:  # a plain one: its lists, in one loop
            lists = self.lists
            for name, values in logprobs.items():
                if values is not None:
                    kept = lists.get(name)
                    if kept is None:
                        lists[name] = list(values)
                    else:
                        kept.extend(values)
            return
        assert not isinstance(logprobs, dict)  # (an event's)
        if logprobs.extras:
            merge_snapshot(self.extras, logprobs.extras)
        extend = self._extend
        extend("tokens", logprobs.tokens)
        extend("token_logprobs", logprobs.token_logprobs)
        extend("top_logprobs", logprobs.top_logprobs)
        extend("text_offset", logprobs.text_offset)

    def chat(self) -> ChoiceLogprobs:
        lists = self.lists
        return ChoiceLogprobs(
            content=_copy(lists.get("content")),
            refusal=_copy(lists.get("refusal")),
            extras=dict(self.extras),
        )

    def text(self) -> TextLogprobs:
        lists = self.lists
        return TextLogprobs(
            tokens=_copy(lists.get("tokens")),
            token_logprobs=_copy(lists.get("token_logprobs")),
            top_logprobs=_copy(lists.get("top_logprobs")),
            text_offset=_copy(lists.get("text_offset")),
            extras=dict(self.extras),
        )


def _copy(values: list[Any] | None) -> Any:
    return None if values is None else list(values)


class _TextChoice:
    __slots__ = ("extras", "finish_reason", "index", "logprobs", "nulls", "text")

    def __init__(self, index: int, limits: Limits) -> None:
        self.index = index
        self.text: list[str] = []
        self.logprobs: _Logprobs | None = None
        self.finish_reason: str | None = None
        self.extras: dict[str, Any] = {}
        self.nulls: set[str] = set()

    def add(self, choice: TextChunkChoice) -> None:
        sent = getattr(choice, "_nulls", None)
        if sent is not None and not sent <= self.nulls:
            self.nulls |= sent
        self._take(choice.text, choice.logprobs, choice.finish_reason)
        if choice.extras:
            merge_snapshot(self.extras, choice.extras)

    def add_plain(self, choice: dict[str, Any]) -> None:
        """``add`` for a validated plain choice (see ``is_plain_text``): no extras."""
        if not self.nulls and None in choice.values():
            self.nulls.update(k for k, v in choice.items() if v is None)
        self._take(choice.get("text", ""), choice.get("logprobs"), choice.get("finish_reason"))

    def _take(self, text: str, logprobs: Any, finish_reason: str | None) -> None:
        if text:
            self.text.append(text)
        if logprobs is not None:
            if self.logprobs is None:
                self.logprobs = _Logprobs()
            self.logprobs.add_text(logprobs)
        if finish_reason is not None:
            self.finish_reason = finish_reason

    def add_text(self, field: str, value: str) -> None:
        """Append ``value`` to ``text`` (the one string field of a text-completion choice)."""
        if value:
            self.text.append(value)

    def result(self) -> CompletionChoice:
        choice = CompletionChoice(
            index=self.index,
            text=_join(self.text) or "",
            logprobs=self.logprobs.text() if self.logprobs is not None else None,
            finish_reason=self.finish_reason,
            extras=dict(self.extras),
        )
        set_nulls(choice, self.nulls)
        return choice


@final
class Accumulator:
    """Fold the chunks of one completion, chat or text, into the assembled object.

    Example:
        >>> acc = Accumulator()
        >>> for chunk in chunks:  # doctest: +SKIP
        ...     acc.add(chunk)
        >>> acc.result()  # doctest: +SKIP
        ChatCompletion(id='chatcmpl-1', ...)
    """

    __slots__ = (
        "_check_ids",
        "_choices",
        "_extras",
        "_limits",
        "_nulls",
        "_side_usage",
        "_text_object",
        "chunks",
        "created",
        "id",
        "model",
        "service_tier",
        "system_fingerprint",
        "usage",
    )

    #: (the seam's: chat chunks are checked by the engine; nothing to add)
    notes: tuple[str, ...] = ()
    problems: tuple[StreamError, ...] = ()

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        #: the usage by the usage policy, from the chunks' ``usage``.
        self.usage: Usage | None = None
        #: the number of chunks added so far.
        self.chunks = 0
        self._check_ids = True
        self._text_object: str | None = None
        self._choices: dict[int, _ChatChoice | _TextChoice] = {}
        self._extras: dict[str, Any] = {}
        #: usage reported beside the chunk's own (Groq's ``x_groq.usage``), used when the
        #: stream reported none at the top level.
        self._side_usage: Usage | None = None
        #: the top-level named keys sent as null (``system_fingerprint``, ``usage``, ...)
        self._nulls: set[str] = set()

    @property
    def output_kind(self) -> str | None:
        """What output the completion holds, if any: ``"reasoning"``, ``"content"``,
        ``"refusal"`` or ``"tool_call"`` (arguments); for the engine's timings."""
        for choice in self._choices.values():
            if isinstance(choice, _TextChoice):
                if choice.text:
                    return "content"
            elif (kind := choice.output_kind()) is not None:
                return kind
        return None

    @property
    def finished(self) -> bool:
        """Whether there is at least one choice and every choice has a ``finish_reason``."""
        choices = self._choices
        return bool(choices) and all(c.finish_reason is not None for c in choices.values())

    def absorb_ids(self) -> None:
        """From now on, take chunks whatever their ``id``: the server changes it mid-stream
        (one response body is one completion); the first id is kept."""
        self._check_ids = False

    def add(self, chunk: ChatCompletionChunk | CompletionChunk) -> None:
        """Merge one chunk.

        Raises:
            UsageError: ``chunk`` is not a chunk event.
            ConflictError: text and chat chunks were mixed, or the chunk's non-empty ``id`` or
                ``model`` differs from the stream's (nothing is merged).
            LimitError: a limit on choices or tool calls was passed (the chunk may be merged in
                part; the accumulator keeps what it holds).
        """
        cls = chunk.__class__
        if cls is ChatCompletionChunk:
            if self._text_object is not None and chunk.choices:
                raise ConflictError("a chat chunk in a text-completion stream")
            state_cls: Any = _ChatChoice
        elif cls is CompletionChunk:
            if self._text_object is None and any(
                c.__class__ is _ChatChoice for c in self._choices.values()
            ):
                raise ConflictError("a text-completion chunk in a chat stream")
            state_cls = _TextChoice
        else:
            raise UsageError(f"expected a chunk event, got {cls.__name__}")
        self._check_identity(chunk.id, chunk.model)  # nothing is changed before this
        sent = getattr(chunk, "_nulls", None)
        if sent is not None and not sent <= self._nulls:
            self._nulls |= sent
        if cls is CompletionChunk and self._text_object is None:
            self._text_object = chunk.object or "text_completion"
        self.chunks += 1
        self._top(chunk.id, chunk.model, chunk.created, chunk.system_fingerprint)
        service_tier = getattr(chunk, "service_tier", None)
        if service_tier is not None:
            self.service_tier = service_tier
        if chunk.usage is not None:
            self.usage = merge_usage(self.usage, chunk.usage)
        if chunk.extras:
            self._add_extras(chunk.extras)
        choices = self._choices
        for choice in chunk.choices:
            state = choices.get(choice.index)
            if state is None:
                state = choices[choice.index] = state_cls(self._check(choice.index), self._limits)
            state.add(choice)  # type: ignore[arg-type]

    def _add_extras(self, extras: Mapping[str, Any]) -> None:
        """Merge a chunk's extras (the keys its class does not name) by the snapshot rule;
        an ``x_groq`` usage report among them is noted as the side usage."""
        merge_snapshot(self._extras, extras)
        side = extras.get("x_groq")
        if isinstance(side, dict) and isinstance(side.get("usage"), dict):
            self._side(side["usage"])

    def _side(self, usage: dict[str, Any]) -> None:
        try:
            report = structure(usage, Usage)
        except StructureError:
            return  # not a usage report after all: it stays in the extras, where it was sent
        self._side_usage = merge_usage(self._side_usage, report)

    def add_plain(self, payload: dict[str, Any]) -> None:
        """Merge a chunk payload that ``is_plain_chat`` or ``is_plain_text`` accepted, with no
        event built.

        The result is the same as ``add(structure_chunk(payload))``, at a fraction of the cost.

        Raises:
            ConflictError: as for :meth:`add`.
        """
        if payload["object"] != "chat.completion.chunk":
            return self._add_plain_text(payload)
        choices_in = payload["choices"]
        if self._text_object is not None and choices_in:
            raise ConflictError("a chat chunk in a text-completion stream")
        self._check_identity(payload["id"], payload["model"])
        self.chunks += 1
        if not (self.id and self.model and self.created):
            self._top(payload["id"], payload["model"], payload["created"], None)
            self._plain_nulls(payload)
        fingerprint = payload.get("system_fingerprint")
        if fingerprint is not None:
            self.system_fingerprint = fingerprint
        service_tier = payload.get("service_tier")
        if service_tier is not None:
            self.service_tier = service_tier
        self._plain_usage(payload)
        if not payload.keys() <= PLAIN_TOP:  # extras, kept as add keeps an event's
            extras = {k: v for k, v in payload.items() if k not in PLAIN_TOP}
            if None in extras.values():  # (what add notes of the chunk's null keys)
                self._nulls.update(k for k, v in extras.items() if v is None)
            self._add_extras(extras)
        choices = self._choices
        for choice in choices_in:
            index = choice["index"]
            state = choices.get(index)
            if state is None:
                state = choices[index] = _ChatChoice(self._check(index), self._limits)
                state.choice_nulls.update(k for k, v in choice.items() if v is None)
            state.add_plain(choice["delta"], choice.get("finish_reason"))  # type: ignore[call-arg]
            if not choice.keys() <= PLAIN_CHOICE:
                state.add_plain_extras(choice)  # type: ignore[union-attr]

    def _add_plain_text(self, payload: dict[str, Any]) -> None:
        if self._text_object is None and any(
            c.__class__ is _ChatChoice for c in self._choices.values()
        ):
            raise ConflictError("a text-completion chunk in a chat stream")
        self._check_identity(payload["id"], payload["model"])
        if self._text_object is None:
            self._text_object = payload["object"] or "text_completion"
        self.chunks += 1
        if not self.id:
            self._plain_nulls(payload)
        self._top(payload["id"], payload["model"], payload["created"], None)
        fingerprint = payload.get("system_fingerprint")
        if fingerprint is not None:
            self.system_fingerprint = fingerprint
        self._plain_usage(payload)
        choices = self._choices
        for choice in payload["choices"]:
            index = choice["index"]
            state = choices.get(index)
            if state is None:
                state = choices[index] = _TextChoice(self._check(index), self._limits)
            state.add_plain(choice)  # type: ignore[call-arg]

    def _plain_usage(self, payload: dict[str, Any]) -> None:
        """A plain payload's usage (counts only, see ``_plain_usage`` in ``_plain``), structured
        by the one converter as the whole chunk's would be, merged as :meth:`add` merges it."""
        usage = payload.get("usage")
        if usage is not None:
            self.usage = merge_usage(self.usage, structure(usage, Usage))

    def _plain_nulls(self, payload: dict[str, Any]) -> None:
        """The top-level keys of a stream's first plain chunk sent as null."""
        if None in payload.values():
            self._nulls.update(k for k, v in payload.items() if v is None)

    def append_text(self, index: int, field: str, text: str) -> None:
        """Merge a chunk whose only news is ``text`` for the ``field`` (``content``,
        ``reasoning_content``, ``reasoning`` or ``refusal`` of a chat choice, ``text`` of a
        text-completion choice) of the choice ``index``, which exists: what ``add`` and
        ``add_plain`` do with such a chunk, for the byte-shape lane."""
        self.chunks += 1
        self._choices[index].add_text(field, text)

    def set_delta_labels(self, index: int, labels: tuple[tuple[str, str], ...]) -> None:
        """Set the delta labels ``labels`` (label keys the models do not name, with strings)
        of the chat choice ``index``, which exists: what ``add``'s delta rule does with them
        (a label is replaced, never joined), for the byte-shape lane."""
        extras = self._choices[index].delta_extras  # type: ignore[union-attr]
        for key, value in labels:
            extras[key] = value

    def append_logprobs(self, index: int, text: str, logprobs: dict[str, Any]) -> None:
        """Merge a text-completion chunk whose only news is ``text`` and ``logprobs`` (an object
        ``is_plain_text`` takes) for the choice ``index``, which exists: what ``add_plain`` does
        with such a chunk, for the byte-shape lane."""
        self.chunks += 1
        self._choices[index]._take(text, logprobs, None)  # type: ignore[union-attr]

    def tool_call(self, index: int, call: int) -> _ToolCall | None:
        """The tool call a fragment with index ``call`` of choice ``index`` would continue."""
        state = self._choices.get(index)
        tools = state.tools if state.__class__ is _ChatChoice else None
        return None if tools is None else tools.by_index.get(call)

    def append_arguments(self, index: int, call: int, text: str) -> None:
        """Merge a chunk whose only news is ``text`` for the arguments of the existing tool
        call ``call`` of the chat choice ``index``: what ``add`` does with it, for the lane."""
        self.chunks += 1
        tools: _ToolCalls = self._choices[index].tools  # type: ignore[union-attr, assignment]
        found = tools.by_index[call]
        if text:
            found.function.arguments.append(text)
        tools.last = found

    def _check(self, index: int) -> int:
        limits = self._limits
        if limits.max_choices is not None and len(self._choices) >= limits.max_choices:
            raise LimitError(f"more than {limits.max_choices} choices", limit="max_choices")
        if limits.max_choice_index is not None and not 0 <= index <= limits.max_choice_index:
            raise LimitError(
                f"choice index {index} outside 0..{limits.max_choice_index}",
                limit="max_choice_index",
            )
        return index

    def _check_identity(self, id_: str, model: str) -> None:
        """A chunk whose id or model conflicts with its stream's is refused, not merged."""
        if id_ and self.id and id_ != self.id and self._check_ids:
            raise ConflictError(
                f"a chunk of completion {quoted(id_)} in the stream of {quoted(self.id)}"
            )
        if model and self.model and model != self.model:
            raise ConflictError(
                f"a chunk of model {quoted(model)} in a stream of model {quoted(self.model)}"
            )

    def _top(self, id_: str, model: str, created: int, fingerprint: str | None) -> None:
        if id_ and not self.id:
            self.id = id_
        if model and not self.model:
            self.model = model
        if created and not self.created:
            self.created = created
        if fingerprint is not None:
            self.system_fingerprint = fingerprint

    def result(self) -> ChatCompletion | Completion:
        """The assembled object as of now; the accumulator stays usable."""
        ordered = [self._choices[i].result() for i in sorted(self._choices)]
        usage = self.usage if self.usage is not None else self._side_usage
        done: ChatCompletion | Completion
        if self._text_object is not None:
            done = Completion(
                id=self.id,
                object=self._text_object,
                created=self.created,
                model=self.model,
                choices=ordered,  # type: ignore[arg-type]
                system_fingerprint=self.system_fingerprint,
                usage=usage,
                extras=dict(self._extras),
            )
        else:
            done = ChatCompletion(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=ordered,  # type: ignore[arg-type]
                system_fingerprint=self.system_fingerprint,
                service_tier=self.service_tier,
                usage=usage,
                extras=dict(self._extras),
            )
        set_nulls(done, self._nulls)
        return done
