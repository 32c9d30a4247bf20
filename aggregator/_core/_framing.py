"""Framing: bytes to payloads, as SSE or JSON Lines, told apart by the first byte (sans-I/O).

Theory of operation: a :class:`Framing` tells the framing from the first byte that is not
whitespace (``{`` starts JSON Lines; anything else is SSE) and cuts payloads with ``_sse``. What
comes out of :meth:`Framing.feed` is one record per payload, in order, as the plain tuple the
SSE scanner makes: ``(data, event type, id, retry, line, own id)``; a JSON line is
``(data, "message", None, None, line, False)``. A line too long becomes a :class:`DecodeError`
in its place. Parsing, recognising the protocol and routing are the engine's; this module only
cuts.
"""

from __future__ import annotations

from typing import Any, Literal, final

from ._sse import JSONLinesReader, SSEDecoder

__all__ = ["Format", "Framing"]

#: How the bytes of a source are framed: ``"sse"``, ``"jsonl"``, or ``"auto"`` (told apart
#: from the first byte that is not whitespace).
Format = Literal["auto", "sse", "jsonl"]

_BOM = b"\xef\xbb\xbf"
#: The most blank bytes kept while waiting for the first byte that tells the framing.
_SNIFF = 64 * 1024


@final
class Framing:
    """Bytes in, payload records out, for one source.

    Args:
        format: ``"sse"``, ``"jsonl"``, or ``"auto"`` to tell them apart from the first byte.
        max_line: the longest line accepted, in bytes.
    """

    __slots__ = ("_head", "_jsonl", "_sse", "format")

    def __init__(self, format: Format = "auto", *, max_line: int = 16 << 20) -> None:
        #: ``sse`` or ``jsonl`` once known, ``auto`` before the first non-blank byte.
        self.format: Format = format
        self._head = b""
        self._sse = SSEDecoder(max_line=max_line)
        self._jsonl = JSONLinesReader(max_line=max_line)

    @property
    def line(self) -> int:
        """The number of lines read so far."""
        return self._jsonl.line if self.format == "jsonl" else self._sse.line

    def feed(self, data: bytes) -> list[Any]:
        """The payload records (and errors) the next bytes of the source complete."""
        if self.format == "sse":  # (_cut's, without its call: a read of a network body each)
            return self._sse.scan(data)
        if self.format == "auto":
            data = self._head + data
            if len(data) < 3 and _BOM.startswith(data):  # maybe a BOM split across reads
                self._head = data
                return []
            stripped = (data[3:] if data.startswith(_BOM) else data).lstrip(b" \t\r\n")
            if not stripped and len(data) <= _SNIFF:
                self._head = data
                return []
            self._head = b""
            # blank bytes only, and many: SSE, where blank lines are harmless (bounded memory)
            self.format = "jsonl" if stripped[:1] == b"{" else "sse"
        return self._cut(data, final=False)

    def close(self) -> list[Any]:
        """End of the source: the records of what is left (a last event with no blank line)."""
        return self._cut(b"", final=True)

    def _cut(self, data: bytes, *, final: bool) -> list[Any]:
        if self.format == "jsonl":
            return self._jsonl.scan(data, final=final)
        if self.format == "auto":  # closed with nothing but blank bytes
            return []
        return self._sse.scan(data, final=final)
