"""The ``aggregator assemble`` command: output, exit status and messages."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aggregator import _cli
from aggregator._cli import main

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


_CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}\n\n'
)
_BROKEN = b"data: {broken\n\n"
_INVALID = "invalid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)"


@pytest.mark.parametrize(
    ("content", "args", "outputs", "lines"),
    [
        # strict: the bad payload ends the open completion and the input: said once
        (_CHUNK + _BROKEN + b"data: [DONE]\n\n", [], 1, [f"line 3 (event 2): {_INVALID}"]),
        (_BROKEN + _CHUNK + b"data: [DONE]\n\n", [], 0, [f"line 1 (event 1): {_INVALID}"]),
        # lenient: skipped and said once, inside or outside a completion
        (
            _CHUNK + _BROKEN + b"data: [DONE]\n\n",
            ["--lenient"],
            1,
            [f"line 3 (event 2): {_INVALID}"],
        ),
        (
            _BROKEN + _CHUNK + b"data: [DONE]\n\n",
            ["--lenient"],
            1,
            [f"line 1 (event 1): {_INVALID}"],
        ),
        (
            _BROKEN,
            ["--lenient"],
            0,
            [f"line 1 (event 1): {_INVALID}", "line 2: no completion in the input"],
        ),
    ],
    ids=["strict-in", "strict-before", "lenient-in", "lenient-before", "lenient-only"],
)
def test_each_problem_is_one_line_once(
    tmp_path: Path, content: bytes, args: list[str], outputs: int, lines: list[str]
) -> None:
    path = tmp_path / "bad.sse"
    path.write_bytes(content)
    code, out, err = run("assemble", *args, str(path))
    assert code == 1
    assert [o["choices"][0]["message"]["content"] for o in out] == ["a"] * outputs
    assert err == [f"{path}, {line}" for line in lines]


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


# --- the progress bar and --stats ---------------------------------------------------------------

STREAMS = sorted((Path(__file__).parent.parent / "examples" / "streams").iterdir())
BAR = re.compile(r"\r\[[^\r\n]*?\x1b\[K")  # one drawing of the progress bar
CLEAR = "\r\x1b[K"


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class _TerminalBytes(io.BytesIO):
    def isatty(self) -> bool:
        return True


def run_main(
    monkeypatch: pytest.MonkeyPatch, *args: str, tty: bool = True, out_tty: bool = False
) -> tuple[int, bytes, str]:
    """``main(argv)`` in this process, with a stderr that is (or is not) a terminal."""
    err = _Terminal() if tty else io.StringIO()
    out = io.TextIOWrapper(_TerminalBytes() if out_tty else io.BytesIO())
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    code = main(list(args))
    out.flush()
    buffer = out.buffer
    assert isinstance(buffer, io.BytesIO)
    return code, buffer.getvalue(), err.getvalue()


def _chunks(data: bytes) -> list[dict[str, Any]]:
    """The chunk objects of an SSE or JSON Lines input, read without the library."""
    lines = data.decode().splitlines()
    payloads = [line[6:] for line in lines if line.startswith("data: {")]
    if not payloads:
        payloads = [line for line in lines if line.startswith("{")]
    return [json.loads(p) for p in payloads]


def _usage_lines(chunks: list[dict[str, Any]]) -> list[str]:
    totals: dict[str, Counter[str]] = {}
    for chunk in chunks:
        if chunk.get("usage"):
            total = totals.setdefault(chunk["model"], Counter())
            for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
                total[field] += chunk["usage"][field]
    return [
        f"usage {model}: prompt {t['prompt_tokens']:,}, completion {t['completion_tokens']:,}, "
        f"total {t['total_tokens']:,}"
        for model, t in sorted(totals.items())
    ]


def test_progress_on_a_terminal_with_many_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli, "_REDRAW_EVERY", 0.0)  # every drawing, to see the last one
    code, out, err = run_main(monkeypatch, "assemble", *map(str, STREAMS))
    assert code == 0
    assert len(out.splitlines()) == len(STREAMS)
    drawings = BAR.findall(err)
    total = sum(len(_chunks(p.read_bytes())) for p in STREAMS)
    assert drawings[0] == f"\r[0/{len(STREAMS)} inputs] 0 chunks  0 problems\x1b[K"
    assert drawings[-1] == (
        f"\r[{len(STREAMS)}/{len(STREAMS)} inputs] {total:,} chunks  0 problems\x1b[K"
    )
    assert err.endswith(CLEAR)  # wiped at the end
    assert BAR.sub("", err).replace(CLEAR, "") == ""  # nothing else on stderr


def test_progress_wiped_before_each_problem_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_cli, "_REDRAW_EVERY", 0.0)
    cut = tmp_path / "cut.sse"
    data = STREAMS[1].read_bytes()
    cut.write_bytes(data[: data.index(b"data: [DONE]")])
    missing = tmp_path / "missing.sse"
    code, _, err = run_main(monkeypatch, "assemble", str(cut), str(missing), str(STREAMS[0]))
    assert code == 1
    problems = [
        f"{cut}, line 50: stream ended without [DONE] (completion "
        "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63)",
        f"{missing}: cannot read: No such file or directory",
    ]
    for line in problems:
        assert f"{CLEAR}{line}\n" in err  # the bar wiped first: the line stands alone
    assert sorted(BAR.sub("", err).replace(CLEAR, "").splitlines()) == sorted(problems)
    assert BAR.findall(err)[-1] == "\r[3/3 inputs] 245 chunks  2 problems\x1b[K"
    assert err.endswith(CLEAR)


def test_progress_wiped_before_each_completion_when_stdout_is_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_cli, "_REDRAW_EVERY", 0.0)
    code, _, err = run_main(monkeypatch, "assemble", *map(str, STREAMS), out_tty=True)
    assert code == 0
    assert err.count(CLEAR) == len(STREAMS) + 1  # before each completion, and at the end


@pytest.mark.parametrize(
    ("args", "tty", "shown"),
    [
        (["a", "b"], False, False),  # not a terminal: silent
        (["a"], True, False),  # one input: no bar
        (["a", "b"], True, True),
        (["--no-progress", "a", "b"], True, False),
        (["--progress", "a"], False, True),  # forced on
    ],
)
def test_progress_when(
    monkeypatch: pytest.MonkeyPatch, args: list[str], tty: bool, shown: bool
) -> None:
    paths = {"a": str(STREAMS[0]), "b": str(STREAMS[1])}
    argv = [paths.get(a, a) for a in args]
    code, out, err = run_main(monkeypatch, "assemble", *argv, tty=tty)
    assert code == 0
    assert out.count(b"\n") == len([a for a in args if a in paths])
    if shown:
        assert BAR.match(err)
        assert err.endswith(CLEAR)
    else:
        assert err == ""


def test_progress_by_subprocess_is_forced_by_the_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "assemble", "--progress", *map(str, STREAMS)],
        capture_output=True,
        check=True,
    )
    assert len(proc.stdout.splitlines()) == len(STREAMS)
    err = proc.stderr.decode()
    assert err.startswith(f"\r[0/{len(STREAMS)} inputs] 0 chunks  0 problems\x1b[K")
    assert err.endswith(CLEAR)
    assert BAR.sub("", err).replace(CLEAR, "") == ""
    assert run("assemble", *map(str, STREAMS))[2] == []  # stderr a pipe: silent


def test_progress_redrawn_at_most_ten_times_a_second_and_never_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(_cli, "time", SimpleNamespace(monotonic=lambda: now[0]))
    err = io.StringIO()
    bar = _cli._Bar(err)
    bar.update("one")
    now[0] += 0.05
    bar.update("two")  # too soon: kept, not dropped
    bar.tick()  # the timer, still too soon
    assert err.getvalue() == "\rone\x1b[K"
    now[0] += 0.05
    bar.tick()  # the timer draws the latest text
    bar.tick()  # nothing new: nothing drawn
    now[0] += 0.01
    bar.update("three")  # too soon, and the end comes first: drawn at the end, then wiped
    bar.finish()
    bar.clear()  # nothing shown: nothing to wipe
    assert err.getvalue() == "\rone\x1b[K\rtwo\x1b[K\rthree\x1b[K\r\x1b[K"


def test_stats_on_the_example_streams() -> None:
    plain = run("assemble", *map(str, STREAMS))
    code, out, err = run("assemble", "--stats", *map(str, STREAMS))
    assert code == plain[0] == 0  # --stats changes neither the exit status nor stdout
    assert sorted(out, key=json.dumps) == sorted(plain[1], key=json.dumps)
    chunks = [c for p in STREAMS for c in _chunks(p.read_bytes())]
    streams = len({c["id"] for c in chunks})
    assert err == [
        f"inputs: {len(STREAMS)}, streams: {streams}, chunks: {len(chunks):,}, "
        "duplicates dropped: 0, incomplete: 0, problems: 0",
        *_usage_lines(chunks),
    ]
    assert err[1:] == [  # the same, by hand
        "usage deepseek-reasoner: prompt 18, completion 219, total 237",
        "usage gpt-3.5-turbo-instruct:20230824-v2: prompt 14, completion 16, total 30",
        "usage gpt-4o-2024-08-06: prompt 228, completion 102, total 330",
    ]


def test_stats_with_a_replayed_and_a_cut_off_input(tmp_path: Path) -> None:
    events = STREAMS[1].read_text().split("\n\n")  # parallel_tool_calls.sse
    data = [e for e in events if e.startswith("data: {")]
    numbered = [f"id: {n}\n{e}\n\n" for n, e in enumerate(data, 1)]
    replayed = tmp_path / "replayed.sse"  # a reconnect: events 3 to 7 sent again
    replayed.write_text("".join(numbered[:7] + numbered[2:7] + numbered[7:]) + "data: [DONE]\n\n")
    three = STREAMS[3].read_text().split("\n\n")  # three_choices.sse, cut off halfway
    cut = tmp_path / "cut.sse"
    cut.write_text("\n\n".join(three[: len(three) // 2]) + "\n\n")
    kept = _chunks(cut.read_bytes())

    code, out, err = run("assemble", "--stats", str(replayed), str(cut))
    assert code == 1
    assert len(out) == 2
    (original,) = run("assemble", str(STREAMS[1]))[1]
    assert original in out  # the replayed events merged once
    problems = [line for line in err if not line.startswith(("inputs:", "usage "))]
    assert len(problems) == 1
    assert "stream ended without [DONE]" in problems[0]
    assert err[-2:] == [
        f"inputs: 2, streams: 2, chunks: {len(data) + len(kept)}, duplicates dropped: 5, "
        "incomplete: 1, problems: 1",
        *_usage_lines(_chunks(STREAMS[1].read_bytes()) + kept),
    ]
    assert err[-1] == "usage gpt-4o-2024-08-06: prompt 149, completion 60, total 209"
