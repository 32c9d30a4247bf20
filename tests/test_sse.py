"""Tests of the incremental SSE decoder and the JSON Lines reader (``aggregator._core._sse``)."""

from __future__ import annotations

import itertools
from unittest import mock

import orjson
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from aggregator import DecodeError
from aggregator.lowlevel import JSONLinesReader, ServerSentEvent, SSEDecoder

BOM = b"\xef\xbb\xbf"


def ev(
    data: bytes,
    line: int,
    *,
    event: str = "message",
    id: str | None = None,
    retry: int | None = None,
) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=event, id=id, retry=retry, line=line)


def decode(pieces: list[bytes], *, max_line: int = 16 * 1024 * 1024) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_line=max_line)
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


def read_lines(pieces: list[bytes]) -> list[tuple[int, bytes]]:
    reader = JSONLinesReader()
    lines: list[tuple[int, bytes]] = []
    for piece in pieces:
        lines += reader.feed(piece)
    return lines + reader.close()


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


# --------------------------------------------------------------------------------------------
# WHATWG cases, table-driven
# --------------------------------------------------------------------------------------------

SSE_CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    # data
    ("single data line", b"data: hello\n\n", [ev(b"hello", 1)]),
    ("multi-line data joined with LF", b"data: a\ndata: b\ndata: c\n\n", [ev(b"a\nb\nc", 1)]),
    ("empty data lines kept", b"data: a\ndata:\ndata: b\n\n", [ev(b"a\n\nb", 1)]),
    ("data with only an empty line", b"data:\n\n", [ev(b"", 1)]),
    ("two empty data lines", b"data\ndata\n\n", [ev(b"\n", 1)]),
    ("data keeps inner colons", b'data: {"a": 1}\n\n', [ev(b'{"a": 1}', 1)]),
    ("data keeps bytes as sent", "data: €😀\n\n".encode(), [ev("€😀".encode(), 1)]),
    ("two events", b"data: 1\n\ndata: 2\n\n", [ev(b"1", 1), ev(b"2", 3)]),
    # field without a colon
    ("field name alone: data", b"data\n\n", [ev(b"", 1)]),
    ("field name alone then data", b"data\ndata: x\n\n", [ev(b"\nx", 1)]),
    ("field name alone: event resets to message", b"event\ndata: x\n\n", [ev(b"x", 2)]),
    (
        "field name alone: id sets empty id",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [ev(b"a", 2, id="1"), ev(b"b", 5, id="")],
    ),
    # leading space
    ("one leading space removed", b"data: x\n\n", [ev(b"x", 1)]),
    ("no space after colon", b"data:x\n\n", [ev(b"x", 1)]),
    ("only one leading space removed", b"data:  x\n\n", [ev(b" x", 1)]),
    ("three spaces: two kept", b"data:   x\n\n", [ev(b"  x", 1)]),
    ("tab after colon kept", b"data:\tx\n\n", [ev(b"\tx", 1)]),
    ("trailing spaces kept", b"data: x  \n\n", [ev(b"x  ", 1)]),
    ("space in event value", b"event:  sp\ndata: x\n\n", [ev(b"x", 2, event=" sp")]),
    ("space in id value", b"id:  7\ndata: x\n\n", [ev(b"x", 2, id=" 7")]),
    # event
    ("event type", b"event: add\ndata: x\n\n", [ev(b"x", 2, event="add")]),
    ("event after data", b"data: x\nevent: add\n\n", [ev(b"x", 1, event="add")]),
    ("last event field wins", b"event: a\nevent: b\ndata: x\n\n", [ev(b"x", 3, event="b")]),
    ("empty event is message", b"event:\ndata: x\n\n", [ev(b"x", 2)]),
    (
        "event type not carried over",
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [ev(b"1", 2, event="a"), ev(b"2", 4)],
    ),
    ("event type reset by blank line without data", b"event: a\n\ndata: x\n\n", [ev(b"x", 3)]),
    ("event type in UTF-8", "event: ünï😀\ndata: x\n\n".encode(), [ev(b"x", 2, event="ünï😀")]),
    ("event names are case-sensitive", b"Event: a\ndata: x\n\n", [ev(b"x", 2)]),
    # id
    ("id", b"id: 42\ndata: x\n\n", [ev(b"x", 2, id="42")]),
    (
        "id persists to later events",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [ev(b"a", 2, id="1"), ev(b"b", 4, id="1")],
    ),
    (
        "id replaced by a later id",
        b"id: 1\ndata: a\n\nid: 2\ndata: b\n\ndata: c\n\n",
        [ev(b"a", 2, id="1"), ev(b"b", 5, id="2"), ev(b"c", 7, id="2")],
    ),
    ("id survives a blank line without data", b"id: 9\n\ndata: x\n\n", [ev(b"x", 3, id="9")]),
    (
        "id set to empty",
        b"id: 1\ndata: a\n\nid:\ndata: b\n\n",
        [ev(b"a", 2, id="1"), ev(b"b", 5, id="")],
    ),
    ("id with NUL ignored", b"id: a\x00b\ndata: x\n\n", [ev(b"x", 2)]),
    (
        "id with NUL keeps the previous id",
        b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n",
        [ev(b"a", 2, id="1"), ev(b"b", 5, id="1")],
    ),
    ("id in UTF-8", "id: ïd\ndata: x\n\n".encode(), [ev(b"x", 2, id="ïd")]),
    # retry
    ("retry digits", b"retry: 1500\ndata: x\n\n", [ev(b"x", 2, retry=1500)]),
    ("retry zero", b"retry: 0\ndata: x\n\n", [ev(b"x", 2, retry=0)]),
    ("retry with a letter ignored", b"retry: 15a\ndata: x\n\n", [ev(b"x", 2)]),
    ("retry negative ignored", b"retry: -5\ndata: x\n\n", [ev(b"x", 2)]),
    ("retry decimal ignored", b"retry: 1.5\ndata: x\n\n", [ev(b"x", 2)]),
    ("retry empty ignored", b"retry:\ndata: x\n\n", [ev(b"x", 2)]),
    ("retry with inner space ignored", b"retry: 1 0\ndata: x\n\n", [ev(b"x", 2)]),
    ("retry non-ASCII digits ignored", "retry: ١٢\ndata: x\n\n".encode(), [ev(b"x", 2)]),
    ("invalid retry keeps a valid one", b"retry: 7\nretry: x\ndata: a\n\n", [ev(b"a", 3, retry=7)]),
    (
        "retry only on the event that set it",
        b"retry: 7\ndata: a\n\ndata: b\n\n",
        [ev(b"a", 2, retry=7), ev(b"b", 4)],
    ),
    # comments
    ("comment line ignored", b": hello\ndata: x\n\n", [ev(b"x", 2)]),
    ("bare colon ignored", b":\ndata: x\n\n", [ev(b"x", 2)]),
    ("comment between data lines", b"data: a\n: ping\ndata: b\n\n", [ev(b"a\nb", 1)]),
    ("comment looking like data", b":data: x\n\n", []),
    ("only comments", b": a\n: b\n\n", []),
    # unknown fields
    ("unknown field ignored", b"foo: bar\ndata: x\n\n", [ev(b"x", 2)]),
    ("unknown field alone dispatches nothing", b"foo: bar\n\n", []),
    # (a field name spoiled by a space, a BOM or a NUL, "data : x", is a DecodeError in its
    # place, not ignored: tests/test_hostile.py)
    ("field names are case-sensitive", b"Data: x\nDATA: y\n\n", []),
    # blank lines
    ("blank lines alone", b"\n\n\n", []),
    ("empty stream", b"", []),
    ("blank lines between events", b"data: a\n\n\n\n\ndata: b\n\n", [ev(b"a", 1), ev(b"b", 6)]),
    ("event fields without data dispatch nothing", b"event: a\nid: 1\nretry: 5\n\n", []),
    # line endings
    ("LF", b"data: a\ndata: b\n\n", [ev(b"a\nb", 1)]),
    ("CR", b"data: a\rdata: b\r\r", [ev(b"a\nb", 1)]),
    ("CRLF", b"data: a\r\ndata: b\r\n\r\n", [ev(b"a\nb", 1)]),
    ("CR then LF blank line is one ending", b"data: a\r\n", [ev(b"a", 1)]),
    ("LF then CR is two endings", b"data: a\n\rdata: b\n\n", [ev(b"a", 1), ev(b"b", 3)]),
    (
        "mixed CR LF CRLF",
        b"data: a\rdata: b\ndata: c\r\n\r\ndata: d\n\r",
        [ev(b"a\nb\nc", 1), ev(b"d", 5)],
    ),
    (
        "CR line then LF-ended line",
        b"data: a\rdata: b\n\ndata: c\n\n",
        [ev(b"a\nb", 1), ev(b"c", 4)],
    ),
    ("CR CR is a blank line", b"data: a\r\rdata: b\r\r", [ev(b"a", 1), ev(b"b", 3)]),
    ("CRLF CRLF dispatches", b"data: a\r\n\r\ndata: b\r\n\r\n", [ev(b"a", 1), ev(b"b", 3)]),
    (
        "other ASCII separators are not line endings",
        b"data: a\x0bb\x0cc\x1cd\x85\n\n",
        [ev(b"a\x0bb\x0cc\x1cd\x85", 1)],
    ),
    ("U+2028 is not a line ending", "data: a\u2028b\n\n".encode(), [ev("a\u2028b".encode(), 1)]),
    # BOM
    ("leading BOM stripped", BOM + b"data: x\n\n", [ev(b"x", 1)]),
    ("leading BOM before blank lines", BOM + b"\n\ndata: x\n\n", [ev(b"x", 3)]),
    # (a BOM later in the stream is not stripped: a DecodeError in its place,
    # tests/test_hostile.py)
    ("BOM inside data kept", b"data: " + BOM + b"x\n\n", [ev(BOM + b"x", 1)]),
    # end of stream without the closing blank line (deliberate leniency)
    (
        "last event without blank line",
        b"data: a\n\ndata: [DONE]\n",
        [ev(b"a", 1), ev(b"[DONE]", 3)],
    ),
    ("last event without any line ending", b"data: [DONE]", [ev(b"[DONE]", 1)]),
    ("last event with CR only", b"data: x\r", [ev(b"x", 1)]),
    (
        "unfinished event keeps its fields",
        b"event: e\nid: 3\nretry: 9\ndata: x",
        [ev(b"x", 4, event="e", id="3", retry=9)],
    ),
    ("unfinished non-data fields dispatch nothing", b"data: a\n\nevent: e\nid: 3", [ev(b"a", 1)]),
    # line numbers: the line of the event's first data line
    (
        "line after comments and blank lines",
        b": c\n\n\n: d\ndata: x\ndata: y\n\n",
        [ev(b"x\ny", 5)],
    ),
    (
        "line after event and id fields",
        b"event: e\nid: 1\ndata: x\n\n",
        [ev(b"x", 3, event="e", id="1")],
    ),
    (
        "lines counted across CRLF",
        b"data: a\r\n\r\n: c\r\ndata: b\r\n\r\n",
        [ev(b"a", 1), ev(b"b", 4)],
    ),
    ("lines counted across CR", b"data: a\r\r:c\rdata: b\r\r", [ev(b"a", 1), ev(b"b", 4)]),
]


@pytest.mark.parametrize(
    ("name", "raw", "expected"), SSE_CASES, ids=[case[0] for case in SSE_CASES]
)
def test_sse_cases(name: str, raw: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode([raw]) == expected, name


@pytest.mark.parametrize(
    ("name", "raw", "expected"), SSE_CASES, ids=[case[0] for case in SSE_CASES]
)
def test_sse_cases_byte_by_byte(name: str, raw: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == expected, name


@pytest.mark.parametrize(
    ("name", "raw", "expected"), SSE_CASES, ids=[case[0] for case in SSE_CASES]
)
def test_sse_cases_split_in_two_anywhere(
    name: str, raw: bytes, expected: list[ServerSentEvent]
) -> None:
    for cut in range(len(raw) + 1):
        assert decode([raw[:cut], raw[cut:]]) == expected, f"{name}: cut at {cut}"


def test_feed_returns_events_as_soon_as_they_are_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b": 1}\n") == []
    assert decoder.feed(b"\n") == [ev(b'{"a": 1}', 1)]
    assert decoder.feed(b"data: b\n\ndata: c\n\ndata: d") == [ev(b"b", 3), ev(b"c", 5)]
    assert decoder.line == 6
    assert decoder.close() == [ev(b"d", 7)]
    assert decoder.line == 7


def test_crlf_split_between_feeds_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == [ev(b"a", 1)]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ev(b"b", 3)]
    assert decoder.line == 4
    assert decoder.close() == []


def test_cr_before_pending_text_does_not_swallow_next_lf() -> None:
    # The last line ending of the first feed is a CR, but text follows it: the LF that starts
    # the second feed ends the line "data: b"; it is not the second half of a CRLF.
    whole = b"data: a\rdata: b\n\ndata: c\n\n"
    assert decode([whole]) == [ev(b"a\nb", 1), ev(b"c", 4)]
    assert decode([b"data: a\rdata: b", b"\n\ndata: c\n\n"]) == [ev(b"a\nb", 1), ev(b"c", 4)]


def test_bom_split_across_feeds_is_stripped() -> None:
    assert decode([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [ev(b"x", 1)]
    assert decode([b"", b"\xef\xbb", b"\xbf", b"data: x\n\n"]) == [ev(b"x", 1)]


def test_partial_bom_prefix_is_not_stripped() -> None:
    # The first bytes look like the start of a BOM but are not one: they stay in the line.
    assert decode([b"\xef\xbb", b"data: x\n\n"]) == []
    assert read_lines([b"\xef", b'{"a": 1}\n']) == [(1, b'\xef{"a": 1}')]


def test_event_text_property() -> None:
    assert ev("😀".encode(), 1).text == "😀"
    assert ev(b"a\xffb", 1).text == "a\ufffdb"


def test_close_twice_returns_nothing_more() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x") == []
    assert decoder.close() == [ev(b"x", 1)]
    assert decoder.close() == []


# --------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------

JSONL_CASES: list[tuple[str, bytes, list[tuple[int, bytes]]]] = [
    ("one line", b'{"a": 1}\n', [(1, b'{"a": 1}')]),
    ("two lines", b'{"a": 1}\n{"b": 2}\n', [(1, b'{"a": 1}'), (2, b'{"b": 2}')]),
    ("no final line ending", b'{"a": 1}\n{"b": 2}', [(1, b'{"a": 1}'), (2, b'{"b": 2}')]),
    (
        "blank lines skipped but counted",
        b'\n\n{"a": 1}\n\n{"b": 2}\n\n',
        [(3, b'{"a": 1}'), (5, b'{"b": 2}')],
    ),
    ("whitespace-only lines skipped", b' \n\t\n  \t \n{"a": 1}\n', [(4, b'{"a": 1}')]),
    ("surrounding whitespace kept", b'  {"a": 1} \n', [(1, b'  {"a": 1} ')]),
    ("CR endings", b'{"a": 1}\r{"b": 2}\r', [(1, b'{"a": 1}'), (2, b'{"b": 2}')]),
    ("CRLF endings", b'{"a": 1}\r\n{"b": 2}\r\n', [(1, b'{"a": 1}'), (2, b'{"b": 2}')]),
    (
        "mixed endings",
        b'{"a": 1}\r\n\r{"b": 2}\n\r\n{"c": 3}\r',
        [(1, b'{"a": 1}'), (3, b'{"b": 2}'), (5, b'{"c": 3}')],
    ),
    (
        "CR line then LF-ended line",
        b'{"a": 1}\r{"b": 2}\n{"c": 3}\n',
        [(1, b'{"a": 1}'), (2, b'{"b": 2}'), (3, b'{"c": 3}')],
    ),
    ("leading BOM stripped", BOM + b'{"a": 1}\n', [(1, b'{"a": 1}')]),
    (
        "later BOM kept",
        b'{"a": 1}\n' + BOM + b'{"b": 2}\n',
        [(1, b'{"a": 1}'), (2, BOM + b'{"b": 2}')],
    ),
    ("UTF-8 kept as bytes", '{"a": "é😀"}\n'.encode(), [(1, '{"a": "é😀"}'.encode())]),
    ("empty stream", b"", []),
]


@pytest.mark.parametrize(
    ("name", "raw", "expected"), JSONL_CASES, ids=[case[0] for case in JSONL_CASES]
)
def test_jsonl_cases(name: str, raw: bytes, expected: list[tuple[int, bytes]]) -> None:
    assert read_lines([raw]) == expected, name
    assert read_lines([raw[i : i + 1] for i in range(len(raw))]) == expected, name
    for cut in range(len(raw) + 1):
        assert read_lines([raw[:cut], raw[cut:]]) == expected, f"{name}: cut at {cut}"


def test_jsonl_feed_and_line_property() -> None:
    reader = JSONLinesReader()
    assert reader.feed(b'{"a"') == []
    assert reader.line == 0
    assert reader.feed(b": 1}\r") == [(1, b'{"a": 1}')]
    assert reader.feed(b"\n\n{") == []
    assert reader.line == 2
    assert reader.close() == [(3, b"{")]
    assert reader.line == 3


# --------------------------------------------------------------------------------------------
# max_line
# --------------------------------------------------------------------------------------------


def test_max_line_exactly_at_limit_is_accepted() -> None:
    assert decode([b"data: 0123\n\n"], max_line=10) == [ev(b"0123", 1)]
    assert decode([b"data: 01", b"23", b"\n\n"], max_line=10) == [ev(b"0123", 1)]
    reader = JSONLinesReader(max_line=4)
    assert reader.feed(b"{}  ") == []
    assert reader.feed(b"\n") == [(1, b"{}  ")]


def test_max_line_exceeded_by_an_unfinished_line() -> None:
    decoder = SSEDecoder(max_line=10)
    assert decoder.feed(b"data: a\n\n") == [ev(b"a", 1)]
    assert decoder.feed(b"data: 0123") == []
    with pytest.raises(DecodeError) as info:
        decoder.feed(b"4")
    assert info.value.where == "line 3"
    assert info.value.detail == "line longer than 10 bytes"
    assert str(info.value) == "<stream>, line 3: line longer than 10 bytes"


def test_max_line_exceeded_jsonl() -> None:
    reader = JSONLinesReader(max_line=5)
    assert reader.feed(b"{}\n\n") == [(1, b"{}")]
    with pytest.raises(DecodeError) as info:
        reader.feed(b'{"a": 1')
    assert str(info.value) == "<stream>, line 3: line longer than 5 bytes"


def test_max_line_exceeded_by_a_complete_line_in_one_feed() -> None:
    # The line and its ending arrive in the same feed: it must be refused all the same.
    with pytest.raises(DecodeError) as info:
        SSEDecoder(max_line=10).feed(b"data: 01234\n\n")
    assert str(info.value) == "<stream>, line 1: line longer than 10 bytes"


def test_max_line_exceeded_by_a_complete_jsonl_line_in_one_feed() -> None:
    with pytest.raises(DecodeError) as info:
        JSONLinesReader(max_line=5).feed(b'{"a": 1}\n')
    assert str(info.value) == "<stream>, line 1: line longer than 5 bytes"


def test_max_line_error_names_the_right_line_after_lines_in_the_same_feed() -> None:
    with pytest.raises(DecodeError) as info:
        SSEDecoder(max_line=10).feed(b"data: a\n\ndata: 01234")
    assert info.value.where == "line 3"
    assert str(info.value) == "<stream>, line 3: line longer than 10 bytes"


# --------------------------------------------------------------------------------------------
# Hypothesis: any split decodes like the whole, and the data survives the round trip
# --------------------------------------------------------------------------------------------

# Multi-byte characters (2, 3 and 4 bytes in UTF-8), emoji with a ZWJ sequence's parts, and
# characters that are line breaks elsewhere but not in SSE (VT, NEL, U+2028) or look like syntax.
TRICKY = "😀👩\u200d👧€é中\U0010ffff\x00\x0b\x85\u2028: \ufeff"
TEXT = st.text(
    alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=8,
)
BOOLS = st.booleans()
JUNK = st.lists(st.just(b"") | TEXT.map(lambda t: b":" + t.encode()), max_size=2)
COMMENTS = st.lists(TEXT.map(lambda t: b":" + t.encode()), max_size=2)
DATA_VALUES = st.lists(TEXT, min_size=1, max_size=3)
EMPTY_DATA = st.sampled_from([b"data", b"data:", b"data: "])
EVENT_TYPE = st.none() | TEXT
EVENT_ID = st.none() | TEXT.map(lambda t: t.replace("\x00", ""))
RETRY = st.none() | st.integers(0, 10**12)
POSITION = st.integers(0, 8)
ANY_ENDING = st.sampled_from([b"\n", b"\r", b"\r\n"])
NOT_LF = st.sampled_from([b"\r", b"\r\n"])  # after a CR, a LF would make one CRLF ending
JSONL_LINES = st.lists(
    st.sampled_from([b"", b" ", b"\t", b" \t "]) | TEXT.map(lambda t: orjson.dumps({"t": t})),
    max_size=8,
)


def cut_positions(raw: bytes) -> st.SearchStrategy[list[int]]:
    """Cut positions anywhere, with a bias for the places next to a CR or a LF."""
    near_endings = sorted({i + d for i, b in enumerate(raw) if b in b"\r\n" for d in (0, 1)})
    anywhere = st.integers(0, len(raw))
    position = st.sampled_from(near_endings) | anywhere if near_endings else anywhere
    return st.lists(position, max_size=10)


def field(name: bytes, value: str, space: bool) -> bytes:
    raw = value.encode()
    if raw[:1] == b" ":
        space = True  # one leading space is always removed: keep the value's own space
    return name + b":" + (b" " if space else b"") + raw


def terminate(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """Join lines with random LF / CR / CRLF endings, an optional BOM, maybe no final ending."""
    out = [BOM] if draw(BOOLS) else []
    previous = b""
    for i, line in enumerate(lines):
        out.append(line)
        if i == len(lines) - 1 and line and draw(BOOLS):
            break
        previous = draw(NOT_LF if previous == b"\r" and line == b"" else ANY_ENDING)
        out.append(previous)
    return b"".join(out)


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """An SSE byte stream and the events it must decode to."""
    lines: list[bytes] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    n_events = draw(st.integers(0, 4))
    for number in range(n_events):
        lines += draw(JUNK)
        values = draw(DATA_VALUES)
        body = [draw(EMPTY_DATA) if v == "" else field(b"data", v, draw(BOOLS)) for v in values]
        others: list[bytes] = draw(COMMENTS)
        event_type = draw(EVENT_TYPE)
        if event_type is not None:
            others.append(field(b"event", event_type, draw(BOOLS)))
        new_id = draw(EVENT_ID)
        if new_id is not None:
            others.append(field(b"id", new_id, draw(BOOLS)))
            last_id = new_id
        retry = draw(RETRY)
        if retry is not None:
            others.append(b"retry: " + str(retry).encode())
        first_data = 0
        for other in others:
            at = min(draw(POSITION), len(body))
            body.insert(at, other)
            if at <= first_data:
                first_data += 1
        expected.append(
            ev(
                "\n".join(values).encode(),
                len(lines) + first_data + 1,
                event=event_type or "message",
                id=last_id,
                retry=retry,
            )
        )
        lines += body
        last = number == n_events - 1
        if not last or draw(BOOLS):
            lines.append(b"")  # the closing blank line; the last one may be missing
            if last:
                lines += draw(JUNK)
    return terminate(draw, lines), expected


# No explain phase: it only reruns a failure to annotate it, and doubles the time of a failing run.
BOUNDED = settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


@BOUNDED
@given(stream=sse_streams(), data=st.data())
def test_sse_stream_round_trips_whole_and_split(
    stream: tuple[bytes, list[ServerSentEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    whole = decode([raw])
    # the data, event types and ids come back as built (data: the original text as UTF-8)
    assert whole == expected
    assert [e.text for e in whole] == [e.data.decode() for e in expected]
    # and the same events come out wherever the bytes are cut
    cuts = data.draw(cut_positions(raw), label="cuts")
    assert decode(split_at(raw, cuts)) == whole


@st.composite
def jsonl_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A JSON Lines byte stream and the numbered lines it must give."""
    lines = draw(JSONL_LINES)
    expected = [(i + 1, line) for i, line in enumerate(lines) if line.startswith(b"{")]
    return terminate(draw, lines), expected


@BOUNDED
@given(stream=jsonl_streams(), data=st.data())
def test_jsonl_any_split_reads_like_the_whole(
    stream: tuple[bytes, list[tuple[int, bytes]]], data: st.DataObject
) -> None:
    raw, expected = stream
    assert read_lines([raw]) == expected
    cuts = data.draw(cut_positions(raw), label="cuts")
    assert read_lines(split_at(raw, cuts)) == expected


def test_own_id_tells_a_carried_id_from_an_inherited_one() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 1\n\ndata: c\n\nid: 2\ndata: d\n\n")
    assert [(e.data, e.id, e.own_id) for e in events] == [
        (b"a", "1", True),
        (b"b", "1", False),
        (b"c", "1", False),  # the id line belonged to an event block with no data
        (b"d", "2", True),
    ]


# --------------------------------------------------------------------------------------------
# The C-loop branch of the scanner (runs of data / blank pairs and event / data / blank
# triples) against the line loop alone, on streams built to trip it
# --------------------------------------------------------------------------------------------

NAME = st.sampled_from(["", "message", "content_block_delta", "response.output_text.delta", "é"])
#: Lines that break a run of the common shapes, each what a real or hostile server sends.
BREAKERS = st.sampled_from(
    [
        b": ping",
        b"id: 7",
        b"id: x\0y",
        b"retry: 10",
        b"event:tight",
        b"data:tight",
        b"data",
        b"event",
        b"dat\xef\xbb\xbfa: spoiled",
        b"data: [DONE]",
        b"x" * 50,  # longer than the small max_line below
    ]
)


@st.composite
def shaped_streams(draw: st.DrawFn) -> bytes:
    """Mostly events of the two common shapes (pairs and triples), with lines that break
    a run in between, blank-line floods and events of several data lines."""
    return terminate(draw, draw(shaped_lines()))


@st.composite
def shaped_lines(draw: st.DrawFn) -> list[bytes]:
    """The lines of :func:`shaped_streams`, with no line endings."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["pair", "triple", "triple", "breaker", "blanks", "two"]))
        text = draw(TEXT).encode()
        if kind == "pair":
            lines += [b"data: " + text, b""]
        elif kind == "triple":
            lines += [b"event: " + draw(NAME).encode(), b"data: " + text, b""]
        elif kind == "breaker":
            lines.append(draw(BREAKERS))
        elif kind == "blanks":
            lines += [b""] * draw(st.integers(1, 4))
        else:
            lines += [b"event: " + draw(NAME).encode(), b"data: " + text, b"data: 2", b""]
    return lines


def scanned(pieces: list[bytes], max_line: int) -> list[object]:
    decoder = SSEDecoder(max_line=max_line)
    out: list[object] = []
    for piece in pieces:
        out += decoder.scan(piece)
    out += decoder.scan(b"", final=True)
    return [str(e) if isinstance(e, DecodeError) else e for e in out]


@BOUNDED
@given(raw=shaped_streams(), small=BOOLS, data=st.data())
def test_the_scanners_c_loops_cut_as_the_line_loop_does(
    raw: bytes, small: bool, data: st.DataObject
) -> None:
    max_line = 40 if small else 1 << 20
    pieces = split_at(raw, data.draw(cut_positions(raw), label="cuts"))
    with mock.patch.object(SSEDecoder, "_scan", SSEDecoder._scan_lines):
        expected = scanned([raw], max_line)
        assert scanned(pieces, max_line) == expected  # (the loop alone: any split, the same)
    assert scanned([raw], max_line) == expected
    assert scanned(pieces, max_line) == expected


def test_the_scanners_c_loops_take_a_run_of_triples_after_an_event_in_progress() -> None:
    decoder = SSEDecoder()
    assert decoder.scan(b"event: a\ndata: 1\n") == []
    records = decoder.scan(b"\nevent: b\ndata: 2\n\nevent: \ndata: 3\n\ndata: 4\n\n")
    assert records == [
        (b"1", "a", None, None, 2, False),
        (b"2", "b", None, None, 5, False),
        (b"3", "message", None, None, 8, False),
        (b"4", "message", None, None, 10, False),
    ]


@BOUNDED
@given(
    lines=shaped_lines(),
    max_line=st.sampled_from([12, 24, 40, 1 << 20]),
    crlf=BOOLS,
    data=st.data(),
)
def test_a_read_of_one_whole_event_is_cut_as_the_full_path_cuts_it(
    lines: list[bytes], max_line: int, crlf: bool, data: st.DataObject
) -> None:
    # Reads of one event each, as a network body gives them, take ``_one_event``; the
    # records (payload, event name, id, retry, line number) and errors are the full path's.
    # Reads are cut after every event and after some other lines (a field or a long line in
    # a read of its own, then an event).
    raw = b"\n".join(lines) + b"\n"
    if crlf and lines:  # one line ended by CR LF: that read takes the full path
        at = data.draw(st.integers(0, len(lines) - 1), label="crlf")
        raw = b"\n".join(lines[:at]) + b"\n" * bool(at) + lines[at] + b"\r\n"
        raw += b"".join(line + b"\n" for line in lines[at + 1 :])
    ends = [i + 2 for i in range(len(raw) - 1) if raw[i : i + 2] == b"\n\n"]
    line_ends = [i + 1 for i, byte in enumerate(raw) if byte == 0x0A]
    if line_ends:
        ends += data.draw(st.lists(st.sampled_from(line_ends), max_size=6), label="line ends")
    cuts = ends + data.draw(st.lists(st.integers(0, len(raw)), max_size=3), label="more cuts")
    pieces = split_at(raw, cuts)
    with mock.patch.object(SSEDecoder, "_scan", SSEDecoder._scan_lines):
        expected = scanned([raw], max_line)
    with mock.patch.object(SSEDecoder, "_one_event", return_value=None):
        assert scanned(pieces, max_line) == expected
    assert scanned(pieces, max_line) == expected


def test_reads_of_one_event_each_are_cut_without_the_line_cutter() -> None:
    decoder = SSEDecoder()
    assert decoder.scan(b"data: 0\n\n") == [(b"0", "message", None, None, 1, False)]
    with mock.patch.object(SSEDecoder, "_scan", side_effect=AssertionError("the full path")):
        assert decoder.scan(b"data: 1\n\n") == [(b"1", "message", None, None, 3, False)]
        assert decoder.scan(b"event: e\ndata: 2\n\n") == [(b"2", "e", None, None, 6, False)]


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_one_event_at_the_line_limit_is_cut_as_the_full_path_cuts_it(extra: int) -> None:
    max_line = 16
    reads = [
        b"data: 0\n\n",
        b"data: " + b"x" * (max_line - 6 + extra) + b"\n\n",
        b"event: " + b"e" * (max_line - 7 + extra) + b"\ndata: 1\n\n",
        b"event: e\ndata: " + b"y" * (max_line - 6 + extra) + b"\n\n",
        b"data: 2\n\n",
    ]
    with mock.patch.object(SSEDecoder, "_one_event", return_value=None):
        expected = scanned(reads, max_line)
    assert scanned(reads, max_line) == expected
    assert len(expected) == 5
