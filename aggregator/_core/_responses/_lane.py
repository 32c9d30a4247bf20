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


def _split(payload: bytes) -> tuple[dict[str, Any], int, str] | None:
    """``(the payload parsed less its varying keys, its sequence number, its delta)``, or
    ``None`` unless it parses (a JSON object: every shape's prefix starts with a brace) and the
    number is an int, the delta a string and the obfuscation, if any, a string: what the lane
    compares with a shape's rest."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    seq = obj.pop("sequence_number", None)
    delta = obj.pop("delta", None)
    obfuscation = obj.pop("obfuscation", None)
    if (
        seq.__class__ is not int
        or delta.__class__ is not str
        or (obfuscation is not None and obfuscation.__class__ is not str)
    ):
        return None
    return obj, seq, delta


def _pieces_of(shapes: list[_Shape], after: int, payload: bytes, obj: Any) -> list[str] | None:
    """The list of the first shape from ``shapes[after]`` on whose filter ``payload`` passes
    and whose rest is ``obj`` (the payload parsed, less its varying keys), or ``None``."""
    for shape in shapes[after:]:
        if (
            payload.startswith(shape.prefix)
            and (shape.marker is None or shape.marker in payload)
            and obj == shape.rest
        ):
            return shape.pieces
    return None


def _found(shapes: list[_Shape], payload: bytes) -> tuple[Any, Any, list[str] | None] | None:
    """For a payload that the first shape's filter refused: ``(sequence number, delta, the
    list of its shape)`` as :meth:`Lane.try_merge` finds them among the other shapes (the list
    ``None`` if none takes it), or ``None`` if no filter passes or the values are not an int and
    strings."""
    for at, shape in enumerate(shapes):
        if (
            at
            and payload.startswith(shape.prefix)
            and (shape.marker is None or shape.marker in payload)
        ):
            break
    else:
        return None
    split = _split(payload)
    if split is None:
        return None
    return split[1], split[2], _pieces_of(shapes, at, payload, split[0])


@final
class Lane:
    """The delta shapes learnt from one source's events (see the module's docstring)."""

    __slots__ = ("duplicate", "merged", "remember", "shapes")

    def __init__(self) -> None:
        self.shapes: list[_Shape] = []
        #: the engine's dedupe check for the current stream (see ``Protocol.lane``).
        self.duplicate: Any = _never
        #: the engine's note of the dedupe ids of a run (see :meth:`merge_run`), set with
        #: ``duplicate``: ``remember(ids, records, start)``, the ids of the payloads of
        #: ``records`` from ``start`` on.
        self.remember: Any = None
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
                split = _split(payload)
                if split is None:
                    return False
                obj, seq, delta = split
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

    def merge_run(
        self, records: list[Any], start: int, room: int, seen: Any, dedupe: bool
    ) -> tuple[int, int]:
        """Merge the framing's records from ``start`` on (the engine asks after a payload
        :meth:`try_merge` merged), in one loop, for as long as each is
        what :meth:`try_merge` merges in its steady case: a payload record (no id of its own,
        not an ``error`` event) that is a delta of a shape learnt, whose sequence number is not
        in ``seen`` (the current stream's dedupe ids, as the run starts) and is above the run's
        last one, and whose bytes keep the run's within ``room``. ``dedupe``: the engine
        dedupes (else ``seen`` is not asked, and no id is handed over). ``(the index of the
        first record not merged, the bytes merged)``; that record is left to the one path
        (:meth:`try_merge`, the dedupe, the full path), which decides it as before.

        Theory of operation: each delta merged here is one :meth:`try_merge` would merge the
        same way, with ``duplicate`` taking its steady branch (an id not seen yet: the run's
        rise, so they are distinct); so the run's ids are handed to the engine's ``remember``
        once, at its end, to be noted as that branch notes each, and the engine's per-record
        work (its counts, the size check) is done once a run. The record the run stops at, and
        every one after it, is decided as it would be without runs: nothing of the run is left
        unnoted by then."""
        shapes = self.shapes
        if not shapes:
            return start, 0
        # the shapes whose lists are current: those learnt since the accumulator last replaced
        # something (each replacement leaves every shape before it stale), so they come first
        # in the list, and a payload that only a stale one takes is one no shape of these takes
        # (the run stops there; try_merge drops that shape)
        first = shapes[0]
        version = first.acc.version  # (one accumulator: the lane holds one stream's)
        if shapes[-1].version != version:  # (the oldest: if it is current, all are)
            shapes = [shape for shape in shapes if shape.version == version]
            if not shapes:
                return start, 0
            first = shapes[0]
        others = len(shapes) > 1
        prefix, marker = first.prefix, first.marker
        head = records[start][0] if records[start].__class__ is tuple else b""
        if not others and not (
            head.startswith(prefix) and (marker is None or marker in head)
        ):  # (the run would stop at once: the common way it ends, said cheaply)
            return start, 0
        rest, pieces = first.rest, first.pieces
        seqs: list[int] = []
        last = -1  # (sequence numbers are ints of at least 0; a lower one ends the run)
        size = 0
        index = start
        end = len(records)
        while index < end:  # (by index: islice would walk the records before ``start``)
            record = records[index]
            if record.__class__ is not tuple:
                break
            payload, event, _, _, _, own_id = record
            if own_id or event == "error":
                break
            grown = size + len(payload)
            if grown > room:
                break
            # the shape try_merge would take: the first whose filter passes and whose rest is
            # the payload's (the first shape's branch written out: most deltas are of it)
            if payload.startswith(prefix) and (marker is None or marker in payload):
                split = _split(payload)
                if split is None:
                    break
                obj, seq, delta = split
                target = pieces if obj == rest else _pieces_of(shapes, 1, payload, obj)
            else:
                found = _found(shapes, payload) if others else None
                if found is None:
                    break
                seq, delta, target = found
            if target is None:
                break
            if dedupe:
                if seq <= last or seq in seen:
                    break
                last = seq
                seqs.append(seq)
            target.append(delta)
            size = grown
            index += 1
        merged = index - start
        if merged:
            first.acc.chunks += merged
            self.merged += merged
            if seqs:
                self.remember(seqs, records, start)
        return index, size

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
