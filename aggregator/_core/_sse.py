"""Incremental Server-Sent Events decoder and JSON Lines reader (sans-I/O).

Theory of operation: the decoders work on bytes, never on decoded text. The three line
terminators of the WHATWG rules (LF, CR, CRLF) are single ASCII bytes that never occur inside a
UTF-8 sequence, so lines can be cut from raw bytes wherever a network read split them, and the
payloads stay bytes until ``orjson`` parses (and validates) them. Only the rarely used ``event``
and ``id`` fields are decoded to text here.

``feed(data)`` returns the events completed by these bytes, ``close()`` the rest. A CR at the very
end of a feed is remembered, so a CRLF split between two feeds is one line ending, not two.

One deliberate difference from the WHATWG algorithm: at ``close()`` an event whose closing blank
line never came is still dispatched. Servers do end streams with ``data: [DONE]`` and no blank
line after it, and a lost last event is worse than a lenient end. Two more, so that a hostile
server can neither grow memory nor lose content silently: ``max_line`` bounds the data of a whole
event (its lines together), not only a line; and a line whose field name is ``data``, ``event``,
``id`` or ``retry`` spoiled by a BOM, a space or a NUL (which the rules would ignore) comes out
as a :class:`DecodeError` in its place, a problem of the stream, instead of vanishing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, final

import attrs

from ._errors import DecodeError
from ._model import Model

__all__ = ["JSONLinesReader", "SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
#: A run of three line terminators or more: blank lines, which :class:`_LineSplitter` gives as
#: one (and the number of the others), so that a flood of them costs C time, not a loop turn each.
_BLANKS = re.compile(rb"[\r\n]{3,}")


@final
@attrs.frozen(repr=False)
class ServerSentEvent(Model):
    """One dispatched Server-Sent Event.

    Attributes:
        data: the ``data`` lines joined with ``\\n``, as bytes.
        event: the event type (``message`` when the server named none).
        id: the last event id seen so far in the stream (``None`` if none was ever sent), as
            the WHATWG rules define it: an event with no ``id:`` line inherits the previous one.
        own_id: whether this event carried its own ``id:`` line (``id`` is not inherited). A
            replay can only be recognised by an id the event carried itself (not compared by
            ``==``).
        retry: the reconnection time in milliseconds, if this event set one.
        line: the line number (from 1) of the event's first ``data`` line.
    """

    data: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    line: int = 0
    own_id: bool = attrs.field(default=False, eq=False)

    @property
    def text(self) -> str:
        """The data decoded as UTF-8 (invalid bytes replaced)."""
        return self.data.decode("utf-8", "replace")


class _LineSplitter:
    """Cuts bytes into lines on LF, CR and CRLF, across feeds; strips a leading BOM.

    A line longer than ``max_line`` comes out as ``None``, once, in its place; the rest of it is
    skipped as it arrives, so memory never grows with the length a server chose. The start of a
    line still open is kept as pieces, joined once when its end comes, so a long line arriving
    in small pieces costs time linear in its length (no re-scan, no repeated concatenation).
    A run of blank lines comes out as one blank line, the number of the others in ``skips``
    (``(position in the lines, lines more)``): the decoders add them to their line count.
    """

    __slots__ = (
        "_discarding",
        "_parts",
        "_size",
        "_skip_lf",
        "_started",
        "line_no",
        "max_line",
        "skips",
    )

    def __init__(self, max_line: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._skip_lf = False
        self._started = False
        self._discarding = False
        self.line_no = 0
        self.max_line = max_line
        self.skips: list[tuple[int, int]] = []

    def split(self, data: bytes) -> list[bytes | None]:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        drop_first = False
        fresh = not self._parts  # the data starts a line
        if self._discarding:
            end = _first_line_end(data)
            if end < 0:
                return []
            data = data[end:]  # the terminator of the long line, and what follows
            self._discarding = False
            drop_first = True
        elif self._parts:
            parts = self._parts
            if self._started and b"\n" not in data and b"\r" not in data:
                parts.append(data)  # the open line goes on: kept as a piece
                self._size += len(data)
                return self._overflow([])
            parts.append(data)
            data = b"".join(parts)
            self._parts = []
        if not self._started:
            if len(data) < 3 and _BOM.startswith(data):
                self._keep(data)
                return []
            self._started = True
            if data.startswith(_BOM):
                data = data[3:]
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:
            self._keep(data)
            return self._overflow([])
        pending = data[cut + 1 :]
        self._parts = [pending] if pending else []
        self._size = len(pending)
        self._skip_lf = data[cut] == 13 and not pending  # a LF may follow in the next feed
        lines = self._lines(data[: cut + 1], fresh and not drop_first)
        if drop_first:
            del lines[0]
            if self.skips:
                self.skips = [(at - 1, more) for at, more in self.skips]
        limit = self.max_line
        if lines and max(map(len, lines)) > limit:  # type: ignore[arg-type]
            lines = [None if len(line) > limit else line for line in lines]  # type: ignore[arg-type]
        return self._overflow(lines)

    def _lines(self, block: bytes, fresh: bool) -> list[bytes | None]:
        """The lines of ``block`` (which ends with a terminator), runs of blank lines as one;
        ``fresh``: the block starts a line (else its first terminator ends a line begun
        before)."""
        lines: list[bytes | None] = block.splitlines()  # type: ignore[assignment]
        if len(lines) * 16 < len(block):
            return lines  # lines of 16 bytes or more on average: no flood of blank lines
        lines = []
        at = 0
        for match in _BLANKS.finditer(block):
            run = match.group()
            count = run.count(b"\n") + run.count(b"\r") - run.count(b"\r\n")
            if count < 3:  # (CR LF CR LF: two terminators)
                continue
            first = 2 if run[:2] == b"\r\n" else 1
            if fresh and match.start() == 0:  # every terminator is a blank line: one is kept
                keep, more = first, count - 1
            else:  # the first ends a line, the second is a blank line: both kept
                second = 2 if run[first : first + 2] == b"\r\n" else 1
                keep, more = first + second, count - 2
            lines += block[at : match.start() + keep].splitlines()
            self.skips.append((len(lines), more))
            at = match.end()
        lines += block[at:].splitlines()
        return lines

    def segments(self, lines: list[bytes | None]) -> Iterator[list[bytes | None]]:
        """``lines`` cut where blank lines were left out; between two pieces, ``line_no`` is
        advanced by their number (the reader counts the lines of each piece itself)."""
        skips = self.skips
        if not skips:
            yield lines
            return
        self.skips = []
        at = 0
        for position, more in skips:
            yield lines[at:position]
            self.line_no += more
            at = position
        yield lines[at:]

    def _keep(self, pending: bytes) -> None:
        self._parts = [pending] if pending else []
        self._size = len(pending)

    def _overflow(self, lines: list[bytes | None]) -> list[bytes | None]:
        if self._size > self.max_line:
            self._parts = []
            self._size = 0
            self._discarding = True
            self._skip_lf = False
            lines.append(None)
        return lines

    def rest(self) -> bytes:
        rest = b"".join(self._parts)
        self._parts = []
        self._size = 0
        return rest


def _first_line_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def _too_long(splitter: _LineSplitter) -> DecodeError:
    return DecodeError(
        f"line longer than {splitter.max_line} bytes", where=f"line {splitter.line_no}"
    )


def _event_too_large(splitter: _LineSplitter) -> DecodeError:
    return DecodeError(
        f"event larger than {splitter.max_line} bytes of data (max_line); the rest of the event "
        "is skipped",
        where=f"line {splitter.line_no}",
    )


#: The field names of the SSE rules: a line naming none of them is ignored (WHATWG), unless it
#: is one of them spoiled (see :func:`_spoiled`).
_FIELDS = frozenset({b"data", b"event", b"id", b"retry"})


def _event_name(line: bytes) -> str:
    """The event name an ``event: `` line sets, as the line loop sets it (an empty one is
    ``message``): what the scanner's fast branches name their records by."""
    return line[7:].decode("utf-8", "replace") or "message"


def _spoiled(field: bytes) -> bool:
    """Whether ``field`` is a field name spoiled by a BOM, a space, a tab or a NUL (a line a
    server meant, which the rules would drop without a word)."""
    cleaned = field.replace(_BOM, b"").replace(b"\0", b"").strip(b" \t")
    return cleaned in _FIELDS


def _spoiled_line(splitter: _LineSplitter, line_no: int, field: bytes) -> DecodeError:
    return DecodeError(
        f"a line whose field name {field[:40]!r} is a field name spoiled (a BOM, a space or a "
        "NUL in it) was not understood; it is skipped",
        where=f"line {line_no}",
    )


@final
class SSEDecoder:
    """Decode a byte stream of Server-Sent Events, fed in pieces of any size.

    Args:
        max_line: the longest line accepted, in bytes, and the most data bytes of one event.
            A longer line or a larger event makes :meth:`feed` raise :class:`DecodeError` and
            its event is dropped; the events completed before and
            after it in the same call are returned by the next call, so none is lost.

    Example:
        >>> d = SSEDecoder()
        >>> d.feed(b'data: {"a"') + d.feed(b': 1}\\n\\n')
        [ServerSentEvent(data=b'{"a": 1}', event='message', id=None, retry=None, line=1)]
    """

    __slots__ = (
        "_data",
        "_event",
        "_id",
        "_lines",
        "_own_id",
        "_queued",
        "_retry",
        "_size",
        "_skipping",
        "_start",
    )

    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        self._lines = _LineSplitter(max_line)
        self._queued: list[ServerSentEvent | DecodeError] = []
        self._skipping = False
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None
        self._own_id = False
        self._retry: int | None = None
        self._start = 0
        #: the data bytes of the event in progress (bounded by ``max_line``).
        self._size = 0

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._lines.line_no

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return _raise_first(self._queued, self.decode(data))

    def close(self) -> list[ServerSentEvent]:
        """End the stream; return the last event if its closing blank line never came.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return _raise_first(self._queued, self.decode(b"", final=True))

    def decode(self, data: bytes, *, final: bool = False) -> list[ServerSentEvent | DecodeError]:
        """Like :meth:`feed` (or :meth:`close` when ``final``), with errors in place, not raised."""
        return [
            entry if entry.__class__ is DecodeError else ServerSentEvent(*entry)
            for entry in self.scan(data, final=final)
        ]

    def scan(self, data: bytes, *, final: bool = False) -> list[Any]:
        """The hot path of :meth:`decode`: each event as a plain tuple of the
        :class:`ServerSentEvent` fields in order, or a :class:`DecodeError` in its place."""
        if not final and data.endswith(b"\n\n"):
            one = self._one_event(data)
            if one is not None:
                return one
        events: list[Any] = []
        if data:
            splitter = self._lines
            lines = splitter.split(data)
            if splitter.skips:
                for piece in splitter.segments(lines):
                    events += self._scan(piece)
            else:
                events = self._scan(lines)
        if not final:
            return events
        rest = self._lines.rest()
        if rest:
            events += self._scan([rest])
        if self._data and not self._skipping:
            events.append(self._event_tuple(self._data))
            self._reset()
        return events

    def _one_event(self, data: bytes) -> list[Any] | None:
        """The record of ``data`` if it is one whole event of a common shape, read between two
        events (what a network body gives, a read at a time): a ``data: `` line or an
        ``event: `` line and a ``data: `` line, then a blank line, with no CR, no line too
        long, no field of an event in progress and none that the next event would carry: as
        :meth:`_scan`'s C loops make it, without cutting lines. Else ``None``: the full path."""
        splitter = self._lines
        if (
            splitter._parts
            or not splitter._started
            or splitter._skip_lf
            or splitter._discarding
            or self._data
            or self._skipping
            or self._event
            or self._own_id
            or self._retry is not None
            or b"\r" in data
        ):
            return None
        end = len(data) - 2
        first = data.find(b"\n")
        if first == end:  # one line
            if data[:6] != b"data: " or end > splitter.max_line:
                return None
            at = splitter.line_no + 1
            splitter.line_no = at + 1
            return [(data[6:end], "message", self._id, None, at, False)]
        if (
            data[:7] != b"event: "
            or data.find(b"\n", first + 1) != end
            or not data.startswith(b"data: ", first + 1)
            or first > splitter.max_line
            or end - first - 1 > splitter.max_line
        ):
            return None
        at = splitter.line_no + 2
        splitter.line_no = at + 1
        return [(data[first + 7 : end], _event_name(data[:first]), self._id, None, at, False)]

    def _scan(self, lines: list[bytes | None]) -> list[Any]:
        """The events of ``lines``. A run of events of one common shape, with no field set
        that the next event would carry, is cut by C loops: pairs of a ``data: `` line and a
        blank line (a chat stream's body), or triples of an ``event: `` line, a ``data: ``
        line and a blank line (the Responses and Messages streams). A join and a count check
        every event of the run, and each is made as the loop below makes it (its payload, its
        type, the id inherited, its line). An event in progress is first finished by the loop,
        up to its blank line; what does not fit a shape takes the loop."""
        if None in lines:  # (a line too long: the loop says so)
            return self._scan_lines(lines)
        events: list[Any] = []
        if self._data or self._skipping or self._event or self._own_id:
            try:
                blank = lines.index(b"")
            except ValueError:
                return self._scan_lines(lines)
            events = self._scan_lines(lines[: blank + 1])
            lines = lines[blank + 1 :]
        if self._retry is not None or not lines:
            return events + self._scan_lines(lines) if lines else events
        first = lines[0]
        if first[:6] == b"data: ":  # type: ignore[index]  # (no None: checked)
            step = 2
        elif first[:7] == b"event: ":  # type: ignore[index]
            step = 3
        else:
            return events + self._scan_lines(lines)
        count = len(lines) // step
        end = count * step
        if not count or any(lines[step - 1 : end : step]):  # every last line blank
            return events + self._scan_lines(lines)
        datas = lines[step - 2 : end : step]
        joined = b"\n".join(datas)  # type: ignore[arg-type]
        if not joined.startswith(b"data: ") or joined.count(b"\ndata: ") != count - 1:
            return events + self._scan_lines(lines)
        splitter = self._lines
        at = splitter.line_no + step - 1  # the line number of the first data line
        id_ = self._id
        numbers = range(at, at + end, step)
        if step == 2:
            events += [
                (line[6:], "message", id_, None, number, False)  # type: ignore[index]
                for line, number in zip(datas, numbers, strict=True)
            ]
        else:
            kinds = lines[0:end:3]
            joined = b"\n".join(kinds)  # type: ignore[arg-type]
            if joined.count(b"\nevent: ") != count - 1:  # (the first: checked above)
                return events + self._scan_lines(lines)
            names = {kind: _event_name(kind) for kind in set(kinds)}  # type: ignore[arg-type]
            events += [
                (line[6:], names[kind], id_, None, number, False)  # type: ignore[index]
                for kind, line, number in zip(kinds, datas, numbers, strict=True)
            ]
        splitter.line_no += end
        if end < len(lines):
            events += self._scan_lines(lines[end:])
        return events

    def _scan_lines(self, lines: list[bytes | None]) -> list[Any]:
        events: list[Any] = []
        splitter = self._lines
        line_no = splitter.line_no
        data = self._data
        size = self._size
        limit = splitter.max_line
        for line in lines:
            line_no += 1
            if line:
                if line[:6] == b"data: " and not self._skipping:  # the common case, first
                    if not data:  # (one line is bounded by the splitter: not counted)
                        self._start = line_no
                        data.append(line[6:])
                        continue
                    data.append(line[6:])
                    size += len(line)
                    if size + len(data[0]) > limit:  # the event, not only its lines
                        splitter.line_no = line_no
                        events.append(_event_too_large(splitter))
                        data = self._data = []
                        size = 0
                        self._skipping = True
                    continue
                if line[0] == 58 or self._skipping:  # b":" starts a comment
                    continue
                field, sep, value = line.partition(b":")
                if not sep:
                    value = b""
                elif value[:1] == b" ":
                    value = value[1:]
                if field == b"data":
                    if not data:
                        self._start = line_no
                    data.append(value)
                    size += len(line)
                    if size > limit:
                        splitter.line_no = line_no
                        events.append(_event_too_large(splitter))
                        data = self._data = []
                        size = 0
                        self._skipping = True
                elif field == b"event":
                    self._event = value.decode("utf-8", "replace")
                elif field == b"id":
                    if b"\0" not in value:
                        self._id = value.decode("utf-8", "replace")
                        self._own_id = True
                elif field == b"retry":
                    if value.isdigit() and len(value) <= 18:
                        self._retry = int(value)  # (longer: no sane delay; int() refuses 4,300+)
                elif _spoiled(field):  # not silently dropped: said, in its place
                    events.append(_spoiled_line(splitter, line_no, field))
            elif line is None:  # too long: its event is lost, say so and skip to the next one
                splitter.line_no = line_no
                events.append(_too_long(splitter))
                data = self._data = []
                size = 0
                self._skipping = True
            elif (
                len(data) == 1 and not self._event and not self._own_id and self._retry is None
            ):  # a blank line after one data line and nothing else: the common event
                events.append((data[0], "message", self._id, None, self._start, False))
                data = self._data = []
                size = 0
            else:  # a blank line dispatches the event
                if data and not self._skipping:
                    events.append(self._event_tuple(data))
                self._reset()
                data = self._data
                size = 0
        splitter.line_no = line_no
        self._data = data
        self._size = size
        return events

    def _event_tuple(self, data: list[bytes]) -> tuple[Any, ...]:
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        own_id = self._own_id
        return (payload, self._event or "message", self._id, self._retry, self._start, own_id)

    def _reset(self) -> None:
        self._data = []
        self._size = 0
        self._event = ""
        self._retry = None
        self._own_id = False
        self._skipping = False


@final
class JSONLinesReader:
    """Cut a byte stream into JSON Lines, fed in pieces of any size.

    ``feed`` and ``close`` return ``(line number, line bytes)`` pairs; blank lines are skipped.

    Args:
        max_line: the longest line accepted, in bytes. A longer line makes :meth:`feed` raise
            :class:`DecodeError`; the lines before and after it in the same call are returned by
            the next call.
    """

    __slots__ = ("_lines", "_queued")

    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        self._lines = _LineSplitter(max_line)
        self._queued: list[tuple[int, bytes] | DecodeError] = []

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._lines.line_no

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Take the next bytes; return the complete non-blank lines with their numbers.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return _raise_first(self._queued, self.decode(data))

    def close(self) -> list[tuple[int, bytes]]:
        """End the stream; return the last line if it had no line ending.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return _raise_first(self._queued, self.decode(b"", final=True))

    def decode(self, data: bytes, *, final: bool = False) -> list[tuple[int, bytes] | DecodeError]:
        """Like :meth:`feed` (or :meth:`close` when ``final``), with errors in place, not raised."""
        return [
            entry if entry.__class__ is DecodeError else (entry[4], entry[0])
            for entry in self.scan(data, final=final)
        ]

    def scan(self, data: bytes, *, final: bool = False) -> list[Any]:
        """The hot path of :meth:`decode`: each line as the framing's record (the tuple
        :meth:`SSEDecoder.scan` makes: ``(line, "message", None, None, line number, False)``),
        or a :class:`DecodeError` in its place."""
        if final:
            rest = self._lines.rest()
            return self._number([rest]) if rest else []
        splitter = self._lines
        out: list[Any] = []
        for lines in splitter.segments(splitter.split(data)):
            out += self._number(lines)
        return out

    def _number(self, lines: list[bytes | None]) -> list[Any]:
        splitter = self._lines
        if None not in lines:  # (a line too long: the loop says so, in its place)
            at = splitter.line_no + 1
            splitter.line_no += len(lines)
            return [
                (line, "message", None, None, number, False)
                for line, number in zip(lines, range(at, at + len(lines)), strict=True)
                if line.strip()  # type: ignore[union-attr]  # (no None: checked)
            ]
        out: list[Any] = []
        for line in lines:
            splitter.line_no += 1
            if line is None:
                out.append(_too_long(splitter))
            elif line.strip():
                out.append((line, "message", None, None, splitter.line_no, False))
        return out


def _raise_first(queued: list[Any], out: list[Any]) -> list[Any]:
    """Return ``out`` (after what an earlier call queued), or raise its first error and queue
    the rest for the next call."""
    if queued:
        out = queued + out
        queued.clear()
    for i, entry in enumerate(out):
        if entry.__class__ is DecodeError:
            queued.extend(out[:i] + out[i + 1 :])
            raise entry
    return out
