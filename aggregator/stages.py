"""The stages of a pipeline, composed with ``|``.

``dedupe() | collect_usage() | merge_deltas() | assemble()`` is the default pipeline of
:func:`aggregator.results` and :func:`aggregator.fan_in`. See docs/stages.md.
"""

from __future__ import annotations

from ._stages import (
    AsyncStage,
    Pipeline,
    Stage,
    UsageTotals,
    assemble,
    collect_usage,
    decode,
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
    "Pipeline",
    "Stage",
    "UsageTotals",
    "assemble",
    "collect_usage",
    "decode",
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
