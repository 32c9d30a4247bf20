"""One source through the default pipeline in one loop, with a fast lane for the common chunk.

Theory of operation: the default pipeline (``dedupe | collect_usage | merge_deltas |
assemble``) keeps no state across sources, so each source can run all of it where it is decoded:
a :class:`FusedSource` is a :class:`SourceDecoder` followed by those four stages, called batch by
batch, and only :class:`Result` s come out. :class:`~aggregator.Assembler`, :func:`results` and
:func:`fan_in` use it whenever the pipeline is the default one, so nothing but finished results
crosses a task boundary, and a source holds its accumulators and nothing else.

Most chunks of a stream are the same bytes but for a short piece of content: the same id, model,
choice index, the same ``"logprobs":null,"finish_reason":null``, perhaps a random ``obfuscation``
string at the end. The fast lane learns that shape, as a byte prefix and suffix around the content
string, from a chunk that took the full path (parsed, checked by ``is_plain_chat``, merged), and
then merges a chunk that has the same prefix and suffix by parsing only the string between them
and appending it to the choice's content: no dict, no shape check, no item. This is exact: a JSON
text in which one string value is replaced by another JSON string is the same object with that one
value changed, and the string between is checked to be exactly one JSON string (``orjson.loads``
of it gives a ``str``). Anything else (another shape, a string that does not parse, a stream that
ended, failed or is not the current one) takes the full path. The lane also merges chunk events
and parsed payloads of the current stream straight into its accumulator when the stages between
would pass them on unchanged (no SSE id for ``dedupe``, no usage for ``collect_usage``). What
the lane merges gets no envelope, so it takes no envelope number (``seq``): no stage of the
default pipeline reads one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, final

import orjson

from ._accumulate import Accumulator, _ChatChoice
from ._converter import is_plain_chat
from ._decode import Format, Item, PayloadDecoder
from ._errors import AggregatorError, LimitError, StreamError, UsageError
from ._events import ChatCompletionChunk
from ._items import Envelope
from ._limits import DEFAULT_LIMITS, Limits
from ._stages import assemble, collect_usage, dedupe, merge_deltas
from ._streams import (
    Merger,
    SourceDecoder,
    SourceRaised,
    StreamBudget,
    _Open,
    feed_raw,
    internal_error,
)

__all__ = ["FusedSource"]

_OBFUSCATION = b',"obfuscation":"'
#: How many shapes are remembered per source (one per choice of an ``n > 1`` stream).
_MAX_LANES = 4
#: The delta fields a shape may carry, with their keys as they appear in the bytes.
_FIELDS = {
    name: b'"' + name.encode() + b'":'
    for name in ("content", "reasoning_content", "reasoning", "refusal")
}


@final
class _Shape:
    """The bytes around the one string of one choice's chunks, and where that string goes."""

    __slots__ = (
        "acc",
        "cut",
        "field",
        "fingerprint",
        "obfuscated",
        "prefix",
        "start",
        "state",
        "stream",
        "suffix",
        "tier",
    )

    def __init__(
        self,
        field: str,
        prefix: bytes,
        suffix: bytes,
        obfuscated: bool,
        stream: _Open,
        acc: Accumulator,
        state: _ChatChoice,
        fingerprint: str | None,
        tier: str | None,
    ) -> None:
        self.field = field
        self.prefix = prefix
        self.suffix = suffix
        self.start = len(prefix)
        self.cut = len(suffix)
        self.obfuscated = obfuscated
        self.stream = stream
        self.acc = acc
        self.state = state
        self.fingerprint = fingerprint
        self.tier = tier

    def text(self, payload: bytes) -> str | None:
        """The string of ``payload`` if it has this shape, else ``None``."""
        if self.obfuscated:
            end = payload.rfind(_OBFUSCATION)
            if end < 0 or not _bare_string_end(payload[end + len(_OBFUSCATION) :]):
                return None
        else:
            end = len(payload)
        if not payload.endswith(self.suffix, 0, end):
            return None
        middle = payload[self.start : end - self.cut]
        if not middle:
            return None
        try:
            value = orjson.loads(middle)
        except orjson.JSONDecodeError:
            return None
        return value if value.__class__ is str else None

    def merge(self, value: str) -> None:
        """Merge a chunk of this shape whose string is ``value`` (as ``add_plain`` would)."""
        acc = self.acc
        acc.chunks += 1
        if self.fingerprint is not None:
            acc.system_fingerprint = self.fingerprint
        if self.tier is not None:
            acc.service_tier = self.tier
        state = self.state
        if self.field == "content" and state.parts is None:
            state.content.append(value)  # type: ignore[union-attr]  # the learnt chunk made it
        else:
            state.add_text(self.field, value)


def _bare_string_end(tail: bytes) -> bool:
    """Whether ``tail`` is the rest of a string with no escapes, then the closing brace."""
    return tail.endswith(b'"}') and b'"' not in tail[:-2] and b"\\" not in tail[:-2]


def _one_piece(obj: dict[str, Any]) -> tuple[int, str] | None:
    """``(choice index, field)`` if the plain chunk ``obj`` has one choice whose delta carries
    one string (others null), with no finish reason or logprobs; else ``None``."""
    choices = obj["choices"]
    if len(choices) != 1:
        return None
    choice = choices[0]
    if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    field = None
    for key, value in choice["delta"].items():
        if value is not None:
            if field is not None or key not in _FIELDS:
                return None
            field = key
    return None if field is None else (choice["index"], field)


def _shape_of(
    payload: bytes,
    obj: dict[str, Any],
    field: str,
    stream: _Open,
    acc: Accumulator,
    state: _ChatChoice,
) -> _Shape | None:
    """The shape of the plain chunk ``obj``, parsed from ``payload``, whose one string is in
    ``field``; ``None`` if its bytes are not plain enough to cut."""
    key = _FIELDS[field]
    at = payload.find(key)
    if at < 0 or payload.find(key, at + 1) >= 0:
        return None
    start = at + len(key)
    if payload[start : start + 1] != b'"':
        return None
    end = start + 1
    while True:  # the closing quote: the first one not escaped by a backslash
        end = payload.find(b'"', end)
        if end < 0:
            return None
        slashes = 0
        while payload[end - 1 - slashes] == 0x5C:  # a backslash
            slashes += 1
        if slashes % 2 == 0:
            break
        end += 1
    suffix = payload[end + 1 :]
    obfuscated = False
    if obj.get("obfuscation") is not None:
        cut = suffix.rfind(_OBFUSCATION)
        if cut < 0 or not _bare_string_end(suffix[cut + len(_OBFUSCATION) :]):
            return None
        suffix, obfuscated = suffix[:cut], True
    return _Shape(
        field,
        payload[:start],
        suffix,
        obfuscated,
        stream,
        acc,
        state,
        obj.get("system_fingerprint"),
        obj.get("service_tier"),
    )


def _nothing(raw: Any) -> None:
    """The add of no stream (never called: no event's id is ``None``)."""


@final
class FusedSource:
    """Decode one source and run the default pipeline over it, with a fast lane (sans-I/O).

    The interface of :class:`SourceDecoder` (``feed``, ``feed_raw``, ``close``, ``fail``,
    ``stopped``), but what comes out is what ``default_pipeline()`` would emit: one
    :class:`~aggregator.Result` per stream, including those of key ``(name, 0)``.
    """

    __slots__ = ("_checked", "_decoder", "_hot", "_merger", "_payloads", "_shapes", "_steps")

    def __init__(
        self,
        name: str = "<stream>",
        *,
        format: Format = "auto",
        strict: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        budget: StreamBudget | None = None,
    ) -> None:
        self._decoder = SourceDecoder(
            name, format=format, strict=strict, limits=limits, budget=budget
        )
        self._payloads: PayloadDecoder = self._decoder._decoder
        merge = merge_deltas(limits=limits)
        self._merger: Merger = merge._merger
        stages = (dedupe(), collect_usage(), merge, assemble(limits=limits))
        self._steps = tuple(s.process_batch for s in stages)
        self._shapes: list[_Shape] = []
        #: ``(id, stream, its accumulator's add)`` of the stream the last event went to, while
        #: nothing else happened since: the next event with that id goes straight to the add.
        self._hot: tuple[str, _Open, Callable[[Any], None]] | None = None
        #: the stream the lane last found usable, while the stages have not run since.
        self._checked: _Open | None = None

    @property
    def stopped(self) -> bool:
        """Whether the source is finished with (closed, or broken in strict mode)."""
        return self._decoder.stopped

    @property
    def name(self) -> str:
        """The source's name."""
        return self._decoder.name

    @property
    def done(self) -> bool:
        """Whether the input so far ends with ``[DONE]``."""
        return self._decoder._done

    @property
    def line(self) -> int:
        """The number of lines of bytes read so far."""
        return self._decoder.line

    def feed(self, data: bytes) -> list[Any]:
        """Take the next bytes of the source; return the results of streams that ended."""
        out: list[Any] = []
        items = self._decoder.feed(data, self._lane_for(out))
        if items:
            out += self._run(items)
        return out

    def feed_raw(self, raw: Any, number: int) -> list[Any]:
        """Take item ``number`` as a source yielded it (see ``feed_raw``). Bad data never
        raises; a bug of ours fails this source alone, with an error saying so."""
        cls = raw.__class__
        hot = self._hot
        if (
            hot is not None
            and cls is ChatCompletionChunk
            and raw.id == hot[0]
            and raw.usage is None
            and raw.error is None
        ):  # the next event of the stream the last one went to
            try:
                hot[2](raw)
            except (UsageError, LimitError) as exc:
                self._refused(hot[1], raw, number, exc)
            return []
        try:
            if cls is bytes:
                return self.feed(raw)
            if (cls is ChatCompletionChunk or cls is dict) and self._fold_object(raw, number):
                return []
        except AggregatorError:
            raise
        except Exception as exc:  # noqa: BLE001 - one source's bug must not end the others
            return self.fail(internal_error(exc, self.name, number))
        return self._run(feed_raw(self._decoder, raw, number))

    def feed_all(self, raws: Iterable[Any], number: int, out: list[Any]) -> int:
        """:meth:`feed_raw` for each item of ``raws``, numbered on from ``number``, with what
        comes out appended to ``out``, until the source stops; returns the last number. The
        next event of the stream the last one went to is merged in the loop itself.

        Raises:
            SourceRaised: ``raws`` raised (a sync source failing); what was fed is in ``out``.
        """
        chunk = ChatCompletionChunk
        hot_id, hot_add = self._hot_pair()
        try:
            for raw in raws:
                number += 1
                if (
                    raw.__class__ is chunk
                    and raw.id == hot_id
                    and raw.usage is None
                    and raw.error is None
                ):  # as in feed_raw
                    try:
                        hot_add(raw)
                    except (UsageError, LimitError) as exc:
                        assert self._hot is not None
                        self._refused(self._hot[1], raw, number, exc)
                        hot_id, hot_add = self._hot_pair()
                    continue
                items = self.feed_raw(raw, number)
                hot_id, hot_add = self._hot_pair()
                if items:
                    out += items
                    if self._decoder._stopped:
                        return number
        except UsageError:  # feed_raw's one error by design: an item of a wrong type
            raise
        except Exception as exc:  # the source raised (an adapter's UpstreamError too)
            raise SourceRaised(exc, number) from exc
        return number

    def _hot_pair(self) -> tuple[str | None, Callable[[Any], None]]:
        """The hot stream's id and add, or an id no event has (``None``) when there is none."""
        hot = self._hot
        return (None, _nothing) if hot is None else (hot[0], hot[2])

    def add(self, obj: Any, *, where: str = "") -> list[Any]:
        """Take one parsed payload or chunk event found at ``where``."""
        return self._run(self._decoder.add(obj, where=where))

    def close(self, *, cancelled: bool = False) -> list[Any]:
        """End the source; return the results of every stream still open."""
        self._hot = self._checked = None
        out: list[Any] = []
        items = self._decoder.close(cancelled=cancelled, lane=self._lane_for(out))
        if items:
            out += self._run(items)
        return out

    def fail(self, error: StreamError) -> list[Any]:
        """The source failed: end every open stream with ``error``."""
        self._hot = self._checked = None
        return self._run(self._decoder.fail(error))

    def _run(self, items: list[Any]) -> list[Any]:
        self._hot = self._checked = None  # what the stages do may end or fail the stream
        for step in self._steps:
            if not items:
                break
            items = step(items)
        return items

    def _through(self, items: list[Item]) -> list[Any]:
        """Route decoded items into streams and run the stages over them."""
        out = self._run(self._decoder._decoded(items))
        items.clear()
        return out

    def _usable(self, stream: _Open) -> bool:
        decoder = self._decoder
        return (
            decoder._current is stream
            and not decoder._stopped
            and stream.key not in self._merger._failed
        )

    def _lane_for(self, out: list[Any]) -> Any:
        payloads = self._payloads

        def lane(payload: bytes, line: int, items: list[Item]) -> None:
            for shape in self._shapes:
                if not payload.startswith(shape.prefix):
                    continue
                value = shape.text(payload)
                if value is None:
                    continue
                if items:  # what came before goes first
                    out.extend(self._through(items))
                if shape.stream is not self._checked and not self._usable(shape.stream):
                    self._shapes.clear()
                    break
                self._checked = shape.stream  # until the stages next run
                self._decoder._done = False
                payloads._events += 1
                shape.merge(value)
                return
            item = payloads.payload(payload, line)
            items.append(item)
            obj = item.payload
            if obj is None:
                return
            piece = _one_piece(obj)
            if piece is None:
                return
            out.extend(self._through(items))  # merge it now, to learn its shape
            current = self._decoder._current  # where it went, unless it was refused
            if current is None or not self._usable(current):
                return
            merged = self._merger._accumulators.get(current.key)
            if merged is None or merged.id != obj["id"] or merged.model != obj["model"]:
                return  # not merged (another model, say): not a shape to repeat
            state = merged._choices.get(piece[0])
            if state.__class__ is not _ChatChoice:
                return
            learnt = _shape_of(payload, obj, piece[1], current, merged, state)
            if learnt is not None:
                self._shapes.insert(0, learnt)
                del self._shapes[_MAX_LANES:]

        return lane

    def _fold_object(self, raw: Any, number: int) -> bool:
        """Merge a chunk event or parsed payload of the current stream straight into its
        accumulator, when the stages before the merge would pass it on unchanged."""
        decoder = self._decoder
        stream = decoder._current
        if stream is None or decoder._stopped:
            return False
        if raw.__class__ is dict:
            if not is_plain_chat(raw):
                return False
            id_ = raw["id"]
        else:
            if raw.usage is not None or raw.error is not None:
                return False
            id_ = raw.id
        if not id_ or decoder._by_id.get(id_) is not stream:
            return False
        key = stream.key
        merger = self._merger
        acc = merger._accumulators.get(key)
        if acc is None or key in merger._failed:
            return False
        decoder._done = False
        try:
            if raw.__class__ is dict:
                acc.add_plain(raw)
            else:
                acc.add(raw)
                self._hot = (id_, stream, acc.add)
        except (UsageError, LimitError) as exc:
            self._refused(stream, raw, number, exc)
        return True

    def _refused(self, stream: _Open, raw: Any, number: int, exc: Exception) -> None:
        """The merger's verdict on a chunk its accumulator refused (as ``Merger.process``)."""
        self._hot = self._checked = None
        key = stream.key
        where = f"item {number}"
        event = None if raw.__class__ is dict else raw
        payload = raw if raw.__class__ is dict else None
        envelope = Envelope(key, stream.seq, event, None, where, payload)
        if isinstance(exc, UsageError):
            self._merger._usage_problem(key, envelope, exc)
        else:
            assert isinstance(exc, LimitError)
            self._merger._limit_failure(key, envelope, exc)
