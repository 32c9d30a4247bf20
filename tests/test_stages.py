"""Each stage alone, pipelines composed of them, and the pipeline shapes that are refused.

The plain stages (``snapshots()`` marking, ``map_items``, ``filter_items``, ``tap``) are driven by
hand, synchronously. ``dedupe()``, ``collect_usage()``, ``merge_deltas()`` and ``assemble()`` are
steps of each source's engine: they are run through :func:`aggregator.results` (and
:func:`aggregator.fan_in`), on asyncio and trio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import aggregator
from aggregator import (
    DecodeError,
    EndReason,
    Result,
    SourceReport,
    UsageError,
    to_dict,
)
from aggregator import stages as st
from aggregator.lowlevel import structure_chunk
from aggregator.stages import End, Envelope, Pipeline, Snapshot, SnapshotRequest, Stage

KEY = ("src", 1)
JSON = dict[str, Any]


def payload(
    content: str | None = None, finish: str | None = None, *, id_: str = "c", **top: Any
) -> JSON:
    choices = (
        []
        if content is None and finish is None
        else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    )
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
        **top,
    }


def chunk(content: str | None = None, finish: str | None = None, **top: Any) -> Any:
    return structure_chunk(payload(content, finish, **top))


def env(mark: str, content: str | None = None, **kw: Any) -> Envelope:
    """An envelope told apart from the others by its ``dedupe_id``, ``mark``."""
    return Envelope(KEY, chunk(content, **kw), mark)


def sse(*payloads: JSON, ids: tuple[str, ...] = (), done: bool = True) -> bytes:
    """SSE bytes of ``payloads``, the n-th event with the ``id:`` ``ids[n]`` if given."""
    out = b""
    for n, p in enumerate(payloads):
        if n < len(ids):
            out += f"id: {ids[n]}\n".encode()
        out += b"data: " + json.dumps(p).encode() + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


def run(stage: Stage | Pipeline, items: list[Any]) -> list[Any]:
    """Drive sync stages by hand, the way a fused pipeline does."""
    stages = Pipeline(stage).stages
    batch = list(items)
    for s in stages:
        out: list[Any] = []
        for item in batch:
            s.process(item, out)
        batch = out
    for i, s in enumerate(stages):
        out = []
        s.finish(out)
        for later in stages[i + 1 :]:
            nxt: list[Any] = []
            for item in out:
                later.process(item, nxt)
            out = nxt
        batch += out
    return batch


async def through(pipe: Stage | Pipeline | None, source: aggregator.Source, **kw: Any) -> list[Any]:
    """Everything that comes out of ``results(source, pipe)`` for the source ``"src"``."""
    async with aggregator.results(source, pipe, name="src", **kw) as items:
        return [item async for item in items]


def text(result: Result | Snapshot) -> Any:
    return to_dict(result.completion)["choices"][0]["message"].get("content")


END = End(key=KEY, reason=EndReason.DONE)


# --- the plain stages, by hand ------------------------------------------------------------------


def test_snapshots_alone_only_mark_the_stream() -> None:
    items: list[Any] = [env(str(i), str(i)) for i in range(1, 6)]
    marks = run(st.snapshots(every=5), [*items, END])
    assert marks == [*items, SnapshotRequest(KEY), END]
    with pytest.raises(UsageError):
        st.snapshots()
    with pytest.raises(UsageError):
        st.snapshots(every=0)


def test_snapshots_by_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.5, 1.2, 1.3, 2.5])
    monkeypatch.setattr("aggregator._stages.time.monotonic", lambda: next(clock))
    out = run(st.snapshots(interval=1.0), [env(str(i), "x") for i in range(5)])
    assert [i.dedupe_id for i in out if isinstance(i, Envelope)] == [str(i) for i in range(5)]
    positions = [n for n, i in enumerate(out) if isinstance(i, SnapshotRequest)]
    assert positions == [3, 6]  # after the envelopes at t=1.2 and t=2.5


def test_map_filter_tap() -> None:
    seen: list[Any] = []
    out = run(
        st.tap(seen.append) | st.filter_items(lambda i: isinstance(i, int)) | st.map_items(str),
        [1, "a", 2],
    )
    assert out == ["1", "2"]
    assert seen == [1, "a", 2]


def test_composition_rules() -> None:
    p = st.dedupe() | st.merge_deltas()
    q = p | st.assemble()
    assert [type(s).__name__ for s in q.stages] == ["dedupe", "merge_deltas", "assemble"]
    assert [type(s).__name__ for s in st.pipeline(st.dedupe(), p).stages] == [
        "dedupe",
        "dedupe",
        "merge_deltas",
    ]
    assert repr(q) == "dedupe | merge_deltas | assemble"
    assert repr(st.default_pipeline()) == "dedupe | collect_usage | merge_deltas | assemble"
    with pytest.raises(UsageError):
        Pipeline(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="only inside a Pipeline"):
        run(st.stage(_identity), [1])


async def _identity(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for item in items:
        yield item


# --- the engine's steps, through results() --------------------------------------------------------


@pytest.mark.anyio
async def test_dedupe_drops_replays_counts_and_frees() -> None:
    seen: list[Any] = []
    source = [
        ("1", payload("a")),
        ("2", payload("b")),
        ("2", payload("b")),
        ("1", payload("a")),
        payload("x"),
        payload("x"),
        ("3", payload(None, "stop")),
        # the next completion: its ids are its own (the first stream's were freed at its end)
        ("1", payload("y", id_="d")),
        ("2", payload("z", "stop", id_="d")),
        ("2", payload("z", "stop", id_="d")),
    ]
    first, second, report = await through(
        st.dedupe() | st.tap(seen.append) | st.merge_deltas(), source
    )
    envelopes = [i for i in seen if isinstance(i, Envelope)]
    # the same token twice is not a duplicate: only chunks with a dedupe id are
    assert [(e.key, e.dedupe_id) for e in envelopes] == [
        (KEY, "1"),
        (KEY, "2"),
        (KEY, None),
        (KEY, None),
        (KEY, "3"),
        (("src", 2), "1"),
        (("src", 2), "2"),
    ]
    assert [i.key for i in seen if isinstance(i, End)] == [KEY, ("src", 2)]
    assert (first.key, text(first), first.chunks, first.duplicates) == (KEY, "abxx", 5, 2)
    assert (second.key, text(second), second.chunks, second.duplicates) == (
        ("src", 2),
        "yz",
        2,
        1,
    )
    assert isinstance(report, SourceReport)
    assert report.ok
    assert report.completions == 2

    # without dedupe() in the pipeline, nothing is dropped
    (kept, _) = await through(st.merge_deltas(), source[:7])
    assert (text(kept), kept.chunks, kept.duplicates) == ("abbaxx", 7, 0)


@pytest.mark.anyio
async def test_dedupe_state_is_bounded() -> None:
    source = [(str(i), payload("t")) for i in range(10)]
    source += [(i, payload("t")) for i in ("7", "8", "9", "6")]
    result, _ = await through(st.dedupe(max_ids=3) | st.merge_deltas(), source)
    # "7", "8", "9" are remembered (the last 3), "6" was forgotten
    assert (result.chunks, result.duplicates) == (11, 3)
    assert text(result) == "t" * 11
    with pytest.raises(UsageError):
        st.dedupe(max_ids=0)


@pytest.mark.anyio
async def test_merge_deltas_consumes_envelopes_and_ends_with_a_result() -> None:
    class Inject(Stage):
        """Passes everything on, and makes an item of its own at the first chunk."""

        def __init__(self) -> None:
            self.seen: list[Any] = []

        def process(self, item: Any, out: list[Any]) -> None:
            self.seen.append(item)
            out.append(item)
            if len(self.seen) == 1:
                out.append("other")

    inject = Inject()
    raw = sse(payload("Hel"), done=False) + b"data: {oops\n\n" + sse(payload("lo", "stop"))
    out = await through(inject | st.merge_deltas(), [raw], strict=False)
    assert out[0] == "other"  # what a chunk stage makes is passed on
    result, report = out[1:]
    assert isinstance(result, Result)
    assert text(result) == "Hello"
    assert result.finished
    assert result.chunks == 2
    assert result.reason is EndReason.DONE
    assert [(type(p), p.where) for p in result.problems] == [(DecodeError, "line 3 (event 2)")]
    assert str(result.problems[0]).startswith("src, line 3 (event 2): invalid JSON: ")
    assert isinstance(report, SourceReport)
    assert (report.completions, report.error, report.problems) == (1, None, ())
    # the chunk stage saw the two chunks (not the bad payload) and the end, not the result
    assert [type(i).__name__ for i in inject.seen] == ["Envelope", "Envelope", "End"]
    assert inject.seen[2] == End(KEY, EndReason.DONE, result.where)


@pytest.mark.anyio
async def test_snapshots_every_n_answered_by_merge_deltas() -> None:
    source = [payload(str(i)) for i in range(1, 6)]
    out = await through(st.snapshots(every=2) | st.merge_deltas(), source)
    *snaps, result, report = out
    assert all(isinstance(s, Snapshot) for s in snaps)
    assert [(s.key, s.chunks, text(s)) for s in snaps] == [(KEY, 2, "12"), (KEY, 4, "1234")]
    assert isinstance(result, Result)
    assert text(result) == "12345"
    assert isinstance(report, SourceReport)


@pytest.mark.anyio
async def test_collect_usage_and_total_usage() -> None:
    u1 = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    u2 = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "cost": 0.25}
    totals = st.total_usage()
    source = [
        payload("a", usage=u1),
        payload("z", id_="d", usage=u2),
        payload("b", usage=u2),
    ]
    out = await through(st.collect_usage() | st.merge_deltas() | totals, source, interleaved=True)
    *results, report, last = out
    assert [r.key for r in results] == [KEY, ("src", 2)]
    assert [to_dict(r.usage) for r in results] == [u2, u2]  # the last report wins
    assert all(r.usage == r.completion.usage for r in results)
    assert isinstance(report, SourceReport)
    assert isinstance(last, st.UsageTotals)
    assert last.streams == 2
    want = {"prompt_tokens": 6, "completion_tokens": 10, "total_tokens": 16, "cost": 0.5}
    assert {m: to_dict(u) for m, u in last.by_model.items()} == {"m": want}
    assert to_dict(totals.totals["m"]) == want


@pytest.mark.anyio
@pytest.mark.parametrize(
    "pipe",
    [st.assemble(), st.merge_deltas(), st.merge_deltas() | st.assemble()],
    ids=repr,
)
async def test_assemble_or_merge_deltas_alone_emits_results(pipe: Stage | Pipeline) -> None:
    out = await through(pipe, [payload("a"), payload("b", "stop")])
    result, report = out
    assert isinstance(result, Result)
    assert result.complete
    assert result.chunks == 2
    assert result.key == KEY
    assert text(result) == "ab"
    assert isinstance(report, SourceReport)
    assert report.ok


@pytest.mark.anyio
async def test_assemble_after_result_stages_is_a_no_op() -> None:
    # ``assemble()`` after ``merge_deltas()`` is a no-op: the stages between see results
    seen: list[Any] = []
    pipe = st.merge_deltas() | st.tap(seen.append) | st.assemble()
    out = await through(pipe, [payload("a"), payload("b", "stop")])
    assert [type(i).__name__ for i in out] == ["Result", "SourceReport"]
    assert seen == out


@pytest.mark.anyio
async def test_a_raw_source_is_read_without_a_decode_stage() -> None:
    raw = [
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",',
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    async with aggregator.results(raw, st.assemble(), name="raw.sse") as items:
        result, report = [item async for item in items]
    assert isinstance(result, Result)
    assert result.reason is EndReason.DONE
    assert result.source == "raw.sse"
    assert text(result) == "hi"
    assert isinstance(report, SourceReport)
    assert report.source == "raw.sse"


@pytest.mark.anyio
async def test_async_stage_between_sync_stages_keeps_order() -> None:
    @st.stage
    async def double(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        async for item in items:
            yield item
            yield item

    async def batches() -> AsyncGenerator[list[Any], None]:
        yield [1, 2]
        yield [3]

    p = st.map_items(lambda x: x * 10) | double | st.filter_items(lambda x: x != 20)
    got = [item async for batch in p.run(batches()) for item in batch]
    assert got == [10, 10, 30, 30]


# --- refused pipelines ---------------------------------------------------------------------------

REFUSED: dict[str, tuple[Callable[[], Stage | Pipeline], str]] = {
    "no merge": (
        lambda: st.dedupe() | st.collect_usage() | st.tap(print),
        r"^the pipeline dedupe \| collect_usage \| tap has no merge_deltas\(\) or assemble\(\): "
        r"say where chunks become results",
    ),
    "nothing but a chunk stage": (
        lambda: st.tap(print),
        r"has no merge_deltas\(\) or assemble\(\)",
    ),
    "dedupe after merge_deltas": (
        lambda: st.merge_deltas() | st.dedupe(),
        r"^dedupe\(\) after merge_deltas\(\) would see no chunk: put it before$",
    ),
    "collect_usage after merge_deltas": (
        lambda: st.dedupe() | st.merge_deltas() | st.collect_usage(),
        r"^collect_usage\(\) after merge_deltas\(\) would see no chunk: put it before$",
    ),
    "merge_deltas twice": (
        lambda: st.merge_deltas() | st.merge_deltas(),
        r"^merge_deltas\(\) after merge_deltas\(\) would see no chunk: put it before$",
    ),
    "snapshots after merge_deltas": (
        lambda: st.merge_deltas() | st.snapshots(every=2),
        r"^snapshots\(\) after merge_deltas\(\) would see no chunk: put it before$",
    ),
    "snapshots after assemble": (
        lambda: st.assemble() | st.snapshots(every=2),
        r"^snapshots\(\) after assemble\(\) would see no chunk: put it before$",
    ),
    "an AsyncStage before merge_deltas": (
        lambda: st.dedupe() | st.stage(_identity) | st.merge_deltas(),
        r"^stage\('_identity'\) awaits, and chunk stages run inside the engine, which does not: "
        r"put it after merge_deltas\(\), where it sees results$",
    ),
    "total_usage before merge_deltas": (
        lambda: st.total_usage() | st.merge_deltas() | st.assemble(),
        r"^total_usage\(\) reads results: put it after merge_deltas\(\)$",
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ["results", "fan_in"])
@pytest.mark.parametrize("shape", list(REFUSED))
async def test_a_pipeline_that_cannot_give_a_right_answer_is_refused_on_entry(
    shape: str, entry: str
) -> None:
    make, message = REFUSED[shape]
    read: list[Any] = []

    async def source() -> AsyncGenerator[JSON, None]:
        read.append("started")
        yield payload("a", "stop")

    opened: AbstractAsyncContextManager[Any] = (
        aggregator.results(source(), make())
        if entry == "results"
        else aggregator.fan_in({"src": source()}, make())
    )
    with pytest.raises(UsageError, match=message):
        async with opened:
            pytest.fail("the pipeline was planned")  # pragma: no cover
    assert read == []  # refused before anything was read
    with pytest.raises(UsageError, match="not a stage or pipeline"):
        async with aggregator.results([], print):  # type: ignore[call-overload]
            pass  # pragma: no cover


@pytest.mark.anyio
async def test_a_chunk_stage_before_merge_deltas_sees_every_chunk_and_each_end() -> None:
    class Record(Stage):
        """A user's chunk stage: records what it sees, in a log shared with a result stage."""

        def __init__(self, log: list[tuple[str, Any]]) -> None:
            self.log = log
            self.finished = 0

        def process(self, item: Any, out: list[Any]) -> None:
            self.log.append(("chunk stage", item))
            out.append(item)

        def finish(self, out: list[Any]) -> None:
            self.finished += 1

    first = [payload("a"), payload("b"), payload(None, "stop")]
    second = [payload("c", id_="d"), payload("d", "length", id_="d")]
    replayed = [first[0], first[1], first[1], first[2], second[0], second[1], second[0]]
    ids = ("1", "2", "2", "3", "1", "2", "1")
    pairs = [
        ("a", payload("x", id_="p")),
        ("a", payload("x", id_="p")),
        ("b", payload("y", "stop", id_="p")),
    ]
    log: list[tuple[str, Any]] = []
    record = Record(log)
    pipe = (
        st.dedupe()
        | record
        | st.merge_deltas()
        | st.tap(lambda item: log.append(("result stage", item)))
    )
    sources: dict[str, aggregator.Source] = {"sse": [sse(*replayed, ids=ids)], "pairs": pairs}
    async with aggregator.fan_in(sources, pipe) as items:
        out = [item async for item in items]

    results = {r.key: r for r in out if isinstance(r, Result)}
    reports = {r.source: r for r in out if isinstance(r, SourceReport)}
    assert len(results) + len(reports) == len(out)
    assert sorted(results) == [("pairs", 1), ("sse", 1), ("sse", 2)]
    assert sorted(reports) == ["pairs", "sse"]
    assert all(r.ok for r in reports.values())
    chunks = {
        ("sse", 1): [(structure_chunk(p), i) for p, i in zip(first, ("1", "2", "3"), strict=True)],
        ("sse", 2): [(structure_chunk(p), i) for p, i in zip(second, ("1", "2"), strict=True)],
        ("pairs", 1): [(structure_chunk(pairs[0][1]), "a"), (structure_chunk(pairs[2][1]), "b")],
    }
    for key, want in chunks.items():
        mine = [(n, item) for n, (_, item) in enumerate(log) if getattr(item, "key", None) == key]
        kinds = [type(item).__name__ for _, item in mine]
        # every chunk of the stream (no replay), then its end, then its result
        assert kinds == ["Envelope"] * len(want) + ["End", "Result"], key
        assert [(e.event, e.dedupe_id) for _, e in mine[: len(want)]] == want, key
        (n_end, end), (n_result, result) = mine[-2:]
        assert [log[n_end][0], log[n_result][0]] == ["chunk stage", "result stage"]
        assert result is results[key]
        assert (end.reason, end.where, end.error) == (result.reason, result.where, result.error)
        assert result.chunks == len(want)
    assert {k: r.duplicates for k, r in results.items()} == {
        ("sse", 1): 1,
        ("sse", 2): 1,
        ("pairs", 1): 1,
    }
    assert [text(results[k]) for k in sorted(results)] == ["xy", "ab", "cd"]
    assert record.finished == 2  # once per source, when it ends
    # the result stage saw each report, last for its source
    for name, report in reports.items():
        own = [item for kind, item in log if kind == "result stage" and item.source == name]
        assert own[-1] is report
