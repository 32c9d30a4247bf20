"""The OpenAI Responses API stream (``POST /v1/responses``, ``stream: true``).

Theory of operation: a payload is an event whose ``type`` starts with ``response.`` (or an
``error`` event carrying a ``sequence_number``). ``response.created`` starts a stream (its id is
the response's), ``sequence_number`` is the dedupe id, and ``response.completed`` /
``response.incomplete`` / ``response.failed`` end it (``failed`` and ``error`` with the error).
The accumulator keeps output items by ``output_index`` and their parts by ``content_index`` /
``summary_index`` (dict keys: no index allocates), joins deltas once, takes ``.done`` events
and ``output_item.done`` as authoritative for what they carry, and reconciles with the terminal
response: its output wins when it has one, an empty one keeps the streamed output (a problem).
Events of a type it does not know are merged as nothing, never fatal. After a terminal event,
everything until the next ``response.created`` (``keepalive``, ``rate_limits.updated``) is
skipped. The accumulator folds the parsed dicts; the typed view of an event (``event()``, for
the chunk stages) is one of ``_events``' attrs classes, made on demand. The delta events of one
part go by the fast lane (``_lane``) once one of them took this path.
"""

from __future__ import annotations

from typing import Any, ClassVar, final

from .. import _converter
from .._errors import ConflictError, LimitError, StreamError, Where, upstream_error, where_text
from .._limits import DEFAULT_LIMITS, Limits
from .._protocol import CHUNK, LAST, SKIP, START, Parsed, Protocol
from .._results import EndReason
from ._lane import Lane
from ._models import Response, ResponseUsage

__all__ = ["Accumulator", "Response", "ResponseUsage", "ResponsesProtocol"]

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_LIFECYCLE = _TERMINAL | {"response.created", "response.in_progress", "response.queued"}
#: item-level string fields streamed by ``<kind>.delta`` / ``<kind>.done`` events.
_ITEM_FIELDS = {
    "response.function_call_arguments": "arguments",
    "response.custom_tool_call_input": "input",
    "response.code_interpreter_call_code": "code",
    "response.mcp_call_arguments": "arguments",
}
#: part-level string fields: event prefix -> (parts key, field).
_PART_FIELDS = {
    "response.output_text": ("content_index", "text"),
    "response.refusal": ("content_index", "refusal"),
    "response.reasoning_text": ("content_index", "text"),
    "response.reasoning_summary_text": ("summary_index", "text"),
}


class _Part:
    __slots__ = ("annotations", "base", "done", "field", "pieces")

    def __init__(self, base: dict[str, Any], field: str) -> None:
        self.base = base
        self.field = field
        self.pieces: list[str] = []
        self.done: str | None = None
        self.annotations: dict[int, Any] = {}

    def result(self) -> dict[str, Any]:
        out = dict(self.base)
        out[self.field] = self.done if self.done is not None else "".join(self.pieces)
        if self.annotations:
            out["annotations"] = [self.annotations[k] for k in sorted(self.annotations)]
        return out


class _Item:
    __slots__ = ("base", "done", "fields", "parts", "summary")

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.done: dict[str, Any] | None = None
        self.parts: dict[int, _Part] = {}
        self.summary: dict[int, _Part] = {}
        self.fields: dict[str, list[str]] = {}

    def result(self) -> dict[str, Any]:
        if self.done is not None:
            return self.done
        out = dict(self.base)
        for name, pieces in self.fields.items():
            out[name] = "".join(pieces)
        if self.parts:
            out["content"] = [self.parts[k].result() for k in sorted(self.parts)]
        if self.summary:
            out["summary"] = [self.summary[k].result() for k in sorted(self.summary)]
        return out


@final
class Accumulator:
    """Folds the events of one response into its :class:`Response` (see the module)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.chunks = 0
        self.finished = False
        self.notes: list[str] = []
        self.problems: list[StreamError] = []
        self._snapshot: dict[str, Any] = {}
        self._terminal_output: list[Any] | None = None
        self._items: dict[int, _Item] = {}
        #: bumped whenever an item, a part or an item's streamed field is replaced (the lane's
        #: shapes hold the lists deltas go to: see ``_lane``).
        self.version = 0

    def absorb_ids(self) -> None:
        pass

    def add(self, event: Any) -> None:
        self.add_plain(_converter.to_dict(event))

    def _item(self, obj: dict[str, Any]) -> _Item:
        index = obj.get("output_index")
        item = self._items.get(index) if index.__class__ is int else None
        if item is None:
            raise ConflictError(f"{obj.get('type')}: output_index {index!r} was never added")
        return item

    def add_plain(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind in _LIFECYCLE:
            response = obj.get("response")
            if response.__class__ is dict:
                snapshot = dict(response)
                output = snapshot.pop("output", None)
                self._snapshot = snapshot
                if kind in _TERMINAL:
                    self.finished = True
                    self._terminal_output = output if output.__class__ is list else None
            self.chunks += 1
            return
        if kind.__class__ is not str:
            return
        prefix, _, suffix = kind.rpartition(".")
        if kind == "response.output_item.added":
            index, item = obj.get("output_index"), obj.get("item")
            if index.__class__ is not int or item.__class__ is not dict:
                raise ConflictError("output_item.added without an int output_index and an item")
            limit = self.limits.max_choice_index
            if index < 0 or (limit is not None and index > limit):
                raise LimitError(f"output_index {index} out of range", limit="max_choice_index")
            most = self.limits.max_choices
            if most is not None and index not in self._items and len(self._items) >= most:
                raise LimitError(f"more than {most} output items", limit="max_choices")
            self._items[index] = _Item(dict(item))
            self.version += 1
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if item.__class__ is dict:
                self._item(obj).done = item
        elif kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
            item_ = self._item(obj)
            key = "summary_index" if "summary" in kind else "content_index"
            index, part = obj.get(key), obj.get("part")
            if index.__class__ is not int or part.__class__ is not dict:
                raise ConflictError(f"{kind} without an int {key} and a part")
            parts = item_.summary if key == "summary_index" else item_.parts
            most = self.limits.max_tool_calls
            if most is not None and index not in parts and len(parts) >= most:
                raise LimitError(f"more than {most} parts in one item", limit="max_tool_calls")
            field = "refusal" if part.get("type") == "refusal" else "text"
            parts[index] = _Part(dict(part), field)
            self.version += 1
        elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
            part_ = self._part(obj, "summary_index" if "summary" in kind else "content_index")
            part = obj.get("part")
            if part.__class__ is dict:
                part_.base = dict(part)
                if isinstance(part.get(part_.field), str):
                    part_.done = part[part_.field]
        elif prefix in _PART_FIELDS:
            key, field = _PART_FIELDS[prefix]
            part_ = self._part(obj, key)
            if suffix == "delta":
                delta = obj.get("delta")
                if delta.__class__ is str:
                    part_.pieces.append(delta)
            elif suffix == "done":
                value = obj.get(field)
                if value.__class__ is str:
                    part_.done = value
        elif kind == "response.output_text.annotation.added":
            part_ = self._part(obj, "content_index")
            index = obj.get("annotation_index")
            if index.__class__ is not int:
                raise ConflictError("annotation.added without an int annotation_index")
            most = self.limits.max_tool_calls
            if (
                most is not None
                and index not in part_.annotations
                and len(part_.annotations) >= most
            ):
                raise LimitError(f"more than {most} annotations", limit="max_tool_calls")
            part_.annotations[index] = obj.get("annotation")
        elif prefix in _ITEM_FIELDS:
            field = _ITEM_FIELDS[prefix]
            item_ = self._item(obj)
            if suffix == "delta" and obj.get("delta").__class__ is str:
                item_.fields.setdefault(field, []).append(obj["delta"])
            elif suffix == "done" and obj.get(field).__class__ is str:
                item_.fields[field] = [obj[field]]
                self.version += 1
        self.chunks += 1

    def delta_pieces(self, obj: dict[str, Any]) -> list[str] | None:
        """The list the delta event ``obj``, just merged, appended its ``delta`` to (what
        merging the same event again appends to), or ``None`` (not such a delta)."""
        prefix, _, suffix = obj["type"].rpartition(".")
        if suffix != "delta":
            return None
        item = self._items.get(obj.get("output_index"))  # type: ignore[arg-type]
        if item is None:
            return None
        if prefix in _PART_FIELDS:
            key = _PART_FIELDS[prefix][0]
            parts = item.summary if key == "summary_index" else item.parts
            part = parts.get(obj.get(key))  # type: ignore[arg-type]
            return None if part is None else part.pieces
        if prefix in _ITEM_FIELDS:
            return item.fields.get(_ITEM_FIELDS[prefix])
        return None

    def _part(self, obj: dict[str, Any], key: str) -> _Part:
        item = self._item(obj)
        index = obj.get(key)
        parts = item.summary if key == "summary_index" else item.parts
        part = parts.get(index) if index.__class__ is int else None
        if part is None:
            raise ConflictError(
                f"{obj.get('type')}: {key} {index!r} of output {obj.get('output_index')} "
                "was never added"
            )
        return part

    def result(self) -> Response:
        streamed = [self._items[k].result() for k in sorted(self._items)]
        output: list[Any] = streamed
        terminal = self._terminal_output
        if terminal is not None:
            if terminal or not streamed:
                output = terminal
            elif not any(p.detail.startswith("the terminal") for p in self.problems):
                self.problems.append(
                    ConflictError(
                        "the terminal response has an empty output although "
                        f"{len(streamed)} items streamed; the streamed output is kept"
                    )
                )
        data = dict(self._snapshot)
        data["output"] = _converter._without_nones(output)  # the API shape: nulls dropped
        return _converter.structure(data, Response)


def _is_responses(obj: Any, event: str) -> bool:
    kind = obj.get("type")
    if kind.__class__ is not str:
        return False
    if kind.startswith("response."):
        return True
    return kind in ("error", "keepalive") and "sequence_number" in obj


@final
class ResponsesProtocol(Protocol):
    """The OpenAI Responses API stream."""

    name: ClassVar[str] = "responses"

    def __init__(self, source: str, limits: Limits) -> None:
        super().__init__(source, limits)
        self._open_id: str | None = None
        self._ended = False

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        return event.startswith("response.") or _is_responses(obj, event)

    def parse(self, obj: Any, where: Where) -> Parsed:
        if obj.__class__ is not dict or obj.get("type").__class__ is not str:
            raise StreamError(
                "a Responses event must be an object with a type",
                source=self.source,
                where=where_text(where),
            )
        kind = obj["type"]
        seq = obj.get("sequence_number")
        if not kind.endswith(".delta"):  # what carries items and responses; a delta is a string
            self.check_depth(obj, where)
        if kind == "response.created":
            response = obj.get("response")
            id_ = response.get("id") if response.__class__ is dict else None
            id_ = id_ if id_.__class__ is str else ""
            if id_ and id_ == self._open_id and not self._ended:
                return (CHUNK, "", obj, seq, None)  # a replay of the open response's start
            self._open_id, self._ended = id_, False
            return (START, id_, obj, seq, None)
        if self._ended or kind == "keepalive":
            return (SKIP, "", None, None, None)
        if kind in _TERMINAL:
            self._ended = True
            end = None
            if kind == "response.failed":
                response = obj.get("response")
                error = response.get("error") if response.__class__ is dict else None
                end = (
                    EndReason.ERROR,
                    upstream_error(
                        error or {"message": "response failed"}, self.source, where_text(where)
                    ),
                )
            return (LAST, "", obj, seq, end)
        if kind == "error":
            self._ended = True
            payload = obj.get("error") if obj.get("error").__class__ is dict else obj
            error = upstream_error(payload, self.source, where_text(where))
            return (LAST, "", obj, seq, (EndReason.ERROR, error))
        return (CHUNK, "", obj, seq, None)

    def accumulator(self) -> Accumulator:
        return Accumulator(self.limits)

    def lane(self) -> Lane:
        return Lane()

    def event(self, payload: dict[str, Any], where: str) -> Any:
        from ._events import structure_event  # 59 classes: made when a stage first asks

        return structure_event(payload, source=self.source, where=where)
