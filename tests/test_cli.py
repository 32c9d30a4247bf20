"""The ``aggregator assemble`` command: output, exit status and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import DATA
from .test_providers import RECORDINGS, _expected

OPENAI = sorted((DATA / "openai").glob("*.sse"))


def run(*args: str, stdin: bytes = b"") -> tuple[int, list[Any], list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    out = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    err = proc.stderr.decode().splitlines()
    assert "Traceback" not in proc.stderr.decode()
    return proc.returncode, out, err


def sdk_final(path: Path) -> dict[str, Any]:
    """The OpenAI SDK's own accumulator on a recording, nulls and SDK-only keys dropped."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState()
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            state.handle_chunk(ChatCompletionChunk.model_validate(json.loads(line[6:])))
    # the snapshot, not get_final_completion(): that one raises on finish_reason "length"
    final: dict[str, Any] = state.current_completion_snapshot.model_dump(exclude_none=True)
    for choice in final["choices"]:
        choice["message"].pop("parsed", None)
        for call in choice["message"].get("tool_calls", []):
            call.pop("index", None)
            call["function"].pop("parsed_arguments", None)
    return final


def test_openai_recordings_match_the_sdk_in_one_call() -> None:
    code, out, err = run("assemble", *map(str, OPENAI))
    assert (code, err) == (0, [])
    assert len(out) == len(OPENAI)
    by_id = {o["id"]: o for o in out}
    for path in OPENAI:
        expected = sdk_final(path)
        assert by_id[expected["id"]] == expected, path.name


def test_provider_recordings_in_one_call() -> None:
    code, out, err = run("assemble", *map(str, RECORDINGS))
    assert code == 1
    expected = [c["completion"] for p in RECORDINGS for c in _expected(p)]
    assert sorted(out, key=json.dumps) == sorted(expected, key=json.dumps)
    groq = DATA / "providers" / "groq_gptoss_event_error_tool_use_failed.sse"
    minimax = DATA / "providers" / "openrouter_minimax_midstream_error_with_usage.sse"
    assert sorted(err) == sorted(
        [
            f"{groq}, line 190 (event 95): upstream error: Tool call validation failed: tool call "
            "validation failed: parameters for tool get_something_by_name did not match schema: "
            "errors: [missing properties: 'name', additionalProperties 'invalid_param' not "
            "allowed]",
            f"{minimax}, line 41 (event 4): upstream error: Token limit reached",
        ]
    )


def test_stdin_and_pretty() -> None:
    data = (DATA / "openai" / "4cc50a6135d2.sse").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", "--pretty", "-"],
        input=data,
        capture_output=True,
        check=True,
    )
    text = proc.stdout.decode()
    assert text.startswith('{\n  "id": "chatcmpl-')
    assert json.loads(text)["choices"][0]["finish_reason"] == "length"


def test_cut_off_and_unfinished_inputs(tmp_path: Path) -> None:
    recording = (DATA / "openai" / "e2aad469b71d.sse").read_bytes()
    cut = tmp_path / "cut.sse"
    cut.write_bytes(recording[: recording.index(b"data: [DONE]")])
    jsonl = tmp_path / "unfinished.jsonl"
    jsonl.write_text(
        '{"id":"j","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"content":"hi"}}]}\n'
    )
    code, out, err = run("assemble", str(cut), str(jsonl))
    assert code == 1
    assert len(out) == 2
    assert sorted(err) == sorted(
        [
            f"{cut}, line 66: stream ended without [DONE] (completion chatcmpl-"
            "ABfw031mOJeYCSHe4yI2ZjOA6kMJL)",
            f"{jsonl}, line 1: input ended before every choice had a finish_reason (completion j)",
        ]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no completion in the input"),
        (b": keep-alive\n\n", "no completion in the input"),
        (b"\x00\xff\xfe garbage \x80\n\n", "no completion in the input"),
        (b"data: \x00\xff\xfe garbage \x80\n\n", "line 1 (event 1): invalid JSON"),
        (b'data: {"a": "\xff"}\n\n', "line 1 (event 1): invalid JSON: str is not valid UTF-8"),
        (b"data: [1, 2]\n\n", "line 1 (event 1): expected a JSON object, got list (at $)"),
        (b'{"id": 1}\n', "line 1 (event 1): expected a string, got int 1 (at $.id)"),
        (b'data: {"error": {"message": "overloaded"}}\n\n', "upstream error: overloaded"),
    ],
)
def test_bad_inputs_exit_1_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    code, out, err = run("assemble", str(path))
    assert code == 1
    assert out == []
    assert len(err) == 1
    assert err[0].startswith(str(path))
    assert message in err[0]


def test_missing_file_and_usage_errors(tmp_path: Path) -> None:
    code, _, err = run("assemble", str(tmp_path / "nope.sse"))
    assert code == 1
    assert err == [f"{tmp_path / 'nope.sse'}: cannot read: No such file or directory"]
    assert run()[0] == 2
    assert run("assemble")[0] == 2
    assert run("frobnicate", "x")[0] == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "aggregator"
    proc = subprocess.run(
        [str(script), "assemble", str(OPENAI[0])], capture_output=True, check=True
    )
    assert json.loads(proc.stdout)["object"] == "chat.completion"
