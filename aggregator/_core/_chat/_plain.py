"""The common chat chunk, and the byte-shape lane that merges it without parsing it whole.

Theory of operation: most chunks of a chat stream are of one plain shape (:func:`is_plain_chat`):
a delta of strings, no tool calls, no logprobs, a usage of counts if any. Such a payload is
merged from the parsed dict (``Accumulator.add_plain``), with no event built.

Most of them are also the same bytes but for a short piece of text: the same id, model, choice
index, the same ``"logprobs":null,"finish_reason":null``, perhaps a random ``obfuscation`` string at
the end. The :class:`Lane` learns that shape, as a byte prefix and suffix around the text, from a
chunk that took the full path (parsed, checked, merged), and then merges a payload with the same
prefix and suffix by parsing only the string between and appending it (``Accumulator.append_text``):
no dict, no shape check. This is exact: a JSON text in which one string value is replaced by another
JSON string is the same object with that one value changed, and the bytes between are checked to be
exactly one JSON string (``orjson.loads`` of them gives a ``str``). A key spelled twice in one
object would break that argument (which of the two a JSON parser keeps is its choice), so a shape is
learnt only from bytes in which the field's key appears once and no escape stands outside the string
(``"con\\u0074ent"`` is ``"content"``). Anything else (another shape, a string that does not parse)
takes the full path.

The lane is a branch of the one path, switched in one place (the engine's ``fast_lane``): it is
asked first, and says no unless it is sure. It knows nothing of streams: the engine clears it
whenever the stream its shapes merge into stops being the current one, ends or fails.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, final

import orjson

from .._merge import LABEL_KEYS

if TYPE_CHECKING:
    from ._accumulate import Accumulator

__all__ = ["Lane", "is_plain_chat", "is_plain_text", "plain_chat_kind"]

_PLAIN_TOP = frozenset(
    {"id", "object", "created", "model", "choices", "system_fingerprint", "service_tier"}
    | {"obfuscation", "usage"}
)
#: the top-level keys a plain chunk has a field of (any other key of a plain chunk is an extra)
PLAIN_TOP = _PLAIN_TOP
#: the chunk's named fields that are not plain (every key the chunk does not name is an extra,
#: which structuring keeps as it is: see :func:`is_plain_chat`)
_NAMED_NOT_PLAIN = frozenset({"error", "extras"})
_PLAIN_CHOICE = frozenset({"index", "delta", "logprobs", "finish_reason"})
_DELTA_NAMED_NOT_PLAIN = frozenset({"tool_calls", "function_call", "extras"})
_PLAIN_DELTA = frozenset({"role", "content", "reasoning_content", "reasoning", "refusal"})
#: the keys of a plain choice and of its delta that have fields (any other key is an extra)
PLAIN_CHOICE, PLAIN_DELTA = _PLAIN_CHOICE, _PLAIN_DELTA
_STR = str
_STR_OR_NONE = frozenset({str, type(None)})


_USAGE_DETAILS = frozenset({"prompt_tokens_details", "completion_tokens_details"})
_INT_OR_NONE = frozenset({int, type(None)})


def _plain_usage(usage: Any) -> bool:
    """Whether ``usage`` is absent, or an object that structuring cannot refuse: ints (or
    nulls) only, and the two ``*_details`` objects of ints (or nulls), no key ``extras``. Such
    a usage is structured alone, by the one converter (``Accumulator.add_plain``): whatever its
    keys, a named field gets its int and another key goes to ``extras`` as it is."""
    if usage is None:
        return True
    if usage.__class__ is not dict or "extras" in usage:
        return False
    for key, value in usage.items():
        if key in _USAGE_DETAILS:
            if value is None:
                continue
            if value.__class__ is not dict or "extras" in value:
                return False
            for count in value.values():
                if count.__class__ not in _INT_OR_NONE:
                    return False
        elif value.__class__ not in _INT_OR_NONE:
            return False
    return True


def is_plain_chat(obj: Any) -> bool:
    """Whether ``obj`` is a chat chunk of the common shape, with every field of the right type.

    The common shape: the named top-level keys, ``usage`` of counts (``_plain_usage``), null or
    absent, and choices whose delta holds only ``role``, ``content``, ``reasoning_content``,
    ``reasoning`` and ``refusal`` strings (or nulls), with null ``logprobs``; and, at the top,
    in a choice or in its delta, any keys the chunk does not name: extras, such as OpenRouter's
    ``provider`` and ``native_finish_reason``, Perplexity's ``citations``, a delta's
    ``annotations``. Structuring keeps extras as they are, and ``Accumulator.add_plain`` merges
    them as ``add`` merges an event's (the snapshot rule, the delta rule for a delta's); they
    may be of any depth, so ``ChatProtocol.parse`` checks the depth of a payload that has them
    (:func:`plain_chat_kind`). Such a payload needs no event to be merged; anything else takes
    the converter's full path, which also explains what is wrong.
    """
    return plain_chat_kind(obj) > 0


def plain_chat_kind(obj: Any) -> int:
    """``0`` unless ``obj`` is a chat chunk of the common shape (:func:`is_plain_chat`); then
    ``1``, or ``2`` if it has extras (its depth is to be checked)."""
    if obj.__class__ is not dict:
        return 0
    kind = 1
    if not obj.keys() <= _PLAIN_TOP:
        if not obj.keys().isdisjoint(_NAMED_NOT_PLAIN):
            return 0
        kind = 2
    try:  # subscripts, not .get(): no method call on the hot path
        if (
            obj["object"] != "chat.completion.chunk"
            or obj["id"].__class__ is not _STR
            or obj["created"].__class__ is not int
            or obj["model"].__class__ is not _STR
        ):
            return 0
        choices = obj["choices"]
    except KeyError:
        return 0
    if choices.__class__ is not list:
        return 0
    if len(obj) > 5:  # some of the optional keys are there
        get = obj.get
        if (
            not _plain_usage(get("usage"))
            or get("system_fingerprint").__class__ not in _STR_OR_NONE
            or get("service_tier").__class__ not in _STR_OR_NONE
            or get("obfuscation").__class__ not in _STR_OR_NONE
        ):
            return 0
    for choice in choices:
        if choice.__class__ is not dict:
            return 0
        if not choice.keys() <= _PLAIN_CHOICE:
            if "extras" in choice:
                return 0
            kind = 2
        try:
            delta = choice["delta"]
            if choice["index"].__class__ is not int:
                return 0
        except KeyError:
            return 0
        if delta.__class__ is not dict or (
            len(choice) > 2
            and (
                choice.get("logprobs") is not None
                or choice.get("finish_reason").__class__ not in _STR_OR_NONE
            )
        ):
            return 0
        if delta.keys() <= _PLAIN_DELTA:
            for value in delta.values():
                if value.__class__ not in _STR_OR_NONE:
                    return 0
        else:
            if not delta.keys().isdisjoint(_DELTA_NAMED_NOT_PLAIN):
                return 0
            kind = 2
            for key, value in delta.items():
                if key in _PLAIN_DELTA and value.__class__ not in _STR_OR_NONE:
                    return 0
    return kind


_TEXT_OBJECTS = frozenset({"text_completion", "completion"})
_TEXT_TOP = frozenset({"id", "object", "created", "model", "choices", "system_fingerprint"}) | {
    "obfuscation",
    "usage",
}
_TEXT_CHOICE = frozenset({"index", "text", "logprobs", "finish_reason"})
_NUMBER = frozenset({int, float})
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
_TEXT_LOGPROBS = frozenset({"tokens", "token_logprobs", "top_logprobs", "text_offset"})


def is_plain_text(obj: Any) -> bool:
    """Whether ``obj`` is a text-completion chunk that structuring would take exactly as it is:
    the named keys only, of the right types (a ``text_offset`` of ints, not ``3.0``), a
    ``usage`` of counts (``_plain_usage``) if any, and no keys the models do not name. Such a
    payload is merged from its dict (``Accumulator.add_plain``); anything else takes the
    converter's full path."""
    if obj.__class__ is not dict or not obj.keys() <= _TEXT_TOP:
        return False
    get = obj.get
    if (
        get("object").__class__ is not _STR
        or get("object") not in _TEXT_OBJECTS
        or get("id").__class__ is not _STR
        or get("created").__class__ is not int
        or get("model").__class__ is not _STR
        or not _plain_usage(get("usage"))
        or get("system_fingerprint").__class__ not in _STR_OR_NONE
        or get("obfuscation").__class__ not in _STR_OR_NONE
    ):
        return False
    choices = get("choices")
    if choices.__class__ is not list:
        return False
    for choice in choices:
        if (
            choice.__class__ is not dict
            or not choice.keys() <= _TEXT_CHOICE
            or choice.get("index").__class__ is not int
            or choice.get("text", "").__class__ is not _STR
            or choice.get("finish_reason").__class__ not in _STR_OR_NONE
        ):
            return False
        logprobs = choice.get("logprobs")
        if logprobs is not None and not _plain_text_logprobs(logprobs):
            return False
    return True


def _plain_text_logprobs(logprobs: Any) -> bool:
    """Whether a text choice's ``logprobs`` is an object that structuring would take as it is:
    only the named keys, each a list (or null) of entries of the right classes: ``tokens``
    strings, ``token_logprobs`` numbers or nulls, ``text_offset`` ints, ``top_logprobs``
    objects of numbers or nulls. One loop, keys told by comparison: the lane asks this of every
    chunk with logprobs, and ``keys() <=`` a set costs more than the rest."""
    if logprobs.__class__ is not dict:
        return False
    for key, values in logprobs.items():
        if values is None:
            if key not in _TEXT_LOGPROBS:
                return False
            continue
        if values.__class__ is not list:
            return False
        if key == "tokens":
            for value in values:
                if value.__class__ is not _STR:
                    return False
        elif key == "token_logprobs":
            for value in values:
                if value.__class__ not in _NUMBER_OR_NONE:
                    return False
        elif key == "top_logprobs":
            for top in values:
                if top is not None:
                    if top.__class__ is not dict:
                        return False
                    for value in top.values():
                        if value.__class__ not in _NUMBER:
                            return False
        elif key == "text_offset":
            for value in values:
                if value.__class__ is not int:
                    return False
        else:
            return False
    return True


_OBFUSCATION = b',"obfuscation":"'
#: How many shapes are remembered (one per choice of an ``n > 1`` stream).
_MAX_SHAPES = 4
#: The delta fields a shape may carry, with their keys as they appear in the bytes.
_FIELDS = {
    name: b'"' + name.encode() + b'":'
    for name in ("content", "reasoning_content", "reasoning", "refusal", "arguments", "text")
}


#: A delta's labels (see :func:`_one_string`): ``(key, value)`` pairs, in order.
Labels = tuple[tuple[str, str], ...]


@final
class _Shape:
    """The bytes around the one string of one choice's chunks, and where that string goes: a
    delta field (``call`` is ``None``) or the arguments of the tool call ``call``."""

    __slots__ = (
        "acc",
        "call",
        "cut",
        "field",
        "fingerprint",
        "index",
        "labels",
        "obfuscated",
        "prefix",
        "start",
        "suffix",
        "tier",
    )

    def __init__(
        self,
        acc: Accumulator,
        piece: tuple[int, int | None, str, Labels],
        prefix: bytes,
        suffix: bytes,
        obfuscated: bool,
        fingerprint: str | None,
        tier: str | None,
    ) -> None:
        self.acc = acc
        #: (``labels``: the delta's, ``"channel":"analysis"``, see ``_one_string``, set again
        #: by each payload of this shape, as the full path's delta rule sets a label)
        self.index, self.call, self.field, self.labels = piece
        self.prefix = prefix
        self.suffix = suffix
        self.start = len(prefix)
        self.cut = len(suffix)
        self.obfuscated = obfuscated
        self.fingerprint = fingerprint
        self.tier = tier

    def take(self, payload: bytes) -> bool:
        """Merge ``payload`` if it has this shape (as the full path would); whether it did."""
        end = _obfuscation_at(payload) if self.obfuscated else len(payload)
        if end < 0 or not payload.endswith(self.suffix, 0, end):
            return False
        middle = payload[self.start : end - self.cut]
        if not middle:
            return False
        try:
            value = orjson.loads(middle)
        except orjson.JSONDecodeError:
            return False
        if value.__class__ is not str:
            return False
        acc = self.acc
        if self.call is None:
            acc.append_text(self.index, self.field, value)
            if self.labels:
                acc.set_delta_labels(self.index, self.labels)
        else:
            acc.append_arguments(self.index, self.call, value)
        if self.fingerprint is not None:
            acc.system_fingerprint = self.fingerprint
        if self.tier is not None:
            acc.service_tier = self.tier
        return True


def _obfuscation_at(payload: bytes) -> int:
    """Where ``payload``'s last ``,"obfuscation":"`` is, if a string with no escapes follows it
    to the closing brace that ends ``payload``; else -1."""
    end = payload.rfind(_OBFUSCATION)
    if end < 0:
        return -1
    close = len(payload) - 2
    at = end + len(_OBFUSCATION)
    if (
        payload.find(b'"', at) != close  # (-1 when there is none: never ``close``)
        or payload[close + 1 :] != b"}"
        or payload.find(b"\\", at) >= 0
    ):
        return -1
    return end


@final
class _LogprobsShape:
    """The bytes around the text and the logprobs of one text-completion choice's chunks: a
    prefix, the text's string, the bytes between (``middle``: ``,"index":0,"logprobs":``), the
    logprobs object, a suffix. The text is cut as :class:`_Shape` cuts its string; the logprobs
    are the bytes between ``middle`` and the suffix, which must be exactly one JSON value, an
    object that :func:`is_plain_text` takes as it is (``_plain_text_logprobs``). Such a payload
    is the one learnt with those two values changed: merged as ``add_plain`` merges it."""

    __slots__ = (
        "acc",
        "cut",
        "fingerprint",
        "index",
        "middle",
        "obfuscated",
        "prefix",
        "start",
        "suffix",
    )

    def __init__(
        self,
        acc: Accumulator,
        index: int,
        prefix: bytes,
        middle: bytes,
        suffix: bytes,
        obfuscated: bool,
        fingerprint: str | None,
    ) -> None:
        self.acc = acc
        self.index = index
        self.prefix = prefix
        self.middle = middle
        self.suffix = suffix
        self.start = len(prefix)
        self.cut = len(suffix)
        self.obfuscated = obfuscated
        self.fingerprint = fingerprint

    def take(self, payload: bytes) -> bool:
        """Merge ``payload`` if it has this shape (as ``add_plain`` would); whether it did."""
        end = _obfuscation_at(payload) if self.obfuscated else len(payload)
        if end < 0 or not payload.endswith(self.suffix, 0, end):
            return False
        start = self.start
        close = payload.find(b'"', start + 1)
        if payload[close - 1] == 0x5C:  # a backslash before it: find the quote that closes
            close = _string_end(payload, start)
        middle = self.middle
        if close < 0 or not payload.startswith(middle, close + 1):
            return False
        at = close + 1 + len(middle)
        stop = end - self.cut
        if stop <= at:
            return False
        try:
            text = orjson.loads(payload[start : close + 1])
            logprobs = orjson.loads(payload[at:stop])
        except orjson.JSONDecodeError:
            return False
        if text.__class__ is not str or not _plain_text_logprobs(logprobs):
            return False
        acc = self.acc
        acc.append_logprobs(self.index, text, logprobs)
        if self.fingerprint is not None:
            acc.system_fingerprint = self.fingerprint
        return True


#: A JSON string, or a bracket (what :func:`_value_end` counts).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def _value_end(payload: bytes, start: int) -> int:
    """The index just past the JSON object or array that opens at ``start``, or -1."""
    depth = 0
    for match in _TOKEN.finditer(payload, start):
        kind = payload[match.start()]
        if kind == 0x22:  # a string: its brackets are text
            continue
        depth += 1 if kind in (0x5B, 0x7B) else -1
        if depth == 0:
            return match.end()
    return -1


_CALL_DELTA = frozenset({"tool_calls", "role", "content"})
_CALL = frozenset({"index", "id", "type", "function"})
_FUNCTION = frozenset({"arguments", "name"})


def _piece(
    obj: dict[str, Any], plain: bool, acc: Accumulator
) -> tuple[int, int | None, str, Labels] | None:
    """``(choice index, tool call index or None, field, labels)`` if ``obj`` (just merged into
    ``acc``) is one choice's one string and nothing else that merging it again could change: a
    delta field of a plain chat chunk, or of one plain but for labels in its delta
    (``_one_string``), the arguments of a tool call that exists, or the text of a text
    completion (``"logprobs"``: its text and its logprobs, of a plain one); else ``None``.
    ``plain``: ``obj`` is a validated plain payload (merged from its dict), not one structured
    into an event."""
    choices = obj.get("choices")
    if choices.__class__ is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if (
        choice.__class__ is not dict
        or choice.get("finish_reason") is not None
        or obj.get("usage") is not None
        or choice.get("index").__class__ is not int
    ):
        return None
    index = choice["index"]
    logprobs = choice.get("logprobs")
    if obj.get("object") in ("text_completion", "completion"):
        text = choice.get("text").__class__ is str
        if text and obj.keys() <= _TEXT_TOP and choice.keys() <= _TEXT_CHOICE:
            if logprobs is None:
                return (index, None, "text", ())
            return (index, None, "logprobs", ()) if plain else None  # (plain: from its dict)
        return None
    if logprobs is not None:
        return None
    if plain and (not obj.keys() <= _PLAIN_TOP or not choice.keys() <= _PLAIN_CHOICE):
        return None  # a chat chunk's extras: merged from its dict each time, no shape learnt
    delta: Any = choice.get("delta")  # (a dict: checked below, or by is_plain_chat)
    if not plain:
        if (
            not obj.keys() <= _PLAIN_TOP
            or obj.get("object") != "chat.completion.chunk"
            or not choice.keys() <= _PLAIN_CHOICE
            or delta.__class__ is not dict
        ):
            return None
        if "tool_calls" in delta:
            return _arguments(delta, index, acc)
    found = _one_string(delta)
    if found is None or (not plain and not found[1]):  # (structured: for its labels only)
        return None
    return (index, None, *found)


def _one_string(delta: dict[str, Any]) -> tuple[str, Labels] | None:
    """The one string field of ``delta`` (``content``, ``reasoning``...; the other fields the
    models name null or absent) and its labels: string values of label keys the models do not
    name (``LABEL_KEYS``; Groq's gpt-oss sends ``"channel":"analysis"`` with every reasoning
    piece); ``None`` if it has a second string, another key or none. A plain delta has no
    labels. The full path merges a labelled delta's string as a plain one's and sets each label
    (the delta rule replaces a label, never joins it), so a payload of its shape is merged as
    the string appended and the same labels set again (``_Shape.labels``)."""
    field = None
    labels: list[tuple[str, str]] = []
    for key, value in delta.items():
        if key in _PLAIN_DELTA:
            if value is None:
                continue
            if field is not None or key not in _FIELDS or value.__class__ is not _STR:
                return None
            field = key
        elif key in LABEL_KEYS and value.__class__ is _STR:
            labels.append((key, value))
        else:
            return None
    return None if field is None else (field, tuple(labels))


def _arguments(
    delta: dict[str, Any], index: int, acc: Accumulator
) -> tuple[int, int | None, str, Labels] | None:
    """The piece of a chunk whose only news is a fragment of one tool call's arguments (its
    top level and choice checked by ``_piece``)."""
    if not delta.keys() <= _CALL_DELTA:
        return None
    if delta.get("role") is not None or delta.get("content") is not None:
        return None
    calls = delta.get("tool_calls")
    if calls.__class__ is not list or len(calls) != 1 or calls[0].__class__ is not dict:
        return None
    call = calls[0]
    function = call.get("function")
    if (
        not call.keys() <= _CALL
        or call.get("index").__class__ is not int
        or function.__class__ is not dict
        or not function.keys() <= _FUNCTION
        or function.get("arguments").__class__ is not str
    ):
        return None
    # No id, type or name: such a fragment continues whatever call its index names when it is
    # merged (an id may start a new call at that index, later, when another call holds it).
    if call.get("id") or call.get("type") or function.get("name"):
        return None
    if acc.tool_call(index, call["index"]) is None:
        return None
    return (index, call["index"], "arguments", ())


def string_of(payload: bytes, key: bytes) -> tuple[int, int] | None:
    """Where the string value of ``key`` (``b'"name":'``) is in ``payload``: the index of its
    opening quote and of its closing one; ``None`` if the key is not there exactly once (it may
    be spelled another way too) or its value is not a string. What a lane learns a shape by."""
    at = payload.find(key)
    if at < 0 or payload.find(key, at + 1) >= 0:
        return None
    start = at + len(key)
    if payload[start : start + 1] != b'"':
        return None
    end = _string_end(payload, start)
    return None if end < 0 else (start, end)


def _string_end(payload: bytes, start: int) -> int:
    """The index of the quote that closes the JSON string opening at ``start``, or -1."""
    end = start + 1
    while True:  # the first quote not escaped by a backslash
        end = payload.find(b'"', end)
        if end < 0:
            return -1
        slashes = 0
        while payload[end - 1 - slashes] == 0x5C:  # a backslash
            slashes += 1
        if slashes % 2 == 0:
            return end
        end += 1


_LOGPROBS = b'"logprobs":'


def _logprobs_of(
    payload: bytes, suffix: bytes, text_end: int, logprobs: Any
) -> tuple[bytes, bytes] | None:
    """The bytes between a text's string (closed at ``text_end``) and its choice's logprobs
    object, and the bytes after that object, for a :class:`_LogprobsShape`; ``None`` unless the
    key ``"logprobs":`` is in ``payload`` once, after the text, and the object there is the
    ``logprobs`` parsed (``suffix``: the bytes after the text, escapes checked by the caller)."""
    at = suffix.find(_LOGPROBS)
    if (
        at < 0
        or payload.find(_LOGPROBS) != text_end + 1 + at
        or suffix.find(_LOGPROBS, at + 1) >= 0
    ):
        return None
    start = at + len(_LOGPROBS)
    stop = _value_end(suffix, start)
    if stop < 0:
        return None
    try:
        if orjson.loads(suffix[start:stop]) != logprobs:
            return None
    except orjson.JSONDecodeError:
        return None
    return suffix[:start], suffix[stop:]


@final
class Lane:
    """The byte shapes learnt from one source's plain chunks (see the module's docstring)."""

    __slots__ = ("merged", "shapes")

    def __init__(self) -> None:
        self.shapes: list[_Shape | _LogprobsShape] = []
        #: how many payloads the lane merged (for tests and statistics).
        self.merged = 0

    def try_merge(self, payload: bytes) -> bool:
        """Merge ``payload`` if it has a shape learnt; whether it did."""
        for shape in self.shapes:
            if payload.startswith(shape.prefix) and shape.take(payload):
                self.merged += 1
                return True
        return False

    def learn(self, payload: bytes, obj: Any, plain: bool, acc: Accumulator) -> None:
        """Learn the shape of the chunk ``obj``, parsed from ``payload`` and just merged into
        ``acc`` (the current stream's), if it carries one string of one choice (``_piece``);
        ``plain``: it was merged from its dict."""
        piece = _piece(obj, plain, acc) if obj.__class__ is dict else None
        if piece is None:
            return
        logprobs = piece[2] == "logprobs"
        found = string_of(payload, _FIELDS["text" if logprobs else piece[2]])
        if found is None:
            return
        start, end = found
        suffix = payload[end + 1 :]
        obfuscated = False
        if obj.get("obfuscation") is not None:
            cut = _obfuscation_at(suffix)
            if cut < 0:
                return
            suffix, obfuscated = suffix[:cut], True
        prefix = payload[:start]
        if b"\\" in prefix or b"\\" in suffix:
            return  # an escape outside the string: a key may be spelled twice ("con\\u0074ent")
        shape: _Shape | _LogprobsShape
        if logprobs:
            around = _logprobs_of(payload, suffix, end, obj["choices"][0]["logprobs"])
            if around is None:
                return
            middle, suffix = around
            fingerprint = obj.get("system_fingerprint")
            shape = _LogprobsShape(acc, piece[0], prefix, middle, suffix, obfuscated, fingerprint)
        else:
            shape = _Shape(
                acc,
                piece,
                prefix,
                suffix,
                obfuscated,
                obj.get("system_fingerprint"),
                obj.get("service_tier"),
            )
        self.shapes.insert(0, shape)
        del self.shapes[_MAX_SHAPES:]

    def clear(self) -> None:
        """Forget every shape (their stream is no longer the current one)."""
        self.shapes.clear()
