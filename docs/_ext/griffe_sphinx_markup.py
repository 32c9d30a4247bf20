"""A Griffe extension for the API reference: the docstrings' Sphinx markup, read as Markdown.

The package's docstrings are Google style, but cross-reference with Sphinx roles
(``:class:`Result```, ``:meth:`feed```, ``:func:`~aggregator.results```) and document module
and class attributes with ``#:`` comments above them. mkdocstrings knows neither: roles would
show verbatim, and commented attributes would have no description. This extension, run once the
package is loaded, turns each role into an optional cross-reference (a link when the target is
on the site, plain code when it is not, such as a private helper) and each ``#:`` comment into
its attribute's docstring (as the attribute is read, so that griffe-fieldz, which tabulates the
attrs models' fields once each class is read, shows it as the field's description). Only the
site sees the change; the sources are not touched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?P<role>func|meth|class|exc|attr|data|obj|mod):`(?P<tilde>~?)(?P<target>[^`]+)`"
)
_CALLABLE_ROLES = {"func", "meth"}


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined in it (aliases are skipped: they are documented where
    their targets are)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            yield from _objects(member)


def _comment_docstring(attr: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute, as text, or ``None``."""
    if attr.lineno is None:
        return None
    try:
        lines = attr.lines_collection[attr.filepath]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    comment: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        comment.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(comment) or None


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj``'s scope (``target`` itself if unknown)."""
    if target.startswith(f"{obj.package.name}."):
        return target
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except griffe.NameResolutionError:
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _crossrefs(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in _CALLABLE_ROLES:
            shown += "()"
        identifier = html.escape(_identifier(obj, target), quote=True)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    return _ROLE.sub(replace, text)


class SphinxMarkup(griffe.Extension):
    """Read ``#:`` comments as attribute docstrings, and Sphinx roles as cross-references."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        # As soon as the attribute is read, so that the extensions that run once its class is
        # complete (griffe-fieldz's table of the models' fields) see the description too.
        if attr.docstring is None:
            text = _comment_docstring(attr)
            if text is not None:
                attr.docstring = griffe.Docstring(text, parent=attr)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.is_attribute and obj.docstring is None:
                text = _comment_docstring(obj)
                if text is not None:
                    obj.docstring = griffe.Docstring(text, parent=obj)
            if obj.docstring is not None:
                obj.docstring.value = _crossrefs(obj, obj.docstring.value)
