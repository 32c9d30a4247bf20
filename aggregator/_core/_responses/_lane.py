"""The fast lane of the Responses stream: its delta events merged without the dispatch.

Theory of operation: most events of a Responses stream are deltas of one string of one part or
item (``response.output_text.delta``, ``response.function_call_arguments.delta``, the reasoning
deltas...), and those of one part are the same JSON object but for three values: the
``sequence_number``, the ``delta`` and a random ``obfuscation``. The :class:`Lane` learns that
object, less those three keys, from a delta that took the full path (parsed, routed, deduped,
merged: ``Accumulator.add_plain``), with the list the accumulator appended its delta to. A
payload is then merged by the lane when it starts with the same bytes up to its first comma (a
cheap filter: the event type), parses as a JSON object, and is, less those three keys, *equal*
to the learnt one, with an int ``sequence_number`` and a string ``delta``: the full path would do
exactly what the lane does with it (the accumulator reads nothing else of a delta, and the same
parser made both objects). The lane asks the engine's dedupe (``duplicate``, set by the engine)
before it appends, so a replay merges once, as on the full path.

The lane is a branch of the one path, switched in one place (the engine's ``fast_lane``): it is
asked first and says no unless it is sure. A shape is dropped when the accumulator replaced what
its list belongs to (``Accumulator.version`` changed: an item or part added again, a ``.done``
value); the engine clears the lane whenever its stream stops being the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import orjson

if TYPE_CHECKING:
    from . import Accumulator

__all__ = ["Lane"]

#: How many shapes are remembered (parts streaming side by side: text and reasoning, say).
_MAX_SHAPES = 4
_VARYING = ("sequence_number", "delta", "obfuscation")
_KEYS = tuple(b'"' + key.encode() + b'":' for key in _VARYING)


def _never(dedupe_id: Any, payload: bytes | None = None) -> bool:
    return False


@final
class _Shape:
    """A delta event less its varying keys, and where its deltas go."""

    __slots__ = ("acc", "marker", "pieces", "prefix", "rest", "version")

    def __init__(
        self,
        acc: Accumulator,
        pieces: list[str],
        prefix: bytes,
        marker: bytes | None,
        rest: dict[str, Any],
    ) -> None:
        self.acc = acc
        self.pieces = pieces
        #: the bytes before the first value that varies (at most to the first comma), and
        #: the event's type as a JSON string, when the prefix does not hold it: the filter.
        self.prefix = prefix
        self.marker = marker
        self.rest = rest
        self.version = acc.version


@final
class Lane:
    """The delta shapes learnt from one source's events (see the module's docstring)."""

    __slots__ = ("duplicate", "merged", "shapes")

    def __init__(self) -> None:
        self.shapes: list[_Shape] = []
        #: the engine's dedupe check for the current stream (see ``Protocol.lane``).
        self.duplicate: Any = _never
        #: how many payloads the lane merged (for tests and statistics).
        self.merged = 0

    def try_merge(self, payload: bytes) -> bool:
        """Merge ``payload`` if it is a delta of a shape learnt (or a replay of one: dropped);
        whether it did."""
        obj: Any = None
        for shape in self.shapes:
            if not payload.startswith(shape.prefix) or (
                shape.marker is not None and shape.marker not in payload
            ):
                continue
            if obj is None:
                try:  # (a dict: the prefix starts with a brace)
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    return False
                seq = obj.pop("sequence_number", None)
                delta = obj.pop("delta", None)
                obfuscation = obj.pop("obfuscation", None)
                if (
                    seq.__class__ is not int
                    or delta.__class__ is not str
                    or (obfuscation is not None and obfuscation.__class__ is not str)
                ):
                    return False
            if obj == shape.rest:
                acc = shape.acc
                if acc.version != shape.version:
                    self.shapes.remove(shape)  # what its list belonged to was replaced
                    return False
                if not self.duplicate(seq, payload):
                    shape.pieces.append(delta)
                    acc.chunks += 1
                self.merged += 1
                return True
        return False

    def learn(self, payload: bytes, obj: Any, plain: bool, acc: Accumulator) -> None:
        """Learn the shape of ``obj``, parsed from ``payload`` and just merged into ``acc`` (the
        current stream's), if it is a delta the lane can merge; ``plain``: merged from its dict
        (always so for this protocol)."""
        if obj.__class__ is not dict or obj.get("sequence_number").__class__ is not int:
            return
        if obj.get("delta").__class__ is not str:
            return
        pieces = acc.delta_pieces(obj)
        if pieces is None:
            return
        rest = {k: v for k, v in obj.items() if k not in _VARYING}
        cut = payload.find(b",")
        for key in _KEYS:
            at = payload.find(key)
            if 0 <= at < cut:
                cut = at + len(key)
        prefix = payload[: max(cut, 0)]
        kind = orjson.dumps(obj["type"])
        marker = None if kind in prefix else kind
        for shape in self.shapes:
            if shape.rest == rest and shape.pieces is pieces:
                return
        self.shapes.insert(0, _Shape(acc, pieces, prefix, marker, rest))
        del self.shapes[_MAX_SHAPES:]

    def clear(self) -> None:
        """Forget every shape (their stream is no longer the current one)."""
        self.shapes.clear()
