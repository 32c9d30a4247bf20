"""Merging of the keys the model does not name, and of usage reports.

Theory of operation: two rules cover every unknown key (docs/merge-rules.md). The *snapshot*
rule is for keys a server repeats whole on every chunk (``citations``, ``x_groq``,
``content_filter_results``): the last non-null value wins, objects merged key by key. The
*delta* rule is for keys inside a ``delta`` (``annotations``, ``reasoning_details``), which are
fragments: strings concatenate, lists append (entries with an ``index`` merge by it), objects
merge recursively, label keys are replaced. Concatenated strings are kept as :class:`_Text`
pieces and joined once in :func:`materialize`, so long fragments stay linear.

Two refinements, each forced by a real server (docs/merge-rules.md): a list entry merges into an
earlier one only when both their ``index`` and their ``type`` agree (OpenRouter and Vercel's
gateway send a ``reasoning.summary`` and a ``reasoning.encrypted`` entry under one index); and
the entries of a *whole-entry* list (:data:`WHOLE_ENTRY_KEYS`, Groq's ``executed_tools``) are
sent whole each time, so a repeated entry is merged by the snapshot rule, never concatenated.

Work stays linear in the input: a list of the delta rule is kept as :class:`_Entries`, which
indexes its entries by ``index``, so an entry finds the one it merges into without a scan
(20,000 indexed ``annotations`` cost 20,000 look-ups, not 200 million comparisons).

The accumulator owns every container it stores: values from the server are copied on first
store, never mutated, so an event a user keeps is never changed behind their back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["add_usage", "materialize", "merge_delta", "merge_snapshot", "merge_usage"]

#: Delta keys that name or label a fragment: the last value wins, never concatenated.
LABEL_KEYS = frozenset({"type", "index", "id", "channel", "name", "format"})
#: Delta lists whose entries a server repeats whole (with more fields the second time): Groq's
#: ``executed_tools`` sends each tool's ``arguments`` once at its start and again with its
#: ``output``. Entries with the same ``index`` merge by the snapshot rule.
WHOLE_ENTRY_KEYS = frozenset({"executed_tools"})


class _Text(list[str]):
    """Pieces of a concatenated string, joined by :func:`materialize`."""

    __slots__ = ()


class _Entries(list[Any]):
    """A list of the delta rule, with the positions of its entries by ``index`` (``at``)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        super().__init__()
        #: for each hashable ``index`` value, the positions of the entries that carry it.
        self.at: dict[Any, list[int]] = {}

    def add(self, entry: Any) -> None:
        """Append ``entry`` (already owned), indexing it."""
        if entry.__class__ is dict and "index" in entry:
            index = entry["index"]
            if index.__class__ in _HASHABLE:
                self.at.setdefault(index, []).append(len(self))
        self.append(entry)


#: The ``index`` values :class:`_Entries` can index (JSON scalars: ``1``, ``1.0`` and ``True``
#: are one key, as they compared equal in a search); others (a list, an object) are searched.
_HASHABLE = frozenset({int, str, float, bool, type(None)})


def merge_snapshot(acc: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge ``new`` into ``acc`` by the snapshot rule (``acc`` is changed in place)."""
    for key, value in new.items():
        if value is None:
            continue
        old = acc.get(key)
        if old.__class__ is dict and value.__class__ is dict:
            merged = dict(old)
            merge_snapshot(merged, value)
            acc[key] = merged
        else:
            acc[key] = value


def _own(value: Any) -> Any:
    """A copy of a delta value that the accumulator may change later."""
    cls = value.__class__
    if cls is str:
        return _Text((value,))
    if cls is dict:
        out: dict[str, Any] = {}
        merge_delta(out, value)
        return out
    if cls is list or cls is _Entries:
        entries = _Entries()
        for v in value:
            entries.add(_own(v))
        return entries
    return value


def merge_delta(acc: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge the delta fragment ``new`` into ``acc`` by the delta rule, in place."""
    for key, value in new.items():
        if value is None:
            continue
        old = acc.get(key)
        if old is None or key in LABEL_KEYS:
            acc[key] = value if key in LABEL_KEYS else _own(value)
            continue
        cls = value.__class__
        if cls is str and old.__class__ is _Text:
            old.append(value)
        elif cls is dict and old.__class__ is dict:
            merge_delta(old, value)
        elif cls is list and old.__class__ is _Entries:
            _extend(old, value, key in WHOLE_ENTRY_KEYS)
        else:
            acc[key] = _own(value)


def _extend(acc: _Entries, new: list[Any], whole: bool = False) -> None:
    for entry in new:
        if entry.__class__ is dict and "index" in entry:
            index = entry["index"]
            kind = entry.get("type")
            if index.__class__ in _HASHABLE:  # the entries with this index, latest first
                places: Any = reversed(acc.at.get(index, ()))
            else:
                places = range(len(acc) - 1, -1, -1)
            for at in places:
                kept = acc[at]
                if (
                    kept.__class__ is dict
                    and kept.get("index") == index
                    and (kind is None or kept.get("type") in (None, kind))
                ):
                    if whole:
                        merged = materialize(kept)
                        merge_snapshot(merged, entry)
                        acc[at] = merged
                    else:
                        merge_delta(kept, entry)
                    break
            else:
                acc.add(_own(entry))
        else:
            acc.add(_own(entry))


def materialize(value: Any) -> Any:
    """A plain JSON value from what :func:`merge_delta` built (pieces joined, copies made)."""
    cls = value.__class__
    if cls is _Text:
        return "".join(value)
    if cls is dict:
        return {k: materialize(v) for k, v in value.items()}
    if cls is list or cls is _Entries:
        return [materialize(v) for v in value]
    return value


def merge_usage(old: Any, new: Any) -> Any:
    """The usage policy: ``new`` wins, fields it lacks are filled from ``old``, recursively.

    Works on :class:`Usage` and its details classes alike; never sums.
    """
    if old is None:
        return new
    changes: dict[str, Any] = {}
    for field in attrs.fields(type(new)):
        name = field.name
        kept = getattr(old, name)
        if name == "extras":
            if kept:
                extras = dict(kept)
                merge_snapshot(extras, new.extras)
                changes[name] = extras
            continue
        value = getattr(new, name)
        if value is None:
            if kept is not None:
                changes[name] = kept
        elif kept is not None and attrs.has(type(value)):
            changes[name] = merge_usage(kept, value)
    return attrs.evolve(new, **changes) if changes else new


def add_usage(a: Any, b: Any) -> Any:
    """The sum of two usage reports of different streams (for totals across streams).

    Numeric fields are summed, recursively, and so are numeric provider extras (``cost``);
    anything else is taken from ``b``. A number below zero is no count: it adds nothing (the
    engine reports it as a problem of its stream).
    """
    if a is None:
        return _no_negative(b)
    if b is None:
        return _no_negative(a)
    if isinstance(a, bool) or isinstance(b, bool):
        return b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return max(a, 0) + max(b, 0)
    if attrs.has(type(a)) and type(a) is type(b):
        changes = {
            f.name: add_usage(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a))
        }
        return type(a)(**changes)
    if isinstance(a, Mapping) and isinstance(b, Mapping):  # extras: a dict, or the empty proxy
        return {k: add_usage(a.get(k), b.get(k)) for k in {**a, **b}}
    return b


def _no_negative(value: Any) -> Any:
    """``value`` with every number below zero in it read as 0 (fields, details, extras)."""
    cls = value.__class__
    if cls is int or cls is float:
        return cls(0) if value < 0 else value
    if attrs.has(cls):
        changes = {}
        for f in attrs.fields(cls):
            kept = getattr(value, f.name)
            if kept is not None and not isinstance(kept, (str, bool)):
                fixed = _no_negative(kept)
                if fixed is not kept:
                    changes[f.name] = fixed
        return attrs.evolve(value, **changes) if changes else value
    if isinstance(value, Mapping):
        fixed_items = {k: _no_negative(v) for k, v in value.items()}
        if any(fixed_items[k] is not v for k, v in value.items()):
            return fixed_items
    return value
