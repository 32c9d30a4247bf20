"""Building blocks, for code that takes the pieces apart: the decoders, the accumulator, the
engine and its protocol seam.

Most code wants :class:`aggregator.Assembler` or the async entry points instead; these are
what they are made of, with the same guarantees, and may change more often.
"""

from __future__ import annotations

from ._core._chat import ChatProtocol, structure_chunk
from ._core._chat._accumulate import Accumulator
from ._core._chat._plain import is_plain_chat, is_plain_text
from ._core._engine import Engine
from ._core._limits import DEFAULT_LIMITS
from ._core._protocol import Protocol, StreamAccumulator
from ._core._protocols import PROTOCOLS
from ._core._sse import JSONLinesReader, ServerSentEvent, SSEDecoder

__all__ = [
    "DEFAULT_LIMITS",
    "PROTOCOLS",
    "Accumulator",
    "ChatProtocol",
    "Engine",
    "JSONLinesReader",
    "Protocol",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamAccumulator",
    "is_plain_chat",
    "is_plain_text",
    "structure_chunk",
]
