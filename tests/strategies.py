"""Hypothesis strategies: whole completions, the chunk streams that rebuild them, and framing.

Theory of operation: a test draws a *final* completion in the OpenAI non-streaming JSON shape
(with the ``null`` fields the API sends), then a stream of chunk dicts that, merged by the rules
of docs/merge-rules.md, must give back exactly that object, then frames the chunks as SSE or JSON
Lines bytes and cuts those bytes into reads.

The completion's content is drawn field by field, so it shrinks. How it is streamed (where the
text is cut, how choices and tool calls interleave, which chunks carry which header field, line
endings, comments, read boundaries) takes hundreds of small decisions per example; they come from
a ``random.Random`` that Hypothesis seeds (``st.randoms(use_true_random=True)``), which keeps an
example to a few milliseconds. A failure is still reproducible, and its completion still shrinks.

The chat stream generator can keep to what the OpenAI SDK's own accumulator merges correctly
(``sdk_compatible=True``: choices and tool calls first appear in index order, ids and names only
on the first fragment of a call, header fields on every chunk, no logprob entries on a choice's
first chunk) or add what other servers do (repeated roles and ids, running usage reports, blank
ids, finish reasons sent twice, choices first appearing out of order).
"""

from __future__ import annotations

import itertools
import json
import random
import string
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "DONE",
    "JSON",
    "LINE_ENDINGS",
    "MIXED_ENDINGS",
    "bounded",
    "byte_pieces",
    "chat_chunks",
    "chat_completions",
    "drop_nones",
    "interleavings",
    "jsonl_bytes",
    "line_endings",
    "sse_bytes",
    "text_chunks",
    "text_completions",
]

JSON = dict[str, Any]
T = TypeVar("T")

#: In an event list for :func:`sse_bytes`: the ``data: [DONE]`` marker.
DONE: Final = "[DONE]"

#: How the choices of a stream first appear: in index order, in any order, or (when there are
#: two or more) in an order that is not the index order.
ChoiceOrder = Literal["index", "any", "not_index"]

#: Line terminators: each one alone, or mixed line by line (all valid SSE and JSON Lines).
LINE_ENDINGS: Final = (("\n",), ("\r\n",), ("\r",), ("\n", "\r\n", "\r"))
MIXED_ENDINGS: Final = LINE_ENDINGS[-1]

FINISH_REASONS: Final = ("stop", "length", "tool_calls", "content_filter", "eos", "end_turn")
SERVICE_TIERS: Final = ("default", "flex", "scale", "priority")
MODELS: Final = ("gpt-4o-2024-08-06", "gpt-4o-mini", "deepseek-reasoner", "llama-3.3-70b")
#: Top-level keys no model class names (the snapshot rule keeps them).
EXTRA_KEYS: Final = ("x_groq", "citations", "provider", "prompt_filter_results", "x_trace")
#: Choice keys no model class names (the snapshot rule keeps them too).
CHOICE_EXTRA_KEYS: Final = ("content_filter_results", "native_finish_reason", "stop_reason")

_ALNUM: Final = string.ascii_letters + string.digits
_IDENT: Final = st.text(_ALNUM, min_size=1, max_size=10)
_NAME: Final = st.sampled_from(("get_weather", "GetWeatherArgs", "search")) | st.text(
    _ALNUM + "_", min_size=1, max_size=10
).map("fn_".__add__)
_HEX: Final = st.text("0123456789abcdef", min_size=6, max_size=10)
_COUNT: Final = st.integers(0, 200_000)

#: Text that is hard on a decoder: emoji (skin tones, ZWJ families, flags), CJK and Hangul,
#: combining accents, characters JSON must escape, U+2028, a BOM, NUL and the last code point.
_GRAPHEMES: Final = (
    *("😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "中文", "日本語", "한국어", "e\u0301", "ß"),
    *("\u00a0", "\u2028", "\ufeff", "\t", "\n", "\r", '"', "\\", "/", " ", "\x00"),
    "\U0010ffff",
)
_CHARS: Final = st.characters(codec="utf-8")  # every code point but the surrogates
_POOL: Final = (*string.ascii_letters, *string.digits, " ", ".", *_GRAPHEMES)
_RANDOMS: Final = st.randoms(use_true_random=True)


def bounded(examples: int) -> settings:
    """Hypothesis settings for these properties: few examples, no deadline (a loaded machine
    must not fail them), and no complaint that drawing a whole stream is slow."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def texts(*, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Unicode text (never a lone surrogate, which UTF-8 cannot carry)."""
    return st.one_of(
        st.text(_CHARS, min_size=min_size, max_size=max_size),
        st.lists(st.sampled_from(_GRAPHEMES), min_size=max(min_size, 1), max_size=4).map("".join),
    )


def _rng_text(rng: random.Random, max_size: int) -> str:
    """Random text for the many small strings nobody needs shrunk (logprob tokens, JSON)."""
    parts = []
    for _ in range(rng.randrange(max_size + 1)):
        if rng.random() < 0.7:
            parts.append(rng.choice(_POOL))
        else:
            code = rng.randrange(0x110000)
            parts.append(chr(0xFFFD if 0xD800 <= code < 0xE000 else code))
    return "".join(parts)


def _rng_float(rng: random.Random) -> float:
    return rng.choice([0.0, -rng.random() * 30, -rng.random() * 1e-6, -float(rng.randrange(9))])


def _rng_json(rng: random.Random, depth: int = 2) -> Any:
    """A random JSON value (integers within 2**53, finite floats), ``null`` included."""
    kind = rng.randrange(8 if depth else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**53), 2**53)
    if kind == 3:
        return rng.choice([0.5, 1e300, -2.5e-8, rng.uniform(-1e6, 1e6)])
    if kind in (4, 5):
        return _rng_text(rng, 6)
    if kind == 6:
        return [_rng_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {_rng_text(rng, 4): _rng_json(rng, depth - 1) for _ in range(rng.randrange(4))}


def drop_nones(value: Any) -> Any:
    """``value`` without ``None`` object members, recursively (``None`` list entries stay).

    This is the shape :func:`aggregator.to_dict` writes: the non-streaming JSON, nulls omitted.
    """
    if isinstance(value, dict):
        return {k: drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nones(v) for v in value]
    return value


# --------------------------------------------------------------------------- final completions


def _rng_token_logprob(rng: random.Random, *, tops: int) -> JSON:
    token = _rng_text(rng, 4)
    entry: JSON = {
        "token": token,
        "logprob": _rng_float(rng),
        "bytes": rng.choice([None, list(token.encode()), [rng.randrange(256)]]),
    }
    if tops:
        entry["top_logprobs"] = [
            _rng_token_logprob(rng, tops=0) for _ in range(rng.randrange(tops + 1))
        ]
    return entry


def _token_logprob_lists(max_size: int) -> st.SearchStrategy[list[JSON] | None]:
    """``None``, or a list of chat ``logprobs.content`` entries (with their top logprobs)."""
    return st.none() | st.builds(
        lambda size, rng: [_rng_token_logprob(rng, tops=2) for _ in range(size)],
        st.integers(0, max_size),
        _RANDOMS,
    )


@st.composite
def tool_calls(draw: st.DrawFn) -> JSON:
    """One assembled tool call; its arguments JSON text (or, as models do, not quite JSON)."""
    arguments = draw(
        _RANDOMS.map(lambda rng: json.dumps(_rng_json(rng, 2), ensure_ascii=False)) | texts()
    )
    return {
        "id": "call_" + draw(_IDENT),
        "type": "function",
        "function": {"name": draw(_NAME), "arguments": arguments},
    }


@st.composite
def chat_messages(draw: st.DrawFn) -> JSON:
    """An assembled chat message: some of content, refusal, reasoning and tool calls."""
    maybe_text = st.none() | texts()
    message: JSON = {
        "role": "assistant",
        "content": draw(maybe_text),
        "refusal": draw(maybe_text),
    }
    reasoning = draw(maybe_text)
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    calls = draw(
        st.none() | st.lists(tool_calls(), min_size=1, max_size=3, unique_by=lambda c: c["id"])
    )
    if calls is not None:
        message["tool_calls"] = calls
    return message


def usages() -> st.SearchStrategy[JSON]:
    """A usage report, maybe with token details."""
    return st.fixed_dictionaries(
        {"prompt_tokens": _COUNT, "completion_tokens": _COUNT, "total_tokens": _COUNT},
        optional={
            "prompt_tokens_details": st.fixed_dictionaries(
                {}, optional={"cached_tokens": _COUNT, "audio_tokens": _COUNT}
            ),
            "completion_tokens_details": st.fixed_dictionaries(
                {},
                optional={
                    "reasoning_tokens": _COUNT,
                    "audio_tokens": _COUNT,
                    "accepted_prediction_tokens": _COUNT,
                    "rejected_prediction_tokens": _COUNT,
                },
            ),
        },
    )


def _extras(names: Sequence[str] = EXTRA_KEYS) -> st.SearchStrategy[dict[str, Any]]:
    """Unknown keys (some of ``names``), with any JSON values."""
    return st.builds(
        lambda keys, rng: {key: _rng_json(rng) for key in keys},
        st.lists(st.sampled_from(names), max_size=2, unique=True),
        _RANDOMS,
    )


def _chat_logprobs() -> st.SearchStrategy[JSON | None]:
    return st.none() | st.fixed_dictionaries(
        {
            "content": _token_logprob_lists(4),
            "refusal": _token_logprob_lists(2),
        }
    )


@st.composite
def chat_completions(draw: st.DrawFn, *, min_choices: int = 1, max_choices: int = 3) -> JSON:
    """A ``chat.completion`` as the non-streaming API returns it (nulls included)."""
    choices = [
        {
            "index": index,
            "message": draw(chat_messages()),
            "logprobs": draw(_chat_logprobs()),
            "finish_reason": draw(st.sampled_from(FINISH_REASONS)),
            **draw(_extras(CHOICE_EXTRA_KEYS)),
        }
        for index in range(draw(st.integers(min_choices, max_choices)))
    ]
    completion: JSON = {
        "id": "chatcmpl-" + draw(_IDENT),
        "object": "chat.completion",
        "created": draw(st.integers(1, 2**31)),
        "model": draw(st.sampled_from(MODELS) | texts(min_size=1, max_size=8)),
        "choices": choices,
        "usage": draw(st.none() | usages()),
        "system_fingerprint": draw(st.none() | _HEX.map("fp_".__add__)),
        "service_tier": draw(st.none() | st.sampled_from(SERVICE_TIERS)),
    }
    completion.update(draw(_extras()))
    return completion


def _rng_text_logprobs(rng: random.Random, size: int) -> JSON:
    tokens = [_rng_text(rng, 4) for _ in range(size)]
    return {
        "tokens": tokens,
        "token_logprobs": [rng.choice([None, _rng_float(rng)]) for _ in tokens],
        "top_logprobs": [
            rng.choice(
                [None, {_rng_text(rng, 3): _rng_float(rng) for _ in range(rng.randrange(3))}]
            )
            for _ in tokens
        ],
        "text_offset": sorted(rng.randrange(9_999) for _ in tokens),
    }


def text_logprobs() -> st.SearchStrategy[JSON]:
    """Text-completion ``logprobs``: four parallel lists."""
    return st.builds(lambda size, rng: _rng_text_logprobs(rng, size), st.integers(0, 4), _RANDOMS)


@st.composite
def text_completions(draw: st.DrawFn, *, min_choices: int = 1, max_choices: int = 3) -> JSON:
    """A legacy text completion (``object`` ``text_completion``, or ``completion``)."""
    choices = [
        {
            "index": index,
            "text": draw(texts()),
            "logprobs": draw(st.none() | text_logprobs()),
            "finish_reason": draw(st.sampled_from(FINISH_REASONS)),
            **draw(_extras(CHOICE_EXTRA_KEYS)),
        }
        for index in range(draw(st.integers(min_choices, max_choices)))
    ]
    completion: JSON = {
        "id": "cmpl-" + draw(_IDENT),
        "object": draw(st.sampled_from(["text_completion", "completion"])),
        "created": draw(st.integers(1, 2**31)),
        "model": draw(st.sampled_from(MODELS)),
        "choices": choices,
        "usage": draw(st.none() | usages()),
        "system_fingerprint": draw(st.none() | _HEX.map("fp_".__add__)),
    }
    completion.update(draw(_extras()))
    return completion


# --------------------------------------------------------------------------- streaming helpers


def _chance(rng: random.Random, one_in: int) -> bool:
    return rng.randrange(one_in) == 0


def _cut_text(rng: random.Random, text: str, *, max_pieces: int = 6) -> list[str]:
    """``text`` cut at random code-point positions (at least one piece, maybe empty ones)."""
    cuts = sorted(rng.randint(0, len(text)) for _ in range(rng.randrange(max_pieces)))
    return [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


def _cut_list(rng: random.Random, items: Sequence[T], groups: int) -> list[list[T]]:
    """``items`` in ``groups`` consecutive (maybe empty) groups."""
    cuts = sorted(rng.randint(0, len(items)) for _ in range(groups - 1))
    return [list(items[a:b]) for a, b in itertools.pairwise([0, *cuts, len(items)])]


def _start_order(rng: random.Random, count: int, order: ChoiceOrder) -> list[int]:
    starts = list(range(count))
    if order != "index":
        rng.shuffle(starts)
        if order == "not_index" and starts == sorted(starts):
            starts.reverse()
    return starts


def _interleave(
    rng: random.Random, streams: Sequence[Sequence[T]], starts: Sequence[int] | None
) -> list[T]:
    """Merge ``streams`` keeping each one's order; with ``starts``, stream ``starts[k]`` may
    only begin once ``starts[k - 1]`` has begun (empty streams are skipped)."""
    order = [s for s in (starts if starts is not None else range(len(streams))) if streams[s]]
    begun = 0 if starts is not None else len(order)  # how many of ``order`` may have begun
    pos = [0] * len(streams)
    out: list[T] = []
    while True:
        ready = [s for s in order[: begun + 1] if pos[s] < len(streams[s])]
        if not ready:
            return out
        s = rng.choice(ready)
        if pos[s] == 0 and starts is not None:
            begun += 1
        out.append(streams[s][pos[s]])
        pos[s] += 1


def _mask(rng: random.Random, size: int, *, force: int | None = None) -> list[bool]:
    """Random flags, at least one set (``force`` if given, else a random one)."""
    flags = [rng.random() < 0.5 for _ in range(size)]
    if force is not None:
        flags[force] = True
    elif size and not any(flags):
        flags[rng.randrange(size)] = True
    return flags


def _pack(rng: random.Random, deltas: list[JSON]) -> list[JSON]:
    """Maybe merge neighbouring deltas that set different keys (tool-call lists concatenate)."""
    packed: list[JSON] = []
    for delta in deltas:
        last = packed[-1] if packed else None
        if (
            last is not None
            and not (last.keys() & delta.keys()) - {"tool_calls"}
            and _chance(rng, 3)
        ):
            for key, value in delta.items():
                last[key] = [*last[key], *value] if key in last else value
        else:
            packed.append(dict(delta))
    return packed


def _leaves(value: JSON, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The (path, value) of every number in a usage report, and of every empty details object."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out += _leaves(item, (*prefix, key))
        else:
            out.append(((*prefix, key), item))
    return out


def _usage_reports(rng: random.Random, usage: JSON, count: int) -> list[JSON]:
    """``count`` partial reports that the usage policy (the last report wins, the fields it
    lacks are filled from earlier ones, recursively) turns into ``usage``: each field is in the
    last report that has it with its final value, and in earlier ones with other numbers."""
    reports: list[JSON] = [{} for _ in range(count)]
    settled: set[tuple[str, ...]] = set()
    for k in reversed(range(count)):
        for path, value in _leaves(usage):
            if path in settled:
                if rng.random() < 0.5:
                    continue
                if not isinstance(value, dict):
                    value = rng.randrange(99)  # overridden by a later report
            elif k > 0 and rng.random() < 0.5:
                continue  # left to an earlier report
            settled.add(path)
            target = reports[k]
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = value
    return reports


def _wrap_chunks(
    rng: random.Random,
    bodies: list[list[JSON]],
    completion: JSON,
    *,
    object_: str,
    sdk_compatible: bool,
    vary_header: bool,
) -> list[JSON]:
    """Wrap each list of choice elements in a chunk object, and place the usage."""
    count = len(bodies)
    every = [True] * count
    ids = _mask(rng, count) if vary_header else every
    models = _mask(rng, count) if vary_header else every
    created = _mask(rng, count) if vary_header else every
    # The SDK keeps the last chunk's fingerprint and the first chunk's service tier and
    # unknown keys; our rules keep the last non-null value, so any chunks may carry them.
    header_flags = {
        "system_fingerprint": every if sdk_compatible else _mask(rng, count),
        "service_tier": every if sdk_compatible else _mask(rng, count),
    }
    extras = _mask(rng, count, force=0)
    reports: dict[int, JSON] = {}
    usage = completion.get("usage")
    if usage is not None:
        # OpenAI sends one report, on the last chunk; Perplexity sends running reports, DeepSeek
        # and Groq partial ones. The SDK only reads the last chunk's.
        extra = 0 if sdk_compatible else min(rng.randrange(4), count - 1)
        carriers = [*sorted(rng.sample(range(count - 1), extra)), count - 1]
        reports = dict(zip(carriers, _usage_reports(rng, usage, len(carriers)), strict=True))
    chunks: list[JSON] = []
    for k, body in enumerate(bodies):
        chunk: JSON = {
            "id": completion["id"] if ids[k] else "",
            "object": object_,
            "created": completion["created"] if created[k] else 0,
            "model": completion["model"] if models[k] else "",
            "choices": body,
        }
        for key, flags in header_flags.items():
            if key not in completion:
                continue  # text completions have no service tier
            if completion[key] is not None and flags[k]:
                chunk[key] = completion[key]
            elif _chance(rng, 2):
                chunk[key] = None
        if extras[k]:
            chunk.update({key: completion[key] for key in EXTRA_KEYS if key in completion})
        if _chance(rng, 5):
            chunk["obfuscation"] = "".join(rng.choices(_ALNUM, k=rng.randrange(9)))
        if k in reports:
            chunk["usage"] = reports[k]
        elif _chance(rng, 2):
            chunk["usage"] = None
        chunks.append(chunk)
    return chunks


def _chunks_of(
    rng: random.Random,
    per_choice: list[list[JSON]],
    completion: JSON,
    *,
    object_: str,
    order: ChoiceOrder,
    sdk_compatible: bool,
    vary_header: bool,
) -> list[JSON]:
    """Interleave the choices' elements, group them into chunks, wrap them."""
    elements = _interleave(rng, per_choice, _start_order(rng, len(per_choice), order))
    bodies: list[list[JSON]] = []
    for element in elements:
        last = bodies[-1] if bodies else None
        if (
            last is not None
            and all(e["index"] != element["index"] for e in last)
            and _chance(rng, 4)
        ):
            last.append(element)  # several choices in one chunk
        else:
            bodies.append([element])
    if completion.get("usage") is not None and not _chance(rng, 4):
        bodies.append([])  # OpenAI: the usage comes last, alone, in a chunk with no choices
    return _wrap_chunks(
        rng,
        bodies,
        completion,
        object_=object_,
        sdk_compatible=sdk_compatible,
        vary_header=vary_header,
    )


def _add_finish(
    rng: random.Random, elements: list[JSON], choice: JSON, *, repeat: bool, blank: JSON
) -> None:
    """Set the choice's ``finish_reason``: on a chunk of its own, or on its last chunk."""
    finish = {**blank, "index": choice["index"], "finish_reason": choice["finish_reason"]}
    if _chance(rng, 2):
        elements.append(dict(finish))
    else:
        elements[-1]["finish_reason"] = choice["finish_reason"]
    if repeat and _chance(rng, 5):  # OpenRouter sends the finish reason twice
        elements.append(dict(finish))


def _spread_choice_extras(rng: random.Random, elements: list[JSON], choice: JSON) -> None:
    """Unknown choice keys on the choice's first chunk (where the SDK reads them) and on
    others, as servers repeat them."""
    extras: JSON = {key: choice[key] for key in CHOICE_EXTRA_KEYS if key in choice}
    if extras:
        for element, flag in zip(elements, _mask(rng, len(elements), force=0), strict=True):
            if flag:
                element.update(extras)


def _drop_some_nulls(rng: random.Random, elements: list[JSON]) -> None:
    """Servers differ on sending ``"logprobs": null`` or nothing."""
    for element in elements:
        for key in ("logprobs", "finish_reason"):
            if element[key] is None and _chance(rng, 4):
                del element[key]


# --------------------------------------------------------------------------- chat streams


def _tool_call_fragments(rng: random.Random, index: int, call: JSON, *, quirks: bool) -> list[JSON]:
    """The deltas of one tool call: id, type and name on the first, arguments in pieces."""
    pieces = _cut_text(rng, call["function"]["arguments"])
    if _chance(rng, 2):
        pieces.insert(0, "")  # OpenAI: the first fragment has the name and empty arguments
    deltas = []
    for j, piece in enumerate(pieces):
        fragment: JSON = {"index": index, "function": {"arguments": piece}}
        if j == 0:
            fragment["id"] = call["id"]
            fragment["type"] = call["type"]
            fragment["function"]["name"] = call["function"]["name"]
        elif quirks:
            # vLLM and Alibaba repeat the id or send "", Mistral sends name "" on continuations;
            # names are never concatenated either
            fragment["id"] = rng.choice([None, call["id"], ""])
            if _chance(rng, 2):
                fragment["type"] = call["type"]
            fragment["function"]["name"] = rng.choice([None, "", call["function"]["name"]])
        deltas.append({"tool_calls": [fragment]})
    return deltas


def _chat_choice_elements(rng: random.Random, choice: JSON, *, sdk_compatible: bool) -> list[JSON]:
    """The ``choices[]`` entries of every chunk of one chat choice, in order."""
    index = choice["index"]
    message = choice["message"]
    quirks = not sdk_compatible

    # The role chunk, as OpenAI sends it: with `content: ""` or `refusal: null` and the like.
    role: JSON = {"role": message["role"]}
    for key in ("content", "refusal"):
        if _chance(rng, 2):
            role[key] = None if message.get(key) is None else ""

    streams: list[list[JSON]] = [
        [{key: piece} for piece in _cut_text(rng, message[key])]
        for key in ("reasoning_content", "content", "refusal")
        if message.get(key) is not None
    ]
    calls = [
        _tool_call_fragments(rng, i, call, quirks=quirks)
        for i, call in enumerate(message.get("tool_calls") or [])
    ]
    # The SDK puts a call at list position `index` when it first sees it, so for the SDK the
    # calls first appear in index order; our rules key calls by index, so they may not.
    calls_order = _start_order(rng, len(calls), "index" if sdk_compatible else "any")
    streams.append(_interleave(rng, calls, calls_order))
    deltas = _pack(rng, [role, *_interleave(rng, streams, None)])
    if quirks and _chance(rng, 4):
        for delta in deltas:  # Z.ai and Perplexity repeat the role on every delta
            delta["role"] = message["role"]

    blank: JSON = {"delta": {}, "logprobs": None, "finish_reason": None}
    elements: list[JSON] = [{**blank, "index": index, "delta": delta} for delta in deltas]
    if choice.get("logprobs") is not None:
        _spread_chat_logprobs(rng, elements, choice["logprobs"], first=int(sdk_compatible))
    _add_finish(rng, elements, choice, repeat=quirks, blank=blank)
    _spread_choice_extras(rng, elements, choice)
    _drop_some_nulls(rng, elements)
    return elements


def _spread_chat_logprobs(
    rng: random.Random, elements: list[JSON], logprobs: JSON, *, first: int
) -> None:
    """Spread the logprob entries over the chunks that carry the matching text (or over any
    chunk from ``first`` on, when none does). Every chunk that carries a ``logprobs`` object
    has a list for each list the final object has, maybe empty, as OpenAI sends them."""
    carried: dict[int, JSON] = {}
    for key in ("content", "refusal"):
        entries = logprobs.get(key)
        if entries is None:
            continue
        candidates = [k for k in range(first, len(elements)) if key in elements[k]["delta"]]
        if not candidates:
            candidates = list(range(first, len(elements)))
        if not candidates:  # a choice with one chunk, and the SDK's first-chunk trouble
            blank: JSON = {"delta": {}, "logprobs": None, "finish_reason": None}
            elements.append({**blank, "index": elements[0]["index"]})
            candidates = [len(elements) - 1]
        for k, group in zip(candidates, _cut_list(rng, entries, len(candidates)), strict=True):
            if group:
                carried.setdefault(k, {})[key] = group
    flags = _mask(rng, len(elements))
    for k, element in enumerate(elements):
        if k in carried or flags[k]:
            lists = carried.get(k, {})
            element["logprobs"] = {
                key: None if logprobs.get(key) is None else lists.get(key, [])
                for key in ("content", "refusal")
            }


@st.composite
def chat_chunks(
    draw: st.DrawFn,
    completion: JSON,
    *,
    order: ChoiceOrder = "any",
    sdk_compatible: bool = False,
    vary_header: bool = False,
) -> list[JSON]:
    """The ``chat.completion.chunk`` dicts of a stream that assembles into ``completion``.

    Args:
        completion: a final chat completion (from :func:`chat_completions`).
        order: how the choices first appear (``sdk_compatible`` needs ``"index"``).
        sdk_compatible: keep to what ``ChatCompletionStreamState`` merges correctly.
        vary_header: some chunks carry an empty ``id`` or ``model`` and ``created: 0`` (only for
            a source whose chunks all belong to this completion).
    """
    rng = draw(_RANDOMS)
    per_choice = [
        _chat_choice_elements(rng, choice, sdk_compatible=sdk_compatible)
        for choice in completion["choices"]
    ]
    return _chunks_of(
        rng,
        per_choice,
        completion,
        object_="chat.completion.chunk",
        order=order,
        sdk_compatible=sdk_compatible,
        vary_header=vary_header,
    )


# --------------------------------------------------------------------------- text streams


def _text_choice_elements(rng: random.Random, choice: JSON) -> list[JSON]:
    """The ``choices[]`` entries of every chunk of one text choice: the text in pieces, the
    four logprob lists cut at the same places."""
    blank: JSON = {"text": "", "logprobs": None, "finish_reason": None}
    elements: list[JSON] = [
        {**blank, "index": choice["index"], "text": piece}
        for piece in _cut_text(rng, choice["text"])
    ]
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        groups = _cut_list(rng, range(len(logprobs["tokens"])), len(elements))
        for element, group in zip(elements, groups, strict=True):
            element["logprobs"] = {
                key: [lists[i] for i in group] for key, lists in logprobs.items()
            }
    _add_finish(rng, elements, choice, repeat=True, blank=blank)
    _spread_choice_extras(rng, elements, choice)
    _drop_some_nulls(rng, elements)
    return elements


@st.composite
def text_chunks(
    draw: st.DrawFn, completion: JSON, *, order: ChoiceOrder = "any", vary_header: bool = False
) -> list[JSON]:
    """The chunk dicts of a legacy text-completion stream that assembles into ``completion``."""
    rng = draw(_RANDOMS)
    per_choice = [_text_choice_elements(rng, choice) for choice in completion["choices"]]
    return _chunks_of(
        rng,
        per_choice,
        completion,
        object_=completion["object"],
        order=order,
        sdk_compatible=False,
        vary_header=vary_header,
    )


@st.composite
def interleavings(draw: st.DrawFn, streams: Sequence[Sequence[Any]]) -> list[Any]:
    """The items of ``streams`` merged in a random order that keeps each stream's own order."""
    return _interleave(draw(_RANDOMS), streams, None)


# --------------------------------------------------------------------------- framing


def line_endings() -> st.SearchStrategy[tuple[str, ...]]:
    """The terminators of a stream: LF, CRLF or CR throughout, or the three mixed."""
    return st.sampled_from(LINE_ENDINGS)


def _encode_lines(
    rng: random.Random, lines: list[str], endings: Sequence[str], last: bool
) -> bytes:
    """Join ``lines`` with random terminators. A bare CR is never followed by the LF of an
    empty line (the pair would be one CRLF). ``last``: terminate the last line too."""
    out: list[str] = []
    previous = ""
    for k, line in enumerate(lines):
        choices = [e for e in endings if not (previous == "\r" and not line and e == "\n")]
        ending = rng.choice(choices) if k < len(lines) - 1 or last else ""
        out.append(line + ending)
        previous = ending
    return "".join(out).encode()


def _comment(rng: random.Random) -> str:
    return rng.choice(["", " ", " keep-alive", " OPENROUTER PROCESSING", ": 中文 😀", "\x0b\x85"])


@st.composite
def sse_bytes(
    draw: st.DrawFn, events: Sequence[JSON | str], *, endings: Sequence[str] = MIXED_ENDINGS
) -> bytes:
    """SSE bytes for ``events`` (chunk dicts, or :data:`DONE`).

    Lines end with terminators drawn from ``endings``, line by line. There are ``:`` comments
    (before the first event, between events, inside an event), ``id:`` lines, ``data:`` with or
    without its space, JSON sometimes spread over several ``data:`` lines, maybe a BOM, maybe no
    blank line after a final ``[DONE]``, maybe no terminator on the last line.
    """
    rng = draw(_RANDOMS)
    lines: list[str] = []
    if _chance(rng, 2):
        lines.append(":" + _comment(rng))
    for number, event in enumerate(events):
        if _chance(rng, 4):
            lines.append(":" + _comment(rng))
        if _chance(rng, 4):  # unique, as servers send them (a repeated id is a replay)
            lines.append(f"id: {rng.choice(['', 'evt-'])}{number}")
        if isinstance(event, str):
            data = [event]
        elif _chance(rng, 5):
            data = json.dumps(event, ensure_ascii=False, indent=1).split("\n")
        else:
            data = [json.dumps(event, ensure_ascii=False, separators=(",", ":"))]
        for k, payload in enumerate(data):
            lines.append(rng.choice(["data: ", "data:"]) + payload)
            if k < len(data) - 1 and _chance(rng, 6):
                lines.append(":" + _comment(rng))  # a comment inside an event ends nothing
        lines.append("")
    if events and events[-1] == DONE and _chance(rng, 2):
        lines.pop()  # servers end with `data: [DONE]` and no blank line
    bom = b"\xef\xbb\xbf" if _chance(rng, 10) else b""
    return bom + _encode_lines(rng, lines, endings, last=not _chance(rng, 4))


@st.composite
def jsonl_bytes(
    draw: st.DrawFn, chunks: Sequence[JSON], *, endings: Sequence[str] = MIXED_ENDINGS
) -> bytes:
    """JSON Lines bytes: one chunk a line, terminators drawn from ``endings``, some blank
    lines, maybe a BOM, maybe no terminator on the last line."""
    rng = draw(_RANDOMS)
    lines: list[str] = []
    for chunk in chunks:
        if _chance(rng, 6):
            lines.append(rng.choice(["", " ", "\t "]))
        lines.append(json.dumps(chunk, ensure_ascii=False))
    bom = b"\xef\xbb\xbf" if _chance(rng, 10) else b""
    return bom + _encode_lines(rng, lines, endings, last=not _chance(rng, 4))


@st.composite
def byte_pieces(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut into reads: whole, anywhere, inside UTF-8 sequences, around line endings,
    just before LFs (where network reads often end), or one byte at a time. Reads may be
    empty."""
    mode = draw(st.sampled_from(["whole", "anywhere", "utf8", "eol", "lf", "bytes"]))
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = draw(_RANDOMS)
    if mode == "utf8":  # before a continuation byte: inside a multi-byte sequence
        places = [i for i, b in enumerate(data) if 0x80 <= b < 0xC0]
    elif mode == "eol":  # just before and just after CR and LF
        places = [i + d for i, b in enumerate(data) if b in b"\r\n" for d in (0, 1)]
    elif mode == "lf":
        places = [i for i, b in enumerate(data) if b == 10]
    else:
        places = list(range(len(data) + 1))
    count = rng.randrange(1, 25)
    cuts = sorted(rng.choices(places, k=count)) if places else []
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
