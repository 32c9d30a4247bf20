"""The engine: its branches against its one path, its routing rules, and the protocol seam.

The fast branches (the byte-shape lane, the hot stream of a sync source) are switched in one
place each, and must give exactly what the engine gives without them. The streams here are made
to trip them: strings with quotes, backslashes, escapes and key-like text; fingerprints that
change mid-stream; obfuscation strings; interleaved choices; content parts; error payloads,
garbage and ``[DONE]`` in the middle; several completions in one source; every recording.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregator
from aggregator import EndReason, Result, SourceReport, to_dict
from aggregator._core import _engine
from aggregator._core._chat._completions import ChatChoice, ChatCompletion, ChatMessage
from aggregator._core._protocol import CHUNK, ERROR, LAST, SKIP, START, Parsed, Protocol
from aggregator.lowlevel import PROTOCOLS, Engine, structure_chunk

from .conftest import DATA
from .strategies import byte_pieces

JSON = dict[str, Any]

#: Strings that look like the bytes the lane cuts at.
TRICKY = [
    '"',
    "\\",
    '\\"',
    '"content":',
    '","logprobs":null',
    '"}',
    "\u00e9",
    "\U0001f600",
    "\n",
    '"obfuscation":"x"}',
    "",
]
TEXT = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
#: Values of a delta label (``channel``), one with a quote.
LABELS = ["analysis", "analysis", "final", 'a"b']


def run(
    pieces: Sequence[Any], *, strict: bool = True, fast_lane: bool = True, **options: Any
) -> tuple[list[Any], Engine]:
    engine = Engine("s", strict=strict, fast_lane=fast_lane, **options)
    out: list[Any] = []
    for piece in pieces:
        out += engine.feed_item(piece)
    return out + engine.close(), engine


def summary(out: Sequence[Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for r in out:
        if isinstance(r, SourceReport):
            rows.append((r.reason, r.where, str(r.error), [str(p) for p in r.problems]))
            continue
        rows.append(
            (
                r.key,
                r.reason,
                r.where,
                r.finished,
                str(r.error),
                [str(p) for p in r.problems],
                r.notes,
                r.chunks,
                r.duplicates,
                to_dict(r.completion),
            )
        )
    return rows


def assert_lane_exact(pieces: Sequence[Any], *, strict: bool = True) -> tuple[list[Any], int]:
    """The same pieces with the lane on and off: the same results. Returns the results and
    how many payloads the lane merged."""
    on, engine = run(pieces, strict=strict)
    off, _ = run(pieces, strict=strict, fast_lane=False)
    assert summary(on) == summary(off)
    lane = engine._lane
    return on, 0 if lane is None else lane.merged


@st.composite
def chunk_dicts(draw: st.DrawFn) -> JSON:
    chunk: JSON = {
        "id": draw(st.sampled_from(["chatcmpl-a", "chatcmpl-a", "chatcmpl-a", "chatcmpl-b", ""])),
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": draw(st.sampled_from(["m", "m", "m", "m", "other", ""])),
    }
    if draw(st.booleans()):
        chunk["system_fingerprint"] = draw(st.sampled_from(["fp_a", "fp_a", "fp_b", None]))
    if draw(st.integers(0, 4)) == 0:
        chunk["service_tier"] = draw(st.sampled_from(["default", "flex"]))
    delta: JSON = draw(
        st.one_of(
            st.fixed_dictionaries({"content": TEXT}),
            st.fixed_dictionaries({"content": TEXT}),
            st.fixed_dictionaries({"content": TEXT}),
            st.fixed_dictionaries({"reasoning_content": TEXT, "content": st.none()}),
            st.fixed_dictionaries({"reasoning": TEXT}),
            st.fixed_dictionaries({"refusal": TEXT}),
            st.fixed_dictionaries({"role": st.just("assistant"), "content": st.just("")}),
            # labels in the delta (Groq's gpt-oss: "channel"), which the full path sets, and
            # other keys it joins or keeps as sent (not a label; not a string)
            st.fixed_dictionaries({"reasoning": TEXT, "channel": st.sampled_from(LABELS)}),
            st.fixed_dictionaries({"reasoning": TEXT, "channel": st.sampled_from(LABELS)}),
            st.fixed_dictionaries({"content": TEXT, "channel": st.sampled_from(LABELS)}),
            st.fixed_dictionaries(
                {"channel": st.sampled_from(LABELS), "reasoning": TEXT, "content": st.none()}
            ),
            st.fixed_dictionaries(
                {"reasoning": TEXT, "channel": st.sampled_from(LABELS), "name": st.just("n")}
            ),
            st.fixed_dictionaries(
                {
                    "reasoning": TEXT,
                    "note": st.sampled_from(["x", "y"]),
                    "channel": st.sampled_from([None, 3, "analysis"]),
                }
            ),
            st.fixed_dictionaries(
                {
                    "content": st.lists(
                        st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
                    )
                }
            ),
            st.just({}),
        )
    )
    choice: JSON = {"index": draw(st.sampled_from([0, 0, 0, 1])), "delta": delta}
    if draw(st.booleans()):
        choice["logprobs"] = None
    choice["finish_reason"] = draw(st.sampled_from([None, None, None, None, "stop"]))
    chunk["choices"] = [choice]
    if draw(st.integers(0, 3)) == 0:
        chunk["usage"] = None
    if draw(st.booleans()):
        chunk["obfuscation"] = draw(st.sampled_from(["abc", "x", "", 'q"r', "s\\t", "12345678"]))
    return chunk


@st.composite
def tool_and_text_chunks(draw: st.DrawFn) -> JSON:
    """Chunks of the other shapes the lane learns: tool-call argument fragments (with the
    id, type and name repeated, sent empty or changed, as servers do) and text completions."""
    head: JSON = {
        "id": draw(st.sampled_from(["c", "c", "c", "d"])),
        "created": 1,
        "model": draw(st.sampled_from(["m", "m", "m", "other"])),
    }
    if draw(st.booleans()):
        head["system_fingerprint"] = draw(st.sampled_from(["fp_a", "fp_b"]))
    if draw(st.integers(0, 3)) == 0:  # a text completion
        choice: JSON = {"text": draw(TEXT), "index": draw(st.sampled_from([0, 0, 1]))}
        choice["logprobs"] = None
        choice["finish_reason"] = draw(st.sampled_from([None, None, None, "stop"]))
        return {**head, "object": "text_completion", "choices": [choice]}
    call: JSON = {"index": draw(st.sampled_from([0, 0, 0, 1]))}
    function: JSON = {"arguments": draw(TEXT)}
    if draw(st.integers(0, 2)) == 0:
        call["id"] = draw(st.sampled_from([None, "", "call_1", "call_1", "call_2"]))
    if draw(st.integers(0, 3)) == 0:
        call["type"] = draw(st.sampled_from([None, "", "function"]))
    if draw(st.integers(0, 3)) == 0:
        function["name"] = draw(st.sampled_from([None, "", "f", "g"]))
    call["function"] = function
    delta: JSON = {"tool_calls": [call]}
    if draw(st.integers(0, 5)) == 0:
        delta["content"] = draw(st.sampled_from([None, "x"]))
    if draw(st.integers(0, 9)) == 0:
        delta["tool_calls"].append({"index": 1, "function": {"arguments": "{}"}})
    finish = draw(st.sampled_from([None, None, None, None, "tool_calls"]))
    chunk: JSON = {**head, "object": "chat.completion.chunk"}
    chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return chunk


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.one_of(tool_and_text_chunks(), chunk_dicts()), max_size=30),
    style=st.integers(0, 2),
    repeat=st.lists(st.integers(0, 29), max_size=8),
    pieces=st.data(),
)
def test_the_lane_gives_what_the_full_path_gives_on_tool_calls_and_text(
    chunks: list[JSON], style: int, repeat: list[int], pieces: Any
) -> None:
    events = [b"data: " + dumps(c, style) + b"\n\n" for c in chunks]
    for at in repeat:  # the same bytes again: the lane's case
        if at < len(events):
            events.insert(at, events[at])
    assert_lane_exact(pieces.draw(byte_pieces(b"".join(events) + b"data: [DONE]\n\n")))


def test_the_lane_is_taken_for_tool_call_arguments_and_text_completions() -> None:
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    fragments = ['{"a": "', 'say \\"hi\\"', "\\\\", '"arguments":', '"}'] * 40
    calls = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{**start, "function": {"name": "f", "arguments": ""}}]
                    },
                }
            ],
        },
        *(
            {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": f}}]},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
            for f in fragments
        ),
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    text_head = {**head, "object": "text_completion"}
    texts = [
        *(
            {
                **text_head,
                "choices": [{"text": t, "index": 0, "logprobs": None, "finish_reason": None}],
            }
            for t in fragments
        ),
        {
            **text_head,
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        },
    ]
    for chunks in (calls, texts):
        for style in (0, 1, 2):
            data = b"".join(b"data: " + dumps(c, style) + b"\n\n" for c in chunks)
            (result, _), merged = assert_lane_exact([data + b"data: [DONE]\n\n"])
            assert result.complete
            assert merged > len(fragments) * 0.9
            choice = to_dict(result.completion)["choices"][0]
            got = choice["message"]["tool_calls"][0]["function"] if chunks is calls else choice
            assert got["arguments" if chunks is calls else "text"] == "".join(fragments)


#: Logprob entries that the plain rule takes, and ones it refuses (a bool, a float offset, an
#: object for a list, a key of no model, a string for a number): the lane must refuse those too.
LOGPROB_VALUES: dict[str, list[Any]] = {
    "tokens": [[" a"], ['"'], ["\\"], ['"text":'], [], None, [1], [True], "x"],
    "token_logprobs": [[-0.1], [0], [None], [-1e-05, -2.5], [], None, [True], ["x"], {}],
    "top_logprobs": [
        *([[{" a": -0.1}], [None], [{'"}': 0, "b": -1.5}], [], None]),
        *([[{"a": True}], [{"a": "x"}], ["x"], [[1]]]),
    ],
    "text_offset": [[3], [0, 12], [], None, [3.0], [True], ["3"]],
}


@st.composite
def logprob_chunks(draw: st.DrawFn) -> JSON:
    """Text-completion chunks with logprobs, plain and not (the lane's logprobs shape)."""
    logprobs: Any = {}
    for key, values in LOGPROB_VALUES.items():
        if draw(st.integers(0, 5)):
            logprobs[key] = draw(st.sampled_from(values))
    if draw(st.integers(0, 9)) == 0:
        logprobs["extra"] = draw(st.sampled_from([None, 1]))
    if draw(st.integers(0, 9)) == 0:  # not an object at all
        logprobs = draw(st.sampled_from([None, [], "x"]))
    choice: JSON = {"text": draw(TEXT), "index": draw(st.sampled_from([0, 0, 0, 1]))}
    if draw(st.integers(0, 9)) == 0:  # logprobs before text: not a shape the lane learns
        choice = {"logprobs": logprobs, **choice}
    else:
        choice["logprobs"] = logprobs
    choice["finish_reason"] = draw(st.sampled_from([None, None, None, None, "stop"]))
    chunk: JSON = {
        "id": draw(st.sampled_from(["c", "c", "c", "d"])),
        "object": "text_completion",
        "created": 1,
        "choices": [choice],
        "model": draw(st.sampled_from(["m", "m", "m", "other"])),
    }
    if draw(st.integers(0, 3)) == 0:
        chunk["system_fingerprint"] = draw(st.sampled_from(["fp_a", "fp_b", None]))
    if draw(st.integers(0, 4)) == 0:
        chunk["obfuscation"] = draw(st.sampled_from(["abc", "", 'q"r', "s\\t"]))
    return chunk


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(logprob_chunks(), max_size=30),
    style=st.integers(0, 2),
    repeat=st.lists(st.integers(0, 29), max_size=8),
    pieces=st.data(),
)
def test_the_lane_gives_what_the_full_path_gives_on_text_with_logprobs(
    chunks: list[JSON], style: int, repeat: list[int], pieces: Any
) -> None:
    events = [b"data: " + dumps(c, style) + b"\n\n" for c in chunks]
    for at in repeat:  # the same bytes again: the lane's case
        if at < len(events):
            events.insert(at, events[at])
    assert_lane_exact(pieces.draw(byte_pieces(b"".join(events) + b"data: [DONE]\n\n")))


def test_the_lane_is_taken_for_text_completions_with_logprobs() -> None:
    words = [" a", '"', "\\", '"text":', '"logprobs":', "}", "]}", "\u00e9", " b"] * 30
    chunks: list[Any] = [
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "choices": [
                {
                    "text": w,
                    "index": 0,
                    "logprobs": {
                        "tokens": [w],
                        "token_logprobs": [-0.5 * i],
                        "top_logprobs": [{w: -0.5 * i, "x": -9}],
                        "text_offset": [i],
                    },
                    "finish_reason": None,
                }
            ],
            "model": "gpt-3.5-turbo-instruct",
        }
        for i, w in enumerate(words)
    ]
    chunks[100]["choices"][0]["logprobs"]["text_offset"] = [100.0]  # the full path's, not merged
    chunks[200]["choices"][0]["logprobs"]["tokens"] = [None]  # (and not plain: a problem)
    for style in (0, 1, 2):
        data = b"".join(b"data: " + dumps(c, style) + b"\n\n" for c in chunks)
        (result, _), merged = assert_lane_exact([data + b"data: [DONE]\n\n"], strict=False)
        assert merged > len(words) * 0.9
        choice = to_dict(result.completion)["choices"][0]
        assert choice["text"] == "".join(words[:200] + words[201:])  # (200: refused, a problem)
        assert choice["logprobs"]["text_offset"][100] == 100
        assert len(choice["logprobs"]["tokens"]) == len(words) - 1
        assert [str(p) for p in result.problems] != []


def dumps(chunk: JSON, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(chunk)
    if style == 1:
        return json.dumps(chunk, separators=(",", ":")).encode()  # \u escapes
    return json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode()


EXTRAS = [
    b"data: [DONE]\n\n",
    b'data: {"error": {"message": "overloaded"}}\n\n',
    b"data: {not json\n\n",
    b'data: {"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"x","tool_calls":null},"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"other",'
    b'"choices":[{"index":0,"delta":{"content":"y"},"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n',
    # a key spelled twice, the second time with an escape: which value wins is the parser's
    b'data: {"id":"chatcmpl-a","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"p","con\\u0074ent":"q"},"finish_reason":null}]}'
    b"\n\n",
    b"id: 7\ndata: "
    + orjson.dumps(
        {
            "id": "chatcmpl-a",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "z"}, "finish_reason": None}],
        }
    )
    + b"\n\n",
]


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    style = draw(st.integers(0, 2))
    events = []
    for chunk in draw(st.lists(chunk_dicts(), max_size=25)):
        events.append(b"data: " + dumps(chunk, style) + b"\n\n")
        if draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(EXTRAS)))
        if draw(st.integers(0, 5)) == 0:  # the same bytes again: the lane's case
            events.append(events[-1])
    return b"".join(events) + (b"data: [DONE]\n\n" if draw(st.booleans()) else b"")


@settings(max_examples=400, deadline=None)
@given(data=sse_streams(), strict=st.booleans(), pieces=st.data())
def test_the_lane_gives_what_the_full_path_gives_on_sse(
    data: bytes, strict: bool, pieces: Any
) -> None:
    assert_lane_exact(pieces.draw(byte_pieces(data)), strict=strict)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(chunk_dicts(), max_size=25), style=st.integers(0, 2), pieces=st.data())
def test_the_lane_gives_what_the_full_path_gives_on_json_lines(
    chunks: list[JSON], style: int, pieces: Any
) -> None:
    data = b"".join(dumps(c, style) + b"\n" for c in chunks)
    assert_lane_exact(pieces.draw(byte_pieces(data)))


def test_the_lane_is_taken_for_a_run_of_one_shape_and_is_exact() -> None:
    """A long run of one shape goes through the lane, and the result is exact: escapes, a
    changed fingerprint and obfuscation included."""
    head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    texts = ['say "hi"', "back\\slash", "caf\u00e9", '"content":', "\\", "end"] * 50
    events = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *(
            {
                **head,
                "system_fingerprint": "fp_a" if i != 100 else "fp_b",
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}],
                "obfuscation": "o" * (i % 7),
            }
            for i, t in enumerate(texts)
        ),
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    for style in (0, 1, 2):
        data = b"".join(b"data: " + dumps(e, style) + b"\n\n" for e in events)
        (result, report), merged = assert_lane_exact([data + b"data: [DONE]\n\n"])
        assert result.complete
        assert report.ok
        assert result.chunks == len(events)
        assert merged > len(texts) * 0.9  # nearly all of them: the lane was really taken
        message = to_dict(result.completion)["choices"][0]["message"]
        assert message["content"] == "".join(texts)
        assert result.completion.system_fingerprint == "fp_a"


def test_the_lane_learns_no_shape_from_a_key_spelled_twice() -> None:
    head = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    twice = head + b'[{"index":0,"delta":{"content":"p","con\\u0074ent":"q"}}]}\n\n'
    other = head + b'[{"index":0,"delta":{"content":"r","con\\u0074ent":"q"}}]}\n\n'
    (result, _), merged = assert_lane_exact([twice, other, b"data: [DONE]\n\n"])
    assert merged == 0
    # orjson keeps the last spelling, as json.loads and the OpenAI SDK do
    assert content(result) == "qq"


def recordings() -> list[Any]:
    paths = sorted((DATA / "openai").glob("*.sse")) + sorted((DATA / "providers").glob("*.*l*"))
    paths += sorted((DATA / "providers").glob("*.sse"))
    assert len(paths) >= 37
    return paths


def test_every_recording_gives_the_same_with_the_lane_on_and_off() -> None:
    taken = 0
    for path in recordings():
        data = path.read_bytes()
        _, merged = assert_lane_exact([data])
        taken += merged
        assert_lane_exact([data[i : i + 7] for i in range(0, len(data), 7)])
    assert taken > 1000  # the recordings' plain runs went through it


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(chunk_dicts(), max_size=25), usage_at=st.sets(st.integers(0, 24)))
def test_a_sync_source_fed_in_one_loop_equals_item_by_item(
    chunks: list[JSON], usage_at: set[int]
) -> None:
    """``feed_items`` merges the next plain event of the current stream without the dispatch;
    it must give what ``feed_item`` gives one item at a time."""
    for i in usage_at:
        if i < len(chunks):
            chunks[i]["usage"] = {"prompt_tokens": i, "completion_tokens": 1, "total_tokens": i}
    for items in (chunks, [structure_chunk(c) for c in chunks]):
        one_by_one, _ = run(items)
        engine = Engine("s")
        looped: list[Any] = []
        engine.feed_items(iter(items), looped)
        assert engine.items == len(items)
        assert summary(looped + engine.close()) == summary(one_by_one)


class Broke(Exception):
    """What the generated sources below raise."""


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(chunk_dicts(), max_size=12),
    data=st.data(),
    as_dicts=st.sets(st.integers(0, 11)),
    junk_at=st.none() | st.integers(0, 11),
    raise_at=st.none() | st.integers(0, 60),
    strict=st.booleans(),
)
def test_a_sync_source_of_bytes_fed_in_one_loop_equals_item_by_item(
    chunks: list[JSON],
    data: st.DataObject,
    as_dicts: set[int],
    junk_at: int | None,
    raise_at: int | None,
    strict: bool,
) -> None:
    """``feed_items`` frames the bytes items read in a row at once: what comes out, the items
    counted and the number a raising source is placed at are those of ``feed_item`` one item
    at a time, whatever the cuts, with dict items between the runs, a malformed payload in a
    run (strict: the source stops there) and a source that raises mid-run."""
    items: list[Any] = []
    for i, c in enumerate(chunks):
        if i == junk_at:
            items.append(b"data: {not json\n\n")
        if i in as_dicts:
            items.append(c)
        else:
            items += data.draw(byte_pieces(b"data: " + orjson.dumps(c) + b"\n\n"))
    items.append(b"data: [DONE]\n\n")

    def source() -> Any:
        for number, item in enumerate(items):
            if number == raise_at:
                raise Broke(f"after {number}")
            yield item

    one = Engine("s", strict=strict)
    one_by_one: list[Any] = []
    raised_after: int | None = None
    try:
        for item in source():
            one_by_one += one.feed_item(item)
            if one.stopped:
                break
    except Broke:
        raised_after = one.items
    looped = Engine("s", strict=strict)
    out: list[Any] = []
    raised: _engine.SourceRaised | None = None
    try:
        looped.feed_items(source(), out)
    except _engine.SourceRaised as exc:
        raised = exc
    if raised_after is None:
        assert raised is None
    else:
        assert raised is not None
        assert (raised.number, type(raised.exception)) == (raised_after, Broke)
    assert summary(out + looped.close()) == summary(one_by_one + one.close())
    if not one.stopped:
        assert looped.items == one.items


def test_a_run_of_bytes_items_is_framed_before_it_holds_more_than_a_piece() -> None:
    # 2 MB of 100-byte lines through feed_items (what assemble_sync does with a file): the
    # lines read but not framed yet never hold more than _PIECE bytes (and one line)
    engine = Engine("s")
    line = b": " + b"x" * 97 + b"\n"
    behind: list[int] = []

    def source() -> Any:
        for number in range(20_000):
            behind.append(number - engine.line)
            yield line

    out: list[Any] = []
    engine.feed_items(source(), out)
    assert engine.line == 20_000
    assert max(behind) * len(line) <= _engine._PIECE + len(line)
    assert max(behind) * len(line) > _engine._PIECE // 2  # (they were run together)


def test_a_sync_source_that_raises_after_a_stop_in_a_run_of_bytes_is_not_raised() -> None:
    # strict: the malformed payload stops the source; one item at a time, the read that raises
    # is never made, so the run read ahead must not raise it either
    good = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    good += b'"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'

    def source() -> Any:
        yield good
        yield b"data: {not json\n\n"
        yield good
        raise Broke("read after the stop")

    engine = Engine("s")
    out: list[Any] = []
    engine.feed_items(source(), out)
    assert engine.stopped
    (result, report) = out + engine.close()
    assert isinstance(result, Result)
    assert result.reason is EndReason.ERROR
    assert result.chunks == 1
    assert isinstance(report, SourceReport)
    assert "invalid JSON" in str(report.error)


# -- routing: one response body is one completion ---------------------------------------------


def chunk(id_: str, delta: JSON, finish: str | None = None, **top: Any) -> JSON:
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": 1750000000,
        "model": "compound-beta",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **top,
    }


def sse(chunks: Sequence[JSON], done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def content(result: Result) -> Any:
    """The content of the first choice of a chat result."""
    completion = result.completion
    assert isinstance(completion, ChatCompletion)
    return completion.choices[0].message.content


def one_result(out: Sequence[Any]) -> Result:
    found = [r for r in out if isinstance(r, Result)]
    assert len(found) == 1, found
    return found[0]


# Groq's groq/compound gives every chunk a new id (modelled on its streams: an id per chunk, the
# tool it ran in executed_tools, sent once at its start and again whole with its output).
GROQ_COMPOUND = [
    chunk("stub-1", {"role": "assistant", "content": ""}, x_groq={"id": "req_1"}),
    chunk(
        "stub-2",
        {"executed_tools": [{"index": 0, "type": "search", "arguments": '{"query": "x"}'}]},
    ),
    chunk(
        "stub-3",
        {
            "executed_tools": [
                {
                    "index": 0,
                    "type": "search",
                    "arguments": '{"query": "x"}',
                    "output": "Title: X",
                }
            ]
        },
    ),
    chunk("stub-4", {"content": "It is "}),
    chunk("stub-5", {"content": "x."}),
    chunk(
        "stub-6",
        {},
        "stop",
        x_groq={
            "id": "req_1",
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        },
    ),
]


@pytest.mark.parametrize("framing", ["sse", "jsonl", "dicts", "events"])
def test_an_id_that_changes_on_every_chunk_is_one_completion(framing: str) -> None:
    if framing == "sse":
        pieces: list[Any] = [sse(GROQ_COMPOUND)]
    elif framing == "jsonl":
        pieces = [b"".join(orjson.dumps(c) + b"\n" for c in GROQ_COMPOUND)]
    elif framing == "dicts":
        pieces = list(GROQ_COMPOUND)
    else:
        pieces = [structure_chunk(c) for c in GROQ_COMPOUND]
    out, _ = run(pieces)
    result = one_result(out)
    assert result.complete
    assert result.completion.id == "stub-1"
    assert result.chunks == len(GROQ_COMPOUND)
    message = to_dict(result.completion)["choices"][0]["message"]
    assert message["content"] == "It is x."
    # the tool entry is sent whole twice: kept once, with its output, arguments not doubled
    assert message["executed_tools"] == [
        {"index": 0, "type": "search", "arguments": '{"query": "x"}', "output": "Title: X"}
    ]
    # x_groq.usage, with no top-level usage: the completion carries it
    assert to_dict(result.completion)["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
    }
    assert result.usage == result.completion.usage
    first, count = result.notes
    assert "the id changed mid-stream from 'stub-1' to 'stub-2'" in first
    assert count == "the id changed 5 times in all"


def test_an_id_that_changes_once_is_absorbed_and_noted() -> None:
    # Avian: chatcmpl-... on the first chunk, gen-... on every one after
    chunks = [
        chunk("chatcmpl-1", {"role": "assistant", "content": "a"}),
        chunk("gen-1", {"content": "b"}),
        chunk("gen-1", {"content": "c"}, "stop"),
    ]
    result = one_result(run([sse(chunks)])[0])
    assert result.complete
    assert (result.completion.id, content(result)) == (
        "chatcmpl-1",
        "abc",
    )
    assert len(result.notes) == 1
    assert "line 3 (event 2)" in result.notes[0]


def test_bodies_one_after_another_are_completions_one_after_another() -> None:
    first = [chunk("a", {"content": "1"}), chunk("a", {}, "stop")]
    second = [chunk("b", {"content": "2"}), chunk("b", {}, "stop")]
    for pieces in ([*first, *second], [sse(first, done=False) + sse(second)]):
        out, _ = run(pieces)
        results = [r for r in out if isinstance(r, Result)]
        assert [r.completion.id for r in results] == ["a", "b"]
        assert [r.notes for r in results] == [(), ()]
        assert out[-1].completions == 2


def test_an_interleaved_source_keeps_a_stream_per_id() -> None:
    a = [chunk("a", {"content": "1"}), chunk("a", {"content": "2"}), chunk("a", {}, "stop")]
    b = [chunk("b", {"content": "x"}), chunk("b", {"content": "y"}), chunk("b", {}, "stop")]
    mixed = [a[0], b[0], a[1], b[1], b[2], a[2]]
    out, _ = run(mixed, interleaved=True)
    got = {r.completion.id: r.completion.choices[0].message.content for r in out[:-1]}
    assert got == {"a": "12", "b": "xy"}
    together = one_result(run(mixed)[0])  # not interleaved: one body whose id changes
    assert content(together) == "1x2y"
    assert together.notes


def test_reasoning_details_of_different_types_under_one_index_stay_apart() -> None:
    # OpenRouter (grok-4.1-fast): a summary and an encrypted entry share index 0
    chunks = [
        chunk(
            "r",
            {
                "reasoning_details": [
                    {"type": "reasoning.summary", "summary": "Think", "index": 0, "format": "x"}
                ]
            },
        ),
        chunk(
            "r",
            {"reasoning_details": [{"type": "reasoning.summary", "summary": "ing.", "index": 0}]},
        ),
        chunk(
            "r",
            {
                "reasoning_details": [
                    {"type": "reasoning.encrypted", "data": "b64==", "index": 0, "format": "x"}
                ]
            },
        ),
        chunk("r", {"content": "Done."}, "stop"),
    ]
    result = one_result(run([sse(chunks)])[0])
    details = to_dict(result.completion)["choices"][0]["message"]["reasoning_details"]
    assert details == [
        {"type": "reasoning.summary", "summary": "Thinking.", "index": 0, "format": "x"},
        {"type": "reasoning.encrypted", "data": "b64==", "index": 0, "format": "x"},
    ]


def test_a_server_that_never_sends_done_is_complete_only_when_lenient() -> None:
    # Writer: every choice finished, usage sent, no [DONE]
    chunks = [
        chunk("w", {"role": "assistant", "content": "hi"}),
        chunk("w", {}, "stop"),
        {
            **chunk("w", {}),
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    ]
    strict = one_result(run([sse(chunks, done=False)])[0])
    assert (strict.reason, strict.complete) == (EndReason.CUT_OFF, False)
    lenient = one_result(run([sse(chunks, done=False)], strict=False)[0])
    assert (lenient.reason, lenient.complete) == (EndReason.EXHAUSTED, True)
    assert lenient.notes == ("line 6: ended without [DONE], every choice finished (lenient)",)
    assert lenient.usage is not None
    assert lenient.usage.total_tokens == 2
    unfinished = one_result(run([sse(chunks[:1], done=False)], strict=False)[0])
    assert (unfinished.reason, unfinished.complete) == (EndReason.CUT_OFF, False)


def test_a_body_without_done_is_placed_where_the_next_body_began_however_it_is_read() -> None:
    # Two bodies of a sequence, neither ending with [DONE]: the first one's note names the
    # event that ended it, not how far the reader had read ahead (the fuzz test found a place
    # that changed with the read sizes)
    first = [chunk("a", {"content": "hi"}), chunk("a", {}, "stop")]
    raw = sse(first, done=False) + sse([chunk("b", {"content": "yo"}, "stop")], done=False)
    whole = run([raw], strict=False)[0]
    by_line = run([line + b"\n" for line in raw.split(b"\n")[:-1]], strict=False)[0]
    assert summary(whole) == summary(by_line)
    assert whole[0].notes == (
        "line 5 (event 3): ended without [DONE], every choice finished (lenient)",
    )
    assert whole[0].where == "line 5 (event 3)"


def test_a_conflicting_model_is_a_conflict_problem_not_a_usage_error() -> None:
    chunks = [chunk("c", {"content": "a"}), {**chunk("c", {"content": "b"}), "model": "other"}]
    result = one_result(run([sse(chunks)])[0])
    assert not result.complete
    (problem,) = result.problems
    assert isinstance(problem, aggregator.ConflictError)
    assert str(problem) == (
        "s, line 3 (event 2): a chunk of model 'other' in a stream of model 'compound-beta'"
    )
    assert content(result) == "a"


def test_an_sdk_chunk_object_is_taken_as_the_json_it_came_from() -> None:
    from openai.types.chat import ChatCompletionChunk as SDKChunk

    objects = [SDKChunk.model_validate(c) for c in GROQ_COMPOUND[3:]]
    result = one_result(run(objects)[0])
    assert content(result) == "It is x."


def test_an_item_of_no_known_kind_is_refused_with_a_hint() -> None:
    with pytest.raises(aggregator.UsageError, match=r"not object \(item 1\).*adapter"):
        Engine("s").feed_item(object())


# -- the protocol seam: a protocol is a module -------------------------------------------------


class _Lines:
    """A toy protocol's accumulator: the text of its ``text`` events."""

    def __init__(self) -> None:
        self.chunks = 0
        self.text: list[str] = []
        self.id = ""
        self.finished = False
        self.notes: list[str] = []
        self.problems: list[aggregator.StreamError] = []

    def add(self, event: Any) -> None:
        raise AssertionError("this protocol merges plain payloads only")

    def add_plain(self, payload: JSON) -> None:
        self.chunks += 1
        self.id = self.id or payload.get("id", "")
        self.text.append(payload.get("text", ""))
        self.finished = payload["type"] == "stop"

    def absorb_ids(self) -> None:
        pass

    def result(self) -> ChatCompletion:
        message = ChatMessage(content="".join(self.text))
        return ChatCompletion(
            id=self.id, created=0, model="toy", choices=[ChatChoice(index=0, message=message)]
        )


class ToyProtocol(Protocol):
    """Messages that start, carry text, and stop; pings; errors; no [DONE]."""

    name: ClassVar[str] = "toy"

    @classmethod
    def recognises(cls, obj: Any, event: str) -> bool:
        return isinstance(obj, dict) and obj.get("type") in {"start", "text", "stop", "ping"}

    def parse(self, obj: Any, where: Any) -> Parsed:
        kind = obj.get("type")
        if kind == "start":
            return (START, obj["id"], obj, None, None)
        if kind == "stop":
            return (LAST, "", obj, None, None)
        if kind == "ping":
            return (SKIP, "", None, None, None)
        if kind == "error":
            error = aggregator.UpstreamError(obj["message"], source=self.source)
            return (ERROR, "", error, None, None)
        return (CHUNK, "", obj, obj.get("seq"), None)

    def accumulator(self) -> Any:
        return _Lines()

    def event(self, payload: JSON, where: str) -> Any:
        return payload


def test_a_protocol_added_behind_the_seam_runs_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "PROTOCOLS", (ToyProtocol, *PROTOCOLS))
    events = [
        b'event: start\ndata: {"type":"start","id":"m1"}\n\n',
        b'data: {"type":"text","text":"Hel","seq":1}\n\n',
        b'data: {"type":"text","text":"Hel","seq":1}\n\n',
        b'data: {"type":"ping"}\n\n',
        b'data: {"type":"text","text":"lo"}\n\n',
        b'data: {"type":"stop"}\n\n',
        b'data: {"type":"start","id":"m2"}\n\n',
        b'data: {"type":"text","text":"cut"}\n\n',
    ]
    engine = Engine("toy")
    out: list[Any] = []
    for event in events:
        out += engine.feed(event)
    out += engine.close()
    first, second, report = out
    assert engine.protocol == "toy"
    assert (first.completion.id, first.completion.choices[0].message.content) == ("m1", "Hello")
    assert (first.reason, first.complete, first.chunks, first.duplicates) == (
        EndReason.DONE,
        True,
        4,
        1,  # the replay of sequence number 1, dropped by its protocol's own dedupe id
    )
    assert (second.completion.id, second.reason) == ("m2", EndReason.CUT_OFF)
    assert (report.reason, report.completions) == (EndReason.CUT_OFF, 2)


@st.composite
def text_payloads(draw: st.DrawFn) -> Any:
    """Text-completion chunks: plain ones, and plain ones with one spoiler (a value of a type
    structuring changes or refuses, an unknown key)."""
    number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-3, 3))
    logprobs: Any = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "tokens": st.lists(TEXT, max_size=2),
                    "token_logprobs": st.lists(st.one_of(number, st.none()), max_size=2),
                    "top_logprobs": st.lists(
                        st.one_of(st.none(), st.dictionaries(TEXT, number, max_size=2)),
                        max_size=2,
                    ),
                    "text_offset": st.lists(st.integers(0, 9), max_size=2),
                },
            ),
        )
    )
    choice: JSON = {"text": draw(TEXT), "index": draw(st.sampled_from([0, 1]))}
    choice["logprobs"] = logprobs
    choice["finish_reason"] = draw(st.sampled_from([None, None, "stop", "length"]))
    chunk: JSON = {
        "id": "cmpl-1",
        "object": draw(st.sampled_from(["text_completion", "completion"])),
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    odd = st.sampled_from([3.0, "1", None, True, [1], {"a": 1}])
    spoiler = draw(st.integers(0, 9))
    if spoiler == 1 and isinstance(logprobs, dict) and logprobs:
        key = draw(st.sampled_from(sorted(logprobs)))
        logprobs[key] = [*logprobs[key], draw(odd)]
    elif spoiler == 2:
        choice[draw(st.sampled_from(["text", "finish_reason", "index", "extra"]))] = draw(odd)
    elif spoiler == 3:
        chunk[draw(st.sampled_from(["created", "usage", "x_other", "system_fingerprint"]))] = draw(
            odd
        )
    elif spoiler == 4:
        choice["logprobs"] = {**(logprobs or {}), "extra": 1}
    return chunk


@settings(max_examples=500, deadline=None)
@given(payloads=st.lists(text_payloads(), min_size=1, max_size=6))
def test_a_plain_text_payload_merges_as_its_event_does(payloads: list[JSON]) -> None:
    """What ``is_plain_text`` admits, structuring takes as it is, and its dict merge is the
    event merge."""
    from aggregator.lowlevel import Accumulator
    from aggregator.lowlevel import is_plain_text as plain

    by_dict, by_event = Accumulator(), Accumulator()
    for payload in payloads:
        if not plain(payload):
            continue
        event = structure_chunk(payload)  # never refused: the check is no looser
        by_dict.add_plain(payload)
        by_event.add(event)
    # as JSON text: an offset kept as 3.0 where structuring makes it 3 would show
    assert orjson.dumps(to_dict(by_dict.result())) == orjson.dumps(to_dict(by_event.result()))
    assert by_dict.chunks == by_event.chunks


def test_the_plain_text_check_admits_the_common_chunk_and_nothing_structuring_changes() -> None:
    from aggregator.lowlevel import is_plain_text as plain

    logprobs = {"tokens": [" a"], "token_logprobs": [-0.5], "top_logprobs": [{" a": -0.5}]}
    common: JSON = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"text": " a", "index": 0, "logprobs": {**logprobs, "text_offset": [3]}}],
    }
    assert plain(common)
    changes: list[JSON] = [
        {"text_offset": [3.0]},  # structuring makes it 3
        {"token_logprobs": ["-0.5"]},
        {"top_logprobs": [{" a": None}]},
        {"extra": 1},  # an unknown key: extras
    ]
    for changed in changes:
        choice = {**common["choices"][0], "logprobs": {**logprobs, **changed}}
        assert not plain({**common, "choices": [choice]}), changed
    assert plain({**common, "usage": {"total_tokens": 1}})  # counts only: structured alone
    refused: list[Any] = [{"total_tokens": 1.0}, {"extras": 1}, {"prompt_tokens_details": 1}, []]
    for usage in refused:
        assert not plain({**common, "usage": usage}), usage
    assert not plain({**common, "usage": {"completion_tokens_details": {"x": "1"}}})
    assert not plain({**common, "created": True})


def test_an_sdk_object_that_gives_no_json_is_bad_input_with_its_place() -> None:
    class Broken:
        def to_dict(self, **options: Any) -> Any:
            raise ValueError("no JSON here")

    first = chunk("c", {"content": "kept"})
    out, _ = run([first, Broken()])
    result, report = out
    assert content(result) == "kept"
    assert str(result.error) == "s, item 2: Broken gave no JSON: ValueError: no JSON here (at $)"
    assert report.error is result.error
    lenient, _ = run([first, Broken(), chunk("c", {"content": "!"}, "stop")], strict=False)
    assert content(lenient[0]) == "kept!"
    assert [str(p) for p in lenient[0].problems] == [str(result.error)]


def test_the_logprobs_shape_merges_only_what_it_can_prove() -> None:
    from aggregator._core._chat._accumulate import Accumulator as ChatAccumulator
    from aggregator._core._chat._plain import Lane, _logprobs_of, _value_end

    lp = {"tokens": [" a"], "token_logprobs": [-0.5], "top_logprobs": [{" a": -0.5}]}

    def chunk(text: str = " a", logprobs: Any = lp, **more: Any) -> JSON:
        choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": None}
        head = {"id": "c", "object": "text_completion", "created": 1}
        return {**head, "choices": [choice], "model": "m", **more}

    acc, lane = ChatAccumulator(), Lane()
    first = chunk(system_fingerprint="fp")
    acc.add_plain(first)
    lane.learn(orjson.dumps(first), first, True, acc)
    assert len(lane.shapes) == 1
    good = orjson.dumps(chunk('say \\"hi\\"', system_fingerprint="fp"))
    refused = [
        good.replace(b'"index":0', b'"index":1'),  # the bytes between changed
        good.replace(b'{"tokens"', b'{"tokens":[}, "x"'),  # not JSON
        good.replace(b'"logprobs":{', b'"logprobs":,{').replace(b"]}]}", b"]]}"),  # no object
        orjson.dumps(chunk(logprobs={**lp, "text_offset": [1.0]}, system_fingerprint="fp")),
        orjson.dumps(chunk(logprobs={**lp, "extra": None}, system_fingerprint="fp")),
        good[:-1],  # not the suffix
    ]
    for payload in refused:
        assert not lane.try_merge(payload), payload
    assert lane.try_merge(good)
    assert to_dict(acc.result())["choices"][0]["text"] == " a" + 'say \\"hi\\"'
    assert acc.system_fingerprint == "fp"
    # what learning refuses: the key twice, a value that is not the one parsed
    payload = orjson.dumps(first)
    suffix = payload[payload.index(b'" a"') + 4 :]
    end = payload.index(b'" a"') + 3
    assert _logprobs_of(payload, suffix + suffix, end, lp) is None
    assert _logprobs_of(payload, suffix, end, {"tokens": []}) is None
    assert _logprobs_of(payload, b',"logprobs":{"a":[}', end, lp) is None
    assert _logprobs_of(payload, b',"logprobs":{"a":1', end, lp) is None
    assert _value_end(b'{"a":"]}"', 0) == -1
    assert _value_end(b'[{"a":"]}"}]x', 0) == 12


@st.composite
def labelled_chunks(draw: st.DrawFn) -> JSON:
    """Chunks of one stream whose deltas carry labels (``channel``), keys that are not labels
    or a second field, in few enough shapes that the lane learns them and meets them again."""
    text = st.one_of(st.sampled_from(["a", "b", '"', "\\"]), TEXT)
    delta: JSON = {draw(st.sampled_from(["reasoning", "reasoning", "content"])): draw(text)}
    if draw(st.integers(0, 3)):
        delta["channel"] = draw(st.sampled_from([*LABELS, None, 3]))
    if not draw(st.integers(0, 2)):
        other = draw(st.sampled_from(["note", "note", "name", "refusal"]))
        delta[other] = draw(st.sampled_from(["n", "no", None]))
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [choice]}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(labelled_chunks(), max_size=30), style=st.integers(0, 2), data=st.data())
def test_the_lane_gives_what_the_full_path_gives_on_labelled_deltas(
    chunks: list[JSON], style: int, data: Any
) -> None:
    events = b"".join(b"data: " + dumps(c, style) + b"\n\n" for c in chunks)
    assert_lane_exact(data.draw(byte_pieces(events + b"data: [DONE]\n\n")))


def test_a_delta_with_a_label_takes_the_lane_and_sets_the_label_back() -> None:
    # Groq's gpt-oss: every reasoning piece carries "channel":"analysis" (a label: the delta
    # rule sets it, never joins it); a chunk of another channel between two of the shape sets
    # it to that one, and the next chunk of the shape sets it back.
    def chunk(delta: JSON) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        payload = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        return b"data: " + orjson.dumps({**payload, "choices": [choice]}) + b"\n\n"

    pieces = [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"reasoning": w, "channel": "analysis"}) for w in ["We", " need", " to"]),
        chunk({"content": "Hi", "channel": "final"}),
        chunk({"reasoning": " think", "channel": "analysis"}),
        b"data: [DONE]\n\n",
    ]
    (result, _), merged = assert_lane_exact(pieces)
    assert merged == 3  # " need", " to" and " think"
    message = to_dict(result.completion)["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("We need to think", "Hi")
    assert message["channel"] == "analysis"
    # a key that is not a label is joined by the delta rule: no lane for it
    notes = [chunk({"reasoning": w, "note": "n"}) for w in ["a", "b", "c"]]
    (result, _), merged = assert_lane_exact([*notes, b"data: [DONE]\n\n"])
    message = to_dict(result.completion)["choices"][0]["message"]
    assert (merged, message["reasoning"], message["note"]) == (0, "abc", "nnn")
    # nor for a delta of two strings, labelled or not
    both = [chunk({"reasoning": "a", "refusal": "no", "channel": "analysis"})] * 3
    (result, _), merged = assert_lane_exact([*both, b"data: [DONE]\n\n"])
    message = to_dict(result.completion)["choices"][0]["message"]
    assert (merged, message["reasoning"], message["refusal"]) == (0, "aaa", "nonono")


@pytest.mark.parametrize("path", ["openai/d61558011839.sse", "openai/f82268f2fefd.sse"])
def test_a_chunk_past_max_completion_is_refused_with_the_lane_as_without(path: str) -> None:
    """Wherever ``max_completion`` falls in a stream the lane merges, the chunk that passes it is
    not merged (the full path's rule: the stream ends with what it held before that chunk), at
    the same place, with the lane on and off."""
    data = (DATA / path).read_bytes()
    total = sum(len(line) - 6 for line in data.split(b"\n") if line.startswith(b"data: {"))
    for budget in range(total // 3, total, max(1, total // 40)):
        limits = aggregator.Limits(max_completion=budget)
        on, engine = run([data], limits=limits)
        off, _ = run([data], limits=limits, fast_lane=False)
        assert summary(on) == summary(off)
        assert engine._lane is not None
        assert engine._lane.merged
        (result,) = [r for r in on if isinstance(r, Result)]
        assert result.reason is EndReason.LIMIT
