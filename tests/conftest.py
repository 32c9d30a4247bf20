"""Shared test setup: every async test runs on asyncio and on trio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend; trio is never skipped."""
    return str(request.param)


def without_nulls(value: Any) -> Any:
    """JSON with every ``null`` dropped, recursively: the shape the package writes objects in."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
