"""Each stage alone, and pipelines composed of them (sync core first, then one async run)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

import aggregator
from aggregator import (
    End,
    EndReason,
    Envelope,
    Failure,
    Pipeline,
    Result,
    Snapshot,
    SnapshotRequest,
    Stage,
    UsageError,
    structure_chunk,
    to_dict,
)
from aggregator import stages as st

KEY = ("src", 1)


def chunk(content: str | None = None, finish: str | None = None, **top: Any) -> Any:
    choices = (
        []
        if content is None and finish is None
        else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    )
    return structure_chunk(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": choices,
            **top,
        }
    )


def env(seq: int, content: str | None = None, dedupe_id: str | None = None, **kw: Any) -> Envelope:
    return Envelope(KEY, seq, chunk(content, **kw), dedupe_id)


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


END = End(key=KEY, reason=EndReason.DONE)


def test_dedupe_drops_replays_counts_and_frees() -> None:
    d = st.dedupe()
    out = run(
        d,
        [
            env(1, "a", "1"),
            env(2, "b", "2"),
            env(3, "b", "2"),
            env(4, "a", "1"),
            env(5, "x"),
            env(6, "x"),
            END,
        ],
    )
    assert [type(i).__name__ for i in out] == ["Envelope"] * 4 + ["End"]
    assert [i.seq for i in out[:4]] == [1, 2, 5, 6]  # the same token twice is not a duplicate
    assert out[-1].counters == {"duplicates": 2}
    assert d._seen == {}
    assert d._dropped == {}


def test_dedupe_state_is_bounded() -> None:
    d = st.dedupe(max_ids=3)
    out = run(d, [env(i, "t", str(i)) for i in range(10)] + [env(99, "t", "0"), env(98, "t", "9")])
    assert len(d._seen[KEY]) == 3
    assert [i.seq for i in out] == [*range(10), 99]  # "0" was forgotten, "9" was not
    with pytest.raises(UsageError):
        st.dedupe(max_ids=0)


def test_merge_deltas_consumes_envelopes_and_completes_the_end() -> None:
    out = run(
        st.merge_deltas(),
        [
            env(1, "Hel"),
            Failure(KEY, aggregator.StreamError("bad")),
            env(2, "lo", finish="stop"),
            "other",
            END,
        ],
    )
    assert out[0] == "other"
    end = out[1]
    assert isinstance(end, End)
    assert end.completion is not None
    assert to_dict(end.completion)["choices"][0]["message"]["content"] == "Hello"
    assert end.finished
    assert end.counters == {"chunks": 2}
    assert [str(p) for p in end.problems] == ["<stream>: bad"]


def test_snapshots_every_n_answered_by_merge_deltas() -> None:
    items = [env(i, str(i)) for i in range(1, 6)] + [END]
    out = run(st.snapshots(every=2) | st.merge_deltas(), items)
    snaps = [i for i in out if isinstance(i, Snapshot)]
    assert [
        (s.chunks, to_dict(s.completion)["choices"][0]["message"]["content"]) for s in snaps
    ] == [(2, "12"), (4, "1234")]
    # alone, snapshots() only marks the stream
    marks = run(st.snapshots(every=5), items)
    assert [i for i in marks if isinstance(i, SnapshotRequest)] == [SnapshotRequest(KEY)]
    with pytest.raises(UsageError):
        st.snapshots()


def test_snapshots_by_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.5, 1.2, 1.3, 2.5])
    monkeypatch.setattr("aggregator._stages.time.monotonic", lambda: next(clock))
    out = run(st.snapshots(interval=1.0), [env(i, "x") for i in range(5)])
    assert [i.seq for i in out if isinstance(i, Envelope)] == list(range(5))
    positions = [n for n, i in enumerate(out) if isinstance(i, SnapshotRequest)]
    assert positions == [3, 6]  # after the envelopes at t=1.2 and t=2.5


def test_collect_usage_and_total_usage() -> None:
    u1 = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    u2 = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "cost": 0.25}
    totals = st.total_usage()
    other = End(key=("src", 2), reason=EndReason.DONE)
    out = run(
        st.collect_usage() | st.merge_deltas() | totals,
        [
            env(1, "a", usage=u1),
            env(2, "b", usage=u2),
            Envelope(("src", 2), 1, chunk("z", usage=u2)),
            END,
            other,
        ],
    )
    ends = [i for i in out if isinstance(i, End)]
    assert [aggregator.to_dict(e.usage) for e in ends] == [u2, u2]  # last report wins
    assert isinstance(out[-1], st.UsageTotals)
    assert out[-1].streams == 2
    assert to_dict(totals.totals["m"]) == {
        "prompt_tokens": 6,
        "completion_tokens": 10,
        "total_tokens": 16,
        "cost": 0.5,
    }


def test_assemble_alone_merges_itself_and_emits_results() -> None:
    out = run(st.assemble(), [env(1, "a"), env(2, "b", finish="stop"), END])
    (result,) = out
    assert isinstance(result, Result)
    assert result.complete
    assert result.chunks == 2
    assert result.key == KEY
    assert to_dict(result.completion)["choices"][0]["message"]["content"] == "ab"


def test_map_filter_tap() -> None:
    seen: list[Any] = []
    out = run(
        st.tap(seen.append) | st.filter_items(lambda i: isinstance(i, int)) | st.map_items(str),
        [1, "a", 2],
    )
    assert out == ["1", "2"]
    assert seen == [1, "a", 2]


def test_decode_stage_reads_a_raw_source() -> None:
    raw = [
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",',
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    out = run(st.decode("raw.sse") | st.assemble(), raw)
    (result,) = out
    assert result.reason is EndReason.DONE
    assert result.stream == "raw.sse"


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
    with pytest.raises(UsageError):
        Pipeline(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="only inside a Pipeline"):
        run(st.stage(_identity), [1])


async def _identity(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for item in items:
        yield item


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
