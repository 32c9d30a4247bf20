"""Token counts in one vocabulary, whatever the protocol's usage object calls them.

Theory of operation: each protocol reports usage in its own words: Chat Completions'
``prompt_tokens`` / ``completion_tokens`` with ``*_details``, the Responses API's
``input_tokens`` / ``output_tokens`` with ``*_details``, Anthropic's ``input_tokens`` beside
separate ``cache_read_input_tokens`` and ``cache_creation_input_tokens``. Totals across
protocols, and telemetry by the OpenTelemetry GenAI conventions, need one vocabulary:
:class:`Tokens`, read off any usage object by the names it has (attributes of a model, or the
keys it kept in ``extras``). Input counts *include* cached tokens, as the conventions say
("SHOULD include all types of input tokens, including cached tokens"): for Anthropic that is
the sum of its three input fields.

A count below zero is no count: :func:`negative_counts` finds them (the engine makes each a
problem of its stream), and neither :class:`Tokens` nor ``add_usage`` sums them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import attrs

from ._model import Model

__all__ = ["Tokens", "negative_counts", "tokens"]


@final
@attrs.frozen(kw_only=True, repr=False)
class Tokens(Model):
    """The token counts of a usage report, in the GenAI conventions' vocabulary.

    Attributes:
        input: the input tokens, cached ones included.
        output: the output tokens, reasoning included.
        cache_read: input tokens read from a cache.
        cache_creation: input tokens written to a cache.
        reasoning: output tokens spent on reasoning.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_creation=self.cache_creation + other.cache_creation,
            reasoning=self.reasoning + other.reasoning,
        )

    @property
    def total(self) -> int:
        """Input and output."""
        return self.input + self.output


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        kept = getattr(obj, "extras", None)
        if isinstance(kept, Mapping):
            return kept.get(name)
    return value


def _count(value: Any) -> int:
    """A count as sent, or 0 for what is none (a bool, a string, a negative number)."""
    if value.__class__ is int and value > 0:
        return int(value)
    return 0


def tokens(usage: Any) -> Tokens | None:
    """The :class:`Tokens` of a usage object of any protocol (``None`` for ``None``)."""
    if usage is None:
        return None
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        prompt, completion = "prompt", "completion"  # Chat Completions
    else:
        prompt, completion = "input", "output"  # the Responses API, Anthropic
    cache_read = _count(_get(_get(usage, f"{prompt}_tokens_details"), "cached_tokens"))
    anthropic_read = _count(_get(usage, "cache_read_input_tokens"))
    anthropic_creation = _count(_get(usage, "cache_creation_input_tokens"))
    return Tokens(
        # Anthropic counts its cache reads and writes apart from input_tokens
        input=_count(_get(usage, f"{prompt}_tokens")) + anthropic_read + anthropic_creation,
        output=_count(_get(usage, f"{completion}_tokens")),
        cache_read=cache_read or anthropic_read,
        cache_creation=anthropic_creation,
        reasoning=_count(_get(_get(usage, f"{completion}_tokens_details"), "reasoning_tokens")),
    )


#: The field names of each attrs class met in a usage object (``None``: not an attrs class).
_NAMES: dict[type, tuple[str, ...] | None] = {}
_NUMBERS = (int, float)


def _names(cls: type) -> tuple[str, ...] | None:
    names = _NAMES.get(cls, ())
    if names == ():
        names = _NAMES[cls] = tuple(f.name for f in attrs.fields(cls)) if attrs.has(cls) else None
    return names


def negative_counts(usage: Any, prefix: str = "") -> list[str]:
    """The dotted names of the numbers below zero in a usage object (fields, details, numeric
    extras), at most 8 of them: counts a server cannot have meant. (Run on every result with
    usage: numbers are told first, each attrs class's field names are looked up once, and a
    value's place is kept as its parent's entry and key, so a name is made only for a number
    below zero.)"""
    found: list[str] = []
    stack: list[tuple[Any, Any, Any]] = [(None, prefix, usage)]  # (parent entry, key, value)
    while stack and len(found) < 8:
        entry = stack.pop()
        value = entry[2]
        cls = value.__class__
        if cls in _NUMBERS:
            if value < 0:
                found.append(f"{_dotted(entry)}={value}")
            continue
        names = _names(cls)
        if names is not None:
            for field in names:
                child = getattr(value, field)
                if child is not None:
                    stack.append((entry, field, child))
        elif isinstance(value, Mapping):
            for key, child in value.items():
                if child is not None:
                    stack.append((entry, key, child))
    return sorted(found)


def _dotted(entry: tuple[Any, Any, Any]) -> str:
    """The dotted name of a walk's entry: its keys from the top (``prefix``, if any), an
    ``extras`` mapping's keys standing for themselves."""
    keys: list[str] = []
    while entry[0] is not None:
        if entry[1] != "extras":
            keys.append(str(entry[1]))
        entry = entry[0]
    if entry[1]:
        keys.append(entry[1])
    return ".".join(reversed(keys))
