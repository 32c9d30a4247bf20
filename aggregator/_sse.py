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
line after it, and a lost last event is worse than a lenient end.
"""

from __future__ import annotations

from typing import final

import attrs

from ._errors import DecodeError

__all__ = ["JSONLinesReader", "SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


@final
@attrs.frozen
class ServerSentEvent:
    """One dispatched Server-Sent Event.

    Attributes:
        data: the ``data`` lines joined with ``\\n``, as bytes.
        event: the event type (``message`` when the server named none).
        id: the last event id seen so far in the stream (``None`` if none was ever sent).
        retry: the reconnection time in milliseconds, if this event set one.
        line: the line number (from 1) where the event started.
    """

    data: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    line: int = 0

    @property
    def text(self) -> str:
        """The data decoded as UTF-8 (invalid bytes replaced)."""
        return self.data.decode("utf-8", "replace")


class _LineSplitter:
    """Cuts bytes into lines on LF, CR and CRLF, across feeds; strips a leading BOM."""

    __slots__ = ("_pending", "_skip_lf", "_started", "line_no", "max_line")

    def __init__(self, max_line: int) -> None:
        self._pending = b""
        self._skip_lf = False
        self._started = False
        self.line_no = 0
        self.max_line = max_line

    def split(self, data: bytes) -> list[bytes]:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if self._pending:
            data = self._pending + data
        if not self._started:
            if len(data) < 3 and _BOM.startswith(data):
                self._pending = data
                return []
            self._started = True
            if data.startswith(_BOM):
                data = data[3:]
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:
            self._pending = data
            self._check_pending()
            return []
        self._pending = data[cut + 1 :]
        self._check_pending()
        if data[cut] == 13:  # b"\r": a LF may follow in the next feed
            self._skip_lf = True
        return data[: cut + 1].splitlines()

    def rest(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def _check_pending(self) -> None:
        if len(self._pending) > self.max_line:
            self._pending = b""
            raise DecodeError(
                f"line longer than {self.max_line} bytes", where=f"line {self.line_no + 1}"
            )


@final
class SSEDecoder:
    """Decode a byte stream of Server-Sent Events, fed in pieces of any size.

    Args:
        max_line: the longest line accepted, in bytes; a longer one raises :class:`DecodeError`.

    Example:
        >>> d = SSEDecoder()
        >>> d.feed(b'data: {"a"') + d.feed(b': 1}\\n\\n')
        [ServerSentEvent(data=b'{"a": 1}', event='message', id=None, retry=None, line=1)]
    """

    __slots__ = ("_data", "_event", "_id", "_lines", "_retry", "_start")

    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        self._lines = _LineSplitter(max_line)
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._start = 0

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._lines.line_no

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return self._lines_to_events(self._lines.split(data))

    def close(self) -> list[ServerSentEvent]:
        """End the stream; return the last event if its closing blank line never came."""
        rest = self._lines.rest()
        events = self._lines_to_events([rest]) if rest else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _lines_to_events(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        splitter = self._lines
        for line in lines:
            splitter.line_no += 1
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = ""
                    self._retry = None
                continue
            if line[0] == 58:  # b":" starts a comment
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                field = b"data"
            else:
                field, sep, value = line.partition(b":")
                if not sep:
                    value = b""
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                if not self._data:
                    self._start = splitter.line_no
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
            elif field == b"id":
                if b"\0" not in value:
                    self._id = value.decode("utf-8", "replace")
            elif field == b"retry" and value.isdigit():
                self._retry = int(value)
        return events

    def _dispatch(self) -> ServerSentEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = ServerSentEvent(
            data=data,
            event=self._event or "message",
            id=self._id,
            retry=self._retry,
            line=self._start,
        )
        self._data = []
        self._event = ""
        self._retry = None
        return event


@final
class JSONLinesReader:
    """Cut a byte stream into JSON Lines, fed in pieces of any size.

    ``feed`` and ``close`` return ``(line number, line bytes)`` pairs; blank lines are skipped.

    Args:
        max_line: the longest line accepted, in bytes; a longer one raises :class:`DecodeError`.
    """

    __slots__ = ("_lines",)

    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        self._lines = _LineSplitter(max_line)

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._lines.line_no

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Take the next bytes; return the complete non-blank lines with their numbers.

        Raises:
            DecodeError: a line exceeds ``max_line``.
        """
        return self._number(self._lines.split(data))

    def close(self) -> list[tuple[int, bytes]]:
        """End the stream; return the last line if it had no line ending."""
        rest = self._lines.rest()
        return self._number([rest]) if rest else []

    def _number(self, lines: list[bytes]) -> list[tuple[int, bytes]]:
        out = []
        splitter = self._lines
        for line in lines:
            splitter.line_no += 1
            if line.strip():
                out.append((splitter.line_no, line))
        return out
