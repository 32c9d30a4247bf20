"""The public surface and the layering contract."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import aggregator


def test_all_is_complete() -> None:
    # (its order is ruff's RUF022 sort, checked by ruff in CI)
    assert len(set(aggregator.__all__)) == len(aggregator.__all__)
    public = {name for name in dir(aggregator) if not name.startswith("_")}
    assert set(aggregator.__all__) == public - {"annotations"}


def test_errors_form_one_tree_and_subclass_builtins() -> None:
    for name in ("DecodeError", "StructureError", "UpstreamError", "IncompleteStreamError"):
        cls = getattr(aggregator, name)
        assert issubclass(cls, aggregator.StreamError)
        assert issubclass(cls, ValueError)
    assert issubclass(aggregator.StreamError, aggregator.AggregatorError)
    assert issubclass(aggregator.UsageError, TypeError)
    assert issubclass(aggregator.UsageError, aggregator.AggregatorError)


CORE = [
    "_sse",
    "_events",
    "_completions",
    "_converter",
    "_merge",
    "_accumulate",
    "_decode",
    "_assembler",
    "_results",
    "_errors",
]


def test_the_core_never_imports_anyio_or_the_shell() -> None:
    root = Path(aggregator.__file__).parent
    for name in CORE:
        tree = ast.parse((root / f"{name}.py").read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [("." * node.level) + (node.module or "")]
            else:
                continue
            for module in imported:
                assert module.split(".")[0] not in ("anyio", "trio", "sniffio"), (name, module)
                assert module not in ("._api", "._cli"), (name, module)


def test_import_loads_no_event_loop_library() -> None:
    code = "import sys, aggregator; print(sorted({'anyio', 'trio', 'asyncio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"  # anyio comes in on the first async call


def test_every_model_repr_is_the_one_attrs_would_write() -> None:
    """The package's classes share one ``__repr__`` (attrs' per-class ones cost import time);
    it must write exactly what attrs writes, fields with ``repr=False`` left out."""
    import attrs

    samples: list[Any] = [
        aggregator.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        aggregator.ChatCompletion(
            id="x", created=1, model="m", choices=[], extras={"hidden": "from the repr"}
        ),
        aggregator.Limits(idle_timeout=1.5),
        aggregator.ServerSentEvent(data=b"{}", event="message", id="7"),
        aggregator.Result(
            stream="s",
            completion=aggregator.ChatCompletion(id="", created=0, model="", choices=[]),
            reason=aggregator.EndReason.DONE,
        ),
        aggregator.End(key=("s", 1), reason=aggregator.EndReason.CUT_OFF, where="line 3"),
    ]
    classes = [
        value
        for name in aggregator.__all__
        if attrs.has(value := getattr(aggregator, name)) and isinstance(value, type)
    ]
    assert len(classes) >= 25
    shared: Any = aggregator.Usage.__repr__
    assert all(cls.__repr__ is shared for cls in classes)
    for sample in samples:
        cls: Any = type(sample)
        twin = attrs.make_class(
            cls.__name__,
            {f.name: attrs.field(default=None, repr=f.repr) for f in attrs.fields(cls)},
            frozen=True,
        )
        written_by_attrs = repr(
            twin(**{f.name: getattr(sample, f.name) for f in attrs.fields(cls)})
        )
        assert repr(sample) == written_by_attrs
    assert "hidden" not in repr(samples[1])
