"""The CLI's ``--version``, ``--ordered``, ``--tag``, and its messages for a full disk, a wrong
``--format`` and an input cut inside an event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aggregator

from .conftest import DATA
from .test_cli import run
from .test_cli_pipes import ENV, RECORDING, _cli, _open_writer, _readline

OPENAI = sorted((DATA / "openai").glob("*.sse"))
STREAMS = sorted((Path(__file__).parent.parent / "examples" / "streams").iterdir())


def test_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "--version"], capture_output=True, check=True
    )
    assert proc.stdout.decode() == f"aggregator {aggregator.__version__}\n"


def test_tag_names_the_input_of_each_line() -> None:
    code, out, _ = run("assemble", "--tag", *map(str, OPENAI), "-", stdin=RECORDING.read_bytes())
    assert code == 0
    assert sorted(line["input"] for line in out) == sorted([*map(str, OPENAI), "-"])
    for line in out:  # the rest of the line is the completion of that input
        if line["input"] != "-":
            _, alone, _ = run("assemble", line["input"])
            assert {k: v for k, v in line.items() if k != "input"} == alone[0]


@pytest.mark.parametrize("ordered", [False, True])
def test_ordered_prints_in_the_order_of_the_inputs(tmp_path: Path, ordered: bool) -> None:
    fifo = tmp_path / "slow.sse"
    os.mkfifo(fifo)
    flags = ["--ordered"] if ordered else []
    inputs = [str(fifo), *map(str, OPENAI[:3])]  # the first input is the slowest
    proc = _cli("assemble", "--tag", *flags, *inputs)
    writer = _open_writer(fifo, proc)
    try:
        first = _readline(proc.stdout, timeout=15 if not ordered else 2)
        os.write(writer, RECORDING.read_bytes())
    finally:
        os.close(writer)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in (first + out).splitlines()]
    tags = [line["input"] for line in lines]
    if ordered:
        assert first == b""  # the files' completions waited for the FIFO's
        assert tags == inputs
    else:
        assert json.loads(first)["input"] != str(fifo)  # a file's came first, as it ended
        assert sorted(tags) == sorted(inputs)


def test_ordered_keeps_the_order_within_an_input_and_around_a_missing_one(
    tmp_path: Path,
) -> None:
    two = tmp_path / "two.sse"
    two.write_bytes(OPENAI[0].read_bytes() + OPENAI[1].read_bytes())  # two completions
    missing = tmp_path / "missing.sse"
    code, out, err = run("assemble", "--ordered", "--tag", str(two), str(missing), str(OPENAI[2]))
    assert code == 1
    assert [line["input"] for line in out] == [str(two), str(two), str(OPENAI[2])]
    _, first, _ = run("assemble", str(OPENAI[0]))
    assert {k: v for k, v in out[0].items() if k != "input"} == first[0]
    assert err == [f"{missing}: cannot read: No such file or directory"]


def test_a_full_disk_is_one_clear_line() -> None:
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "aggregator", "assemble", *map(str, STREAMS)],
            stdout=full,
            stderr=subprocess.PIPE,
            check=False,
            env=ENV,
        )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "aggregator: cannot write the output: no space left on the device\n"
    )


def test_sse_forced_on_json_lines_says_what_it_saw() -> None:
    path = next(p for p in STREAMS if p.suffix == ".jsonl")
    code, out, err = run("assemble", "--format", "sse", str(path))
    assert code == 1
    assert out == []
    assert len(err) == 1
    assert 'no completion in the input (read as --format sse; it starts with \'{"id":' in err[0]
    assert err[0].endswith("which looks like JSON Lines: try --format auto)")


def test_jsonl_forced_on_sse_says_what_it_saw() -> None:
    code, _, err = run("assemble", "--format", "jsonl", str(OPENAI[0]))
    assert code == 1
    assert len(err) == 1
    assert "(read as --format jsonl; it starts with 'data: {" in err[0]
    assert err[0].endswith("which looks like SSE: try --format auto)")


def test_the_right_format_forced_says_nothing_more(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sse"
    empty.write_bytes(b": keep-alive\n\n")
    code, _, err = run("assemble", "--format", "sse", str(empty))
    assert code == 1
    assert err == [
        f"{empty}, line 2: no completion in the input (read as --format sse; it "
        "starts with ': keep-alive')"
    ]
    assert run("assemble", "--format", "sse", str(OPENAI[0]))[0] == 0


@pytest.mark.parametrize("via_stdin", [False, True])
def test_a_cut_inside_an_event_is_cut_off_not_invalid_json(tmp_path: Path, via_stdin: bool) -> None:
    data = RECORDING.read_bytes()
    middle = data.index(b"data: {", len(data) // 2) + 40  # inside an event's JSON
    cut = tmp_path / "cut.sse"
    cut.write_bytes(data[:middle])
    name = "<stdin>" if via_stdin else str(cut)
    if via_stdin:
        code, out, err = run("assemble", "-", stdin=data[:middle])
    else:
        code, out, err = run("assemble", str(cut))
    assert code == 1
    assert len(out) == 1  # what came before the cut is kept
    line = data[:middle].count(b"\n") + 1
    assert err == [
        f"{name}, line {line}: cut off inside an event, stream ended without [DONE] "
        f"(completion {out[0]['id']})"
    ]
    assert "invalid JSON" not in err[0]


@pytest.mark.parametrize("tail", [b'data: {"bad json\n\n', b"data: [1, 2]"])
def test_bad_json_that_is_not_a_cut_is_still_reported(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "bad.sse"
    path.write_bytes(tail)
    _, _, err = run("assemble", str(path))
    assert "cut off" not in " ".join(err)
    assert err[0].startswith(f"{path}, line 1 (event 1): ")


@pytest.mark.parametrize("at", [8, 40, -3])
def test_the_engine_drops_a_cut_tail_and_ends_cut_off(at: int) -> None:
    from aggregator import EndReason
    from aggregator._core._engine import Engine

    data = RECORDING.read_bytes()
    start = data.index(b"data: {", len(data) // 2)
    end = data.index(b"\n", start)
    cut = data[: start + at] if at > 0 else data[: end + at]  # inside the event's line
    engine = Engine("cut.sse")
    out = engine.feed(cut) + engine.close()
    (result,) = [item for item in out if isinstance(item, aggregator.Result)]
    assert result.reason is EndReason.CUT_OFF
    assert result.error is None
    assert result.problems == ()
    line = cut.count(b"\n") + 1
    assert f"cut off inside an event (line {line}): its partial data dropped" in result.notes
    whole = Engine("whole.sse")  # the same event whole, with no blank line after it: kept
    more = whole.feed(data[: end + 1]) + whole.close()
    (kept,) = [item for item in more if isinstance(item, aggregator.Result)]
    assert kept.chunks == result.chunks + 1
    assert not [n for n in kept.notes if "cut off" in n]
