"""The assembled Responses API object: what ``POST /v1/responses`` returns without streaming.

Theory of operation: the accumulator builds the output items as plain JSON dicts (every item
type, known or not, is kept as the server sent it) and structures the whole response once, when
a result is asked for, through the one converter. ``extras`` keeps every top-level key the model
does not name, so ``to_dict`` gives back the server's JSON shape (nulls dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import attrs

from .._model import Model, extras

__all__ = ["InputTokensDetails", "OutputTokensDetails", "Response", "ResponseUsage"]


@final
@attrs.frozen(repr=False)
class InputTokensDetails(Model):
    """``usage.input_tokens_details``."""

    cached_tokens: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class OutputTokensDetails(Model):
    """``usage.output_tokens_details``."""

    reasoning_tokens: int | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class ResponseUsage(Model):
    """A Responses usage report (numeric fields: ``add_usage`` sums them across streams)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None
    extras: Mapping[str, Any] = extras()


@final
@attrs.frozen(repr=False)
class Response(Model):
    """The assembled response; ``output`` holds the items as JSON objects, in output order."""

    id: str = ""
    object: str | None = None
    model: str = ""
    status: str | None = None
    output: list[dict[str, Any]] = attrs.field(factory=list)
    usage: ResponseUsage | None = None
    extras: Mapping[str, Any] = extras()
