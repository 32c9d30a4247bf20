"""The protocols the engine knows, in the order it asks them to recognise a source."""

from __future__ import annotations

from ._anthropic import AnthropicProtocol
from ._chat import ChatProtocol
from ._protocol import Protocol
from ._responses import ResponsesProtocol

__all__ = ["PROTOCOLS"]

#: Asked in order; the last recognises everything.
PROTOCOLS: tuple[type[Protocol], ...] = (ResponsesProtocol, AnthropicProtocol, ChatProtocol)
