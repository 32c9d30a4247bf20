"""Framing and what a payload becomes.

``aggregator._core._framing.Framing`` cuts bytes into payload records and tells SSE from JSON
Lines by the first byte that is not blank (after a BOM, within 64 KiB); the engine
(``aggregator.lowlevel.Engine``, run by ``aggregator.Assembler``) numbers the events, parses each
payload and says what it is: a chunk (with its place, ``line 12 (event 5)``), ``[DONE]``, an
error payload (an :class:`UpstreamError`), invalid JSON or UTF-8 (a :class:`DecodeError`), a
wrong shape (a :class:`StructureError`), a line too long (a :class:`DecodeError`), nesting too
deep (a :class:`LimitError`), each naming the source and the place; strict mode ends the source
at the first, lenient mode records it and goes on.

The chunks and stream ends the engine makes are watched by a chunk stage that records every
:class:`Envelope` and :class:`End` it sees; every run is also made with a plain
:class:`Assembler` (no stage, the fast lane on), which must give the same results and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from aggregator import (
    Assembler,
    DecodeError,
    EndReason,
    LimitError,
    Limits,
    Result,
    SourceReport,
    StreamError,
    StructureError,
    UpstreamError,
    to_dict,
)
from aggregator._core._framing import Format, Framing
from aggregator.lowlevel import DEFAULT_LIMITS, Engine
from aggregator.models import (
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    Completion,
    CompletionChunk,
    TextChunkChoice,
)
from aggregator.stages import End, Envelope, Stage

NAME = "capture-7.sse"
BOM = b"\xef\xbb\xbf"

CHAT: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-x",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
}
CHAT_EVENT = ChatCompletionChunk(
    id="chatcmpl-1",
    object="chat.completion.chunk",
    created=1700000000,
    model="gpt-x",
    choices=[ChatChunkChoice(index=0, delta=ChoiceDelta(role="assistant", content="Hi"))],
)
TEXT: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "gpt-x",
    "choices": [{"index": 0, "text": "Hi", "finish_reason": "stop"}],
}
TEXT_EVENT = CompletionChunk(
    id="cmpl-1",
    object="text_completion",
    created=1700000000,
    model="gpt-x",
    choices=[TextChunkChoice(index=0, text="Hi", finish_reason="stop")],
)
CHAT_JSON = orjson.dumps(CHAT)
TEXT_JSON = orjson.dumps(TEXT)

DONE = EndReason.DONE
CUT_OFF = EndReason.CUT_OFF
EXHAUSTED = EndReason.EXHAUSTED
ERROR = EndReason.ERROR
LIMIT = EndReason.LIMIT

# --------------------------------------------------------------------------------------------
# Helpers: the framing alone, and the engine watched by a chunk stage
# --------------------------------------------------------------------------------------------


def frame(
    pieces: Sequence[bytes], *, format: Format = "auto", max_line: int = 16 << 20
) -> tuple[list[Any], Framing]:
    """The records (and errors) of ``pieces``, through ``feed`` and ``close``."""
    framing = Framing(format, max_line=max_line)
    records: list[Any] = []
    for piece in pieces:
        records += framing.feed(piece)
    return records + framing.close(), framing


def cuts(records: Sequence[Any]) -> list[tuple[bytes, int] | str]:
    """Each record as ``(data, line)``; an error as its message."""
    return [str(r) if isinstance(r, DecodeError) else (r[0], r[4]) for r in records]


class Recorder(Stage):
    """A chunk stage that passes everything on and keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def process(self, item: Any, out: list[Any]) -> None:
        self.seen.append(item)
        out.append(item)


Step = tuple[Any, ...]


def chunk(where: str, event: Any) -> Step:
    return ("chunk", where, event)


def chat(where: str) -> Step:
    return chunk(where, CHAT_EVENT)


def text(where: str) -> Step:
    return chunk(where, TEXT_EVENT)


def end(reason: EndReason, where: str) -> Step:
    return ("end", reason, where)


def error_of(error: StreamError | None) -> tuple[str, str] | None:
    return None if error is None else (type(error).__name__, str(error))


def results_of(results: Sequence[Result]) -> list[tuple[Any, ...]]:
    return [
        (
            r.key,
            r.reason,
            r.where,
            r.finished,
            r.complete,
            r.chunks,
            r.duplicates,
            r.notes,
            to_dict(r.completion),
            error_of(r.error),
            [error_of(p) for p in r.problems],
        )
        for r in results
    ]


def report_of(report: SourceReport | None) -> tuple[Any, ...]:
    assert report is not None
    return (
        report.source,
        report.reason,
        report.where,
        error_of(report.error),
        [error_of(p) for p in report.problems],
        report.completions,
    )


class Run:
    """What the engine made of a source: each chunk and stream end its stages saw (``trace``,
    with the envelopes themselves in ``envelopes``), the results and the report."""

    def __init__(
        self, seen: list[Any], results: list[Result], report: SourceReport, engine: Engine
    ) -> None:
        self.envelopes = [item for item in seen if isinstance(item, Envelope)]
        self.trace: list[Step] = [
            chunk(item.where, item.event)
            if isinstance(item, Envelope)
            else end(item.reason, item.where)
            for item in seen
            if isinstance(item, (Envelope, End))
        ]
        self.results = results
        self.report = report
        self.engine = engine

    @property
    def error(self) -> StreamError:
        """The one error of the run: of its one result, or (no result) of the source."""
        if self.results:
            (result,) = self.results
            assert result.error is not None
            if self.report.error is not None:  # it stopped the source too (strict)
                assert self.report.error is result.error
            return result.error
        assert self.report.error is not None
        return self.report.error


def run(
    pieces: Sequence[bytes],
    *,
    format: Format = "auto",
    strict: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> Run:
    """Feed ``pieces`` to an engine with a :class:`Recorder`, then close it; the same pieces
    through a plain :class:`Assembler` must give the same results and report."""
    recorder = Recorder()
    engine = Engine(NAME, format=format, strict=strict, limits=limits, stages=[recorder])
    out: list[Any] = []
    for piece in pieces:
        out += engine.feed(piece)
    out += engine.close()
    assert engine.stopped
    assert engine.report is not None
    assert out[-1] is engine.report  # the report comes last, once
    results = out[:-1]
    assert all(isinstance(r, Result) for r in results), results
    assert engine.report.completions == len(results)

    assembler = Assembler(NAME, format=format, strict=strict, limits=limits)
    plain: list[Result] = []
    for piece in pieces:
        plain += assembler.feed(piece)
    plain += assembler.close()
    assert results_of(plain) == results_of(results)
    assert report_of(assembler.report) == report_of(engine.report)
    return Run(recorder.seen, results, engine.report, engine)


def trace_of(raw: bytes, *, format: Format = "auto") -> list[Step]:
    return run([raw], format=format).trace


def sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + payload + b"\n\n" for payload in payloads)


# --------------------------------------------------------------------------------------------
# Framing detection
# --------------------------------------------------------------------------------------------

DETECTION_CASES: list[tuple[str, bytes, Format, list[tuple[bytes, int]], list[Step]]] = [
    (
        "object first is JSON Lines",
        CHAT_JSON + b"\n" + TEXT_JSON + b"\n",
        "jsonl",
        [(CHAT_JSON, 1), (TEXT_JSON, 2)],
        [chat("line 1 (event 1)"), text("line 2 (event 2)"), end(EXHAUSTED, "line 2")],
    ),
    (
        "data first is SSE",
        sse(CHAT_JSON, b"[DONE]"),
        "sse",
        [(CHAT_JSON, 1), (b"[DONE]", 3)],
        [chat("line 1 (event 1)"), end(DONE, "line 3")],
    ),
    (
        "comment first is SSE",
        b": hello\n\n" + sse(TEXT_JSON),
        "sse",
        [(TEXT_JSON, 3)],
        [text("line 3 (event 1)"), end(CUT_OFF, "line 4")],
    ),
    (
        "event field first is SSE",
        b"event: message\n" + sse(CHAT_JSON),
        "sse",
        [(CHAT_JSON, 2)],
        [chat("line 2 (event 1)"), end(CUT_OFF, "line 3")],
    ),
    ("array first is SSE", b"[1, 2]\n", "sse", [], []),
    (
        "blank lines then JSON Lines",
        b"\n\n" + CHAT_JSON + b"\n",
        "jsonl",
        [(CHAT_JSON, 3)],
        [chat("line 3 (event 1)"), end(EXHAUSTED, "line 3")],
    ),
    (
        "whitespace lines then JSON Lines",
        b" \t\r\n  \n\r" + CHAT_JSON + b"\r\n",
        "jsonl",
        [(CHAT_JSON, 4)],
        [chat("line 4 (event 1)"), end(EXHAUSTED, "line 4")],
    ),
    (
        "indented object is JSON Lines",
        b"  " + TEXT_JSON + b"\n",
        "jsonl",
        [(b"  " + TEXT_JSON, 1)],
        [text("line 1 (event 1)"), end(EXHAUSTED, "line 1")],
    ),
    (
        "BOM then JSON Lines",
        BOM + CHAT_JSON + b"\n",
        "jsonl",
        [(CHAT_JSON, 1)],
        [chat("line 1 (event 1)"), end(EXHAUSTED, "line 1")],
    ),
    (
        "BOM and CRLF blank lines then JSON Lines",
        BOM + b"\r\n\r\n" + CHAT_JSON + b"\r\n",
        "jsonl",
        [(CHAT_JSON, 3)],
        [chat("line 3 (event 1)"), end(EXHAUSTED, "line 3")],
    ),
    (
        "blank lines then SSE",
        b"\n\r\n\r" + sse(CHAT_JSON),
        "sse",
        [(CHAT_JSON, 4)],
        [chat("line 4 (event 1)"), end(CUT_OFF, "line 5")],
    ),
    (
        "BOM then SSE",
        BOM + sse(CHAT_JSON),
        "sse",
        [(CHAT_JSON, 1)],
        [chat("line 1 (event 1)"), end(CUT_OFF, "line 2")],
    ),
    (
        "BOM and blank lines then SSE",
        BOM + b"\r\n\n" + sse(CHAT_JSON, b"[DONE]"),
        "sse",
        [(CHAT_JSON, 3), (b"[DONE]", 5)],
        [chat("line 3 (event 1)"), end(DONE, "line 5")],
    ),
]
DETECTION_IDS = [case[0] for case in DETECTION_CASES]


@pytest.mark.parametrize(
    ("name", "raw", "format", "records", "expected"), DETECTION_CASES, ids=DETECTION_IDS
)
@pytest.mark.parametrize("split", ["whole", "byte by byte"])
def test_format_detection(
    name: str,
    raw: bytes,
    format: Format,
    records: list[tuple[bytes, int]],
    expected: list[Step],
    split: str,
) -> None:
    pieces = [raw] if split == "whole" else [raw[i : i + 1] for i in range(len(raw))]
    got, framing = frame(pieces)
    assert framing.format == format, name
    assert cuts(got) == records, name
    result = run(pieces)
    assert result.trace == expected, name
    if not records:  # nothing in it but an unknown SSE field
        assert result.results == []
        assert error_of(result.report.error) == (
            "StreamError",
            f"{NAME}, line 1: no completion in the input",
        )


def format_of(framing: Framing) -> Format:
    return framing.format  # a call, so that mypy does not narrow the attribute between feeds


def test_format_is_auto_until_the_first_non_blank_byte() -> None:
    framing = Framing()
    assert format_of(framing) == "auto"
    assert framing.feed(BOM[:2]) == []
    assert framing.feed(BOM[2:] + b"\r\n") == []
    assert framing.feed(b" \t\n") == []
    assert format_of(framing) == "auto"
    assert framing.line == 0
    assert framing.feed(CHAT_JSON[:5]) == []
    assert format_of(framing) == "jsonl"
    assert framing.line == 2
    assert framing.feed(CHAT_JSON[5:] + b"\n") == [(CHAT_JSON, "message", None, None, 3, False)]
    assert framing.line == 3
    assert framing.close() == []


def test_the_engine_places_the_first_payload_after_the_blank_head() -> None:
    pieces = [BOM[:2], BOM[2:] + b"\r\n", b" \t\n", CHAT_JSON[:5], CHAT_JSON[5:] + b"\n"]
    assert run(pieces).trace == [chat("line 3 (event 1)"), end(EXHAUSTED, "line 3")]


def test_a_blank_stream_stays_undetected() -> None:
    pieces = [BOM[:1], BOM[1:], b"\n", b" \r\n\t"]
    records, framing = frame(pieces)
    assert records == []
    assert framing.format == "auto"
    # nothing in it: the source says so, with no place (no line was read)
    result = run(pieces)
    assert (result.trace, result.results) == ([], [])
    assert report_of(result.report) == (
        NAME,
        EXHAUSTED,
        "",
        ("StreamError", f"{NAME}: no completion in the input"),
        [],
        0,
    )


def test_a_bom_after_blank_lines_is_content_not_a_bom() -> None:
    # only a BOM at the very start is stripped (the line splitter agrees), so a later one is
    # the first byte of content, which is not "{": SSE
    records, framing = frame([b"\n", b" \r\n\t", BOM])
    assert records == []
    assert framing.format == "sse"


def test_explicit_sse_is_not_detected() -> None:
    records, framing = frame([CHAT_JSON + b"\n\n"], format="sse")
    assert framing.format == "sse"
    assert records == []  # a line "{...}" is an unknown SSE field
    result = run([CHAT_JSON + b"\n\n"], format="sse")
    assert (result.trace, result.results) == ([], [])
    assert error_of(result.report.error) == (
        "StreamError",
        f"{NAME}, line 2: no completion in the input",
    )


def test_explicit_jsonl_is_not_detected() -> None:
    records, framing = frame([b"data: [DONE]\n"], format="jsonl")
    assert framing.format == "jsonl"
    assert records == [(b"data: [DONE]", "message", None, None, 1, False)]
    error = run([b"data: [DONE]\n"], format="jsonl").error
    assert type(error) is DecodeError
    assert error.where == "line 1 (event 1)"
    assert str(error).startswith(f"{NAME}, line 1 (event 1): invalid JSON: ")


SNIFF = 64 * 1024


def test_blank_bytes_before_the_framing_are_not_kept_without_bound() -> None:
    framing = Framing()
    for _ in range(100):
        assert framing.feed(b"\n" * 4096) == []
    assert framing.format == "sse"  # decided after 64 KiB of blank lines
    assert len(framing._head) == 0
    assert framing.feed(b"data: [DONE]\n\n") == [(b"[DONE]", "message", None, None, 409601, False)]
    # and the engine places what follows them
    result = run([b"\n" * 4096] * 100 + [sse(CHAT_JSON, b"[DONE]")])
    assert result.trace == [chat("line 409601 (event 1)"), end(DONE, "line 409603")]


def test_the_sniff_bound_is_64_kib() -> None:
    framing = Framing()
    assert framing.feed(b"\n" * (SNIFF - 1)) == []
    assert framing.feed(b"\n") == []
    assert format_of(framing) == "auto"  # 64 KiB of blank bytes, kept: still undecided
    assert len(framing._head) == SNIFF
    assert framing.feed(b"\n") == []
    assert format_of(framing) == "sse"  # one more: SSE, and nothing held
    assert len(framing._head) == 0
    assert framing.line == SNIFF + 1
    # so a JSON line after that many blank bytes is an unknown SSE field
    assert framing.feed(CHAT_JSON + b"\n") == []
    # just within the bound, it is JSON Lines
    records, framing = frame([b"\n" * (SNIFF - 1), CHAT_JSON + b"\n"])
    assert framing.format == "jsonl"
    assert cuts(records) == [(CHAT_JSON, SNIFF)]


# --------------------------------------------------------------------------------------------
# Chunks, [DONE] and SSE ids
# --------------------------------------------------------------------------------------------


def test_chunks_and_done() -> None:
    result = run([sse(CHAT_JSON, TEXT_JSON, b"[DONE]")])
    assert result.trace == [
        chat("line 1 (event 1)"),
        text("line 3 (event 2)"),
        end(DONE, "line 5"),
    ]


def test_done_is_not_counted_as_an_event() -> None:
    result = run([sse(b"[DONE]", CHAT_JSON, b"[DONE]", CHAT_JSON)])
    assert result.trace == [
        chat("line 3 (event 1)"),
        end(DONE, "line 5"),
        chat("line 7 (event 2)"),
        end(CUT_OFF, "line 8"),
    ]
    assert [(r.key, r.reason) for r in result.results] == [((NAME, 1), DONE), ((NAME, 2), CUT_OFF)]


def test_done_without_final_blank_line() -> None:
    raw = b"data: " + CHAT_JSON + b"\n\ndata: [DONE]"
    assert cuts(frame([raw])[0]) == [(CHAT_JSON, 1), (b"[DONE]", 3)]
    assert trace_of(raw) == [chat("line 1 (event 1)"), end(DONE, "line 3")]


def test_payload_over_several_data_lines_is_placed_at_its_first_line() -> None:
    raw = b': c\n\ndata: {"id": "chatcmpl-1",\ndata: "object": "chat.completion.chunk",\n'
    raw += b'data: "created": 1700000000, "model": "gpt-x",\n'
    raw += b'data: "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}\n\n'
    [record] = frame([raw])[0]
    assert record[4] == 3
    assert orjson.loads(record[0]) == CHAT
    assert trace_of(raw) == [chat("line 3 (event 1)"), end(CUT_OFF, "line 7")]


def test_sse_id_is_carried_on_chunks() -> None:
    # only an id the event carried itself: an inherited one (WHATWG's last event id) would make
    # dedupe drop every later event that has no id line of its own
    raw = b"id: 7\n" + sse(CHAT_JSON) + sse(CHAT_JSON) + b"id: 8\n" + sse(CHAT_JSON, b"[DONE]")
    records, _ = frame([raw])
    assert [(r[2], r[5]) for r in records] == [("7", True), ("7", False), ("8", True), ("8", False)]
    result = run([raw])
    assert [e.dedupe_id for e in result.envelopes] == ["7", None, "8"]
    assert [(r.chunks, r.duplicates, r.reason) for r in result.results] == [(3, 0, DONE)]
    assert [e.dedupe_id for e in run([sse(CHAT_JSON)]).envelopes] == [None]
    assert [e.dedupe_id for e in run([CHAT_JSON + b"\n"]).envelopes] == [None]


def test_an_event_replayed_with_its_own_id_is_dropped() -> None:
    raw = b"id: 7\n" + sse(CHAT_JSON) + b"id: 7\n" + sse(CHAT_JSON, b"[DONE]")
    result = run([raw])
    assert [e.dedupe_id for e in result.envelopes] == ["7"]
    assert [(r.chunks, r.duplicates, r.reason) for r in result.results] == [(1, 1, DONE)]


# --------------------------------------------------------------------------------------------
# Chat vs text-completion classification
# --------------------------------------------------------------------------------------------

DELTA = {"index": 0, "delta": {"content": "x"}}
TEXT_CHOICE = {"index": 0, "text": "x"}
NEITHER = {"index": 0}


@pytest.mark.parametrize(
    ("object", "choices", "cls"),
    [
        ("chat.completion.chunk", [DELTA], ChatCompletionChunk),
        ("chat.completion.chunk", [TEXT_CHOICE], ChatCompletionChunk),
        ("chat.completion.chunk", [], ChatCompletionChunk),
        ("text_completion", [TEXT_CHOICE], CompletionChunk),
        ("text_completion", [DELTA], CompletionChunk),
        ("text_completion", [], CompletionChunk),
        ("completion", [TEXT_CHOICE], CompletionChunk),
        ("completion", [DELTA], CompletionChunk),
        ("completion", [], CompletionChunk),
        ("", [DELTA], ChatCompletionChunk),
        ("", [TEXT_CHOICE], CompletionChunk),
        ("", [], ChatCompletionChunk),
        ("", [NEITHER], ChatCompletionChunk),
        ("", [NEITHER, {"index": 1, "text": "y"}], CompletionChunk),
        ("", [NEITHER, {"index": 1, "delta": {}}], ChatCompletionChunk),
        ("something.else", [TEXT_CHOICE], CompletionChunk),
        ("something.else", [DELTA], ChatCompletionChunk),
    ],
)
def test_chunk_classification(
    object: str, choices: list[dict[str, Any]], cls: type[ChatCompletionChunk | CompletionChunk]
) -> None:
    payload = orjson.dumps({**CHAT, "object": object, "choices": choices})
    for raw in (sse(payload), payload + b"\n"):
        result = run([raw])
        [envelope] = result.envelopes
        event = envelope.event
        assert type(event) is cls
        assert event.object == object
        assert len(event.choices) == len(choices)
        [merged] = result.results
        completion = ChatCompletion if cls is ChatCompletionChunk else Completion
        assert type(merged.completion) is completion
        assert merged.chunks == 1


def test_text_choice_fields_in_a_blank_object_chunk() -> None:
    payload = orjson.dumps({**TEXT, "object": ""})
    [envelope] = run([sse(payload)]).envelopes
    assert envelope.event == CompletionChunk(
        id="cmpl-1",
        object="",
        created=1700000000,
        model="gpt-x",
        choices=[TextChunkChoice(index=0, text="Hi", finish_reason="stop")],
    )


# --------------------------------------------------------------------------------------------
# Upstream errors
# --------------------------------------------------------------------------------------------

LONG = "x" * 600

UPSTREAM_CASES: list[tuple[str, bytes, str, str, Any]] = [
    (
        "event: error with an error object",
        b'event: error\ndata: {"error": {"message": "Rate limit", "code": 429}}\n\n',
        "line 2 (event 1)",
        "Rate limit",
        {"message": "Rate limit", "code": 429},
    ),
    (
        "event: error with a bare object",
        b'event: error\ndata: {"message": "boom", "type": "server"}\n\n',
        "line 2 (event 1)",
        "boom",
        {"message": "boom", "type": "server"},
    ),
    (
        "event: error with plain text",
        b"event: error\ndata: overloaded, retry later\n\n",
        "line 2 (event 1)",
        "overloaded, retry later",
        "overloaded, retry later",
    ),
    (
        "event: error with an error string",
        b'event: error\ndata: {"error": "quota exceeded"}\n\n',
        "line 2 (event 1)",
        "quota exceeded",
        "quota exceeded",
    ),
    (
        "error payload in data",
        b': x\n\ndata: {"error": {"message": "bad request", "type": "invalid"}}\n\n',
        "line 3 (event 1)",
        "bad request",
        {"message": "bad request", "type": "invalid"},
    ),
    (
        "error payload as a string",
        b'data: {"error": "internal"}\n\n',
        "line 1 (event 1)",
        "internal",
        "internal",
    ),
    (
        "error payload without a message",
        b'data: {"error": {"code": 500}}\n\n',
        "line 1 (event 1)",
        '{"code":500}',
        {"code": 500},
    ),
    (
        "error payload with an empty message",
        b'data: {"error": {"message": "", "code": 1}}\n\n',
        "line 1 (event 1)",
        '{"message":"","code":1}',
        {"message": "", "code": 1},
    ),
    (
        "long message cut to 500 characters",
        b'data: {"error": {"message": "' + LONG.encode() + b'"}}\n\n',
        "line 1 (event 1)",
        "x" * 497 + "...",
        {"message": LONG},
    ),
    (
        "error payload in JSON Lines",
        b'\n{"error": {"message": "nope"}}\n',
        "line 2 (event 1)",
        "nope",
        {"message": "nope"},
    ),
    (
        "error after a chunk",
        sse(CHAT_JSON) + b'event: error\ndata: {"error": {"message": "cut"}}\n\n',
        "line 4 (event 2)",
        "cut",
        {"message": "cut"},
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "where", "message", "payload"),
    UPSTREAM_CASES,
    ids=[case[0] for case in UPSTREAM_CASES],
)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_upstream_error(
    name: str, raw: bytes, where: str, message: str, payload: Any, strict: bool
) -> None:
    result = run([raw], strict=strict)
    opened = bool(result.envelopes)  # a chunk came first: the error ends its completion
    if opened or strict:
        err = result.error
    else:  # lenient, and no completion open: a problem of the source, which goes on
        assert result.results == []
        [err] = result.report.problems
        assert error_of(result.report.error) == (
            "StreamError",
            f"{NAME}, {result.report.where}: no completion in the input",
        )
    assert type(err) is UpstreamError, name
    assert err.payload == payload
    assert err.source == NAME
    assert err.where == where
    assert err.detail == f"upstream error: {message}"
    assert str(err) == f"{NAME}, {where}: upstream error: {message}"
    if opened:
        [ended] = result.results
        assert (ended.reason, ended.where, ended.chunks) == (ERROR, where, 1)
        assert result.trace == [chat("line 1 (event 1)"), end(ERROR, where)]
        assert to_dict(ended.completion)["choices"][0]["message"]["content"] == "Hi"
    if strict:
        assert (result.report.reason, result.report.where) == (ERROR, where)


def test_error_beside_choices_is_merged_then_ends_the_stream() -> None:
    payload = orjson.dumps({**CHAT, "error": {"message": "moderated"}})
    result = run([sse(payload, b"[DONE]")])
    [envelope] = result.envelopes
    event = envelope.event
    assert isinstance(event, ChatCompletionChunk)
    assert event.error == {"message": "moderated"}
    assert event.choices == CHAT_EVENT.choices
    [ended] = result.results
    assert (ended.reason, ended.chunks) == (ERROR, 1)
    assert to_dict(ended.completion)["choices"][0]["message"]["content"] == "Hi"
    assert type(ended.error) is UpstreamError
    assert ended.error.payload == {"message": "moderated"}
    assert str(ended.error) == f"{NAME}, line 1 (event 1): upstream error: moderated"


def test_upstream_error_is_a_value_error() -> None:
    err = run([b'data: {"error": "x"}\n\n']).error
    assert isinstance(err, UpstreamError)
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------------------------
# Invalid JSON, invalid UTF-8, wrong shapes: every message names the source and the place
# --------------------------------------------------------------------------------------------


def second_event(payload: bytes, format: Format) -> tuple[bytes, str, str]:
    """A stream where ``payload`` is event 2, after a comment, blank lines and a good chunk;
    the place of the good chunk and of ``payload``."""
    if format == "sse":
        return b": ping\n\n" + sse(CHAT_JSON, payload), "line 3 (event 1)", "line 5 (event 2)"
    return CHAT_JSON + b"\n\n\n" + payload + b"\n", "line 1 (event 1)", "line 4 (event 2)"


def bad_second_event(payload: bytes, format: Format) -> StreamError:
    """The error ``payload`` makes as event 2 of a stream: strict mode ends the completion with
    it (what came before is kept); lenient mode records it and the completion goes on."""
    raw, first, where = second_event(payload, format)
    strict = run([raw])
    err = strict.error
    assert err.source == NAME
    assert err.where == where
    assert str(err).startswith(f"{NAME}, {where}: {err.detail}")
    assert strict.trace == [chat(first), end(ERROR, where)]
    [ended] = strict.results
    assert (ended.reason, ended.where, ended.chunks, ended.problems) == (ERROR, where, 1, ())
    assert to_dict(ended.completion)["choices"][0]["message"]["content"] == "Hi"
    assert (strict.report.reason, strict.report.where, strict.report.error) == (ERROR, where, err)

    lenient = run([raw], strict=False)
    [kept] = lenient.results
    assert kept.error is None
    assert [error_of(p) for p in kept.problems] == [error_of(err)]
    assert kept.reason is (CUT_OFF if format == "sse" else EXHAUSTED)
    assert (kept.chunks, kept.complete) == (1, False)
    assert lenient.report.problems == ()
    return err


@pytest.mark.parametrize("format", ["sse", "jsonl"])
@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"id": "a",}', b'{"a": 1} trailing', b"{", b'{"id": "a" "b"}'],
)
def test_invalid_json(payload: bytes, format: Format) -> None:
    err = bad_second_event(payload, format)
    assert type(err) is DecodeError
    assert err.detail.startswith("invalid JSON: ")
    assert str(err) == f"{NAME}, {err.where}: {err.detail}"


def test_empty_data_is_invalid_json() -> None:
    err = run([b"data:\n\n"]).error
    assert type(err) is DecodeError
    assert err.detail.startswith("invalid JSON: ")
    assert str(err).startswith(f"{NAME}, line 1 (event 1): invalid JSON: ")


@pytest.mark.parametrize("format", ["sse", "jsonl"])
@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "\xff"}',  # never valid in UTF-8
        b'{"id": "\xe2\x82"}',  # a truncated 3-byte sequence
        b'{"id": "\xc0\xaf"}',  # an overlong encoding of "/"
        b'{"id": "\xed\xa0\x80"}',  # an encoded surrogate
    ],
)
def test_invalid_utf8_in_json(payload: bytes, format: Format) -> None:
    err = bad_second_event(payload, format)
    assert type(err) is DecodeError
    assert err.detail.startswith("invalid JSON: ")
    assert "UTF-8" in err.detail
    assert str(err) == f"{NAME}, {err.where}: {err.detail}"


STRUCTURE_CASES: list[tuple[str, Any, str, str]] = [
    (
        "created is a string",
        {**CHAT, "created": "x"},
        "$.created",
        "expected an integer, got str 'x'",
    ),
    (
        "created is a float",
        {**CHAT, "created": 1.5},
        "$.created",
        "expected an integer, got float 1.5",
    ),
    (
        "created is a bool",
        {**CHAT, "created": True},
        "$.created",
        "expected an integer, got bool True",
    ),
    (
        "choices is a number",
        {**CHAT, "choices": 5},
        "$.choices",
        "expected a list, got int 5",
    ),
    ("id missing", {k: v for k, v in CHAT.items() if k != "id"}, "$.id", "required field missing"),
    ("model is null", {**CHAT, "model": None}, "$.model", "expected a string, got NoneType None"),
    (
        "choice index is a string",
        {**CHAT, "choices": [{"index": "0", "delta": {}}]},
        "$.choices[0].index",
        "expected an integer, got str '0'",
    ),
    (
        "delta content is a number",
        {**CHAT, "choices": [{"index": 0, "delta": {"content": 5}}]},
        "$.choices[0].delta.content",
        "expected a string or a list of content parts, got int 5",
    ),
    (
        "tool call arguments are a number",
        {
            **CHAT,
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 1}}]}}
            ],
        },
        "$.choices[0].delta.tool_calls[0].function.arguments",
        "expected a string, got int 1",
    ),
    (
        "text is a number",
        {**TEXT, "choices": [{"index": 0, "text": 5}]},
        "$.choices[0].text",
        "expected a string, got int 5",
    ),
    (
        "usage tokens are a string",
        {**CHAT, "usage": {"prompt_tokens": "3"}},
        "$.usage.prompt_tokens",
        "expected an integer, got str '3'",
    ),
    ("a JSON array", [CHAT], "$", "expected a JSON object, got list"),
    ("a JSON string", "chunk", "$", "expected a JSON object, got str"),
    ("a JSON number", 5, "$", "expected a JSON object, got int"),
    ("JSON null", None, "$", "expected a JSON object, got NoneType"),
]


@pytest.mark.parametrize("format", ["sse", "jsonl"])
@pytest.mark.parametrize(
    ("name", "obj", "field", "detail"),
    STRUCTURE_CASES,
    ids=[case[0] for case in STRUCTURE_CASES],
)
def test_structure_error(name: str, obj: Any, field: str, detail: str, format: Format) -> None:
    err = bad_second_event(orjson.dumps(obj), format)
    assert type(err) is StructureError, name
    assert err.field == field
    assert err.detail == detail
    assert str(err) == f"{NAME}, {err.where}: {detail} (at {field})"


BAD_PAYLOADS = sse(CHAT_JSON, b"{", b'{"error": {"message": "m"}}', b"[1]", TEXT_JSON, b"[DONE]")


def test_a_bad_payload_does_not_stop_a_lenient_source() -> None:
    result = run([BAD_PAYLOADS], strict=False)
    # the events are numbered on, whatever each was
    assert result.trace == [
        chat("line 1 (event 1)"),
        end(ERROR, "line 5 (event 3)"),  # the error payload ends the completion open
        text("line 9 (event 5)"),
        end(DONE, "line 11"),
    ]
    first, second = result.results
    assert first.reason is ERROR
    assert error_of(first.error) == (
        "UpstreamError",
        f"{NAME}, line 5 (event 3): upstream error: m",
    )
    assert [(type(p), p.where) for p in first.problems] == [(DecodeError, "line 3 (event 2)")]
    assert (second.reason, second.complete, second.chunks) == (DONE, True, 1)
    # what came with no completion open is the source's
    assert [error_of(p) for p in result.report.problems] == [
        (
            "StructureError",
            f"{NAME}, line 7 (event 4): expected a JSON object, got list (at $)",
        )
    ]
    assert (result.report.reason, result.report.error) == (DONE, None)


def test_a_bad_payload_stops_a_strict_source() -> None:
    result = run([BAD_PAYLOADS])
    assert result.trace == [chat("line 1 (event 1)"), end(ERROR, "line 3 (event 2)")]
    err = result.error
    assert type(err) is DecodeError
    assert err.where == "line 3 (event 2)"
    assert result.report.reason is ERROR
    assert result.engine.stopped


# --------------------------------------------------------------------------------------------
# max_line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["auto", "sse", "jsonl"])
def test_max_line_gives_an_error_in_its_place(format: Format) -> None:
    framing = Framing(format, max_line=16)
    if format == "jsonl":
        assert framing.feed(b"\n \n") == []
    else:
        assert framing.feed(b"data: [DONE]\n\n") == [(b"[DONE]", "message", None, None, 1, False)]
    [error] = framing.feed(b"data: 0123456789abcdef")
    assert type(error) is DecodeError
    assert error.where == "line 3"
    assert str(error) == "<stream>, line 3: line longer than 16 bytes"
    # the engine names its source
    head = b"\n \n" if format == "jsonl" else b"data: [DONE]\n\n"
    result = run([head, b"data: 0123456789abcdef"], format=format, limits=Limits(max_line=16))
    assert result.results == []
    err = result.error
    assert type(err) is DecodeError
    assert err.source == NAME
    assert str(err) == f"{NAME}, line 3: line longer than 16 bytes"


def test_max_line_keeps_the_records_completed_before_the_long_line() -> None:
    # One read brings a whole event and the start of an over-long line: the event is not lost,
    # and the error names the long line.
    records, _ = frame([b"data: [DONE]\n\ndata: 0123456789abcdef"], format="sse", max_line=16)
    assert cuts(records) == [(b"[DONE]", 1), "<stream>, line 3: line longer than 16 bytes"]


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_a_line_too_long_is_a_decode_error(strict: bool) -> None:
    limits = Limits(max_line=len(b"data: " + CHAT_JSON))
    raw = sse(CHAT_JSON) + b"data: " + b"x" * 200 + b"\n\n" + sse(CHAT_JSON, b"[DONE]")
    # the good chunk and the start of the long line come in one read
    result = run([raw[:200], raw[200:]], strict=strict, limits=limits)
    too_long = ("DecodeError", f"{NAME}, line 3: line longer than {limits.max_line} bytes")
    [ended] = result.results
    if strict:
        assert result.trace == [chat("line 1 (event 1)"), end(ERROR, "line 3")]
        assert (ended.reason, ended.chunks, error_of(ended.error)) == (ERROR, 1, too_long)
    else:  # the long line is skipped, and the next event is read
        assert result.trace == [
            chat("line 1 (event 1)"),
            chat("line 5 (event 2)"),
            end(DONE, "line 7"),
        ]
        assert (ended.reason, ended.chunks, ended.error) == (DONE, 2, None)
        assert [error_of(p) for p in ended.problems] == [too_long]


# --------------------------------------------------------------------------------------------
# max_depth
# --------------------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A chat chunk whose JSON nests objects ``depth`` levels deep (the chunk is level 1)."""
    deep: Any = "x"
    for _ in range(depth - 1):
        deep = {"k": deep}
    return orjson.dumps({**CHAT, "extra": deep})


@pytest.mark.parametrize("format", ["sse", "jsonl"])
def test_nesting_too_deep_is_a_limit_error(format: Format) -> None:
    raw, first, where = second_event(nested(65), format)
    strict = run([raw])
    err = strict.error
    assert type(err) is LimitError
    assert err.limit == "max_depth"
    assert str(err) == f"{NAME}, {where}: JSON nested deeper than 64 levels"
    [ended] = strict.results
    assert (ended.reason, ended.where, ended.chunks) == (LIMIT, where, 1)
    assert strict.trace == [chat(first), end(ERROR, where)]

    lenient = run([raw], strict=False)
    [kept] = lenient.results
    assert kept.error is None
    assert [error_of(p) for p in kept.problems] == [error_of(err)]
    assert kept.chunks == 1


def test_nesting_at_the_limit_is_accepted() -> None:
    result = run([sse(nested(64), b"[DONE]")])
    [ended] = result.results
    assert (ended.reason, ended.complete, ended.chunks) == (DONE, True, 1)
    limited = run([sse(nested(9))], limits=Limits(max_depth=8)).error
    assert str(limited) == f"{NAME}, line 1 (event 1): JSON nested deeper than 8 levels"
    assert run([sse(nested(8), b"[DONE]")], limits=Limits(max_depth=8)).results[0].complete


def test_no_depth_limit_is_the_ceiling() -> None:
    no_limit = Limits(max_depth=None)
    assert run([sse(nested(200), b"[DONE]")], limits=no_limit).results[0].complete
    err = run([sse(nested(201), b"[DONE]")], limits=no_limit).error
    assert type(err) is LimitError
    assert str(err) == f"{NAME}, line 1 (event 1): JSON nested deeper than 200 levels"
