"""Differential tests against the OpenAI SDK's own accumulator.

``openai.lib.streaming.chat.ChatCompletionStreamState`` is what ``client.chat.completions.stream``
uses to rebuild a completion from its chunks. For the streams OpenAI itself sends, our result must
be the SDK's, field for field, once both are in the non-streaming JSON shape.

Normalisation of the SDK's side (and why):

* ``model_dump()``, then every ``None`` object member dropped, recursively: our ``to_dict``
  omits nulls, the SDK's models carry every optional field as ``None``.
* ``message.parsed``, ``tool_calls[].function.parsed_arguments`` dropped: SDK-only keys for its
  structured-output helpers, not part of the API's JSON.
* ``tool_calls[].index`` dropped: the SDK keeps the streaming index on the merged call; the
  non-streaming API has none (docs/merge-rules.md, *Tool calls*).
* ``get_final_completion()`` refuses a choice that finished with ``length`` or
  ``content_filter`` (``LengthFinishReasonError``, ``ContentFilterFinishReasonError``: it can
  not parse such content). For those we compare ``current_completion_snapshot``, the very object
  it would have parsed.

What the generated streams keep to, because the SDK merges these differently (documented in the
report, asserted for our side in test_roundtrip.py):

* choices and tool calls first appear in index order: the SDK indexes its list of choices (and
  puts a call at list position ``index``), so a stream whose choice 1 comes before choice 0
  crashes it (``IndexError``), and a call 1 before call 0 is merged into the wrong call;
* the tool-call ``id`` and ``function.name`` only on the first fragment of a call, the role only
  on the first delta: the SDK concatenates every string it sees again (``"call_1call_1"``);
* no logprob entries on the chunk where a choice first appears, unless it is the stream's first
  chunk: the SDK copies that chunk's ``logprobs`` into the new choice and then appends the same
  entries again, so they come out twice (OpenAI's first chunk of a choice carries
  ``"content": []``, so real streams never hit this);
* ``system_fingerprint`` and ``service_tier`` on every chunk, unknown top-level keys at least on
  the first, the usage only on the last: the SDK takes the fingerprint and the usage from the
  last chunk (even when it is ``null``) and the service tier and unknown keys from the first;
  our rules keep the last non-null value of each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from aggregator import Assembler, EndReason, Result, to_dict

from .conftest import DATA
from .strategies import (
    DONE,
    JSON,
    bounded,
    byte_pieces,
    chat_chunks,
    chat_completions,
    drop_nones,
    line_endings,
    sse_bytes,
)

RECORDINGS = sorted((DATA / "openai").glob("*.sse"))
#: INDEX.md's table: the number of chunks in each recording.
CHUNK_COUNTS = {
    name: int(count)
    for name, count in re.findall(
        r"^\| (\S+\.sse) \| (\d+) \|", (DATA / "openai" / "INDEX.md").read_text("utf-8"), re.M
    )
}


def sse_payloads(raw: bytes) -> list[JSON]:
    """The test's own minimal SSE reading: the JSON of every ``data:`` line up to ``[DONE]``.

    Enough for these recordings: one ``data:`` line per event, LF line endings.
    """
    chunks: list[JSON] = []
    for line in raw.decode("utf-8").split("\n"):
        if line.startswith("data:"):
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                break
            chunks.append(json.loads(payload))
    return chunks


def sdk_final(chunks: list[JSON]) -> JSON:
    """What the SDK's accumulator rebuilds from ``chunks``, normalised (see the module doc)."""
    state: Any = ChatCompletionStreamState()
    for chunk in chunks:
        # `construct` is how the SDK itself builds chunks from a stream (no validation, so
        # finish reasons beyond its Literal pass, as they do on the wire).
        state.handle_chunk(ChatCompletionChunk.construct(**chunk))
    finishes = {c.finish_reason for c in state.current_completion_snapshot.choices}
    if finishes & {"length", "content_filter"}:
        final = state.current_completion_snapshot
    else:
        final = state.get_final_completion()
    dumped: JSON = drop_nones(final.model_dump())
    for choice in dumped["choices"]:
        message = choice["message"]
        message.pop("parsed", None)
        for call in message.get("tool_calls", []):
            call.pop("index", None)
            call["function"].pop("parsed_arguments", None)
    return dumped


def ours(pieces: list[bytes]) -> Result:
    """Our one result for an SSE source that ends with ``[DONE]``."""
    assembler = Assembler("differential")
    results: list[Result] = []
    for piece in pieces:
        results += assembler.feed(piece)
    results += assembler.close()
    report = assembler.report
    assert report is not None
    assert (report.ok, report.error, report.problems) == (True, None, ())
    assert report.reason is EndReason.DONE
    assert len(results) == 1
    result = results[0]
    assert (result.reason, result.complete, result.error) == (EndReason.DONE, True, None)
    assert (result.problems, result.notes) == ((), ())
    return result


def test_every_recording_is_listed() -> None:
    assert sorted(CHUNK_COUNTS) == [p.name for p in RECORDINGS]
    assert len(RECORDINGS) == 12


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_recording_matches_sdk(path: Path) -> None:
    raw = path.read_bytes()
    chunks = sse_payloads(raw)
    assert len(chunks) == CHUNK_COUNTS[path.name]

    result = ours([raw])

    assert result.chunks == len(chunks)
    assert to_dict(result.completion) == sdk_final(chunks)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_recording_read_byte_by_byte(path: Path) -> None:
    """The same recordings as a network might deliver them, one byte at a time."""
    raw = path.read_bytes()
    result = ours([raw[i : i + 1] for i in range(len(raw))])
    assert to_dict(result.completion) == sdk_final(sse_payloads(raw))


@given(data=st.data())
@bounded(100)
def test_generated_streams_match_sdk(data: st.DataObject) -> None:
    """Streams the SDK merges correctly: its result, ours and the original are the same."""
    completion = data.draw(chat_completions(), label="completion")
    chunks = data.draw(chat_chunks(completion, order="index", sdk_compatible=True), label="chunks")
    raw = data.draw(sse_bytes([*chunks, DONE], endings=data.draw(line_endings())))
    result = ours(data.draw(byte_pieces(raw), label="pieces"))

    assert to_dict(result.completion) == sdk_final(chunks)
    assert to_dict(result.completion) == drop_nones(completion)


@given(data=st.data())
@bounded(60)
def test_choices_out_of_index_order(data: st.DataObject) -> None:
    """Choices that first appear out of index order (which the SDK cannot merge: it indexes a
    list by the choice index) still come out exact, ordered by index."""
    completion = data.draw(chat_completions(min_choices=2), label="completion")
    chunks = data.draw(chat_chunks(completion, order="not_index"), label="chunks")
    first_seen = list(dict.fromkeys(c["index"] for chunk in chunks for c in chunk["choices"]))
    assert first_seen != sorted(first_seen)
    raw = data.draw(sse_bytes([*chunks, DONE], endings=data.draw(line_endings())))
    result = ours(data.draw(byte_pieces(raw), label="pieces"))

    assert to_dict(result.completion) == drop_nones(completion)
