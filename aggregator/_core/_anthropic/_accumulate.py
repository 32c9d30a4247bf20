"""The Anthropic Messages stream's accumulator: one message's events folded into its ``Message``.

Imported when the first Anthropic stream opens (``AnthropicProtocol.accumulator``), with the
typed models it checks each part against: a source of another protocol never pays for them.
See the package's docstring for the rules.
"""

from __future__ import annotations

from typing import Any, final

import attrs
import orjson

from .. import _converter
from .._errors import ConflictError, LimitError, StreamError, StructureError
from .._limits import DEFAULT_LIMITS, Limits
from . import _TEXT_FIELD, _preview
from ._models import DELTAS, ContentBlock, Message, Usage

__all__ = ["Message", "MessageAccumulator"]

_KIND = {"text": "content", "thinking": "reasoning", "signature": "reasoning"}
_KIND_JSON = "tool_call"
_BLOCK: Any = ContentBlock  # (a union: what the converter's hook tells apart)


@final
class _Block:
    """One content block: the object its ``content_block_start`` gave, and the text fragments
    its deltas gathered, joined once (when the block stops, or a result is asked for)."""

    __slots__ = ("base", "citations", "open", "parts", "size", "typed")

    def __init__(self, base: dict[str, Any], open_: bool, typed: Any) -> None:
        self.base = base
        self.open = open_
        self.parts: dict[str, list[str]] = {}
        self.size = 0
        self.citations: list[Any] | None = None
        #: the typed block the check of ``base`` built (see ``MessageAccumulator._check``):
        #: the block's result while no fragment or citation is added to it.
        self.typed = typed

    def result(self, source: str) -> Any:
        """The typed block as the API returns it (see :meth:`joined`)."""
        if self.typed is not None and not self.parts and self.citations is None:
            return self.typed
        block = _converter._without_nones(self.joined()[0])
        return _converter.structure(block, _BLOCK, source=source)

    def joined(self) -> tuple[dict[str, Any], bool]:
        """The block as the API returns it, its fragments joined (a tool input parsed, ``""``
        meaning ``{}``), and whether its tool input failed to parse (kept as ``partial_json``).
        An open block's tool input is not parsed: it is kept as ``partial_json``."""
        out = dict(self.base)
        bad = False
        if self.citations is not None:
            before = out.get("citations")
            out["citations"] = (before if before.__class__ is list else []) + self.citations
        for field, pieces in self.parts.items():
            text = "".join(pieces)
            if field != "partial_json":
                before = out.get(field)
                out[field] = before + text if before.__class__ is str else text
            elif self.open:
                out["partial_json"] = text
            else:
                try:
                    out["input"] = orjson.loads(text) if text else {}
                except orjson.JSONDecodeError:
                    out["partial_json"] = text
                    bad = True
        return out, bad

    def stop(self) -> bool:
        """Close the block, joining its fragments once; whether its tool input is not JSON."""
        self.open = False
        if self.parts or self.citations is not None:
            self.base, bad = self.joined()
            self.parts, self.citations, self.typed = {}, None, None
            return bad
        return False  # nothing to join: its base, and the typed block, are as they were


@final
class MessageAccumulator:
    """Folds one message's events into its :class:`Message` (see the module's docstring)."""

    def __init__(self, source: str = "<stream>", limits: Limits = DEFAULT_LIMITS) -> None:
        self.source = source
        self.limits = limits
        self.chunks = 0
        self.notes: list[str] = []
        self._problems: list[StreamError] = []
        self.finished = False
        self.output_kind: str | None = None
        self.message: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.blocks: dict[int, _Block] = {}
        #: the typed message (without content and usage) and usage the checks of ``message``
        #: and ``usage`` built, kept for :meth:`result` (``None``: none, or no longer true).
        self._typed_message: Message | None = None
        self._typed_usage: Usage | None = None

    @property
    def problems(self) -> list[StreamError]:
        """What was wrong, and the blocks still open inside their tool input (cut off)."""
        cut: list[StreamError] = [
            StructureError(
                f"block {index}: the stream ended inside its tool input", source=self.source
            )
            for index, block in sorted(self.blocks.items())
            if block.open and "partial_json" in block.parts
        ]
        return self._problems + cut if cut else self._problems

    def add(self, event: Any) -> None:
        """Merge one event object (its JSON, through the one converter)."""
        self.add_plain(_converter.to_dict(event))

    def absorb_ids(self) -> None:
        pass

    def open_block(self, index: Any) -> _Block | None:
        """The open block ``index`` names, or ``None``."""
        block = self.blocks.get(index) if index.__class__ is int else None
        return block if block is not None and block.open else None

    def _index(self, payload: dict[str, Any]) -> int:
        index = payload.get("index")
        if index.__class__ is not int or index < 0:
            raise ConflictError(f"a block index that is not a count: {_preview(index)}")
        return index

    def _room(self, index: int) -> None:
        most = self.limits.max_blocks
        if most is not None and index not in self.blocks and len(self.blocks) >= most:
            raise LimitError(f"more than {most} content blocks", limit="max_blocks")

    def add_plain(self, payload: dict[str, Any]) -> None:
        self.chunks += 1
        kind = payload.get("type")
        if kind == "content_block_delta":
            index = self._index(payload)
            block = self.open_block(index)
            if block is None:
                raise ConflictError(f"a delta for block {index}, which is not open")
            delta = payload.get("delta")
            if delta.__class__ is not dict:
                raise ConflictError(f"block {index}: a delta that is not an object")
            self._delta(index, block, delta)
        elif kind == "content_block_start":
            index = self._index(payload)
            base = payload.get("content_block")
            if base.__class__ is not dict:
                raise ConflictError(f"block {index}: a content_block that is not an object")
            self._room(index)
            typed = self._check(base, ContentBlock, f"block {index}")
            old = self.blocks.get(index)
            if old is not None:
                old.stop()  # a lane shape holding it merges no more
                self.notes.append(f"block {index} started again: the later start kept")
            self.blocks[index] = _Block(dict(base), True, typed)
        elif kind == "content_block_stop":
            index = self._index(payload)
            block = self.open_block(index)
            if block is None:
                raise ConflictError(f"a stop for block {index}, which is not open")
            if block.stop():
                self._problems.append(
                    StructureError(f"block {index}: its tool input is not JSON", source=self.source)
                )
        elif kind == "message_delta":
            delta = payload.get("delta")
            if delta is not None and delta.__class__ is not dict:
                raise ConflictError("a message_delta whose delta is not an object")
            fields = dict(self.message)
            if delta:
                fields.update(delta)
            for key, value in payload.items():
                if key not in ("type", "delta", "usage"):
                    fields[key] = value
            self._typed_message = self._check(fields, Message, "message_delta")
            self.message = fields
            self._usage(payload.get("usage"))  # last: a bad usage is refused, the rest taken
        elif kind == "message_start":
            message = payload.get("message")
            if message.__class__ is not dict:
                raise ConflictError("a message_start without a message object")
            fields = {k: v for k, v in message.items() if k not in ("content", "usage")}
            typed = self._check(fields, Message, "message_start")
            prefilled = message.get("content")
            if prefilled.__class__ is list:  # a prefilled message_start: its blocks, by place
                most = self.limits.max_blocks
                if most is not None and len(prefilled) > most:
                    raise LimitError(f"more than {most} content blocks", limit="max_blocks")
                blocks = [
                    _Block(dict(b), False, self._check(b, ContentBlock, f"prefilled block {i}"))
                    for i, b in enumerate(prefilled)
                ]
                self.blocks = dict(enumerate(blocks))
            self.message, self._typed_message = fields, typed
            self._usage(message.get("usage"))  # last: a bad usage is refused, the rest taken
        elif kind == "message_stop":
            self.finished = True
        else:
            self.notes.append(f"an event of unknown type {_preview(kind)} kept as data")
            self.message.setdefault("unknown_events", []).append(payload)
            self._typed_message = None  # (structured again, with them, by result)

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        if usage.__class__ is not dict:
            raise ConflictError(f"a usage that is not an object: {_preview(usage)}")
        for key, value in usage.items():
            if value is None:
                continue
            if value.__class__ is bool or (
                key.endswith("_tokens") and not (value.__class__ is int and value >= 0)
            ):
                raise ConflictError(f"usage {key} is not a count: {_preview(value)}")
        merged = {**self.usage, **usage} if self.usage else dict(usage)
        self._typed_usage = self._check(merged, Usage, "usage")
        self.usage = merged

    def _check(self, value: Any, cls: Any, what: str) -> Any:
        """Refuse ``value`` (a :class:`ConflictError`) unless it structures as ``cls``: what
        is merged always makes a :class:`Message`, so :meth:`result` never fails. The typed
        object (nulls dropped: the API's shape), which :meth:`result` keeps where it can."""
        if value.__class__ is not dict:
            raise ConflictError(f"{what}: not an object but {_preview(value)}")
        try:
            return _converter.structure(_converter._without_nones(value), cls, source=self.source)
        except StructureError as exc:
            raise ConflictError(f"{what}: {exc.detail} (at {exc.field})") from None

    def _delta(self, index: int, block: _Block, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        field = _TEXT_FIELD.get(kind) if kind.__class__ is str else None
        if field is not None:
            piece = delta.get(field)
            if piece.__class__ is not str:
                raise ConflictError(f"block {index}: a {kind} whose {field} is not text")
            size = block.size + len(piece)
            most = self.limits.max_block_chars
            if most is not None and size > most:
                raise LimitError(
                    f"block {index} holds more than {most} characters", limit="max_block_chars"
                )
            block.size = size
            pieces = block.parts.get(field)
            if pieces is None:
                pieces = block.parts[field] = []
                if self.output_kind is None:
                    self.output_kind = _KIND.get(field, _KIND_JSON)
            pieces.append(piece)
        elif kind == "citations_delta":
            citation = delta.get("citation")
            if citation.__class__ is not dict:
                raise ConflictError(f"block {index}: a citation that is not an object")
            if block.citations is None:
                block.citations = []
            most = self.limits.max_blocks
            if most is not None and len(block.citations) >= most:
                raise LimitError(f"block {index}: more than {most} citations", limit="max_blocks")
            block.citations.append(citation)
        else:  # compaction_delta, or a type not known: its fields set on the block
            base = {**block.base, **{k: v for k, v in delta.items() if k != "type"}}
            block.typed = self._check(base, ContentBlock, f"block {index}")
            block.base = base
            if kind not in DELTAS:
                self.notes.append(
                    f"block {index}: a delta of unknown type {_preview(kind)} kept as data"
                )

    def result(self) -> Message:
        """The message as of now (partial while the stream is open); changes nothing.

        The objects the checks built are kept: the typed message (less its content and
        usage), the usage, and each block to which no fragment or citation was added; the
        other blocks are joined and structured once, and the message is the typed one with
        them (``attrs.evolve``). What that gives is what :meth:`structured` gives, the whole
        message built as JSON and structured once, nulls dropped (the tests hold the two
        equal); a message with no typed fields kept, or whose fields hold a content or a usage
        of their own, is made so."""
        typed = self._typed_message
        if typed is None or "content" in self.message or "usage" in self.message:
            return self.structured()
        blocks = self.blocks
        content = [blocks[index].result(self.source) for index in sorted(blocks)]
        usage = self._typed_usage if self.usage is not None else None
        return attrs.evolve(typed, content=content, usage=usage)

    def structured(self) -> Message:
        """The message as of now, built as JSON and structured once (nulls dropped: the API's
        shape): what :meth:`result` gives, by the long way."""
        data = dict(self.message)
        data["content"] = [self.blocks[index].joined()[0] for index in sorted(self.blocks)]
        if self.usage is not None:
            data["usage"] = self.usage
        # every part was checked as it was merged (``_check``): this cannot fail
        return _converter.structure(_converter._without_nones(data), Message, source=self.source)
