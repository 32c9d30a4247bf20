"""The stages of a pipeline, composed with ``|``, and what chunk stages see.

``dedupe() | collect_usage() | merge_deltas() | assemble()`` is the default pipeline of
:func:`aggregator.results` and :func:`aggregator.fan_in`. Stages before ``merge_deltas()`` see
chunks (:class:`Envelope`, :class:`End`); stages after it see results. See docs/stages.md.
"""

from __future__ import annotations

from ._core._items import End, Envelope, Snapshot, SnapshotRequest, StreamKey
from ._stages import (
    AsyncStage,
    Pipeline,
    Stage,
    UsageTotals,
    assemble,
    collect_usage,
    dedupe,
    default_pipeline,
    filter_items,
    map_items,
    merge_deltas,
    pipeline,
    snapshots,
    stage,
    tap,
    total_usage,
)

__all__ = [
    "AsyncStage",
    "End",
    "Envelope",
    "Pipeline",
    "Snapshot",
    "SnapshotRequest",
    "Stage",
    "StreamKey",
    "UsageTotals",
    "assemble",
    "collect_usage",
    "dedupe",
    "default_pipeline",
    "filter_items",
    "map_items",
    "merge_deltas",
    "pipeline",
    "snapshots",
    "stage",
    "tap",
    "total_usage",
]
