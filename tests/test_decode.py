"""Tests of ``aggregator._decode.PayloadDecoder``: framing detection, payloads to items, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChoiceDelta,
    CompletionChunk,
    DecodeError,
    StructureError,
    TextChunkChoice,
    UpstreamError,
)
from aggregator._decode import Format, Item, ItemKind, PayloadDecoder

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


def run(
    pieces: list[bytes], *, format: Format = "auto", max_line: int = 16 << 20
) -> tuple[list[Item], PayloadDecoder]:
    decoder = PayloadDecoder(NAME, format=format, max_line=max_line)
    items: list[Item] = []
    for piece in pieces:
        items += decoder.feed(piece)
    return items + decoder.close(), decoder


def items_of(raw: bytes, *, format: Format = "auto") -> list[Item]:
    return run([raw], format=format)[0]


def sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + payload + b"\n\n" for payload in payloads)


def summary(items: list[Item]) -> list[tuple[ItemKind, str]]:
    return [(item.kind, item.where) for item in items]


def only_error(items: list[Item]) -> Any:
    assert len(items) == 1
    assert items[0].kind is ItemKind.ERROR
    assert items[0].event is None
    assert items[0].error is not None
    assert items[0].error.where == items[0].where
    return items[0].error


CHUNK = ItemKind.CHUNK
DONE = ItemKind.DONE
ERROR = ItemKind.ERROR

# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def chat(where: str) -> Item:
    return Item(CHUNK, where, event=CHAT_EVENT)


def text(where: str) -> Item:
    return Item(CHUNK, where, event=TEXT_EVENT)


DETECTION_CASES: list[tuple[str, bytes, Format, list[Item]]] = [
    (
        "object first is JSON Lines",
        CHAT_JSON + b"\n" + TEXT_JSON + b"\n",
        "jsonl",
        [chat("line 1 (event 1)"), text("line 2 (event 2)")],
    ),
    (
        "data first is SSE",
        sse(CHAT_JSON, b"[DONE]"),
        "sse",
        [chat("line 1 (event 1)"), Item(DONE, "line 3")],
    ),
    ("comment first is SSE", b": hello\n\n" + sse(TEXT_JSON), "sse", [text("line 3 (event 1)")]),
    (
        "event field first is SSE",
        b"event: message\n" + sse(CHAT_JSON),
        "sse",
        [chat("line 2 (event 1)")],
    ),
    ("array first is SSE", b"[1, 2]\n", "sse", []),
    (
        "blank lines then JSON Lines",
        b"\n\n" + CHAT_JSON + b"\n",
        "jsonl",
        [chat("line 3 (event 1)")],
    ),
    (
        "whitespace lines then JSON Lines",
        b" \t\r\n  \n\r" + CHAT_JSON + b"\r\n",
        "jsonl",
        [chat("line 4 (event 1)")],
    ),
    (
        "indented object is JSON Lines",
        b"  " + TEXT_JSON + b"\n",
        "jsonl",
        [text("line 1 (event 1)")],
    ),
    ("BOM then JSON Lines", BOM + CHAT_JSON + b"\n", "jsonl", [chat("line 1 (event 1)")]),
    (
        "BOM and CRLF blank lines then JSON Lines",
        BOM + b"\r\n\r\n" + CHAT_JSON + b"\r\n",
        "jsonl",
        [chat("line 3 (event 1)")],
    ),
    ("blank lines then SSE", b"\n\r\n\r" + sse(CHAT_JSON), "sse", [chat("line 4 (event 1)")]),
    ("BOM then SSE", BOM + sse(CHAT_JSON), "sse", [chat("line 1 (event 1)")]),
    (
        "BOM and blank lines then SSE",
        BOM + b"\r\n\n" + sse(CHAT_JSON, b"[DONE]"),
        "sse",
        [chat("line 3 (event 1)"), Item(DONE, "line 5")],
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "format", "expected"),
    DETECTION_CASES,
    ids=[case[0] for case in DETECTION_CASES],
)
def test_format_detection(name: str, raw: bytes, format: Format, expected: list[Item]) -> None:
    items, decoder = run([raw])
    assert decoder.format == format, name
    assert items == expected, name


@pytest.mark.parametrize(
    ("name", "raw", "format", "expected"),
    DETECTION_CASES,
    ids=[case[0] for case in DETECTION_CASES],
)
def test_format_detection_byte_by_byte(
    name: str, raw: bytes, format: Format, expected: list[Item]
) -> None:
    items, decoder = run([raw[i : i + 1] for i in range(len(raw))])
    assert decoder.format == format, name
    assert items == expected, name


def format_of(decoder: PayloadDecoder) -> Format:
    return decoder.format  # a call, so that mypy does not narrow the property between feeds


def test_format_is_auto_until_the_first_non_blank_byte() -> None:
    decoder = PayloadDecoder(NAME)
    assert format_of(decoder) == "auto"
    assert decoder.feed(BOM[:2]) == []
    assert decoder.feed(BOM[2:] + b"\r\n") == []
    assert decoder.feed(b" \t\n") == []
    assert format_of(decoder) == "auto"
    assert decoder.line == 0
    assert decoder.feed(CHAT_JSON[:5]) == []
    assert format_of(decoder) == "jsonl"
    assert decoder.line == 2
    assert decoder.feed(CHAT_JSON[5:] + b"\n") == [chat("line 3 (event 1)")]
    assert decoder.line == 3
    assert decoder.close() == []


def test_a_blank_stream_stays_undetected() -> None:
    items, decoder = run([BOM[:1], BOM[1:], b"\n", b" \r\n\t"])
    assert items == []
    assert decoder.format == "auto"


def test_a_bom_after_blank_lines_is_content_not_a_bom() -> None:
    # only a BOM at the very start is stripped (the line splitter agrees), so a later one is
    # the first byte of content, which is not "{": SSE
    items, decoder = run([b"\n", b" \r\n\t", BOM])
    assert items == []
    assert decoder.format == "sse"


@pytest.mark.parametrize(
    ("format", "raw", "expected"),
    [
        ("sse", CHAT_JSON + b"\n\n", []),  # a line "{...}" is an unknown SSE field
        ("jsonl", b"data: [DONE]\n", [(ERROR, "line 1 (event 1)")]),
    ],
)
def test_explicit_format_is_not_detected(
    format: Format, raw: bytes, expected: list[tuple[ItemKind, str]]
) -> None:
    items, decoder = run([raw], format=format)
    assert decoder.format == format
    assert summary(items) == expected


# --------------------------------------------------------------------------------------------
# Chunks, [DONE] and SSE ids
# --------------------------------------------------------------------------------------------


def test_chunks_and_done() -> None:
    items = items_of(sse(CHAT_JSON, TEXT_JSON, b"[DONE]"))
    assert items == [
        Item(CHUNK, "line 1 (event 1)", event=CHAT_EVENT),
        Item(CHUNK, "line 3 (event 2)", event=TEXT_EVENT),
        Item(DONE, "line 5"),
    ]


def test_done_is_not_counted_as_an_event() -> None:
    items = items_of(sse(b"[DONE]", CHAT_JSON, b"[DONE]", CHAT_JSON))
    assert summary(items) == [
        (DONE, "line 1"),
        (CHUNK, "line 3 (event 1)"),
        (DONE, "line 5"),
        (CHUNK, "line 7 (event 2)"),
    ]


def test_done_without_final_blank_line() -> None:
    assert items_of(b"data: " + CHAT_JSON + b"\n\ndata: [DONE]") == [
        Item(CHUNK, "line 1 (event 1)", event=CHAT_EVENT),
        Item(DONE, "line 3"),
    ]


def test_payload_over_several_data_lines_is_placed_at_its_first_line() -> None:
    raw = b': c\n\ndata: {"id": "chatcmpl-1",\ndata: "object": "chat.completion.chunk",\n'
    raw += b'data: "created": 1700000000, "model": "gpt-x",\n'
    raw += b'data: "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}\n\n'
    assert items_of(raw) == [Item(CHUNK, "line 3 (event 1)", event=CHAT_EVENT)]


def test_sse_id_is_carried_on_chunk_items() -> None:
    # only an id the event carried itself: an inherited one (WHATWG's last event id) would make
    # ``dedupe`` drop every later event that has no id line of its own
    raw = b"id: 7\n" + sse(CHAT_JSON) + sse(CHAT_JSON) + b"id: 8\n" + sse(CHAT_JSON, b"[DONE]")
    items = items_of(raw)
    assert [(item.kind, item.sse_id) for item in items] == [
        (CHUNK, "7"),
        (CHUNK, None),
        (CHUNK, "8"),
        (DONE, None),
    ]
    assert [item.sse_id for item in items_of(sse(CHAT_JSON))] == [None]
    assert [item.sse_id for item in items_of(CHAT_JSON + b"\n")] == [None]


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
        [item] = items_of(raw)
        assert item.kind is CHUNK
        assert type(item.event) is cls
        assert item.event.object == object
        assert len(item.event.choices) == len(choices)


def test_text_choice_fields_in_a_blank_object_chunk() -> None:
    payload = orjson.dumps({**TEXT, "object": ""})
    [item] = items_of(sse(payload))
    assert item.event == CompletionChunk(
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
def test_upstream_error(name: str, raw: bytes, where: str, message: str, payload: Any) -> None:
    items = [item for item in items_of(raw) if item.kind is not CHUNK]
    err = only_error(items)
    assert type(err) is UpstreamError, name
    assert err.payload == payload
    assert err.stream == NAME
    assert err.where == where
    assert err.detail == f"upstream error: {message}"
    assert str(err) == f"{NAME}, {where}: upstream error: {message}"


def test_error_beside_choices_is_a_chunk() -> None:
    payload = orjson.dumps({**CHAT, "error": {"message": "moderated"}})
    [item] = items_of(sse(payload))
    assert item.kind is CHUNK
    assert item.error is None
    assert isinstance(item.event, ChatCompletionChunk)
    assert item.event.error == {"message": "moderated"}
    assert item.event.choices == CHAT_EVENT.choices


def test_upstream_error_is_a_value_error() -> None:
    err = only_error(items_of(b'data: {"error": "x"}\n\n'))
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------------------------
# Invalid JSON, invalid UTF-8, wrong shapes: every message names the stream and the place
# --------------------------------------------------------------------------------------------


def second_event(payload: bytes, format: Format) -> tuple[bytes, str]:
    """A stream where ``payload`` is event 2, after a comment, blank lines and a good chunk."""
    if format == "sse":
        return b": ping\n\n" + sse(CHAT_JSON, payload), "line 5 (event 2)"
    return CHAT_JSON + b"\n\n\n" + payload + b"\n", "line 4 (event 2)"


@pytest.mark.parametrize("format", ["sse", "jsonl"])
@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"id": "a",}', b'{"a": 1} trailing', b"{", b'{"id": "a" "b"}'],
)
def test_invalid_json(payload: bytes, format: Format) -> None:
    raw, where = second_event(payload, format)
    items = items_of(raw)
    assert items[0] == chat("line 1 (event 1)" if format == "jsonl" else "line 3 (event 1)")
    err = only_error(items[1:])
    assert type(err) is DecodeError
    assert err.stream == NAME
    assert err.where == where
    assert err.detail.startswith("invalid JSON: ")
    assert str(err) == f"{NAME}, {where}: {err.detail}"


def test_empty_data_is_invalid_json() -> None:
    err = only_error(items_of(b"data:\n\n"))
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
    raw, where = second_event(payload, format)
    err = only_error(items_of(raw)[1:])
    assert type(err) is DecodeError
    assert err.where == where
    assert err.detail.startswith("invalid JSON: ")
    assert "UTF-8" in err.detail
    assert str(err) == f"{NAME}, {where}: {err.detail}"


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
    raw, where = second_event(orjson.dumps(obj), format)
    err = only_error(items_of(raw)[1:])
    assert type(err) is StructureError, name
    assert err.field == field
    assert err.stream == NAME
    assert err.where == where
    assert err.detail == detail
    assert str(err) == f"{NAME}, {where}: {detail} (at {field})"


def test_a_bad_payload_does_not_stop_the_stream() -> None:
    raw = sse(CHAT_JSON, b"{", b'{"error": {"message": "m"}}', b"[1]", TEXT_JSON, b"[DONE]")
    assert summary(items_of(raw)) == [
        (CHUNK, "line 1 (event 1)"),
        (ERROR, "line 3 (event 2)"),
        (ERROR, "line 5 (event 3)"),
        (ERROR, "line 7 (event 4)"),
        (CHUNK, "line 9 (event 5)"),
        (DONE, "line 11"),
    ]


# --------------------------------------------------------------------------------------------
# max_line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["auto", "sse", "jsonl"])
def test_max_line_gives_an_error_item(format: Format) -> None:
    decoder = PayloadDecoder(NAME, format=format, max_line=16)
    if format == "jsonl":
        assert decoder.feed(b"\n \n") == []
    else:
        assert decoder.feed(b"data: [DONE]\n\n") == [Item(DONE, "line 1")]
    [item] = decoder.feed(b"data: 0123456789abcdef")
    assert item.kind is ERROR
    assert item.where == "line 3"
    assert type(item.error) is DecodeError
    assert item.error.stream == NAME
    assert str(item.error) == f"{NAME}, line 3: line longer than 16 bytes"


def test_max_line_keeps_the_items_completed_before_the_long_line() -> None:
    # One read brings a whole event and the start of an over-long line: the event is not lost,
    # and the error names the long line.
    items, _ = run([b"data: [DONE]\n\ndata: 0123456789abcdef"], format="sse", max_line=16)
    assert summary(items) == [(DONE, "line 1"), (ERROR, "line 3")]


def test_blank_bytes_before_the_framing_are_not_kept_without_bound() -> None:
    decoder = PayloadDecoder("blank")
    for _ in range(100):
        assert decoder.feed(b"\n" * 4096) == []
    assert decoder.format == "sse"  # decided after 64 KiB of blank lines
    assert len(decoder._head) == 0
    assert decoder.feed(b"data: [DONE]\n\n") == [Item(DONE, "line 409601")]
