"""The base of the package's attrs classes: one ``__repr__``, one ``extras`` field.

attrs generates and compiles a ``__repr__`` for each class it makes, and with some thirty
classes that was a fifth of what ``import aggregator`` cost on top of its dependencies (55 ms
down to 45 ms on the benchmark machine). :class:`Model` carries one, written once, that gives the
same text as attrs' own: ``ClassName(field=value, ...)``, with the fields whose ``repr`` is false
left out; a class made with ``@attrs.frozen(repr=False)`` on top of it keeps it (and its slots).

The base has one slot of its own, ``_nulls``: the named fields the server sent as ``null`` (a
field that is ``None`` was either sent as null or not sent at all). It is set, when there are
some, by the converter on what it structures and by an accumulator on what it assembles
(:func:`set_nulls`), and read by ``to_dict(..., nulls=True)``; it is no attrs field, so it takes
no part in equality, ``repr`` or ``attrs.evolve``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

__all__ = ["EMPTY", "Model", "attrs_repr", "extras", "nulls_of", "set_nulls"]

#: The shared empty ``extras`` mapping (read-only).
EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def attrs_repr(self: Any) -> str:
    """``ClassName(field=value, ...)``, as attrs writes it."""
    cls = type(self)
    fields = ", ".join(f"{a.name}={getattr(self, a.name)!r}" for a in attrs.fields(cls) if a.repr)
    return f"{cls.__qualname__.rsplit('>.', 1)[-1]}({fields})"


class Model:
    """The base of every attrs class of the package (see the module's docstring)."""

    __slots__ = ("_nulls",)
    __repr__ = attrs_repr


_NO_NULLS: Final[frozenset[str]] = frozenset()


def nulls_of(obj: Any) -> frozenset[str]:
    """The named fields of ``obj`` that the server sent as ``null`` (see the module)."""
    return getattr(obj, "_nulls", _NO_NULLS)


def set_nulls(obj: Any, names: frozenset[str] | set[str]) -> None:
    """Note that the fields ``names`` of ``obj`` (those still ``None``) were sent as ``null``."""
    if names:
        kept = frozenset(n for n in names if getattr(obj, n, 0) is None)
        if kept:
            object.__setattr__(obj, "_nulls", kept)


def extras() -> Any:
    """The ``extras`` field of a model: the keys the server sent that the model does not name,
    kept as sent (empty by default, out of the ``repr``)."""
    return attrs.field(default=EMPTY, kw_only=True, repr=False)
