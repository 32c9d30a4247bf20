"""Turn streamed LLM responses back into whole responses.

General layout (each module opens with its own theory of operation):

- ``aggregator._core``: the sans-I/O core, plain synchronous code with no event loop. Framing
  (SSE and JSON Lines), the protocol seam and the protocols behind it (``_chat``: Chat
  Completions and text completions), the engine that owns every rule of routing and merging,
  the accumulators, the models and their one converter, limits, errors, results.
- The async shell on top (anyio: asyncio and trio): the one source reader (``_reading``),
  :func:`results` and :func:`fan_in` (``_run``), :class:`Tee`, the stages, the sources, the CLI.

The public names are these; models are in :mod:`aggregator.models`, stage authoring in
:mod:`aggregator.stages`, building blocks in :mod:`aggregator.lowlevel`. See README.md and docs/.
"""

from __future__ import annotations

from . import lowlevel, models, sources, stages
from ._api import assemble, assemble_all
from ._core._assembler import Assembler, assemble_sync
from ._core._converter import to_dict
from ._core._errors import (
    AggregatorError,
    ConflictError,
    DecodeError,
    IncompleteStreamError,
    LimitError,
    StreamError,
    StructureError,
    UpstreamError,
    UsageError,
)
from ._core._framing import Format
from ._core._limits import Limits
from ._core._results import EndReason, Result, SourceReport, Timings
from ._reading import Source, Sources
from ._run import fan_in, results
from ._tee import Tee

__version__ = "0.2.0"

__all__ = [
    "AggregatorError",
    "Assembler",
    "ConflictError",
    "DecodeError",
    "EndReason",
    "Format",
    "IncompleteStreamError",
    "LimitError",
    "Limits",
    "Result",
    "Source",
    "SourceReport",
    "Sources",
    "StreamError",
    "StructureError",
    "Tee",
    "Timings",
    "UpstreamError",
    "UsageError",
    "assemble",
    "assemble_all",
    "assemble_sync",
    "fan_in",
    "lowlevel",
    "models",
    "results",
    "sources",
    "stages",
    "to_dict",
]
