"""Every real provider recording assembles to the result worked out by reading the stream.

The expected results in ``data/providers/expected/`` were derived independently of the package
(see the README there for the decisions each one encodes). The assertions compare the whole
assembled object, the end reason, completeness and the upstream error message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aggregator import Assembler, Result, UpstreamError, to_dict

from .conftest import DATA

RECORDINGS = sorted(p for p in (DATA / "providers").iterdir() if p.suffix in (".sse", ".jsonl"))


def _summary(result: Result) -> dict[str, Any]:
    error = result.error
    message = None
    if isinstance(error, UpstreamError) and isinstance(error.payload, dict):
        message = error.payload.get("message")
    return {
        "reason": result.reason.value,
        "complete": result.complete,
        "error_message": message,
        "completion": to_dict(result.completion),
    }


def _expected(path: Path) -> list[dict[str, Any]]:
    expected = DATA / "providers" / "expected" / f"{path.name}.json"
    completions: list[dict[str, Any]] = json.loads(expected.read_text("utf-8"))["completions"]
    return completions


def _check_report(assembler: Assembler, results: list[Result], name: str) -> None:
    """The source had no trouble of its own: none outside its completions."""
    report = assembler.report
    assert report is not None
    assert report.source == name
    assert report.problems == ()
    assert report.completions == len(results) > 0
    # an error that ended the source is the one that ended its completions, nothing else
    assert report.error is None or any(report.error is r.error for r in results)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_recording_assembles_to_expected(path: Path) -> None:
    assembler = Assembler(path.name)
    results = assembler.feed(path.read_bytes()) + assembler.close()
    assert [_summary(r) for r in results] == _expected(path)
    _check_report(assembler, results, path.name)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_recording_fed_byte_by_byte(path: Path) -> None:
    assembler = Assembler(path.name)
    results: list[Result] = []
    data = path.read_bytes()
    for i in range(len(data)):
        results += assembler.feed(data[i : i + 1])
    results += assembler.close()
    assert [_summary(r) for r in results] == _expected(path)
    _check_report(assembler, results, path.name)


def test_every_recording_has_an_expected_result() -> None:
    expected = {p.name for p in (DATA / "providers" / "expected").glob("*.json")}
    assert expected == {f"{p.name}.json" for p in RECORDINGS}
    assert len(RECORDINGS) == 25


def test_obfuscation_never_reaches_the_result() -> None:
    path = DATA / "providers" / "openai_gpt41nano_text_obfuscation_usage.jsonl"
    assembler = Assembler(path.name)
    (result,) = assembler.feed(path.read_bytes()) + assembler.close()
    assert "obfuscation" not in json.dumps(to_dict(result.completion))
    assert result.chunks == 303


def test_error_payload_keeps_partial_and_names_place() -> None:
    path = DATA / "providers" / "groq_gptoss_event_error_tool_use_failed.sse"
    assembler = Assembler(path.name)
    (result,) = assembler.feed(path.read_bytes()) + assembler.close()
    assert isinstance(result.error, UpstreamError)
    assert str(result.error).startswith(f"{path.name}, line 190 (event 95): upstream error: ")
    assert result.error.payload["code"] == "tool_use_failed"
    # the error event ended the source too (strict): its report carries the same error
    assert assembler.report is not None
    assert assembler.report.error is result.error
    assert assembler.report.completions == 1
    assert result.chunks == 94
    message = result.completion.choices[0].message  # type: ignore[union-attr]
    assert message.reasoning is not None
    assert message.reasoning.startswith("We need to call")
