"""The public surface and the layering contract."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

import aggregator


def test_all_is_complete() -> None:
    # (its order is ruff's RUF022 sort, checked by ruff in CI)
    assert len(set(aggregator.__all__)) == len(aggregator.__all__)
    public = {name for name in dir(aggregator) if not name.startswith("_")}
    # aggregator.redis (extra [redis]), aggregator.gateway (the command; its extra [gateway] is
    # imported when it runs) and aggregator.interop (the SDKs' types) are imported on demand:
    # once they are, they are attributes
    assert set(aggregator.__all__) == public - {"annotations", "gateway", "interop", "redis"}


def test_the_top_level_is_small_and_the_namespaces_are_complete() -> None:
    assert len(aggregator.__all__) <= 30
    for module in (aggregator.models, aggregator.stages, aggregator.lowlevel):
        public = {n for n in dir(module) if not n.startswith("_")} - {"annotations"}
        assert set(module.__all__) == public, module.__name__


def test_errors_form_one_tree_and_subclass_builtins() -> None:
    for name in (
        "DecodeError",
        "StructureError",
        "UpstreamError",
        "LimitError",
        "ConflictError",
        "IncompleteStreamError",
    ):
        cls = getattr(aggregator, name)
        assert issubclass(cls, aggregator.StreamError)
        assert issubclass(cls, ValueError)
    assert issubclass(aggregator.StreamError, aggregator.AggregatorError)
    assert issubclass(aggregator.UsageError, TypeError)
    assert issubclass(aggregator.UsageError, aggregator.AggregatorError)


CORE_DIR = Path(aggregator.__file__).parent / "_core"
#: every module of the core, by its dotted name
CORE = sorted(
    ".".join(("aggregator", "_core", *p.relative_to(CORE_DIR).with_suffix("").parts)).removesuffix(
        ".__init__"
    )
    for p in CORE_DIR.rglob("*.py")
)

#: What the core may load: itself, the standard library, and its three dependencies (with what
#: they load themselves).
ISOLATED = """
import importlib, json, sys, types
base = set(sys.modules)
import attrs, cattrs, orjson  # the core's dependencies, and what they load
allowed = set(sys.modules)
# the parent package is stood in for, not run: its __init__ loads the shell
package = types.ModuleType("aggregator")
package.__path__ = [sys.argv[2]]
sys.modules["aggregator"] = package
importlib.import_module(sys.argv[1])
loaded = set(sys.modules) - allowed - {"aggregator"}
print(json.dumps(sorted(m for m in loaded if not m.startswith("aggregator._core"))))
"""


def test_every_core_module_loads_only_the_core_and_its_dependencies() -> None:
    """Imported alone, in a fresh interpreter, each core module loads nothing but the standard
    library, attrs, cattrs, orjson and the core: no anyio, no shell module (transitively)."""
    assert len(CORE) >= 15
    root = str(Path(aggregator.__file__).parent)
    stdlib = sys.stdlib_module_names
    for module in CORE:
        out = subprocess.run(
            [sys.executable, "-c", ISOLATED, module, root],
            capture_output=True,
            check=True,
            text=True,
        )
        foreign = [m for m in json.loads(out.stdout) if m.split(".")[0] not in stdlib]
        assert foreign == [], module


def test_the_core_imports_nothing_outside_it_by_name() -> None:
    """The same from the source: a relative import in the core never climbs out of it."""
    for path in CORE_DIR.rglob("*.py"):
        depth = len(path.relative_to(CORE_DIR).parts) - 1  # 0 in _core, 1 in _core/_chat
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level <= depth + 1, (path, node.module)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(node.module or "" if isinstance(node, ast.ImportFrom) else "")
                for name in names:
                    assert name.split(".")[0] not in ("anyio", "trio", "sniffio"), (path, name)


def test_import_loads_no_event_loop_library() -> None:
    code = "import sys, aggregator; print(sorted({'anyio', 'trio', 'asyncio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"  # anyio comes in on the first async call


def test_every_model_repr_is_the_one_attrs_would_write() -> None:
    """The package's classes share one ``__repr__`` (attrs' per-class ones cost import time);
    it must write exactly what attrs writes, fields with ``repr=False`` left out."""
    import attrs

    models = aggregator.models
    samples: list[Any] = [
        models.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        models.ChatCompletion(
            id="x", created=1, model="m", choices=[], extras={"hidden": "from the repr"}
        ),
        aggregator.Limits(idle_timeout=1.5),
        aggregator.lowlevel.ServerSentEvent(data=b"{}", event="message", id="7"),
        aggregator.Result(
            source="s",
            key=("s", 1),
            completion=models.ChatCompletion(id="", created=0, model="", choices=[]),
            reason=aggregator.EndReason.DONE,
        ),
        aggregator.SourceReport(source="s", reason=aggregator.EndReason.DONE),
        aggregator.stages.End(key=("s", 1), reason=aggregator.EndReason.CUT_OFF, where="line 3"),
    ]
    namespaces = (aggregator, models, aggregator.stages, aggregator.lowlevel)
    classes = [
        value
        for namespace in namespaces
        for name in namespace.__all__
        if attrs.has(value := getattr(namespace, name)) and isinstance(value, type)
    ]
    assert len(classes) >= 25
    shared: Any = models.Usage.__repr__
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


DATA = Path(__file__).parent / "data"


def test_a_first_anthropic_stream_after_the_converter_is_in_use_imports_its_models() -> None:
    """The Anthropic models cost import time: ``import aggregator`` and a chat stream do not
    load them; the first Anthropic stream does, after the converter was made (a chat chunk
    that is not plain, structured), and its hooks join that converter: the message is the
    one this process (every model imported from the start) assembles."""
    chat = DATA / "openai" / "a247c49c5fcd.sse"
    message = DATA / "anthropic" / "anthropic_web_search_citations_delta.jsonl"
    code = f"""if True:
        import sys, orjson, aggregator
        from pathlib import Path
        from aggregator._core import _converter
        models = "aggregator._core._anthropic._models"
        aggregator.assemble_sync([Path({str(chat)!r}).read_bytes()])
        loaded = models in sys.modules
        made = len(_converter._MADE)
        message = aggregator.assemble_sync(
            [Path({str(message)!r}).read_bytes()], aggregator.models.anthropic.Message
        )
        now = models in sys.modules
        print(orjson.dumps([loaded, made, now, aggregator.to_dict(message)]).decode())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    loaded, made, loaded_after, got = orjson.loads(out.stdout)
    assert (loaded, loaded_after) == (False, True)
    assert made >= 1  # the converter was in use before the models came
    expected = aggregator.assemble_sync([message.read_bytes()], aggregator.models.anthropic.Message)
    assert got == aggregator.to_dict(expected)
