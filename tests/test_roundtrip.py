"""Round trip: stream a completion, frame it, cut the bytes anywhere, assemble it back.

The property: whatever the completion (see ``strategies.py``) and however its stream is chunked,
framed (SSE or JSON Lines) and cut into reads, the :class:`aggregator.Assembler` gives exactly one
complete result whose :func:`aggregator.to_dict` is the completion itself, nulls omitted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aggregator
from aggregator import Assembler, EndReason, Result, to_dict

from .strategies import (
    DONE,
    JSON,
    MIXED_ENDINGS,
    bounded,
    byte_pieces,
    chat_chunks,
    chat_completions,
    drop_nones,
    interleavings,
    jsonl_bytes,
    line_endings,
    sse_bytes,
    text_chunks,
    text_completions,
)

FRAMINGS = st.sampled_from(["sse", "jsonl"])


def assemble_pieces(
    pieces: Sequence[bytes], *, format: aggregator.Format = "auto", interleaved: bool = False
) -> list[Result]:
    """Feed ``pieces`` one by one, then close: every result, in order. The source itself had
    no trouble (its report is clean)."""
    assembler = Assembler("roundtrip", format=format, interleaved=interleaved)
    results: list[Result] = []
    for piece in pieces:
        results += assembler.feed(piece)
    results += assembler.close()
    report = assembler.report
    assert report is not None
    assert report.error is None
    assert report.problems == ()
    assert report.completions == len(results)
    assert report.ok
    return results


def completions(*, max_choices: int = 3) -> st.SearchStrategy[JSON]:
    """Chat and text completions."""
    return st.one_of(
        chat_completions(max_choices=max_choices), text_completions(max_choices=max_choices)
    )


def stream_of(completion: JSON, *, vary_header: bool) -> st.SearchStrategy[list[JSON]]:
    if completion["object"] == "chat.completion":
        return chat_chunks(completion, vary_header=vary_header)
    return text_chunks(completion, vary_header=vary_header)


def framed(data: st.DataObject, chunks: list[JSON], framing: str, endings: Sequence[str]) -> bytes:
    if framing == "sse":
        return data.draw(sse_bytes([*chunks, DONE], endings=endings), label="bytes")
    return data.draw(jsonl_bytes(chunks, endings=endings), label="bytes")


def check_single(data: st.DataObject, completion: JSON, endings: Sequence[str]) -> None:
    """The property for one completion, one stream, one framing."""
    chunks = data.draw(stream_of(completion, vary_header=True), label="chunks")
    framing = data.draw(FRAMINGS, label="framing")
    raw = framed(data, chunks, framing, endings)
    pieces = data.draw(byte_pieces(raw), label="pieces")
    format_: aggregator.Format = data.draw(st.sampled_from(["auto", framing]), label="format")

    results = assemble_pieces(pieces, format=format_)

    assert len(results) == 1
    result = results[0]
    assert result.error is None
    assert result.problems == ()
    assert result.notes == ()  # nothing absorbed: the stream is as the API sends it
    assert result.reason is (EndReason.DONE if framing == "sse" else EndReason.EXHAUSTED)
    assert result.complete
    assert result.chunks == len(chunks)
    assert to_dict(result.completion) == drop_nones(completion)


@given(data=st.data())
@bounded(100)
def test_chat_roundtrip(data: st.DataObject) -> None:
    completion = data.draw(chat_completions(), label="completion")
    check_single(data, completion, data.draw(line_endings(), label="endings"))


@given(data=st.data())
@bounded(60)
def test_text_roundtrip(data: st.DataObject) -> None:
    completion = data.draw(text_completions(), label="completion")
    check_single(data, completion, data.draw(line_endings(), label="endings"))


@given(data=st.data())
@bounded(80)
def test_roundtrip_with_mixed_line_endings(data: st.DataObject) -> None:
    """SSE and JSON Lines allow LF, CRLF and CR, mixed line by line; reads end anywhere."""
    check_single(data, data.draw(completions(), label="completion"), MIXED_ENDINGS)


def test_bare_cr_then_lf_split_before_the_lf() -> None:
    """The smallest case the mixed-endings property found: a line ending in a bare CR, then a
    ``data:`` line ending in LF, and a read that ends just before that LF. Until 28158a2 the
    decoder took that LF for the second half of a CRLF and dropped it, so the blank line that
    ends the event was lost and the next event's data was glued to this one (invalid JSON)."""
    payload = (
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}'
    )
    raw = b": keep-alive\rdata: " + payload + b"\n\ndata: [DONE]\n\n"
    cut = raw.index(b"\n")
    whole = assemble_pieces([raw])
    split = assemble_pieces([raw[:cut], raw[cut:]])
    assert [to_dict(r.completion) for r in split] == [to_dict(r.completion) for r in whole]
    assert [(r.reason, r.complete) for r in split] == [(EndReason.DONE, True)]


@given(data=st.data())
@bounded(60)
def test_roundtrip_from_dicts(data: st.DataObject) -> None:
    """No framing: the chunk dicts through ``add`` (an exhausted source, so complete
    because every choice has a finish reason). The dicts are the caller's: never changed."""
    completion = data.draw(completions(), label="completion")
    chunks = data.draw(stream_of(completion, vary_header=True), label="chunks")
    expected = drop_nones(completion)  # a deep copy: chunks share values with `completion`
    before = json.dumps(chunks)
    assembler = Assembler("dicts")
    results: list[Result] = []
    for chunk in chunks:
        results += assembler.add(chunk)
    results += assembler.close()
    assert assembler.report is not None
    assert assembler.report.ok
    assert len(results) == 1
    assert results[0].reason is EndReason.EXHAUSTED
    assert results[0].complete
    assert to_dict(results[0].completion) == expected
    assert json.dumps(chunks) == before


@given(data=st.data())
@bounded(40)
def test_several_completions_sse(data: st.DataObject) -> None:
    """Completions one after the other, each ended by ``[DONE]``: one result each, in order."""
    originals = data.draw(st.lists(completions(max_choices=2), min_size=2, max_size=3))
    events: list[JSON | str] = []
    for completion in originals:
        events += data.draw(stream_of(completion, vary_header=True))
        events.append(DONE)
    raw = data.draw(sse_bytes(events, endings=data.draw(line_endings())))
    results = assemble_pieces(data.draw(byte_pieces(raw)))

    assert [(r.reason, r.complete) for r in results] == [(EndReason.DONE, True)] * len(originals)
    assert [to_dict(r.completion) for r in results] == [drop_nones(c) for c in originals]


@given(data=st.data())
@bounded(40)
def test_several_completions_jsonl_one_after_another(data: st.DataObject) -> None:
    """JSON Lines of several completions, one response body after another with no end marker:
    a chunk with a new ``id`` after a finished completion starts the next (no ``interleaved``)."""
    originals = data.draw(
        st.lists(completions(max_choices=2), min_size=2, max_size=3, unique_by=lambda c: c["id"])
    )
    lines = [line for c in originals for line in data.draw(stream_of(c, vary_header=False))]
    raw = data.draw(jsonl_bytes(lines, endings=data.draw(line_endings())))
    results = assemble_pieces(data.draw(byte_pieces(raw)))

    assert [(r.reason, r.complete) for r in results] == [(EndReason.EXHAUSTED, True)] * len(
        originals
    )
    assert [r.notes for r in results] == [()] * len(originals)
    assert [to_dict(r.completion) for r in results] == [drop_nones(c) for c in originals]


@given(data=st.data())
@bounded(40)
def test_several_completions_jsonl_interleaved(data: st.DataObject) -> None:
    """JSON Lines of several completions, their chunks interleaved, told apart by ``id``
    (``interleaved=True``: by default one response body is one completion)."""
    originals = data.draw(
        st.lists(completions(max_choices=2), min_size=2, max_size=3, unique_by=lambda c: c["id"])
    )
    streams = [data.draw(stream_of(c, vary_header=False)) for c in originals]
    lines = data.draw(interleavings(streams))
    raw = data.draw(jsonl_bytes(lines, endings=data.draw(line_endings())))
    results = assemble_pieces(data.draw(byte_pieces(raw)), interleaved=True)

    assert [(r.reason, r.complete) for r in results] == [(EndReason.EXHAUSTED, True)] * len(
        originals
    )
    assert [r.notes for r in results] == [()] * len(originals)
    by_id = {r.completion.id: to_dict(r.completion) for r in results}
    assert by_id == {c["id"]: drop_nones(c) for c in originals}


@pytest.mark.anyio
@given(data=st.data())
@bounded(25)
async def test_assemble_from_async_pieces(data: st.DataObject) -> None:
    """``aggregator.assemble`` over an async generator of random-sized reads."""
    completion = data.draw(completions(), label="completion")
    chunks = data.draw(stream_of(completion, vary_header=True), label="chunks")
    framing = data.draw(FRAMINGS, label="framing")
    raw = framed(data, chunks, framing, data.draw(line_endings(), label="endings"))
    pieces = data.draw(byte_pieces(raw), label="pieces")
    pulled: list[int] = []

    async def reads() -> AsyncIterator[bytes]:
        for number, piece in enumerate(pieces):
            await anyio.lowlevel.checkpoint()
            pulled.append(number)
            yield piece

    assembled = await aggregator.assemble(reads(), name="async")

    assert to_dict(assembled) == drop_nones(completion)
    assert pulled == list(range(len(pieces)))
