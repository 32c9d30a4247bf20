"""The fused path and its fast lane give exactly what the stages give one by one.

``FusedSource`` runs the default pipeline with the decoder, and merges the common chunk from its
bytes (see aggregator/_fused.py). The oracle here is the same pipeline run stage by stage, with
no fusion and no lane: ``decode() | dedupe() | collect_usage() | merge_deltas() | assemble()``.
The streams are made to trip the lane: strings with quotes, backslashes, escapes and key-like
text; fingerprints that change mid-stream; obfuscation strings; interleaved choices; content
parts; error payloads, garbage and ``[DONE]`` in the middle; several completions in one source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import Result, stages, structure_chunk, to_dict
from aggregator._fused import FusedSource

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


def unfused(pieces: Sequence[bytes], *, strict: bool = True) -> list[Result]:
    """The default pipeline, stage by stage, with no fusion and no lane."""
    steps = [stages.decode("s", strict=strict), *stages.default_pipeline().stages]
    out: list[Any] = []
    for piece in pieces:
        batch: list[Any] = [piece]
        for step in steps:
            batch = step.process_batch(batch)
        out += batch
    batch = []
    for step in steps:
        batch = step.process_batch(batch)
        step.finish(batch)
    return out + batch


def fused(pieces: Sequence[bytes], *, strict: bool = True) -> list[Result]:
    source = FusedSource("s", strict=strict)
    out: list[Any] = []
    for number, piece in enumerate(pieces, 1):
        out += source.feed_raw(piece, number)
    return out + source.close()


def summary(results: Sequence[Result]) -> list[tuple[Any, ...]]:
    return [
        (
            r.key,
            r.reason,
            r.where,
            r.finished,
            str(r.error),
            [str(p) for p in r.problems],
            r.chunks,
            r.duplicates,
            to_dict(r.completion),
            None if r.usage is None else to_dict(r.usage),
        )
        for r in results
    ]


def assert_same(pieces: Sequence[bytes], *, strict: bool = True) -> list[Result]:
    got = fused(pieces, strict=strict)
    assert summary(got) == summary(unfused(pieces, strict=strict))
    return got


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
def test_fused_sse_equals_the_stages_one_by_one(data: bytes, strict: bool, pieces: Any) -> None:
    assert_same(pieces.draw(byte_pieces(data)), strict=strict)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(chunk_dicts(), max_size=25), style=st.integers(0, 2), pieces=st.data())
def test_fused_json_lines_equal_the_stages_one_by_one(
    chunks: list[JSON], style: int, pieces: Any
) -> None:
    data = b"".join(dumps(c, style) + b"\n" for c in chunks)
    assert_same(pieces.draw(byte_pieces(data)))


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(chunk_dicts(), max_size=25))
def test_fused_parsed_payloads_equal_the_stages_one_by_one(chunks: list[JSON]) -> None:
    got = fused(chunks)  # type: ignore[arg-type]
    assert summary(got) == summary(unfused(chunks))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(chunk_dicts(), max_size=25), usage_at=st.sets(st.integers(0, 24)))
def test_fused_chunk_events_equal_the_stages_one_by_one(
    chunks: list[JSON], usage_at: set[int]
) -> None:
    for i in usage_at:  # events with usage take the full path; the others may not
        if i < len(chunks):
            chunks[i]["usage"] = {"prompt_tokens": i, "completion_tokens": 1, "total_tokens": i}
    events: Any = [structure_chunk(c) for c in chunks]
    assert summary(fused(events)) == summary(unfused(events))
    source = FusedSource("s")  # and fed in one loop, as a sync source is
    out: list[Any] = []
    assert source.feed_all(iter(events), 0, out) == len(events)
    assert summary(out + source.close()) == summary(unfused(events))


def test_the_lane_merges_repeated_shapes_and_is_exact() -> None:
    """A long run of one shape: the chunks go through the lane, and the result is exact,
    escapes, a changed fingerprint and obfuscation included."""
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
        (result,) = assert_same([data + b"data: [DONE]\n\n"])
        assert result.complete
        assert result.chunks == len(events)
        message = to_dict(result.completion)["choices"][0]["message"]
        assert message["content"] == "".join(texts)
        assert result.completion.system_fingerprint == "fp_a"


def test_every_recording_fused_equals_the_stages_one_by_one() -> None:
    paths = sorted((DATA / "openai").glob("*.sse")) + sorted((DATA / "providers").glob("*.*l*"))
    paths += sorted((DATA / "providers").glob("*.sse"))
    assert len(paths) >= 37
    for path in paths:
        data = path.read_bytes()
        assert_same([data])
        assert_same([data[i : i + 7] for i in range(0, len(data), 7)])
