"""Every Python block in README.md and docs/, and every example script, runs on both backends."""

from __future__ import annotations

import functools
import re
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

BLOCKS = [
    pytest.param(code, id=f"{path.name}-{n}")
    for path in DOCS
    for n, code in enumerate(BLOCK.findall(path.read_text("utf-8")))
]


def test_there_are_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.fixture
def on_backend(anyio_backend: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Make ``anyio.run`` in the executed code use the backend under test."""
    monkeypatch.chdir(ROOT)
    real = anyio.run
    monkeypatch.setattr(anyio, "run", functools.partial(real, backend=anyio_backend))
    return real


@pytest.mark.parametrize("code", BLOCKS)
def test_doc_block_runs(code: str, on_backend: Callable[..., Any]) -> None:
    exec(compile(code, "<doc>", "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize(
    "stream", sorted(p.name for p in (ROOT / "examples" / "streams").iterdir())
)
def test_example_script_runs(
    stream: str, on_backend: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = f"examples/streams/{stream}"
    argv = sys.argv
    sys.argv = ["assemble_file.py", path]
    try:
        runpy.run_path(str(ROOT / "examples" / "assemble_file.py"), run_name="__main__")
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert out.startswith("0 ")
    assert "usage: {'prompt_tokens':" in out


@pytest.mark.parametrize("script", ["fan_in.py", "custom_stage.py"])
def test_pipeline_examples_run(
    script: str, on_backend: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    out = capsys.readouterr().out
    if script == "fan_in.py":
        lines = out.splitlines()
        assert sorted(lines[:4]) == [
            "deepseek_reasoning.jsonl: exhausted, 220 chunks, 1 choice(s)",
            "parallel_tool_calls.sse: done, 25 chunks, 1 choice(s)",
            "text_completion.jsonl: exhausted, 17 chunks, 1 choice(s)",
            "three_choices.sse: done, 49 chunks, 3 choice(s)",
        ]
        assert lines[4:] == [
            "total for deepseek-reasoner: 237 tokens",
            "total for gpt-3.5-turbo-instruct:20230824-v2: 30 tokens",
            "total for gpt-4o-2024-08-06: 330 tokens",
        ]
    else:
        assert out.splitlines() == [
            "chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq: done, 42 deltas",
            "written: ['chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq']",
        ]
