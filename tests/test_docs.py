"""Every Python block in README.md and docs/, and every example script, runs on both backends;
the README's blocks also pass ``mypy --strict``, each alone, as a user would check them."""

from __future__ import annotations

import functools
import re
import runpy
import subprocess
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


README_BLOCKS = BLOCK.findall((ROOT / "README.md").read_text("utf-8"))


def test_there_are_blocks() -> None:
    assert len(BLOCKS) >= 5
    # The README's first example is the typed one: the completion's class is asked for.
    assert "aggregator.assemble(body(), ChatCompletion)" in README_BLOCKS[0]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the README's blocks (the first run checks the dependencies)."""
    return tmp_path_factory.mktemp("mypy_cache")


@pytest.mark.parametrize("n", range(len(README_BLOCKS)), ids=lambda n: f"README.md-{n}")
def test_readme_block_type_checks(n: int, tmp_path: Path, mypy_cache: Path) -> None:
    """Each Python block of the README passes ``mypy --strict``, alone, as a user would run it."""
    pytest.importorskip("mypy")
    script = tmp_path / f"readme_{n}.py"
    script.write_text(README_BLOCKS[n], "utf-8")
    (tmp_path / "mypy.ini").write_text("[mypy]\n", "utf-8")  # not the project's settings
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(mypy_cache),
            str(script),
        ],
        cwd=tmp_path,  # the package as a user has it: installed (py.typed), not by path
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found"), done.stdout


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
