"""``to_dict(..., nulls=True)`` and the conversion to the SDKs' own types
(:mod:`aggregator.interop`), on every recording in tests/data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anthropic.types import Message
from anthropic.types.beta import BetaMessage
from openai.types import Completion
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from aggregator import Result, UsageError, results, to_dict
from aggregator._core._chat import structure_chunk
from aggregator.interop import to_anthropic, to_openai
from aggregator.sources import from_file

from .conftest import DATA, without_nulls

RECORDINGS = sorted(
    p for p in DATA.rglob("*") if p.suffix in (".sse", ".jsonl") and "expected" not in p.parts
)
CHAT = [p for p in RECORDINGS if p.parent.name in ("openai", "providers")]
EXAMPLES = Path(__file__).parent.parent / "examples" / "streams"


def _results(path: Path) -> list[Result]:
    async def read() -> list[Result]:
        async with results(from_file(path)) as items:
            return [item async for item in items if isinstance(item, Result)]

    return anyio.run(read)


def _payloads(path: Path) -> list[dict[str, Any]]:
    """The chunk objects of a chat recording, read without the library."""
    lines = path.read_text("utf-8").splitlines()
    if path.suffix == ".sse":
        lines = [line[5:].strip() for line in lines if line.startswith("data:")]
    out = []
    for line in lines:
        if line.startswith("{"):
            payload = json.loads(line)
            if "choices" in payload:
                out.append(payload)
    return out


# --- to_dict(nulls=True) -------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHAT, ids=lambda p: p.name)
def test_a_chunk_written_with_nulls_is_the_chunk_the_server_sent(path: Path) -> None:
    payloads = _payloads(path)
    assert payloads
    for payload in payloads:
        chunk = structure_chunk(payload)
        assert to_dict(chunk, nulls=True) == payload
        assert to_dict(chunk) == without_nulls(payload)  # the default is unchanged


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_with_nulls_less_its_nulls_is_the_default(path: Path) -> None:
    found = _results(path)
    assert found
    for result in found:
        # (the default keeps some nulls inside plain JSON fields: Anthropic's content blocks)
        with_nulls = to_dict(result.completion, nulls=True)
        assert without_nulls(with_nulls) == without_nulls(to_dict(result.completion))


def test_a_tool_call_message_keeps_its_null_content() -> None:
    (result,) = _results(EXAMPLES / "parallel_tool_calls.sse")
    choice = to_dict(result.completion, nulls=True)["choices"][0]
    assert choice["message"]["content"] is None  # sent as null in the chunks
    assert choice["message"]["tool_calls"]
    assert choice["logprobs"] is None
    assert "content" not in to_dict(result.completion)["choices"][0]["message"]


def test_a_field_never_sent_is_not_written_as_null() -> None:
    payload = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    chunk = structure_chunk(payload)
    assert to_dict(chunk, nulls=True) == payload  # no system_fingerprint, usage, logprobs
    assert "refusal" not in to_dict(chunk, nulls=True)["choices"][0]["delta"]


# --- to_openai, to_anthropic ---------------------------------------------------------------------

#: What the installed SDKs refuse in strict mode, and why (the data, not the conversion): the
#: recording's name and a part of the SDK's message.
REFUSED = {
    # no finish_reason: the stream ended on an error event, or the provider never sends one
    "groq_gptoss_event_error_tool_use_failed.sse": "finish_reason",
    "snowflake_cortex_claude_empty_refusal.sse": "finish_reason",
    # a trimmed recording: the response's request echo was cut out
    "openai_phase_commentary_final_answer_trimmed.jsonl": "parallel_tool_calls",
    # xAI items and annotations of shapes the SDK's unions do not have
    "xai_web_search_call_function_shaped_no_progress_events.jsonl": "output.0",
    "xai_x_search_custom_tool_calls_interleaved_items.jsonl": "annotations",
    # an Anthropic block type neither Message nor BetaMessage of this SDK knows
    "anthropic_compaction_delta_iterations_usage.jsonl": "compaction",
}
#: Usage fields that the installed SDKs require as integers and that these recordings (made
#: before the servers reported them) lack: refused in strict mode, never made up.
NEWER_SDK = ("cache_write_tokens", "web_fetch_requests")


def _convert(result: Result, *, strict: bool = True) -> Any:
    if result.protocol == "anthropic":
        return to_anthropic(result, strict=strict)
    return to_openai(result, strict=strict)


def _kind(result: Result) -> tuple[type[Any], ...]:
    data = to_dict(result.completion)
    kind: str = data.get("object") or data["type"]
    return {
        "chat.completion": (ChatCompletion,),
        "text_completion": (Completion,),
        "response": (Response,),
        "message": (Message, BetaMessage),
    }[kind]


@pytest.mark.parametrize("path", [*RECORDINGS, *sorted(EXAMPLES.iterdir())], ids=lambda p: p.name)
def test_every_recording_converts_to_the_sdk_type(path: Path) -> None:
    found = _results(path)
    assert found
    for result in found:
        ours = to_dict(result.completion, nulls=True)
        lenient = _convert(result, strict=False)  # the SDK's own building: always
        assert isinstance(lenient, _kind(result))
        try:
            sdk = _convert(result)
        except UsageError as exc:
            expected = REFUSED.get(path.name)
            reason = str(exc)
            assert (expected is not None and expected in reason) or any(
                f"{name}\n  Field required" in reason for name in NEWER_SDK
            ), reason
            continue
        assert path.name not in REFUSED
        assert isinstance(sdk, _kind(result))
        back = sdk.model_dump(mode="json", exclude_unset=True, by_alias=True)
        if isinstance(sdk, ChatCompletion):
            for choice, mine in zip(back["choices"], ours["choices"], strict=True):
                parts = choice["message"].pop("content_parts", None)
                if parts is not None:  # the one bridge: the text of the parts as content
                    assert parts == mine["message"]["content"]
                    texts = [p["text"] for p in parts if p.get("type") == "text"]
                    assert choice["message"]["content"] == "".join(texts)
                    choice["message"]["content"] = parts
        assert without_nulls(back) == without_nulls(ours)  # every field, as the SDK read it


def test_the_chat_recordings_that_validate_include_content_parts_and_tool_calls() -> None:
    mistral = _results(DATA / "providers" / "mistral_magistral_content_parts_thinking.jsonl")[0]
    sdk = to_openai(mistral)
    assert isinstance(sdk, ChatCompletion)
    assert sdk.choices[0].message.content == "2 + 2 = 4"
    (tools,) = _results(EXAMPLES / "parallel_tool_calls.sse")
    sdk = to_openai(tools.completion)  # a completion, not only a result
    assert isinstance(sdk, ChatCompletion)
    assert sdk.choices[0].message.content is None
    assert [c.function.name for c in sdk.choices[0].message.tool_calls or []] == [
        "GetWeatherArgs",
        "get_stock_price",
    ]


def test_wrong_objects_are_usage_errors() -> None:
    (chat,) = _results(EXAMPLES / "parallel_tool_calls.sse")
    with pytest.raises(UsageError, match="not an Anthropic message"):
        to_anthropic(chat)
    with pytest.raises(UsageError, match="not an assembled object"):
        to_openai({"object": "chat.completion"})
    anthropic = next(p for p in RECORDINGS if p.name == "anthropic_text_basic.jsonl")
    with pytest.raises(UsageError, match="not an OpenAI completion"):
        to_openai(_results(anthropic)[0])


def test_with_nulls_on_an_attrs_class_that_has_no_extras() -> None:
    from aggregator import Timings

    timings = Timings(
        started=1.0,
        first_byte=1.5,
        first_chunk=2.0,
        first_output=None,
        output_kind=None,
        last_chunk=3.0,
        ended=3.5,
        chunks=2,
        output_chunks=0,
    )
    assert to_dict(timings, nulls=True) == to_dict(timings)  # as the converter writes it
