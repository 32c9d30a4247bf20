"""Limits on what a server can make us hold, with safe defaults.

Theory of operation: nothing a server sends may make memory grow with a number it chose. Indexes
are dict keys, never list positions, so an index of 1,000,000,000 costs what an index of 1 costs;
what can grow is bounded here: the length of a line and of one SSE event, the bytes of one
completion, the number of choices and tool calls of a stream, the nesting of a JSON payload, the
length of an id the engine remembers, the number of streams, and time (including the time a
source may take to close). A limit that is passed fails the stream it belongs to with a
:class:`LimitError` that names the stream and the place, and keeps what was assembled before;
the other streams of the source go on. docs/reliability.md lists each guarantee with its test.
"""

from __future__ import annotations

from typing import Any, final

import attrs

from ._model import Model

__all__ = ["DEFAULT_LIMITS", "MAX_DEPTH_CEILING", "Limits", "depth_exceeds"]

#: The deepest nesting ever accepted, whatever ``max_depth`` says: merging and writing JSON
#: recurse, and Python's stack is finite.
MAX_DEPTH_CEILING = 200


def _positive(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


def _depth(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _positive(_, attribute, value)
    if value is not None and value > MAX_DEPTH_CEILING:
        raise ValueError(f"max_depth must be at most {MAX_DEPTH_CEILING}, not {value!r}")


@final
@attrs.frozen(kw_only=True, repr=False)
class Limits(Model):
    """Every limit, each configurable; ``None`` turns a limit off.

    Attributes:
        max_line: the longest line, in bytes, and the most data bytes of one SSE event (its
            ``data`` lines together): the largest JSON line or SSE event.
        max_completion: the most payload bytes one completion may take, summed over its chunks
            (counted for sources of bytes); past it the completion ends ``limit``, with what it
            held before.
        max_id: the longest id (in characters) kept as it is in the engine's memory of dedupe
            ids and refused completions; a longer one is kept as a 16-byte digest, and cut in
            messages.
        max_choices: the number of distinct choices in one stream.
        max_choice_index: the highest choice index accepted.
        max_tool_calls: the number of tool calls in one choice.
        max_tool_call_index: the highest tool-call index accepted.
        max_depth: the deepest nesting of objects and lists in one payload (at most
            ``MAX_DEPTH_CEILING``, 200; ``None`` means that ceiling).
        max_streams: the number of streams (completions) one source may open at the same time.
        max_open_streams: the number of streams open at the same time in a fan-in.
        idle_timeout: seconds a source may go without delivering anything.
        deadline: seconds a source may take in all.
        close_timeout: seconds closing a source (its ``aclose()``) may take when the reading
            ends or is left; past them the close is abandoned.
        max_blocks: the number of content blocks in one message (Anthropic Messages).
        max_block_chars: the characters of text one content block may gather from its deltas
            (text, thinking, signature or tool input JSON; Anthropic Messages).
    """

    max_line: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)
    max_completion: int | None = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    max_id: int = attrs.field(default=256, validator=_positive)
    max_choices: int | None = attrs.field(default=1024, validator=_positive)
    max_choice_index: int | None = attrs.field(default=2**31 - 1, validator=_positive)
    max_tool_calls: int | None = attrs.field(default=1024, validator=_positive)
    max_tool_call_index: int | None = attrs.field(default=2**31 - 1, validator=_positive)
    max_depth: int | None = attrs.field(default=64, validator=_depth)
    max_streams: int | None = attrs.field(default=1024, validator=_positive)
    max_open_streams: int | None = attrs.field(default=100_000, validator=_positive)
    idle_timeout: float | None = attrs.field(default=None, validator=_positive)
    deadline: float | None = attrs.field(default=None, validator=_positive)
    close_timeout: float | None = attrs.field(default=1.0, validator=_positive)
    # -- content blocks (the Anthropic Messages protocol) --
    max_blocks: int | None = attrs.field(default=10_000, validator=_positive)
    max_block_chars: int | None = attrs.field(default=64 * 1024 * 1024, validator=_positive)


#: The defaults: generous for every real server, small enough that no server can exhaust memory.
DEFAULT_LIMITS = Limits()


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and lists deeper than ``limit`` (iterative, no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        cls = node.__class__
        if cls is dict:
            children: Any = node.values()
        elif cls is list:
            children = node
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if child.__class__ is dict or child.__class__ is list:
                stack.append((child, depth + 1))
    return False
