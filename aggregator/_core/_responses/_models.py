"""The assembled Responses API object: what ``POST /v1/responses`` returns without streaming.

Theory of operation: the accumulator builds the output items as plain JSON dicts (every item
type, known or not, is kept as the server sent it) and structures the whole response once, when
a result is asked for, through the one converter. ``extras`` keeps every top-level key the model
does not name, so ``to_dict`` gives back the server's JSON shape (nulls dropped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union, final

import attrs

from .. import _converter
from .._model import Model, extras

__all__ = [
    "InputTokensDetails",
    "JSONArray",
    "JSONItems",
    "JSONObject",
    "OutputTokensDetails",
    "Response",
    "ResponseUsage",
]

#: A JSON object as the server sent it (an output item, a content part, an annotation), or
#: nothing; written back with its nulls dropped, as every model is.
JSONObject = Union[Mapping[str, Any], None]
#: A JSON array as the server sent it (log probabilities, a shell call's output), or nothing.
JSONArray = Union[Sequence[Any], None]
#: The output items of a response, each the JSON object the server sent.
JSONItems = Sequence[dict[str, Any]]


def _json_object(value: Any, _: Any) -> Any:
    return (
        value if value is None or value.__class__ is dict else _converter.fail(value, "an object")
    )


def _json_array(value: Any, _: Any) -> Any:
    return value if value is None or value.__class__ is list else _converter.fail(value, "a list")


def _json_items(value: Any, _: Any) -> Any:
    if value.__class__ is list and all(item.__class__ is dict for item in value):
        return value
    return _converter.fail(value, "a list of objects")


_converter.register_structure_hook(JSONObject, _json_object, plain_json=True)
_converter.register_structure_hook(JSONItems, _json_items, plain_json=True)
_converter.register_structure_hook(JSONArray, _json_array, plain_json=True)


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
    output: JSONItems = attrs.field(factory=list)
    usage: ResponseUsage | None = None
    extras: Mapping[str, Any] = extras()
