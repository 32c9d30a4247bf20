"""The CLI on live pipes (real FIFOs, ``<(...)``) and its progress bar in a real terminal (a pty).

Every test runs ``python -m aggregator`` as a subprocess, as a user would, and plays the writer
of the pipe itself: it writes part of a recording, then stalls with the pipe still open, so a
reader that waits for the end of the input (a blocking read in a thread) is caught.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from aggregator import LimitError, Limits
from aggregator._reading import PipeSource, SourceReader
from aggregator.sources import from_file

from .conftest import DATA

RECORDING = DATA / "openai" / "e2aad469b71d.sse"  # a chat stream of 60-odd lines, ends [DONE]
ENV = {**os.environ, "PYTHONWARNINGS": "error"}


def _cli(
    *args: str, stdout: int = subprocess.PIPE, stderr: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aggregator", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=ENV,
    )


def _open_writer(fifo: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Open the FIFO for writing once the CLI has opened it for reading (never blocks)."""
    end = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > end or proc.poll() is not None:
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd


def _readline(stream: object, timeout: float) -> bytes:
    """One line of a subprocess's pipe, or ``b""`` if none came within ``timeout``."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        byte = os.read(fd, 1)
        if not byte:
            return data
        data += byte
    return data


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "live.sse"
    os.mkfifo(path)
    return path


def _half() -> bytes:
    data = RECORDING.read_bytes()
    return data[: data.index(b"\n\n", len(data) // 2) + 2]


@pytest.mark.parametrize("limit", ["--idle-timeout", "--deadline"])
def test_a_stalled_fifo_fails_by_its_time_limit(fifo: Path, limit: str) -> None:
    proc = _cli("assemble", limit, "0.5", str(fifo))
    writer = _open_writer(fifo, proc)
    try:
        os.write(writer, _half())
        started = time.monotonic()
        out, err = proc.communicate(timeout=20)  # the writer is still open: the limit ends it
        waited = time.monotonic() - started
    finally:
        os.close(writer)
    assert proc.returncode == 1
    name = "idle_timeout" if limit == "--idle-timeout" else "deadline"
    assert f"({name})" in err.decode()
    assert "Traceback" not in err.decode()
    assert waited < 10
    partial = json.loads(out)  # what was assembled before the limit is printed
    assert partial["id"].startswith("chatcmpl-")


def test_the_deadline_fires_on_a_fifo_that_keeps_trickling(fifo: Path) -> None:
    proc = _cli("assemble", "--idle-timeout", "5", "--deadline", "1", str(fifo))
    writer = _open_writer(fifo, proc)
    started = time.monotonic()
    try:
        for line in RECORDING.read_bytes().splitlines(keepends=True):  # ~13 s in all
            if proc.poll() is not None:
                break
            try:
                os.write(writer, line)
            except BrokenPipeError:
                break
            time.sleep(0.2)
        _, err = proc.communicate(timeout=20)
    finally:
        os.close(writer)
    assert time.monotonic() - started < 8  # well before the writer would have finished
    assert proc.returncode == 1
    assert "the deadline passed (deadline)" in err.decode()


def test_a_fifo_streams_each_completion_before_the_writer_closes(fifo: Path) -> None:
    proc = _cli("assemble", str(fifo))
    writer = _open_writer(fifo, proc)
    try:
        os.write(writer, RECORDING.read_bytes())  # one whole completion, then silence
        line = _readline(proc.stdout, timeout=15)
        assert proc.poll() is None  # still reading: the writer has not closed
        assert json.loads(line)["id"].startswith("chatcmpl-")
    finally:
        os.close(writer)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_ctrl_c_ends_the_wait_on_a_silent_fifo(fifo: Path) -> None:
    proc = _cli("assemble", str(fifo))
    writer = _open_writer(fifo, proc)
    try:
        os.write(writer, _half())
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        os.close(writer)
    assert proc.returncode == 130
    assert "Traceback" not in err.decode()


def test_a_process_substitution_honours_the_idle_timeout() -> None:
    data = _half().decode()
    script = (
        'exec "$0" -m aggregator assemble --idle-timeout 0.5 '
        '<(printf "%s" "$1"; sleep 30 2>/dev/null)'
    )
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", script, sys.executable, data],
        capture_output=True,
        timeout=25,
        check=False,
        env=ENV,
    )
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    assert re.search(
        r"/dev/fd/\d+, .*nothing received for 0\.5 s \(idle_timeout\)", proc.stderr.decode()
    )
    assert json.loads(proc.stdout)["id"].startswith("chatcmpl-")


@pytest.mark.anyio
async def test_pipe_source_is_cancellable_and_bounded(fifo: Path) -> None:
    source = from_file(fifo)
    assert isinstance(source, PipeSource)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the reader is open: no wait
    try:
        os.write(writer, b"data: {}\n\n")
        reader = SourceReader(source, Limits(idle_timeout=0.3))
        assert await reader.next() == b"data: {}\n\n"  # what the pipe holds, at once
        with anyio.fail_after(5):
            with pytest.raises(LimitError, match="idle_timeout"):
                await reader.next()  # the writer is silent and still open
    finally:
        os.close(writer)
    await reader.aclose()
    await reader.aclose()


@pytest.mark.anyio
async def test_pipe_source_waits_for_a_writer_that_opens_late(fifo: Path) -> None:
    source = from_file(fifo)  # no writer yet: a non-blocking read would say end of file
    got: list[bytes] = []

    async def read() -> None:
        async for data in source:
            got.append(data)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await anyio.sleep(0.3)
        assert got == []  # still waiting, not ended
        writer = os.open(fifo, os.O_WRONLY)
        os.write(writer, b"late\n")
        os.close(writer)
    assert got == [b"late\n"]


# --- the progress bar in a real terminal ---------------------------------------------------------

BAR = re.compile(rb"\r(\[[^\r\n\x1b]*?)\x1b\[K")


def _drain(master: int, timeout: float, until: bytes | None = None) -> bytes:
    """What the terminal receives within ``timeout``, or until its last drawing of the bar is
    ``until`` and nothing more comes for 0.5 s (a loaded machine may be slow to get there)."""
    data = b""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        wait = min(left, 0.5) if until is not None else left
        if not select.select([master], [], [], wait)[0]:
            drawings = BAR.findall(data)
            if until is not None and drawings and drawings[-1] == until:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_progress_bar_in_a_pty_is_current_redrawn_after_problems_and_apart_from_stdout(
    fifo: Path, tmp_path: Path
) -> None:
    files = sorted((DATA / "openai").glob("*.sse"))[:5]
    cut = tmp_path / "cut.sse"
    cut.write_bytes(_half())  # a problem line: stream ended without [DONE]
    chunks = sum(p.read_bytes().count(b"data: {") for p in files)
    chunks += _half().count(b"data: {")
    master, slave = os.openpty()
    try:
        proc = _cli(
            "assemble", *map(str, files), str(cut), str(fifo), stderr=slave, stdout=subprocess.PIPE
        )
        os.close(slave)
        writer = _open_writer(fifo, proc)
        try:
            # everything but the FIFO gets done, and then nothing happens: a dropped update
            # would never be drawn
            want = f"[6/7 inputs] {chunks:,} chunks  1 problem".encode()
            screen = _drain(master, 30.0, until=want)
            assert BAR.findall(screen)[-1] == want
            problem = screen.rindex(b"stream ended without [DONE]")
            assert BAR.search(screen, problem)  # the bar drawn again after the problem line
            assert screen.count(b"\r\x1b[K" + str(cut).encode()) == 1  # on a wiped line
            os.write(writer, RECORDING.read_bytes())
            final = RECORDING.read_bytes().count(b"data: {") + chunks
            want = f"[6/7 inputs] {final:,} chunks  1 problem".encode()
            more = _drain(master, 30.0, until=want)  # the FIFO's completion, still open
            assert BAR.findall(more)[-1] == want
        finally:
            os.close(writer)
        out, _ = proc.communicate(timeout=20)
        end = _drain(master, 2.0)
    finally:
        os.close(master)
    assert proc.returncode == 1
    assert BAR.findall(end)[-1].decode() == f"[7/7 inputs] {final:,} chunks  1 problem"
    assert end.endswith(b"\r\x1b[K")  # wiped at the end
    assert b"\x1b" not in out
    assert b"\r" not in out
    assert len(out.splitlines()) == len(files) + 2
    assert b'"id"' not in screen + more + end  # and the terminal never gets the output
