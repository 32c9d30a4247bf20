"""The documentation site builds with no warning, and its navigation lists every page.

Needs the ``docs`` extra (``pip install -e '.[docs]'``); skipped without it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def nav_pages(entry: Any) -> list[str]:
    """Every page path in a ``nav`` entry: a path, ``{title: entry}``, or a list of entries."""
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in nav_pages(value)]
    if isinstance(entry, list):
        return [page for item in entry for page in nav_pages(item)]
    raise AssertionError(f"unexpected nav entry: {entry!r}")


def load_config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    # A safe loader that reads tags it does not know (``!!python/name:``, ``!ENV``) as null,
    # on a subclass of its own so that yaml.SafeLoader is left as it was.
    loader: Any = type("TolerantLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("", lambda _loader, _suffix, _node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text("utf-8"), Loader=loader)
    assert isinstance(config, dict)
    return config


def test_every_page_is_in_the_nav() -> None:
    config = load_config()
    assert config["strict"] is True
    in_nav = nav_pages(config["nav"])
    assert len(in_nav) == len(set(in_nav)), "a page is listed twice"
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md"))
    assert "api.md" in pages
    assert sorted(p for p in in_nav if not p.startswith(("http://", "https://"))) == pages


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    api = (site / "api" / "index.html").read_text("utf-8")
    # The reference was generated from the docstrings, not left as ``::: name`` lines.
    assert ":::" not in api
    for anchor in ["aggregator.assemble", "aggregator.Result", "aggregator.stages.dedupe"]:
        assert f'id="{anchor}"' in api, anchor
    # Every public name has its entry, and the models show their fields.
    missing = [name for name in public_names() if f'id="{name}"' not in api]
    assert not missing, f"not in docs/api.md: {missing}"
    for field in [
        "aggregator.models.ChatCompletion.choices",
        "aggregator.models.ChatCompletion.usage",
        "aggregator.models.ChatMessage.content",
        "aggregator.models.ChatMessage.tool_calls",
        "aggregator.models.Usage.total_tokens",
        "aggregator.models.ChatCompletionChunk.choices",
    ]:
        assert f'id="{field}"' in api, field


def public_names() -> list[str]:
    """The full names of the public surface: ``aggregator`` and its public modules' ``__all__``."""
    import aggregator

    names: list[str] = []
    for module in ["aggregator", *(f"aggregator.{m}" for m in PUBLIC_MODULES)]:
        names += [
            f"{module}.{name}"
            for name in importlib.import_module(module).__all__
            if module != "aggregator" or name not in PUBLIC_MODULES
        ]
    assert set(PUBLIC_MODULES) <= set(aggregator.__all__)
    return [*names, *(f"aggregator.{m}" for m in PUBLIC_MODULES)]


PUBLIC_MODULES = ["lowlevel", "models", "sources", "stages"]
