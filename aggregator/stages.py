"""The stages of a pipeline, composed with ``|``, and what chunk stages see.

``dedupe() | collect_usage() | merge_deltas() | assemble()`` is the default pipeline of
:func:`aggregator.results` and :func:`aggregator.fan_in`. Stages before ``merge_deltas()`` see
chunks (:class:`Envelope`, :class:`End`); stages after it see results. See docs/stages.md.
"""

from __future__ import annotations

from . import _stages
from ._core import _items
from ._core._items import *  # noqa: F403
from ._stages import *  # noqa: F403
from ._telemetry import genai_telemetry

__all__ = [*_items.__all__, *_stages.__all__, "genai_telemetry"]
