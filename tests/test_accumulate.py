"""Table-driven tests of the merge rules (docs/merge-rules.md), with no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from aggregator import ConflictError, UsageError, to_dict
from aggregator.lowlevel import Accumulator, structure_chunk
from aggregator.models import ChatCompletionChunk


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": list(choices),
    }
    base.update(top)
    return base


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def tool(index: int | None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(fields)
    if index is not None:
        out["index"] = index
    return out


def fn(name: str | None = None, arguments: str | None = None) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    acc = Accumulator()
    for n, c in enumerate(chunks):
        acc.add(structure_chunk(c, where=f"event {n + 1}"))
    return to_dict(acc.result())


def message(result: dict[str, Any], index: int = 0) -> dict[str, Any]:
    choice = next(c for c in result["choices"] if c["index"] == index)
    msg: dict[str, Any] = choice["message"]
    return msg


CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    (
        "content concatenated, role once",
        [
            chunk(delta(role="assistant", content="")),
            chunk(delta(role="assistant", content="Hel")),
            chunk(delta(content="lo", role="user")),
        ],
        {"role": "assistant", "content": "Hello"},
    ),
    (
        "no role at all defaults to assistant",
        [chunk(delta(content="x"))],
        {"role": "assistant", "content": "x"},
    ),
    (
        "reasoning_content, reasoning and refusal kept apart",
        [
            chunk(delta(reasoning_content="think ", reasoning="r1")),
            chunk(delta(reasoning_content="more", reasoning="r2", refusal="no")),
            chunk(delta(refusal=", sorry")),
        ],
        {
            "role": "assistant",
            "reasoning_content": "think more",
            "reasoning": "r1r2",
            "refusal": "no, sorry",
        },
    ),
    (
        "null content changes nothing, empty string makes it present",
        [chunk(delta(content=None, refusal="")), chunk(delta(content=None))],
        {"role": "assistant", "refusal": ""},
    ),
    (
        "tool calls merged by index, id/type/name taken once",
        [
            chunk(delta(tool_calls=[tool(0, id="a", type="function", function=fn("f", ""))])),
            chunk(delta(tool_calls=[tool(0, id="a", function=fn("f", '{"x":'))])),
            chunk(delta(tool_calls=[tool(0, id="", function=fn("", " 1}"))])),
        ],
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
            ],
        },
    ),
    (
        "parallel calls, index starting at 1, listed in index order",
        [
            chunk(delta(tool_calls=[tool(2, id="b", function=fn("g", "{}"))])),
            chunk(delta(tool_calls=[tool(1, id="a", function=fn("f", "[1"))])),
            chunk(delta(tool_calls=[tool(1, function=fn(None, "]"))])),
        ],
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
    ),
    (
        "two calls sharing an index with different ids are two calls",
        [
            chunk(delta(tool_calls=[tool(0, id="a", function=fn("f", "1"))])),
            chunk(delta(tool_calls=[tool(0, id="b", function=fn("g", "2"))])),
            chunk(delta(tool_calls=[tool(0, function=fn(None, "3"))])),
        ],
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "1"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "23"}},
            ],
        },
    ),
    (
        "calls without index: by id, else the latest call",
        [
            chunk(delta(tool_calls=[tool(None, id="a", function=fn("f", "1"))])),
            chunk(delta(tool_calls=[tool(None, id="b", function=fn("g", "2"))])),
            chunk(delta(tool_calls=[tool(None, function=fn(None, "3"))])),
            chunk(delta(tool_calls=[tool(None, id="a", function=fn(None, "4"))])),
        ],
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "14"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "23"}},
            ],
        },
    ),
    (
        "legacy function_call",
        [
            chunk(delta(function_call=fn("lookup", '{"q"'))),
            chunk(delta(function_call=fn("", ': "x"}'))),
        ],
        {"role": "assistant", "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
    ),
    (
        "content parts merged by type (Magistral)",
        [
            chunk(
                delta(content=[{"type": "thinking", "thinking": [{"type": "text", "text": "a"}]}])
            ),
            chunk(
                delta(content=[{"type": "thinking", "thinking": [{"type": "text", "text": "b"}]}])
            ),
            chunk(delta(content=[{"type": "text", "text": "4"}])),
            chunk(delta(content="")),
            chunk(delta(content="!")),
        ],
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": [{"type": "text", "text": "ab"}]},
                {"type": "text", "text": "4!"},
            ],
        },
    ),
    (
        "string content before parts becomes a text part",
        [chunk(delta(content="pre")), chunk(delta(content=[{"type": "image", "url": "u"}]))],
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "pre"}, {"type": "image", "url": "u"}],
        },
    ),
    (
        "unknown delta keys: strings concatenated, labels replaced, indexed lists merged",
        [
            chunk(delta(channel="analysis", note="a", details=[{"index": 0, "text": "x"}])),
            chunk(delta(channel="analysis", note="b", details=[{"index": 0, "text": "y"}])),
            chunk(delta(annotations=[{"type": "url", "url": "u1"}], index=0)),
            chunk(delta(annotations=[{"type": "url", "url": "u2"}], flag=True)),
        ],
        {
            "role": "assistant",
            "channel": "analysis",
            "note": "ab",
            "details": [{"index": 0, "text": "xy"}],
            "annotations": [{"type": "url", "url": "u1"}, {"type": "url", "url": "u2"}],
            "flag": True,
        },
    ),
]


@pytest.mark.parametrize(("name", "chunks", "expected"), CASES, ids=[c[0] for c in CASES])
def test_message_rules(name: str, chunks: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert message(assemble(chunks)) == expected


def test_choices_ordered_by_index_whatever_order_they_appear() -> None:
    result = assemble(
        [
            chunk(delta(2, content="c")),
            chunk(delta(0, content="a")),
            chunk(delta(1, content="b", finish="stop"), delta(2, finish="length")),
            chunk(delta(0, finish="stop")),
        ]
    )
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in result["choices"]] == ["a", "b", "c"]
    assert [c["finish_reason"] for c in result["choices"]] == ["stop", "stop", "length"]


def test_huge_indexes_cost_nothing() -> None:
    result = assemble(
        [
            chunk(delta(1_000_000_000, content="x", tool_calls=[tool(2_000_000_000, id="t")])),
        ]
    )
    assert [c["index"] for c in result["choices"]] == [1_000_000_000]
    assert len(result["choices"][0]["message"]["tool_calls"]) == 1


def test_finish_reason_last_non_null_and_open_values() -> None:
    result = assemble(
        [
            chunk(delta(content="x", finish="length")),
            chunk(delta(finish="length")),
            chunk(delta(finish=None)),
            chunk(delta(finish="provider_specific")),
        ]
    )
    assert result["choices"][0]["finish_reason"] == "provider_specific"


def test_top_level_fields() -> None:
    result = assemble(
        [
            chunk(id="", model="", created=0, prompt_filter_results=[{"i": 0}]),
            chunk(
                delta(content="x"),
                system_fingerprint="fp1",
                service_tier="default",
                x_groq={"id": "q"},
                obfuscation="pad",
            ),
            chunk(
                delta(finish="stop"),
                created=9,
                system_fingerprint="fp2",
                x_groq={"usage": {"a": 1}},
                citations=["u1"],
            ),
            chunk(citations=["u1", "u2"], system_fingerprint=None),
        ]
    )
    assert result == {
        "id": "c1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "system_fingerprint": "fp2",
        "service_tier": "default",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
        ],
        "prompt_filter_results": [{"i": 0}],
        "x_groq": {"id": "q", "usage": {"a": 1}},
        "citations": ["u1", "u2"],
        # no top-level usage was sent: Groq's x_groq.usage is the completion's usage
        "usage": {"a": 1},
    }


USAGE_CASES: list[tuple[str, list[dict[str, Any] | None], dict[str, Any]]] = [
    (
        "single report",
        [None, {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}],
        {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    ),
    (
        "cumulative running reports: the last wins, never summed",
        [
            {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
        ],
        {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
    ),
    (
        "split reports: missing fields filled from earlier ones, recursively",
        [
            {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}, "cost": 0.5},
            {
                "completion_tokens": 4,
                "total_tokens": 7,
                "prompt_tokens_details": {"audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 1},
            },
        ],
        {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 1},
            "cost": 0.5,
        },
    ),
    (
        "total kept as sent",
        [{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 10}],
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 10},
    ),
]


@pytest.mark.parametrize(
    ("name", "reports", "expected"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES]
)
def test_usage_policy(
    name: str, reports: list[dict[str, Any] | None], expected: dict[str, Any]
) -> None:
    chunks = [chunk(delta(content="x"), usage=r) for r in reports]
    assert assemble(chunks)["usage"] == expected


def test_chat_logprobs_concatenated() -> None:
    def entry(t: str) -> dict[str, Any]:
        return {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []}

    result = assemble(
        [
            {
                **chunk(delta(content="a")),
                "choices": [
                    {**delta(content="a"), "logprobs": {"content": [entry("a")], "refusal": None}}
                ],
            },
            {**chunk(), "choices": [{**delta(content="b"), "logprobs": {"content": [entry("b")]}}]},
            {**chunk(), "choices": [{**delta(refusal="r"), "logprobs": {"refusal": [entry("r")]}}]},
        ]
    )
    assert result["choices"][0]["logprobs"] == {
        "content": [entry("a"), entry("b")],
        "refusal": [entry("r")],
    }


def test_text_completion_both_conventions() -> None:
    for convention in ("text_completion", "completion"):
        lp = {"tokens": ["a"], "token_logprobs": [None], "top_logprobs": [None], "text_offset": [0]}
        chunks: list[dict[str, Any]] = [
            {
                "id": "t",
                "object": convention,
                "created": 1,
                "model": "m",
                "choices": [{"index": 1, "text": "a", "logprobs": lp, "finish_reason": None}],
            },
            {
                "id": "t",
                "object": convention,
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "text": "z", "finish_reason": "stop"}],
            },
            {
                "id": "t",
                "object": convention,
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 1,
                        "text": "b",
                        "finish_reason": "length",
                        "logprobs": {
                            **lp,
                            "tokens": ["b"],
                            "token_logprobs": [-1.0],
                            "text_offset": [1],
                        },
                    }
                ],
            },
            {
                "id": "t",
                "object": convention,
                "created": 1,
                "model": "m",
                "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
            },
        ]
        assert assemble(chunks) == {
            "id": "t",
            "object": convention,
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "text": "z", "finish_reason": "stop"},
                {
                    "index": 1,
                    "text": "ab",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": ["a", "b"],
                        "token_logprobs": [None, -1.0],
                        "top_logprobs": [None, None],
                        "text_offset": [0, 1],
                    },
                },
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        }


def test_result_is_a_snapshot_and_accumulator_goes_on() -> None:
    acc = Accumulator()
    acc.add(structure_chunk(chunk(delta(content="a"))))
    first = acc.result()
    acc.add(structure_chunk(chunk(delta(content="b", finish="stop"))))
    assert to_dict(first)["choices"][0]["message"]["content"] == "a"
    assert to_dict(acc.result())["choices"][0]["message"]["content"] == "ab"
    assert acc.finished
    assert acc.chunks == 2


def test_server_objects_are_never_mutated() -> None:
    details = [{"index": 0, "text": "x"}]
    first = structure_chunk(chunk(delta(details=details)))
    acc = Accumulator()
    acc.add(first)
    acc.add(structure_chunk(chunk(delta(details=[{"index": 0, "text": "y"}]))))
    assert to_dict(acc.result())["choices"][0]["message"]["details"] == [{"index": 0, "text": "xy"}]
    assert details == [{"index": 0, "text": "x"}]


def test_mixing_kinds_is_refused() -> None:
    acc = Accumulator()
    acc.add(structure_chunk(chunk(delta(content="a"))))
    text = {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "x"}],
    }
    with pytest.raises(ConflictError, match="text-completion chunk in a chat stream"):
        acc.add(structure_chunk(text))
    with pytest.raises(UsageError, match="expected a chunk event"):
        acc.add({"id": "x"})  # type: ignore[arg-type]


def test_events_are_frozen() -> None:
    event = structure_chunk(chunk(delta(content="a")))
    assert isinstance(event, ChatCompletionChunk)
    with pytest.raises(AttributeError):
        event.id = "other"  # type: ignore[misc]


def test_a_chunk_of_another_completion_or_model_is_refused() -> None:
    acc = Accumulator()
    acc.add(structure_chunk(chunk(delta(content="a"))))
    with pytest.raises(ConflictError, match="a chunk of model 'other' in a stream of model 'm'"):
        acc.add(structure_chunk(chunk(delta(content="x"), model="other")))
    with pytest.raises(ConflictError, match="a chunk of completion 'c9' in the stream of 'c1'"):
        acc.add_plain(chunk(delta(content="x"), id="c9"))
    acc.add(structure_chunk(chunk(delta(content="b"), model="", id="")))  # blanks are no conflict
    assert to_dict(acc.result())["choices"][0]["message"]["content"] == "ab"
    assert acc.chunks == 2


def test_a_model_conflict_is_reported_with_its_place() -> None:
    from aggregator import Assembler

    assembler = Assembler("s")
    results = assembler.add(chunk(delta(content="a")))
    results += assembler.add(chunk(delta(content="x"), model="other"))
    results += assembler.close()
    (result,) = results
    assert [type(p) for p in result.problems] == [ConflictError]
    assert [str(p) for p in result.problems] == [
        "s, item 2: a chunk of model 'other' in a stream of model 'm'"
    ]
    assert not result.complete
    assert to_dict(result.completion)["choices"][0]["message"]["content"] == "a"
