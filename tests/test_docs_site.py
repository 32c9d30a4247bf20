"""The documentation site builds with no warning, and shows what a reader comes for.

Its navigation lists every page; the home page's example prints what the page says; the README
page is the README; the API reference lists every public name, each model's fields in a table,
and whole signatures. A headless Chromium (Debian's ``chromium`` package, driven by Playwright)
loads the built home and API pages, checks that the example and the fields are visible, and
saves screenshots (in ``$AGGREGATOR_SCREENSHOTS`` if set, else in the test's temporary
directory).

Needs the ``docs`` extra (``pip install -e '.[docs]'``); skipped without it. The browser test
needs ``playwright`` (the ``test`` extra) and a Chromium; it is skipped without them, except
under CI (``CI`` set), where .ci/run installs them and their absence fails.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import aggregator

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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict``: its directory."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
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
    return site


def test_pages_name_no_tracker_issue() -> None:
    """A reader of the site has no issue tracker: no page sends them to "issue 5"."""
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        found = re.findall(r"\bissues? #?\d+", page.read_text("utf-8"), re.IGNORECASE)
        assert not found, (page.name, found)


def test_site_builds_strict(site: Path) -> None:
    # A page loads nothing from another host (theme.font is off: no Google Fonts).
    for html_page in site.rglob("*.html"):
        tags = re.findall(r"<(?:link|script|img)\b[^>]*>", html_page.read_text("utf-8"))
        remote = [t for t in tags if re.search(r'(?:href|src)="(?:https?:)?//', t)]
        remote = [t for t in remote if 'rel="canonical"' not in t]
        assert not remote, (html_page, remote)
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
#: The signatures' width on the site (``line_length`` in mkdocs.yml).
LINE_LENGTH = 88
_CODE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def text_of(fragment: str) -> str:
    """The text of an HTML fragment: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def entry(page: str, name: str) -> str:
    """The HTML of the API reference's entry for ``name``: from its heading to the next entry
    that is not one of its members."""
    start = page.index(f'id="{name}"')
    following = re.compile(r'id="(aggregator\.[\w.]+)"')
    for match in following.finditer(page, start + 1):
        if not match[1].startswith(f"{name}."):
            return page[start : match.start()]
    return page[start:]


def signature(page: str, name: str) -> str:
    """The text of the signature shown for ``name`` (``separate_signature``)."""
    block = re.search(
        r'<div class="doc-signature highlight"><pre>(.*?)</pre>', entry(page, name), re.S
    )
    assert block is not None, name
    return text_of(block[1])


def test_home_page_prints_what_it_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """The home page's example is short, and its output is the text block that follows it."""
    blocks = _CODE.findall((DOCS / "index.md").read_text("utf-8"))
    kinds = [kind for kind, _ in blocks]
    assert kinds[:2] == ["python", "text"], kinds
    code, shown = blocks[0][1], blocks[1][1]
    assert len(code.splitlines()) <= 20
    # The page's width (a wider line scrolls): 80 columns of code.
    assert max(len(line) for line in code.splitlines() + shown.splitlines()) <= 80
    out = io.StringIO()
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/index.md", "exec"), {"__name__": "__main__"})
    assert out.getvalue() == shown


def test_readme_page_is_the_readme(site: Path) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    page = text_of((site / "readme" / "index.html").read_text("utf-8"))
    headings = re.findall(r"^#+ (.+)$", _CODE.sub("", readme), re.MULTILINE)
    assert len(headings) >= 5
    for heading in headings:
        assert heading in page, heading
    # Its paragraphs are there as the README has them (inline code and links as their text).
    first = readme.split("\n\n")[2]
    words = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", first).replace("`", "").split()
    assert " ".join(words) in " ".join(page.split())
    # The README's links to docs/<page>.md lead to the site's pages.
    links = re.findall(r"\]\(docs/([\w-]+)\.md", readme)
    assert links
    built = (site / "readme" / "index.html").read_text("utf-8")
    for name in links:
        assert f'href="../{name}/' in built, name
        assert (site / name / "index.html").is_file(), name


#: The models whose every field has a description.
DESCRIBED = {
    "ChatCompletion",
    "ChatChoice",
    "ChatMessage",
    "ToolCall",
    "FunctionCall",
    "Completion",
    "CompletionChoice",
    "Usage",
    "PromptTokensDetails",
    "CompletionTokensDetails",
}


def test_models_list_their_fields(site: Path) -> None:
    """Each model's entry has a table of its fields (name, type, description), every field."""
    import aggregator.models

    page = (site / "api" / "index.html").read_text("utf-8")
    assert set(aggregator.models.__all__) >= DESCRIBED
    for name in aggregator.models.__all__:
        cls = getattr(aggregator.models, name)
        if not attrs.has(cls):
            continue
        text = entry(page, f"aggregator.models.{name}")
        table = re.search(r"<table>.*?<th>Name</th>.*?</table>", text, re.S)
        assert table is not None, name
        rows = re.findall(r'<tr class="doc-section-item">(.*?)</tr>', table[0], re.S)
        cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in rows]
        assert [text_of(c[0]).strip() for c in cells] == [f.name for f in attrs.fields(cls)], name
        # The assembled objects' fields are described (their ``#:`` comments).
        if name in DESCRIBED:
            empty = [text_of(c[0]).strip() for c in cells if not text_of(c[2]).strip()]
            assert not empty, (name, empty)


def test_signatures_are_whole(site: Path) -> None:
    """Every signature fits the width, over several lines when it must, with every parameter."""
    page = (site / "api" / "index.html").read_text("utf-8")
    shown = re.findall(r'<div class="doc-signature highlight"><pre>(.*?)</pre>', page, re.S)
    assert len(shown) > 100
    for block in shown:
        lines = text_of(block).splitlines()
        assert max(map(len, lines)) <= LINE_LENGTH, lines
    # Whole: every parameter is there (a long signature is split over lines, not cut).
    assert len(signature(page, "aggregator.assemble_all").splitlines()) > 1
    import aggregator.sources

    callables: dict[str, Callable[..., Any]] = {
        "aggregator.assemble_all": aggregator.assemble_all,
        "aggregator.results": aggregator.results,
        "aggregator.Tee": aggregator.Tee,
        "aggregator.Assembler": aggregator.Assembler,
        "aggregator.sources.from_httpx": aggregator.sources.from_httpx,
        "aggregator.stages.dedupe": aggregator.stages.dedupe,
    }
    for name, obj in callables.items():
        text = signature(page, name)
        for parameter in inspect.signature(obj).parameters:
            assert re.search(rf"\b{parameter}\b", text), (name, parameter)


def chromium() -> str:
    """The path of a Chromium for Playwright, or a skip (a failure under CI)."""
    pytest.importorskip("playwright")
    for candidate in ["chromium", "chromium-browser", "google-chrome"]:
        found = shutil.which(candidate)
        if found:
            return found
    message = "no Chromium on PATH (Debian: apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A Playwright page in a headless Chromium, 1280 by 900 pixels, that reads local files
    only: any other request is refused, and the test fails if the site made one."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route)
            yield page
        finally:
            browser.close()
    assert not refused, f"the site asked for other hosts: {refused}"


def test_in_a_browser(site: Path, browser_page: Any, tmp_path: Path) -> None:
    """The built pages as a reader sees them: the example on the first screen of the home page,
    the README's sections on its page, the models' fields on the API page."""
    shots = Path(os.environ.get("AGGREGATOR_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser_page
    page.goto((site / "index.html").as_uri())
    assert page.title().startswith("aggregator")
    example = page.locator("article pre").first
    assert example.is_visible()
    assert "assemble_sync" in example.inner_text()
    # The example and what it prints are on the first screen, not cut on the right.
    output = page.locator("article pre").nth(1)
    assert "'content': 'Hello'" in output.inner_text()
    box = output.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= 900
    # So are the install line and the way on (a link to the quickstart's install section).
    install = page.locator('article a[href="quickstart/#install"]').first
    install_box = install.bounding_box()
    assert install_box is not None
    assert install_box["y"] + install_box["height"] <= 900
    for block in [example, output]:
        code = block.locator("code")
        assert code.evaluate("e => e.scrollWidth <= e.clientWidth"), code.inner_text()
    page.screenshot(path=str(shots / "home.png"))

    page.goto((site / "readme" / "index.html").as_uri())
    assert page.get_by_role("heading", name="Two commands").is_visible()
    page.screenshot(path=str(shots / "readme.png"))

    page.goto((site / "api" / "index.html").as_uri())
    for model, fields in {
        "ChatCompletion": ["id", "choices", "usage"],
        "ChatMessage": ["content", "tool_calls"],
        "Usage": ["prompt_tokens", "total_tokens"],
    }.items():
        heading = page.locator(f'[id="aggregator.models.{model}"]')
        heading.scroll_into_view_if_needed()
        assert heading.is_visible(), model
        table = page.locator(f'[id="aggregator.models.{model}"] ~ div table').first
        assert table.is_visible(), model
        shown = table.inner_text()
        for field in fields:
            assert re.search(rf"^{field}\b", shown, re.MULTILINE), (model, field)
        page.screenshot(path=str(shots / f"api-{model}.png"))
