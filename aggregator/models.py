"""The models: the chunk events of each protocol, and the assembled objects they rebuild.

Frozen, slotted attrs classes. Each has ``extras``: the keys the model does not name, kept as
the server sent them (``aggregator.to_dict`` writes them back).
"""

from __future__ import annotations

from ._core._chat import _completions, _events
from ._core._chat._completions import *  # noqa: F403
from ._core._chat._events import *  # noqa: F403

__all__ = [*_completions.__all__, *_events.__all__]
