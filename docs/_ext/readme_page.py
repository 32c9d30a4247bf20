"""A MkDocs hook: the site's README page is the repository's README.md, read at build time.

Theory of operation: ``docs/readme.md`` is a placeholder in the nav. When MkDocs reads it, this
hook (``hooks:`` in mkdocs.yml) hands back README.md's text instead, so the page cannot fall
behind the README. The README links to the pages as ``docs/<page>.md``, which is right on a
repository's front page; on the site, the pages sit beside this one, so those links lose their
``docs/`` prefix, and MkDocs then checks them as it checks every link (``strict``). Only
Markdown links and images written ``](docs/...)`` are rewritten; code and text are untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
#: The page that shows the README (its path under docs/).
PAGE = "readme.md"
_DOCS_LINK = re.compile(r"\]\(docs/")


def site_markdown(readme: str) -> str:
    """The README's Markdown as a page of the site: its links to ``docs/`` made relative."""
    return _DOCS_LINK.sub("](", readme)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Replace the placeholder page's Markdown by the README's (MkDocs' ``on_page_markdown``)."""
    if page.file.src_uri != PAGE:
        return markdown
    return site_markdown(README.read_text("utf-8"))
