"""The models: the chunk events of each protocol, and the assembled objects they rebuild.

Frozen, slotted attrs classes. Each has ``extras``: the keys the model does not name, kept as
the server sent them (``aggregator.to_dict`` writes them back). The OpenAI Responses stream's
event classes and its ``Response`` are ``aggregator.models.responses`` (``from aggregator.models
import responses``); the Anthropic Messages stream's events, blocks and ``Message`` are
``aggregator.models.anthropic``. Both are imported on first use (``responses`` has 59 event
classes: they would double the import time of the package).
"""

from __future__ import annotations

import typing as _typing

from ._core._chat import _completions, _events
from ._core._chat._completions import *  # noqa: F403
from ._core._chat._events import *  # noqa: F403

if _typing.TYPE_CHECKING:
    from ._core._anthropic import _models as anthropic
    from ._core._responses import _events as responses

__all__ = [*_completions.__all__, *_events.__all__, "anthropic", "responses"]


def __getattr__(name: str) -> object:
    if name == "responses":
        from ._core._responses import _events as responses

        return responses
    if name == "anthropic":
        from ._core._anthropic import _models as anthropic

        return anthropic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "anthropic", "responses"})
