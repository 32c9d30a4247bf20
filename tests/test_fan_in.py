"""``fan_in`` and composed pipelines over many concurrent streams, on asyncio and trio.

Theory of operation: every test builds the *final* completions first (random but seeded: a
failure reproduces with the same seed), then the chunk dicts that must rebuild them, interleaves
the chunks of several completions within one source (so ``fan_in`` is told ``interleaved=True``),
frames them (SSE or JSON Lines bytes cut at random points, dicts, chunk events, ``(id, dict)``
pairs) and hands many such sources to ``fan_in``. What comes out is compared with what went in,
exactly: every :class:`Result`, and each source's one :class:`SourceReport`, after its results.
``_merged`` is an independent, deliberately small merge of the chunk shapes made here: it checks
the generator (the whole stream must give the final object back) and gives the expected
*partial* completion of a stream that was cut, broken or snapshotted after any number of chunks.

Sources are async generators instrumented by a :class:`Probe` (started, closed, exhausted, how
many are being read at once, how many items each yielded), which is how the tests see
cancellation, backpressure and the ``max_sources`` limit from the outside.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest

import aggregator
from aggregator import (
    DecodeError,
    EndReason,
    Result,
    SourceReport,
    StreamError,
    StructureError,
    UpstreamError,
    UsageError,
    stages,
    to_dict,
)
from aggregator.lowlevel import structure_chunk
from aggregator.stages import End, Envelope, Snapshot, StreamKey

pytestmark = pytest.mark.anyio

JSON = dict[str, Any]
T = TypeVar("T")

MODELS = ("gpt-4o-mini", "gpt-4o-2024-08-06", "llama-3.3-70b")
FUNCTIONS = ("get_weather", "search_docs", "lookup_order")
#: Multi-byte text, so that bytes cut at random points cut inside UTF-8 sequences too.
WORDS = (
    "Hello",
    " wörld",
    " 中文",
    " 😀",
    " naïve",
    " e\u0301",
    " 日本語",
    " ok",
    ",",
    ' "q"',
    "\n",
)
#: What a source that raises raises (the message names the source).
FAILURE = ConnectionResetError


# --- the expected completions and the chunks that rebuild them --------------------------------


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _pieces(rng: random.Random, text: str, most: int) -> list[str]:
    """``text`` cut into 1 to ``most`` non-empty pieces."""
    count = rng.randint(1, min(most, len(text)))
    cuts = sorted(rng.sample(range(1, len(text)), count - 1))
    return [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


def _completion(rng: random.Random, number: int) -> JSON:
    """A random final chat completion in the OpenAI JSON shape, nulls dropped."""
    choices: list[JSON] = []
    for index in range(rng.choice((1, 1, 1, 2))):
        message: JSON = {"role": "assistant"}
        roll = rng.random()
        if roll < 0.75:
            message["content"] = _text(rng, 1, 8)
        if roll >= 0.5:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{index}_{k}",
                    "type": "function",
                    "function": {
                        "name": rng.choice(FUNCTIONS),
                        "arguments": json.dumps(
                            {"q": _text(rng, 1, 3), "n": rng.randint(0, 999)}, ensure_ascii=False
                        ),
                    },
                }
                for k in range(rng.randint(1, 2))
            ]
        finish = "tool_calls" if "tool_calls" in message else rng.choice(("stop", "length"))
        choices.append({"index": index, "message": message, "finish_reason": finish})
    completion: JSON = {
        "id": f"chatcmpl-{number:04d}",
        "object": "chat.completion",
        "created": 1_700_000_000 + number,
        "model": rng.choice(MODELS),
        "choices": choices,
    }
    if rng.random() < 0.6:
        prompt, output = rng.randint(1, 500), rng.randint(1, 500)
        completion["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        }
    return completion


def _interleave(rng: random.Random, sequences: Sequence[Sequence[T]]) -> list[T]:
    """The items of ``sequences`` in a random order that keeps each one's own order."""
    queues = [list(reversed(s)) for s in sequences if s]
    out: list[T] = []
    while queues:
        (i,) = rng.choices(range(len(queues)), [len(q) for q in queues])
        out.append(queues[i].pop())
        if not queues[i]:
            del queues[i]
    return out


def _chunks(rng: random.Random, completion: JSON) -> list[JSON]:
    """Chunk dicts that rebuild ``completion``: the choices interleaved, usage last."""
    head = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }

    def chunk(index: int, delta: JSON, finish: str | None = None) -> JSON:
        return {**head, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    per_choice: list[list[JSON]] = []
    for choice in completion["choices"]:
        index, message = choice["index"], choice["message"]
        own = [chunk(index, {"role": "assistant"})]
        if "content" in message:
            own += [chunk(index, {"content": p}) for p in _pieces(rng, message["content"], 5)]
        for k, call in enumerate(message.get("tool_calls", ())):
            function = call["function"]
            first, *rest = _pieces(rng, function["arguments"], 4)
            opening = {"name": function["name"], "arguments": first}
            fragment = {"index": k, "id": call["id"], "type": "function", "function": opening}
            own.append(chunk(index, {"tool_calls": [fragment]}))
            own += [
                chunk(index, {"tool_calls": [{"index": k, "function": {"arguments": p}}]})
                for p in rest
            ]
        own.append(chunk(index, {}, choice["finish_reason"]))
        per_choice.append(own)
    chunks = _interleave(rng, per_choice)
    if "usage" in completion:
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    assert _merged(chunks) == completion  # the generator and the reference agree
    return chunks


def _merged(chunks: Sequence[JSON]) -> JSON:
    """What merging ``chunks`` (of one completion, of the shapes ``_chunks`` makes) gives."""
    first = chunks[0]
    out: JSON = {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
    }
    choices: dict[int, JSON] = {}
    calls: dict[int, dict[int, JSON]] = {}
    for chunk in chunks:
        if "usage" in chunk:
            out["usage"] = chunk["usage"]
        for part in chunk["choices"]:
            index = part["index"]
            choice = choices.setdefault(index, {"index": index, "message": {"role": "assistant"}})
            delta, message = part["delta"], choice["message"]
            if "content" in delta:
                message["content"] = message.get("content", "") + delta["content"]
            for fragment in delta.get("tool_calls", ()):
                call = calls.setdefault(index, {}).setdefault(
                    fragment["index"],
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = fragment.get("id", call["id"])
                function = fragment.get("function", {})
                call["function"]["name"] = function.get("name", call["function"]["name"])
                call["function"]["arguments"] += function.get("arguments", "")
            if part["finish_reason"] is not None:
                choice["finish_reason"] = part["finish_reason"]
    for index, by_index in calls.items():
        choices[index]["message"]["tool_calls"] = [by_index[k] for k in sorted(by_index)]
    out["choices"] = [choices[i] for i in sorted(choices)]
    return out


@dataclass
class Mix:
    """Several completions interleaved in one source, and what must come out of it."""

    name: str
    #: every chunk, in the order the source delivers them.
    order: list[JSON]
    #: the final completion of each stream key (ordinals by first appearance).
    expected: dict[StreamKey, JSON]
    #: the chunks of each stream, in order.
    chunks: dict[StreamKey, list[JSON]]

    def key_of(self, chunk: JSON) -> StreamKey:
        return next(k for k, v in self.expected.items() if v["id"] == chunk["id"])

    def prefix(self, count: int) -> dict[StreamKey, list[JSON]]:
        """The chunks of each stream among the first ``count`` the source delivers."""
        keys = {v["id"]: k for k, v in self.expected.items()}
        out: dict[StreamKey, list[JSON]] = {}
        for chunk in self.order[:count]:
            out.setdefault(keys[chunk["id"]], []).append(chunk)
        return out


def _mix(rng: random.Random, name: str, numbers: Iterable[int]) -> Mix:
    completions = [_completion(rng, n) for n in numbers]
    streams = {c["id"]: _chunks(rng, c) for c in completions}
    order = _interleave(rng, list(streams.values()))
    ordinals: dict[str, int] = {}
    for chunk in order:
        ordinals.setdefault(chunk["id"], len(ordinals) + 1)
    by_id = {c["id"]: c for c in completions}
    return Mix(
        name,
        order,
        {(name, n): by_id[i] for i, n in ordinals.items()},
        {(name, n): streams[i] for i, n in ordinals.items()},
    )


# --- framing ----------------------------------------------------------------------------------


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _events(chunks: Iterable[JSON]) -> list[bytes]:
    """One SSE event per chunk (two lines each: the data line and the blank line)."""
    return [b"data: " + _dumps(c) + b"\n\n" for c in chunks]


DONE = b"data: [DONE]\n\n"
DATA = Path(__file__).parent / "data"


def _sse(chunks: Iterable[JSON], *, done: bool = True) -> bytes:
    return b"".join(_events(chunks)) + (DONE if done else b"")


def _jsonl(chunks: Iterable[JSON]) -> bytes:
    return b"".join(_dumps(c) + b"\n" for c in chunks)


def _split(rng: random.Random, data: bytes, most: int) -> list[bytes]:
    """``data`` cut at random points into pieces of 1 to ``most`` bytes."""
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        size = rng.randint(1, most)
        pieces.append(data[start : start + size])
        start += size
    return pieces


def _events_in(pieces: Sequence[bytes], events: Sequence[bytes]) -> int:
    """How many whole events (blank line included) the first pieces hold."""
    delivered = sum(map(len, pieces))
    ends = itertools.accumulate(map(len, events))
    return sum(1 for end in ends if end <= delivered)


# --- instrumented sources ---------------------------------------------------------------------


class Probe:
    """Makes instrumented async-generator sources and records what happens to them."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.started: set[str] = set()
        self.closed: set[str] = set()
        self.exhausted: set[str] = set()
        self.cleaned: set[str] = set()
        self.yielded: Counter[str] = Counter()
        self.live = 0
        self.most_live = 0
        self._events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        """Set when source ``name`` hangs (or, for ``"*started"``, when all have started)."""
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    async def source(
        self,
        name: str,
        items: Sequence[Any],
        *,
        rng: random.Random | None = None,
        delay: float = 0.0,
        fail_at: int | None = None,
        hang_at: int | None = None,
        gate: anyio.Event | None = None,
        gate_at: int = 0,
        cleanup: bool = False,
    ) -> AsyncGenerator[Any, None]:
        """Yield ``items``; raise :data:`FAILURE` before item ``fail_at``, hang forever before
        item ``hang_at``, wait for ``gate`` before item ``gate_at``."""
        self.started.add(name)
        if len(self.started) == self.total:
            self.event("*started").set()
        self.live += 1
        self.most_live = max(self.most_live, self.live)
        try:
            for position, item in enumerate(items):
                if position == fail_at:
                    raise FAILURE(f"{name} went away")
                if position == hang_at:
                    self.event(name).set()
                    await anyio.sleep_forever()
                if gate is not None and position == gate_at:
                    await gate.wait()
                if delay:
                    await anyio.sleep(delay)
                elif rng is not None and rng.random() < 0.25:
                    await anyio.lowlevel.checkpoint()
                self.yielded[name] += 1
                yield item
            if fail_at == len(items):
                raise FAILURE(f"{name} went away")
            self.exhausted.add(name)
        finally:
            self.live -= 1
            self.closed.add(name)
            if cleanup:  # an async clean-up, like closing a connection
                await anyio.lowlevel.checkpoint()
                self.cleaned.add(name)


Reports = dict[str, SourceReport]


def _outcome(items: Sequence[Any]) -> tuple[list[Result], Reports]:
    """The results, and the report of each source: exactly one, after all its results, which
    it counts. Anything else is an error."""
    results: list[Result] = []
    reports: Reports = {}
    for item in items:
        if isinstance(item, SourceReport):
            assert item.source not in reports, f"a second report of {item.source}"
            reports[item.source] = item
        else:
            assert isinstance(item, Result), type(item).__name__
            assert item.source not in reports, f"a result of {item.source} after its report"
            results.append(item)
    counted = Counter(r.source for r in results)
    assert {n: r.completions for n, r in reports.items()} == {n: counted[n] for n in reports}
    return results, reports


async def _collect(items: AsyncIterator[Any]) -> tuple[list[Result], Reports]:
    return _outcome([item async for item in items])


def _result(item: Any) -> Result:
    """``item``, which must be a result."""
    assert isinstance(item, Result), item
    return item


def _wrong(results: Iterable[Result], expected: dict[StreamKey, JSON]) -> list[StreamKey]:
    """The keys of the results whose completion is not exactly the expected one."""
    return [r.key for r in results if to_dict(r.completion) != expected.get(r.key)]


def _source_error(name: str, after: int) -> str:
    return f"{name}, after item {after}: the source raised ConnectionResetError: {name} went away"


# --- 1. many streams at once ------------------------------------------------------------------

KINDS = ("sse", "jsonl", "dicts", "pairs", "events")


def _with_replays(
    rng: random.Random, mix: Mix
) -> tuple[list[tuple[str, JSON]], Counter[StreamKey]]:
    """``(dedupe_id, chunk)`` pairs (ids ``1, 2...`` in every stream) with replayed copies."""
    keys = {v["id"]: k for k, v in mix.expected.items()}
    sent: dict[StreamKey, list[tuple[str, JSON]]] = {}
    pairs: list[tuple[str, JSON]] = []
    replayed: Counter[StreamKey] = Counter()
    for chunk in mix.order:
        own = sent.setdefault(keys[chunk["id"]], [])
        own.append((str(len(own) + 1), chunk))
        pairs.append(own[-1])
        if rng.random() < 0.15:
            key = rng.choice(list(sent))
            pairs.append(rng.choice(sent[key]))
            replayed[key] += 1
    return pairs, replayed


async def test_a_thousand_interleaved_streams_are_each_exact_and_emitted_once() -> None:
    rng = random.Random(1000)
    probe = Probe()
    sources: dict[str, aggregator.Source] = {}
    expected: dict[StreamKey, JSON] = {}
    chunks: dict[StreamKey, int] = {}
    replays: Counter[StreamKey] = Counter()
    reasons: dict[StreamKey, EndReason] = {}
    wheres: dict[StreamKey, str] = {}
    for s in range(100):
        kind = KINDS[s % len(KINDS)]
        mix = _mix(rng, f"{kind}-{s:02d}", range(10 * s, 10 * s + 10))
        raw: list[Any]
        where = ""
        if kind == "sse":
            raw = _split(rng, _sse(mix.order), 120)
            where = f"line {2 * len(mix.order) + 1}"  # the [DONE]
        elif kind == "jsonl":
            raw = _split(rng, _jsonl(mix.order), 120)
            where = f"line {len(mix.order)}"
        elif kind == "dicts":
            raw = list(mix.order)
        elif kind == "events":
            raw = [structure_chunk(c) for c in mix.order]
        else:
            raw, replayed = _with_replays(rng, mix)
            replays.update(replayed)
        sources[mix.name] = raw if rng.random() < 0.3 else probe.source(mix.name, raw, rng=rng)
        expected.update(mix.expected)
        for key, own in mix.chunks.items():
            chunks[key] = len(own)
            reasons[key] = EndReason.DONE if kind == "sse" else EndReason.EXHAUSTED
            wheres[key] = where
    assert len(expected) == 1000
    assert sum(len(c["choices"]) == 2 for c in expected.values()) > 100
    assert sum("tool_calls" in str(c) for c in expected.values()) > 300
    assert sum(replays.values()) > 100

    with anyio.fail_after(30):
        async with aggregator.fan_in(sources, interleaved=True) as items:
            results, reports = await _collect(items)

    assert sorted(reports) == sorted(sources)
    assert [n for n, r in reports.items() if not r.ok] == []
    assert {n: r.reason for n, r in reports.items()} == {
        n: EndReason.DONE if n.startswith("sse") else EndReason.EXHAUSTED for n in sources
    }
    assert {n: r.completions for n, r in reports.items()} == dict.fromkeys(sources, 10)
    keys = Counter(r.key for r in results)
    assert [k for k, n in keys.items() if n != 1] == []
    assert set(keys) == set(expected)
    ids = Counter(r.completion.id for r in results)
    assert len(ids) == 1000
    assert set(ids.values()) == {1}
    assert _wrong(results, expected) == []
    assert [r.key for r in results if not (r.complete and r.finished)] == []
    assert [r.key for r in results if r.error is not None or r.problems] == []
    assert {r.key: r.reason for r in results} == reasons
    assert {r.key: r.where for r in results} == wheres
    assert {r.key: r.chunks for r in results} == chunks
    assert {r.key: r.duplicates for r in results if r.duplicates} == dict(+replays)
    assert [r.key for r in results if r.source != r.key[0]] == []
    usages = {r.key: to_dict(r.usage) for r in results if r.usage is not None}
    assert usages == {k: c["usage"] for k, c in expected.items() if "usage" in c}
    assert probe.started == probe.closed == probe.exhausted
    assert len(probe.started) > 50
    assert probe.live == 0


# --- 2. a stream comes out as soon as it ends -------------------------------------------------


async def test_a_stream_is_emitted_when_it_ends_while_other_sources_are_blocked() -> None:
    rng = random.Random(2)
    probe = Probe()
    a, b = _mix(rng, "a", [1]), _mix(rng, "b", [2, 3])
    release_a, release_b = anyio.Event(), anyio.Event()
    b_half = len(b.order) // 2
    a_pieces = _split(rng, _sse(a.order), 40)
    sources = {
        # a's stream ends at [DONE]; its source stays open (before a comment) until released
        "a": probe.source(
            "a", [*a_pieces, b": still here\n\n"], gate=release_a, gate_at=len(a_pieces)
        ),
        "b": probe.source("b", b.order, gate=release_b, gate_at=b_half),
    }
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, interleaved=True) as items:
            first = await anext(items)
            assert isinstance(first, Result)
            assert first.key == ("a", 1)
            assert first.reason is EndReason.DONE
            assert first.complete
            assert to_dict(first.completion) == a.expected[("a", 1)]
            await anyio.wait_all_tasks_blocked()
            # a's source is not finished and b is still waiting half-way: neither was needed
            assert "a" not in probe.closed
            assert "b" not in probe.closed
            assert probe.yielded["b"] == b_half
            release_b.set()
            # b's streams end when its source runs out, and its report follows them
            rest, b_reports = _outcome([await anext(items) for _ in range(3)])
            assert [r.key for r in rest] == [("b", 1), ("b", 2)]
            assert _wrong(rest, b.expected) == []
            assert all(r.reason is EndReason.EXHAUSTED and r.complete for r in rest)
            assert b_reports["b"].ok
            assert b_reports["b"].reason is EndReason.EXHAUSTED
            assert list(b_reports) == ["b"]
            assert "a" not in probe.closed
            release_a.set()
            (a_report,) = [item async for item in items]
    assert isinstance(a_report, SourceReport)
    assert (a_report.source, a_report.reason, a_report.completions) == ("a", EndReason.DONE, 1)
    assert a_report.ok
    assert probe.closed == probe.exhausted == {"a", "b"}


# --- 3. faults, each confined to its own source -----------------------------------------------


def _without_last_finish(mix: Mix, key: StreamKey) -> Mix:
    """``mix`` without the last chunk of stream ``key`` that has a ``finish_reason``."""
    own = mix.chunks[key]
    last = max(i for i, c in enumerate(own) if c["choices"] and c["choices"][0]["finish_reason"])
    dropped = own[last]
    chunks = {**mix.chunks, key: [c for c in own if c is not dropped]}
    expected = {**mix.expected, key: _merged(chunks[key])}
    return Mix(mix.name, [c for c in mix.order if c is not dropped], expected, chunks)


async def test_faults_end_only_the_streams_of_their_own_source() -> None:
    rng = random.Random(3)
    probe = Probe()
    sources: dict[str, aggregator.Source] = {}
    #: per stream key: the chunks the source delivered, why it must end, and how.
    want: dict[StreamKey, tuple[list[JSON], EndReason, str | None]] = {}
    #: per source: how its report says it ended, and its error (the message).
    reports_want: dict[str, tuple[EndReason, str | None]] = {}
    #: per source that ended badly: the place its report gives.
    report_where: dict[str, str] = {}
    complete: set[StreamKey] = set()
    number = itertools.count()

    def mix(name: str, count: int = 3) -> Mix:
        return _mix(rng, name, [next(number) for _ in range(count)])

    # healthy sources of every framing: every stream whole and complete
    for name in ("ok-sse", "ok-jsonl", "ok-dicts"):
        m = mix(name)
        if name == "ok-sse":
            sources[name] = probe.source(name, _split(rng, _sse(m.order), 50), rng=rng)
        elif name == "ok-jsonl":
            sources[name] = probe.source(name, _split(rng, _jsonl(m.order), 50), rng=rng)
        else:
            sources[name] = list(m.order)
        reason = EndReason.DONE if name == "ok-sse" else EndReason.EXHAUSTED
        want.update({k: (c, reason, None) for k, c in m.chunks.items()})
        reports_want[name] = (reason, None)
        complete.update(m.chunks)

    # raises mid-stream: dicts, then SSE bytes cut at random points
    m = mix("raises-dicts")
    at = len(m.order) // 2
    sources[m.name] = probe.source(m.name, m.order, fail_at=at)
    error = _source_error(m.name, at)
    want.update({k: (c, EndReason.ERROR, error) for k, c in m.prefix(at).items()})
    # the error ended the streams open, and the source: it is on both
    reports_want[m.name] = (EndReason.ERROR, error)
    report_where[m.name] = f"after item {at}"

    m = mix("raises-sse")
    pieces = _split(rng, _sse(m.order), 50)
    at = len(pieces) * 2 // 3
    sources[m.name] = probe.source(m.name, pieces, rng=rng, fail_at=at)
    delivered = _events_in(pieces[:at], _events(m.order))
    assert 0 < delivered < len(m.order)
    error = _source_error(m.name, at)
    want.update({k: (c, EndReason.ERROR, error) for k, c in m.prefix(delivered).items()})
    reports_want[m.name] = (EndReason.ERROR, error)
    report_where[m.name] = f"after item {at}"

    # raises before anything, and after its streams ended properly: with no stream open, the
    # error is the source report's
    sources["raises-at-once"] = probe.source("raises-at-once", [b"data: "], fail_at=0)
    reports_want["raises-at-once"] = (EndReason.ERROR, _source_error("raises-at-once", 0))
    report_where["raises-at-once"] = "after item 0"
    m = mix("raises-after-done", 2)
    pieces = _split(rng, _sse(m.order), 50)
    sources[m.name] = probe.source(m.name, pieces, fail_at=len(pieces))
    want.update({k: (c, EndReason.DONE, None) for k, c in m.chunks.items()})
    complete.update(m.chunks)
    reports_want[m.name] = (EndReason.ERROR, _source_error(m.name, len(pieces)))
    report_where[m.name] = f"after item {len(pieces)}"

    # SSE that ends without [DONE]: at an event boundary, and with the last blank line missing
    m = mix("cut-sse")
    events = _events(m.order)
    cut = len(events) - 4
    sources[m.name] = probe.source(m.name, _split(rng, b"".join(events[:cut]), 50))
    want.update({k: (c, EndReason.CUT_OFF, None) for k, c in m.prefix(cut).items()})
    reports_want[m.name] = (EndReason.CUT_OFF, None)
    m = mix("cut-sse-no-blank-line")
    events = _events(m.order)
    sources[m.name] = probe.source(m.name, _split(rng, b"".join(events[:cut])[:-1], 50))
    want.update({k: (c, EndReason.CUT_OFF, None) for k, c in m.prefix(cut).items()})
    reports_want[m.name] = (EndReason.CUT_OFF, None)

    # JSON Lines and dicts that run out with a choice lacking its finish_reason
    for name in ("unfinished-jsonl", "unfinished-dicts"):
        m = mix(name)
        unfinished = (name, 2)
        m = _without_last_finish(m, unfinished)
        raw = _split(rng, _jsonl(m.order), 50) if name.endswith("jsonl") else m.order
        sources[name] = probe.source(name, raw, rng=rng)
        want.update({k: (c, EndReason.EXHAUSTED, None) for k, c in m.chunks.items()})
        reports_want[name] = (EndReason.EXHAUSTED, None)
        complete.update(k for k in m.chunks if k != unfinished)

    # garbage in strict mode: the source's open streams end there, and it is read no further
    m = mix("garbage")
    events = _events(m.order)
    bad = len(events) // 2
    events.insert(bad, b'data: {"id": "chatcmpl-x", oops}\n\n')
    sources[m.name] = probe.source(m.name, [*events, DONE])
    garbage_where = f"line {2 * bad + 1} (event {bad + 1})"
    want.update({k: (c, EndReason.ERROR, "decode") for k, c in m.prefix(bad).items()})
    reports_want[m.name] = (EndReason.ERROR, "decode")  # the same error as its streams
    report_where[m.name] = garbage_where

    # an error payload from the server
    m = mix("overloaded")
    events = _events(m.order)
    at = len(events) // 3
    payload = {"message": "The server is overloaded", "type": "server_error"}
    events.insert(at, b"data: " + _dumps({"error": payload}) + b"\n\n")
    sources[m.name] = probe.source(m.name, _split(rng, b"".join(events) + DONE, 50), rng=rng)
    upstream = (
        f"overloaded, line {2 * at + 1} (event {at + 1}): upstream error: {payload['message']}"
    )
    want.update({k: (c, EndReason.ERROR, upstream) for k, c in m.prefix(at).items()})
    reports_want[m.name] = (EndReason.ERROR, upstream)  # strict: it stopped the source
    report_where[m.name] = f"line {2 * at + 1} (event {at + 1})"

    # nothing at all
    sources["empty"] = probe.source("empty", [])
    reports_want["empty"] = (EndReason.EXHAUSTED, "empty: no completion in the input")

    with anyio.fail_after(10):
        async with aggregator.fan_in(sources, interleaved=True) as items:
            results, reports = await _collect(items)

    assert sorted(r.key for r in results) == sorted(want)
    assert all(c for c, _, _ in want.values())  # every stream had a chunk
    by_key = {r.key: r for r in results}
    assert _wrong(results, {k: _merged(c) for k, (c, _, _) in want.items()}) == []
    # every source has its report, saying how it ended; its error is its own
    assert sorted(reports) == sorted(sources)
    garbage_error = reports["garbage"].error
    assert isinstance(garbage_error, aggregator.DecodeError)
    assert {by_key[k].error for k in want if k[0] == "garbage"} == {garbage_error}
    assert {
        n: (r.reason, "decode" if n == "garbage" else None if r.error is None else str(r.error))
        for n, r in reports.items()
    } == reports_want
    assert {n for n, r in reports.items() if r.completions == 0} == {"raises-at-once", "empty"}
    assert [n for n, r in reports.items() if r.problems] == []
    assert {n: reports[n].where for n in report_where} == report_where
    assert {r.key: r.reason for r in results} == {k: w[1] for k, w in want.items()}
    assert {r.key for r in results if r.complete} == complete
    # every chunk delivered ends up in exactly one result
    assert {r.key: r.chunks for r in results} == {k: len(c) for k, (c, _, _) in want.items()}
    messages = {r.key: None if r.error is None else str(r.error) for r in results}
    decode = {k for k, w in want.items() if w[2] == "decode"}
    assert {k: m for k, m in messages.items() if k not in decode} == {
        k: w[2] for k, w in want.items() if k not in decode
    }
    for key in decode:
        err = by_key[key].error
        assert isinstance(err, DecodeError)
        assert (err.source, err.where) == ("garbage", garbage_where)
        assert err.detail.startswith("invalid JSON: ")
        assert by_key[key].where == garbage_where
    for key in (k for k, w in want.items() if w[2] == upstream):
        assert isinstance(by_key[key].error, UpstreamError)
        assert by_key[key].error.payload == payload  # type: ignore[union-attr]
    raised = [by_key[k].error for k, w in want.items() if "raised" in str(w[2])]
    raised += [reports[n].error for n, w in reports_want.items() if "raised" in str(w[1])]
    assert {e.source for e in raised if e is not None} == set(report_where) - {
        "garbage",
        "overloaded",
    }
    for exc in raised:
        assert isinstance(exc, StreamError)
        assert isinstance(exc.__cause__, FAILURE)
        assert str(exc.__cause__) == f"{exc.source} went away"
    assert {r.key: r.where for r in results if r.key[0].startswith("cut-sse")} == {
        k: f"line {2 * cut}" if k[0] == "cut-sse" else f"line {2 * cut - 1}"
        for k in want
        if k[0].startswith("cut-sse")
    }
    assert [r.key for r in results if r.problems] == []
    # the garbage stopped the reading of its source; every source was closed
    assert probe.yielded["garbage"] == bad + 1
    assert probe.closed == set(probe.started) == set(sources) - {"ok-dicts"}
    assert probe.exhausted == probe.closed - {
        "raises-dicts",
        "raises-sse",
        "raises-at-once",
        "raises-after-done",
        "garbage",
        "overloaded",  # strict: an error payload ends the source too
    }
    assert probe.live == 0


async def test_lenient_mode_reports_bad_payloads_and_assembles_the_rest() -> None:
    rng = random.Random(4)
    probe = Probe()
    sse, jsonl, broken = (
        _mix(rng, "sse", range(0, 3)),
        _mix(rng, "jsonl", range(3, 6)),
        _mix(rng, "broken", range(6, 8)),
    )
    garbage = [
        b"data: {not json\n\n",
        b"data: \xff\xfe\n\n",  # not UTF-8
        b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":"now",'
        b'"model":"m","choices":[]}\n\n',  # valid JSON, wrong type
    ]
    events = _events(sse.order)
    spots = sorted(rng.sample(range(1, len(events)), len(garbage)))
    for offset, (spot, junk) in enumerate(zip(spots, garbage, strict=True)):
        events.insert(spot + offset, junk)
    # each problem belongs to the stream of the chunk just before it
    problems: dict[StreamKey, list[tuple[type[StreamError], str]]] = {}
    for offset, (spot, junk) in enumerate(zip(spots, garbage, strict=True)):
        kind = StructureError if b"now" in junk else DecodeError
        place = f"line {2 * (spot + offset) + 1} (event {spot + offset + 1})"
        problems.setdefault(sse.key_of(sse.order[spot - 1]), []).append((kind, place))
    lines = _jsonl(jsonl.order).splitlines(keepends=True)
    lines.insert(5, b'{"id": "chatcmpl-y", "choices": [}\n')
    problems[jsonl.key_of(jsonl.order[4])] = [(DecodeError, "line 6 (event 6)")]
    # an error payload in lenient mode still ends the open streams, with the error
    cut = len(broken.order) // 2
    error_event = b'event: error\ndata: {"error": {"message": "rate limited"}}\n\n'

    sources: dict[str, aggregator.Source] = {
        "sse": probe.source("sse", _split(rng, b"".join(events) + DONE, 30), rng=rng),
        "jsonl": probe.source("jsonl", _split(rng, b"".join(lines), 30), rng=rng),
        "broken": [_sse(broken.order[:cut], done=False) + error_event],
    }
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, strict=False, interleaved=True) as items:
            results, reports = await _collect(items)
    # every bad payload belongs to a stream: the reports have no problem of their own
    assert {n: (r.reason, r.error, r.problems) for n, r in reports.items()} == {
        "sse": (EndReason.DONE, None, ()),
        "jsonl": (EndReason.EXHAUSTED, None, ()),
        # the error event ended the open streams; then the body ran out without [DONE]
        "broken": (EndReason.CUT_OFF, None, ()),
    }
    by_key = {r.key: r for r in results}
    expected = {**sse.expected, **jsonl.expected}
    expected.update({k: _merged(c) for k, c in broken.prefix(cut).items()})
    assert sorted(by_key) == sorted(expected)
    assert _wrong(results, expected) == []
    got = {r.key: [(type(p), p.where) for p in r.problems] for r in results if r.problems}
    assert got == problems
    assert all(p.source == r.source for r in results for p in r.problems)
    clean = (set(sse.expected) | set(jsonl.expected)) - set(problems)
    assert {r.key for r in results if r.complete} == clean
    assert {r.key: r.reason for r in results} == {
        **dict.fromkeys(sse.expected, EndReason.DONE),
        **dict.fromkeys(jsonl.expected, EndReason.EXHAUSTED),
        **dict.fromkeys(broken.prefix(cut), EndReason.ERROR),
    }
    where = f"line {2 * cut + 2} (event {cut + 1})"
    assert {r.key: str(r.error) for r in results if r.error is not None} == dict.fromkeys(
        broken.prefix(cut), f"broken, {where}: upstream error: rate limited"
    )
    assert {r.key: r.chunks for r in results} == {
        **{k: len(c) for k, c in sse.chunks.items()},
        **{k: len(c) for k, c in jsonl.chunks.items()},
        **{k: len(c) for k, c in broken.prefix(cut).items()},
    }
    assert probe.closed == probe.exhausted == {"sse", "jsonl"}


async def test_a_hanging_source_is_cancelled_with_the_consumer_and_closed() -> None:
    rng = random.Random(5)
    probe = Probe()
    healthy = [_mix(rng, f"ok{i}", range(3 * i, 3 * i + 3)) for i in range(3)]
    hangs = _mix(rng, "hangs", range(9, 12))
    sources: dict[str, aggregator.Source] = {
        m.name: probe.source(m.name, _split(rng, _sse(m.order), 60), rng=rng, cleanup=True)
        for m in healthy
    }
    hang_at = len(hangs.order) // 2
    sources["hangs"] = probe.source("hangs", hangs.order, hang_at=hang_at, cleanup=True)
    expected = {k: v for m in healthy for k, v in m.expected.items()}
    tasks = len(anyio.get_running_tasks())
    out: list[Any] = []
    with anyio.move_on_after(10) as scope:  # a safety net: the deadline is moved below
        async with aggregator.fan_in(sources, interleaved=True) as items:
            async for item in items:
                out.append(item)
                results, reports = _outcome(out)
                if len(results) == len(expected) and len(reports) == len(healthy):
                    await probe.event("hangs").wait()
                    # the consumer now waits for a stream that never ends: give up on it soon
                    scope.deadline = anyio.current_time() + 0.05
    assert scope.cancelled_caught
    results, reports = _outcome(out)
    assert sorted(r.key for r in results) == sorted(expected)
    assert _wrong(results, expected) == []
    assert all(r.complete for r in results)
    # the healthy sources' reports (each after its results); none for the one that hangs
    assert sorted(reports) == ["ok0", "ok1", "ok2"]
    assert all(r.ok and r.reason is EndReason.DONE for r in reports.values())
    assert probe.yielded["hangs"] == hang_at
    assert probe.closed == probe.started == set(sources)
    assert probe.exhausted == {"ok0", "ok1", "ok2"}
    assert probe.cleaned == {"ok0", "ok1", "ok2"}  # "hangs" was cancelled inside its own await
    assert probe.live == 0
    assert len(anyio.get_running_tasks()) == tasks
    yielded = dict(probe.yielded)
    await anyio.sleep(0.02)
    assert dict(probe.yielded) == yielded  # nothing reads any source any more


async def test_an_exception_in_the_consumer_closes_every_source_and_propagates() -> None:
    rng = random.Random(6)
    probe = Probe()
    done, hangs = _mix(rng, "done", [1]), _mix(rng, "hangs", [2])
    sources = {
        "done": probe.source("done", _split(rng, _sse(done.order), 60)),
        "hangs": probe.source("hangs", hangs.order, hang_at=2),
    }
    tasks = len(anyio.get_running_tasks())
    with (
        anyio.fail_after(5),
        pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="^consumer bug$")),
    ):
        async with aggregator.fan_in(sources) as items:
            async for item in items:
                assert isinstance(item, Result)
                assert to_dict(item.completion) == done.expected[("done", 1)]
                await probe.event("hangs").wait()
                raise RuntimeError("consumer bug")
    assert probe.closed == probe.started == {"done", "hangs"}
    assert probe.exhausted == {"done"}
    assert probe.live == 0
    assert len(anyio.get_running_tasks()) == tasks


# --- 4. fail_fast -----------------------------------------------------------------------------


async def test_fail_fast_cancels_the_other_sources_and_the_exception_propagates() -> None:
    rng = random.Random(7)
    probe = Probe()
    done, slow, bad = _mix(rng, "done", [1, 2]), _mix(rng, "slow", [3]), _mix(rng, "bad", [4])
    first = anyio.Event()
    sources = {
        "done": probe.source("done", _split(rng, _sse(done.order), 60)),
        "slow": probe.source("slow", slow.order, hang_at=3, cleanup=True),
        # "bad" waits for the consumer to have a result, then raises
        "bad": probe.source("bad", bad.order, gate=first, gate_at=2, fail_at=4),
    }
    tasks = len(anyio.get_running_tasks())
    results: list[Result] = []
    reports: list[SourceReport] = []
    with (
        anyio.fail_after(5),
        pytest.RaisesGroup(pytest.RaisesExc(FAILURE, match="^bad went away$")),
    ):
        async with aggregator.fan_in(sources, fail_fast=True, interleaved=True) as items:
            async for item in items:
                if isinstance(item, SourceReport):
                    reports.append(item)
                else:
                    results.append(_result(item))
                first.set()
    # both streams of "done" ended at its [DONE], in one batch, before "bad" raised
    assert [r.key for r in results] == [("done", 1), ("done", 2)]
    assert _wrong(results, done.expected) == []
    # "done" may have been closed (its report sent) before "bad" raised, or not; no other
    assert [(r.source, r.ok, r.completions) for r in reports] in ([], [("done", True, 2)])
    assert probe.yielded["bad"] == 4
    assert probe.closed == probe.started == {"done", "slow", "bad"}
    assert probe.exhausted == {"done"}
    assert probe.live == 0
    assert len(anyio.get_running_tasks()) == tasks


async def test_fail_fast_with_a_sync_source_and_bad_data_that_is_not_an_exception() -> None:
    rng = random.Random(8)
    probe = Probe()
    slow = _mix(rng, "slow", [1])
    read: list[int] = []

    def sync_source() -> Iterator[bytes]:
        for n in range(3):
            read.append(n)
            yield DONE if n == 2 else b": keep-alive\n\n"
        raise OSError("disk gone")

    sources: dict[str, aggregator.Source] = {
        "slow": probe.source("slow", slow.order, hang_at=1),
        "sync": sync_source(),
    }
    with (
        anyio.fail_after(5),
        pytest.RaisesGroup(pytest.RaisesExc(OSError, match="^disk gone$")),
    ):
        async with aggregator.fan_in(sources, fail_fast=True) as items:
            await probe.event("slow").wait()
            assert await _collect(items) == ([], {})
    assert read == [0, 1, 2]
    assert probe.closed == {"slow"}
    assert probe.live == 0

    # malformed input is not an exception: fail_fast leaves it an error, here the source
    # report's (no completion was open)
    with anyio.fail_after(5):
        async with aggregator.fan_in({"junk": [b"data: {nope}\n\n"]}, fail_fast=True) as items:
            results, reports = await _collect(items)
    assert results == []
    report = reports["junk"]
    assert report.reason is EndReason.ERROR
    assert isinstance(report.error, DecodeError)
    assert report.error.where == "line 1 (event 1)"
    assert (report.where, report.completions, report.ok) == ("line 1 (event 1)", 0, False)


# --- 5. cancellation at random points ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
async def test_cancelling_at_a_random_point_closes_every_source(seed: int) -> None:
    rng = random.Random(seed)
    count = 12
    probe = Probe(total=count)
    mixes = [_mix(rng, f"s{i}", range(3 * i, 3 * i + 3)) for i in range(count)]
    expected = {k: v for m in mixes for k, v in m.expected.items()}
    sources: dict[str, aggregator.Source] = {}
    for m in mixes:
        raw: Sequence[Any] = m.order if rng.random() < 0.5 else _split(rng, _sse(m.order), 80)
        delay = 0.002 if m.name == "s0" else rng.choice((0.0, 0.0, 0.0005, 0.001))
        sources[m.name] = probe.source(m.name, raw, rng=rng, delay=delay, cleanup=True)
    mode = ("break", "cancel", "deadline")[seed % 3]
    after = rng.randint(1, 2 * count)  # results
    seconds = rng.uniform(0.0, 0.02)
    buffer = rng.choice((0, 1, 16))
    tasks = len(anyio.get_running_tasks())
    out: list[Any] = []

    async def deadline(scope: anyio.CancelScope) -> None:
        # all sources are being read first (see test_leaving_early_closes_the_iterable_of_sources)
        await probe.event("*started").wait()
        scope.deadline = anyio.current_time() + seconds

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                if mode == "deadline":
                    tg.start_soon(deadline, scope)
                async with aggregator.fan_in(sources, buffer=buffer, interleaved=True) as items:
                    async for item in items:
                        out.append(item)
                        got = sum(isinstance(i, Result) for i in out)
                        if got >= after and probe.event("*started").is_set():
                            if mode == "break":
                                break
                            if mode == "cancel":
                                scope.cancel()
            tg.cancel_scope.cancel()
    # a report comes only after all its source's results (which it counts), and only for a
    # source read to its end
    results, reports = _outcome(out)
    assert [n for n, r in reports.items() if not r.ok] == []
    assert set(reports) <= probe.exhausted
    if mode != "deadline":
        # (after a cancel, the results already assembled from one batch still come out)
        assert len(results) >= after
        assert scope.cancelled_caught is (mode == "cancel")
    assert len(results) < len(expected)
    assert _wrong(results, expected) == []
    assert all(r.complete for r in results)
    assert len({r.key for r in results}) == len(results)
    assert probe.closed == probe.started == set(sources)
    assert probe.live == 0
    assert len(anyio.get_running_tasks()) == tasks
    yielded = dict(probe.yielded)
    await anyio.sleep(0.01)
    assert dict(probe.yielded) == yielded


# --- 6. backpressure --------------------------------------------------------------------------

#: A whole stream, with [DONE]: one completion per item.
ONE = (DATA / "openai" / "173417d55340.sse").read_bytes()


@pytest.mark.parametrize("buffer", [0, 1, 4])
async def test_with_the_default_pipeline_reads_stop_once_results_wait(buffer: int) -> None:
    """The default pipeline runs in each source's task: what waits is finished results, and a
    consumer that does not read stops the reads once ``buffer`` results wait, plus the one
    each source is trying to send."""
    probe = Probe()
    sources = {f"s{i}": probe.source(f"s{i}", [ONE] * 50, cleanup=True) for i in range(3)}
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, buffer=buffer) as items:
            await anyio.wait_all_tasks_blocked()
            assert sum(probe.yielded.values()) == buffer + len(sources)
            await anyio.sleep(0.02)
            await anyio.wait_all_tasks_blocked()
            assert sum(probe.yielded.values()) == buffer + len(sources)
            rest, reports = await _collect(items)
    assert len(rest) == 150
    assert all(r.complete for r in rest)
    assert {n: (r.ok, r.completions) for n, r in reports.items()} == dict.fromkeys(
        sources, (True, 50)
    )
    assert probe.cleaned == set(sources)


def _long(number: int, pieces: int) -> tuple[JSON, list[JSON]]:
    """A completion of ``pieces`` content chunks, and those chunks."""
    head = {"id": f"chatcmpl-long{number}", "created": 1, "model": "m"}
    chunks = [
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f"{i} "},
                    "finish_reason": "stop" if i == pieces - 1 else None,
                }
            ],
        }
        for i in range(pieces)
    ]
    message = {"role": "assistant", "content": "".join(f"{i} " for i in range(pieces))}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {**head, "object": "chat.completion", "choices": [choice]}, chunks


@pytest.mark.parametrize("buffer", [0, 1, 4])
async def test_a_consumer_that_does_not_read_stops_the_reads(buffer: int) -> None:
    # a pipeline of the consumer's own, with a chunk stage: the chunk stage runs in each
    # source's task, and only what ended (results, reports) crosses to the consumer and waits
    # in the buffer, whatever the pipeline
    seen: Counter[str] = Counter()

    def count(item: Any) -> None:
        if isinstance(item, Envelope):
            seen[item.key[0]] += 1

    pipe = stages.dedupe() | stages.tap(count) | stages.merge_deltas() | stages.assemble()
    probe = Probe()
    sources = {f"s{i}": probe.source(f"s{i}", [ONE] * 50, cleanup=True) for i in range(3)}
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, pipe, buffer=buffer) as items:
            await anyio.wait_all_tasks_blocked()
            # one result (one batch) waits in the buffer per slot, and one more in the blocked
            # send of each source: nothing else was read
            assert sum(probe.yielded.values()) == buffer + len(sources)
            await anyio.sleep(0.02)
            await anyio.wait_all_tasks_blocked()
            assert sum(probe.yielded.values()) == buffer + len(sources)
            first = _result(await anext(items))
            # reading resumes, and all of it comes out
            results, reports = _outcome([first, *[item async for item in items]])
    assert len(results) == 150
    assert all(r.complete for r in results)
    assert {n: (r.ok, r.completions) for n, r in reports.items()} == dict.fromkeys(
        sources, (True, 50)
    )
    assert dict(seen) == dict.fromkeys(sources, 50 * results[0].chunks)
    assert probe.exhausted == probe.cleaned == set(sources)

    # the chunks of one completion never wait in the buffer: a long completion is merged in
    # its source's task, read to its end; then only its result (and the report) waits
    seen.clear()
    probe = Probe()
    longs = {f"fast{i}": _long(i, 300) for i in range(3)}
    sources = {
        name: probe.source(name, chunks, cleanup=True) for name, (_, chunks) in longs.items()
    }
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, pipe, buffer=buffer) as items:
            await anyio.wait_all_tasks_blocked()
            assert dict(probe.yielded) == dict.fromkeys(longs, 300)
            assert dict(seen) == dict.fromkeys(longs, 300)
            assert probe.exhausted == probe.cleaned == set(longs)
            results, reports = await _collect(items)
    assert sorted(r.key for r in results) == [(name, 1) for name in longs]
    assert [r.key for r in results if to_dict(r.completion) != longs[r.key[0]][0]] == []
    assert {r.chunks for r in results} == {300}
    assert {n: r.ok for n, r in reports.items()} == dict.fromkeys(longs, True)


async def test_leaving_a_source_blocked_by_backpressure_closes_it_from_its_yield() -> None:
    probe = Probe()
    sources = {
        "a": probe.source("a", [ONE] * 1000, cleanup=True),
        "b": probe.source("b", [ONE] * 1000, cleanup=True),
    }
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, stages.default_pipeline(), buffer=1) as items:
            await anyio.wait_all_tasks_blocked()
            assert sum(probe.yielded.values()) == 3
            del items
    # each source was suspended at a yield: it was closed there, and its async clean-up
    # (shielded) completed although the task reading it was being cancelled
    assert probe.closed == probe.cleaned == {"a", "b"}
    assert probe.exhausted == set()
    assert probe.live == 0


async def test_a_sync_source_is_read_ahead_by_a_bounded_number_of_batches() -> None:
    # completions of one chunk each, one after the other: every item read ends one
    shorts = [_long(n, 1) for n in range(5000)]
    read = 0

    def sync_source(chunks: Iterable[JSON]) -> Iterator[JSON]:
        nonlocal read
        for chunk in chunks:
            read += 1
            yield chunk

    with anyio.fail_after(5):
        pipeline = stages.default_pipeline()
        source = sync_source(c for _, (c,) in shorts)
        async with aggregator.fan_in({"sync": source}, pipeline, buffer=1) as items:
            await anyio.wait_all_tasks_blocked()
            # a sync source is read in batches of 1,024 items between checkpoints
            assert read == 2 * 1024
            results, reports = await _collect(items)
    assert read == 5000
    assert [to_dict(r.completion) for r in results] == [final for final, _ in shorts]
    assert {r.chunks for r in results} == {1}
    assert (reports["sync"].ok, reports["sync"].completions) == (True, 5000)

    # one long completion: nothing ends before the source does, so it is read to its end
    read = 0
    final, chunks = _long(1, 5000)
    with anyio.fail_after(5):
        pipeline = stages.default_pipeline()
        async with aggregator.fan_in({"sync": sync_source(chunks)}, pipeline, buffer=1) as items:
            await anyio.wait_all_tasks_blocked()
            assert read == 5000
            (result,), _ = await _collect(items)
    assert to_dict(result.completion) == final
    assert result.chunks == 5000


async def test_short_sync_sources_end_in_the_turn_of_their_last_batch() -> None:
    # 2,000 sources of one short completion each, all allowed at once (max_sources), and a
    # consumer that keeps pace (it takes each batch as it comes): a sync source that runs out
    # in a batch sends its results and its report with that batch, and ends (its engine and
    # its task freed) in that turn. Its end used to take a turn and a batch of its own: each
    # source sent two batches for the consumer's one, and most of the 2,000 waited at once,
    # each with its engine.
    started = 0
    in_flight: list[int] = []

    def sync_source(number: int) -> Iterator[bytes]:
        nonlocal started
        started += 1
        yield ONE.replace(b"chatcmpl-", b"chatcmpl-%d-" % number)

    sources = {f"s{i}": sync_source(i) for i in range(2000)}
    reports = 0
    results = []
    with anyio.fail_after(20):
        async with aggregator.fan_in(sources, max_sources=2000) as items:
            async for item in items:
                if isinstance(item, SourceReport):
                    assert item.ok
                    reports += 1
                    in_flight.append(started - reports)
                else:
                    results.append(item)
    assert reports == len(results) == 2000
    assert all(r.complete for r in results)
    assert max(in_flight) <= 4, max(in_flight)


# --- 7. composition ---------------------------------------------------------------------------


class DropChoice(stages.Stage):
    """A user's own stage: drops the chunks of one choice index."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.dropped: Counter[StreamKey] = Counter()

    def process(self, item: Any, out: list[Any]) -> None:
        if isinstance(item, Envelope):
            choices = item.event.choices
            if choices and all(c.index == self.index for c in choices):
                self.dropped[item.key] += 1
                return
        out.append(item)


class Archive(stages.AsyncStage):
    """A user's own stage that awaits: stores each result (a database write, say)."""

    def __init__(self) -> None:
        self.stored: list[StreamKey] = []

    async def run(self, items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        async for item in items:
            if isinstance(item, Result):
                await anyio.lowlevel.checkpoint()
                self.stored.append(item.key)
            yield item


def _drop_choice(chunks: Sequence[JSON], index: int) -> list[JSON]:
    return [c for c in chunks if not (c["choices"] and c["choices"][0]["index"] == index)]


async def test_user_stages_between_ours_in_either_order() -> None:
    rng = random.Random(9)
    mixes = [_mix(rng, f"s{i}", range(4 * i, 4 * i + 4)) for i in range(4)]
    chunks = {k: c for m in mixes for k, c in m.chunks.items()}
    expected = {k: v for m in mixes for k, v in m.expected.items()}
    two = {k for k, v in expected.items() if len(v["choices"]) == 2}
    assert len(two) >= 2
    ended: list[StreamKey] = []
    audited: list[Any] = []

    def end(item: Any) -> None:
        if isinstance(item, End):
            ended.append(item.key)

    @stages.stage
    async def audit(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        async for item in items:
            await anyio.lowlevel.checkpoint()
            audited.append(item)
            yield item

    def sources() -> list[tuple[str, aggregator.Source]]:
        return [(m.name, _split(rng, _sse(m.order), 70)) for m in mixes]

    def by_source(keys: Iterable[StreamKey]) -> dict[str, list[StreamKey]]:
        out: dict[str, list[StreamKey]] = {}
        for key in keys:
            out.setdefault(key[0], []).append(key)
        return out

    # before merge_deltas, the user's stage changes what is merged; it sees each stream's end
    # in its source's task; the stages after assemble see the results, in the consumer's
    drop, archive = DropChoice(1), Archive()
    pipe = (
        stages.dedupe()
        | drop
        | stages.tap(end)
        | stages.collect_usage()
        | stages.merge_deltas()
        | stages.assemble()
        | audit
        | archive
    )
    assert repr(pipe) == (
        "dedupe | DropChoice | tap | collect_usage | merge_deltas | assemble | _FunctionStage"
        " | Archive"
    )
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources(), pipe, interleaved=True) as items:
            out = [item async for item in items]
    results, reports = _outcome(out)
    dropped = {k: _merged(_drop_choice(c, 1)) for k, c in chunks.items()}
    assert sorted(r.key for r in results) == sorted(expected)
    assert _wrong(results, dropped) == []
    assert {k: n for k, n in drop.dropped.items()} == {
        k: len(c) - len(_drop_choice(c, 1)) for k, c in chunks.items() if k in two
    }
    assert {r.key: r.chunks for r in results} == {
        k: len(_drop_choice(c, 1)) for k, c in chunks.items()
    }
    # the sources run side by side: each one's ends come in the order of its results
    assert by_source(ended) == by_source(r.key for r in results)
    assert sorted(ended) == sorted(expected)
    assert audited == out
    assert archive.stored == [r.key for r in results]
    assert all(r.complete for r in results)
    assert sorted(reports) == [m.name for m in mixes]
    assert all(r.ok for r in reports.values())

    # after merge_deltas, no envelope reaches it: the completions are whole, and the stages
    # there see results (``assemble()`` after them is a no-op)
    ended.clear()
    audited.clear()
    drop, archive = DropChoice(1), Archive()
    pipe = stages.pipeline(
        stages.dedupe(),
        stages.collect_usage(),
        stages.tap(end),
        stages.merge_deltas(),
        drop,
        audit,
        archive,
        stages.assemble(),
    )
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources(), pipe, interleaved=True) as items:
            out = [item async for item in items]
    results, reports = _outcome(out)
    assert _wrong(results, expected) == []
    assert sorted(r.key for r in results) == sorted(expected)
    assert drop.dropped == Counter()
    assert audited == out
    assert archive.stored == [r.key for r in results]  # it saw the results
    assert by_source(ended) == by_source(r.key for r in results)
    assert sorted(reports) == [m.name for m in mixes]


def _usage(total: int) -> JSON:
    return {"prompt_tokens": 1, "completion_tokens": total - 1, "total_tokens": total}


async def test_dedupe_before_or_after_collect_usage() -> None:
    head = {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 7, "model": "m"}

    def chunk(delta: JSON, finish: str | None = None, usage: JSON | None = None) -> JSON:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else []
        return {**head, "choices": choices, **({"usage": usage} if usage else {})}

    pairs = [
        ("1", chunk({"role": "assistant"})),
        ("2", chunk({"content": "a"})),
        ("3", chunk({}, usage=_usage(10))),  # a running usage report
        ("4", chunk({"content": "b"}, "stop")),
        ("5", chunk({}, usage=_usage(20))),
        ("3", chunk({}, usage=_usage(10))),  # replays of the broker
        ("2", chunk({"content": "a"})),
    ]
    # SSE events with an id: of their own; a reconnect replays the last two
    sse = [
        b'id: 1\ndata: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":7,'
        b'"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n',
        b'id: 2\ndata: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":7,'
        b'"model":"m","choices":[{"index":0,"delta":{"content":"y"},"finish_reason":"stop"}]}\n\n',
    ]
    replayed_sse = [*sse, *sse, DONE]

    def message(content: str) -> JSON:
        return {"index": 0, "message": {"role": "assistant", "content": content}}

    def whole(id_: str, content: str, usage: JSON | None) -> JSON:
        out: JSON = {"id": id_, "object": "chat.completion", "created": 7, "model": "m"}
        out["choices"] = [{**message(content), "finish_reason": "stop"}]
        return out | ({"usage": usage} if usage else {})

    seen: list[Any] = []
    # wherever dedupe() is before merge_deltas(), it is the engine's first step: the replays
    # are dropped before anything sees or counts them, and the usage is the completion's
    orders = {
        "dedupe first": (
            stages.dedupe() | stages.collect_usage() | stages.merge_deltas() | stages.assemble()
        ),
        "collect_usage first": (
            stages.collect_usage() | stages.dedupe() | stages.merge_deltas() | stages.assemble()
        ),
        "collect_usage first, no assemble": (
            stages.collect_usage() | stages.dedupe() | stages.merge_deltas()
        ),
        "a chunk stage before dedupe": (
            stages.tap(seen.append) | stages.dedupe() | stages.merge_deltas()
        ),
    }
    for label, pipe in orders.items():
        seen.clear()
        with anyio.fail_after(5):
            sources: dict[str, aggregator.Source] = {"pairs": pairs, "sse": replayed_sse}
            async with aggregator.fan_in(sources, pipe) as items:
                found, reports = await _collect(items)
        results = {r.key: r for r in found}
        assert sorted(results) == [("pairs", 1), ("sse", 1)], label
        got = results[("pairs", 1)]
        assert to_dict(got.completion) == whole("chatcmpl-r", "ab", _usage(20)), label
        assert got.usage == got.completion.usage, label
        assert (got.duplicates, got.chunks) == (2, 5), label
        sse_result = results[("sse", 1)]
        assert to_dict(sse_result.completion) == whole("chatcmpl-s", "xy", None), label
        assert (sse_result.duplicates, sse_result.chunks) == (2, 2), label
        assert sse_result.reason is EndReason.DONE, label
        assert {n: r.ok for n, r in reports.items()} == {"pairs": True, "sse": True}, label
    # the stage placed before dedupe() saw every chunk but no replay, in order
    envelopes = [(e.key, e.dedupe_id) for e in seen if isinstance(e, Envelope)]
    assert [i for k, i in envelopes if k == ("pairs", 1)] == ["1", "2", "3", "4", "5"]
    assert [i for k, i in envelopes if k == ("sse", 1)] == ["1", "2"]
    assert len(envelopes) == 7

    # dedupe after merge_deltas would see no chunk: the replays would be merged; refused
    refused = stages.collect_usage() | stages.merge_deltas() | stages.dedupe()
    with pytest.raises(
        UsageError, match=r"^dedupe\(\) after merge_deltas\(\) would see no chunk: put it before$"
    ):
        async with aggregator.fan_in(sources, refused):
            pytest.fail("planned")  # pragma: no cover


async def test_snapshots_before_merge_deltas_show_each_stream_in_progress() -> None:
    rng = random.Random(10)
    mixes = [_mix(rng, f"s{i}", range(3 * i, 3 * i + 3)) for i in range(3)]
    chunks = {k: c for m in mixes for k, c in m.chunks.items()}
    sources = {m.name: _split(rng, _sse(m.order), 90) for m in mixes}
    pipe = stages.snapshots(every=3) | stages.merge_deltas() | stages.assemble()
    with anyio.fail_after(5):
        async with aggregator.fan_in(sources, pipe, interleaved=True) as items:
            out = [item async for item in items]
    snapshots = [s for s in out if isinstance(s, Snapshot)]
    # the results and reports, each report after its source's results and snapshots
    results, reports = _outcome([i for i in out if not isinstance(i, Snapshot)])
    assert len(snapshots) + len(results) + len(reports) == len(out)
    assert sorted(reports) == sorted(sources)
    assert all(r.ok for r in reports.values())
    assert [s.key for s in snapshots if out.index(s) > out.index(reports[s.key[0]])] == []
    assert {s.key: [] for s in snapshots} | {
        k: [s.chunks for s in snapshots if s.key == k] for k in chunks
    } == {k: list(range(3, len(c) + 1, 3)) for k, c in chunks.items()}
    assert [
        s.key for s in snapshots if to_dict(s.completion) != _merged(chunks[s.key][: s.chunks])
    ] == []
    # every snapshot of a stream comes before its result
    position = {r.key: out.index(r) for r in results}
    assert [s.key for s in snapshots if out.index(s) > position[s.key]] == []
    assert _wrong(results, {k: _merged(c) for k, c in chunks.items()}) == []
    assert sorted(r.key for r in results) == sorted(chunks)


async def test_total_usage_sums_usage_by_model() -> None:
    def completion(id_: str, model: str, usage: JSON | None) -> list[JSON]:
        head = {"id": id_, "object": "chat.completion.chunk", "created": 1, "model": model}
        delta = {"role": "assistant", "content": id_}
        out = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]}]
        if usage is not None:
            out.append({**head, "choices": [], "usage": usage})
        return out

    cached = {"prompt_tokens_details": {"cached_tokens": 4}}
    sources = {
        "a": completion("a", "m1", _usage(10) | cached),
        "b": completion("b", "m1", _usage(5)),
        "c": completion("c", "m2", _usage(7) | cached),
        "d": completion("d", "m1", None),  # no usage: not counted
        "e": _sse(completion("e", "m2", _usage(3)) + completion("f", "m2", _usage(100))),
    }
    want = {
        "m1": {
            "prompt_tokens": 2,
            "completion_tokens": 13,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
        "m2": {
            "prompt_tokens": 3,
            "completion_tokens": 107,
            "total_tokens": 110,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    pipes = (
        stages.default_pipeline() | stages.total_usage(),  # reads the results
        stages.dedupe()
        | stages.collect_usage()
        | stages.merge_deltas()
        | stages.total_usage()  # reads the results too (``assemble()`` after is a no-op)
        | stages.assemble(),
    )
    for pipe in pipes:
        with anyio.fail_after(5):
            async with aggregator.fan_in(
                {k: [v] if k == "e" else v for k, v in sources.items()}, pipe
            ) as items:
                out = [item async for item in items]
        *rest, totals = out  # the totals come last, once the input is over
        results, reports = _outcome(rest)
        assert len(results) == 6
        assert all(r.usage == r.completion.usage for r in results)
        assert {n: r.completions for n, r in reports.items()} == {
            "a": 1,
            "b": 1,
            "c": 1,
            "d": 1,
            "e": 2,
        }
        assert isinstance(totals, stages.UsageTotals)
        assert totals.streams == 5
        assert {m: to_dict(u) for m, u in totals.by_model.items()} == want


# --- 8. max_sources ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_max_sources_bounds_the_sources_read_at_once(limit: int) -> None:
    rng = random.Random(limit)
    probe = Probe()
    mixes = [_mix(rng, f"s{i}", [2 * i, 2 * i + 1]) for i in range(7)]

    async def arriving() -> AsyncGenerator[tuple[str, aggregator.Source], None]:
        for m in mixes:  # sources that arrive over time, as a gateway's requests do
            await anyio.lowlevel.checkpoint()
            yield m.name, probe.source(m.name, m.order, delay=0.0005)

    with anyio.fail_after(10):
        async with aggregator.fan_in(arriving(), max_sources=limit, interleaved=True) as items:
            out = [item async for item in items]
    results, reports = _outcome(out)
    assert probe.most_live == limit
    expected = {k: v for m in mixes for k, v in m.expected.items()}
    assert sorted(r.key for r in results) == sorted(expected)
    assert _wrong(results, expected) == []
    assert sorted(reports) == [m.name for m in mixes]
    assert all(r.ok for r in reports.values())
    if limit == 1:  # one at a time, in order, each source's report after its results
        assert [r.key if isinstance(r, Result) else r.source for r in out] == [
            x for m in mixes for x in [*sorted(m.expected), m.name]
        ]
    assert probe.exhausted == probe.closed == {m.name for m in mixes}
    assert probe.live == 0


# --- bugs -------------------------------------------------------------------------------------


async def test_leaving_early_closes_the_iterable_of_sources() -> None:
    # fan_in iterates the sources in a private async generator (_pairs) that it never closes:
    # leaving the block while sources are still pending leaves the caller's async iterable of
    # sources unclosed (its clean-up runs later, from the garbage collector, if ever), and on
    # trio the abandoned generator is reported as a ResourceWarning.
    rng = random.Random(12)
    probe = Probe()
    mixes = [_mix(rng, f"s{i}", [i]) for i in range(4)]
    closed = False

    async def arriving() -> AsyncGenerator[tuple[str, aggregator.Source], None]:
        nonlocal closed
        try:
            for m in mixes:
                yield m.name, probe.source(m.name, m.order, delay=0.001)
        finally:
            closed = True

    with anyio.fail_after(5):
        async with aggregator.fan_in(arriving(), max_sources=1) as items:
            async for item in items:
                assert _result(item).key == ("s0", 1)
                break
    assert "s0" in probe.started
    assert "s3" not in probe.started  # sources were still pending when the block was left
    assert probe.closed == probe.started
    assert closed


async def test_total_usage_sums_provider_extras_whatever_the_order() -> None:
    # total_usage promises to sum numeric provider extras (cost): a stream whose usage has no
    # extras, arriving between two that have, throws away the sum so far (in _add, the empty
    # read-only extras of the Usage is not a dict, so the newer value replaces the total).
    def completion(id_: str, usage: JSON) -> list[JSON]:
        head = {"id": id_, "object": "chat.completion.chunk", "created": 1, "model": "m"}
        delta = {"role": "assistant", "content": id_}
        return [
            {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]},
            {**head, "choices": [], "usage": usage},
        ]

    sources = {
        "a": completion("a", _usage(3) | {"cost": 0.5}),
        "b": completion("b", _usage(3)),
        "c": completion("c", _usage(3) | {"cost": 0.25}),
    }
    with anyio.fail_after(5):
        pipe = stages.default_pipeline() | stages.total_usage()
        async with aggregator.fan_in(sources, pipe, max_sources=1) as items:
            *_, totals = [item async for item in items]
    assert isinstance(totals, stages.UsageTotals)
    assert to_dict(totals.by_model["m"]) == {
        "prompt_tokens": 3,
        "completion_tokens": 6,
        "total_tokens": 9,
        "cost": 0.75,
    }
