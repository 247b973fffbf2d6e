"""Typed records of run artefacts (``export/model.json``, ``result.json``): reading
and checking JSON objects field by field, with one error that names the file and key.

A record is a frozen dataclass; :func:`from_fields` builds it from a dict, converting
each field with its checker and refusing missing required keys and unknown keys, so a
reader never digs through ``.get()`` chains and a damaged or foreign file fails at once.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers

from tl_common.cli import UserError


class RecordError(UserError, ValueError):
    """A record file that cannot be used; ``str(error)`` is one line naming the file
    and the bad or missing key."""


def read_json_object(path: str) -> dict:
    """The JSON object stored in ``path``.

    Raises:
      FileNotFoundError: no file at ``path``.
      RecordError: the file is not JSON, or holds no object.
    """
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); the file is "
                          f"damaged: rerun the step that wrote it") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def from_fields(cls, data: dict, where: str, checkers: dict, renamed: dict | None = None):
    """Build the frozen dataclass ``cls`` from ``data``.

    Args:
      cls: the record class; each of its fields is read from the key of its name.
      data: the decoded JSON object.
      where: the file (or description) named in errors.
      checkers: ``field name -> (value -> converted value)``; raises ``TypeError``
        or ``ValueError`` for a bad value. Fields without a checker are taken as is.
      renamed: ``old key -> field name``: keys written by earlier versions, read
        as their new name (migration on read).

    Raises:
      RecordError: a required key is missing, a key is unknown, a value is bad, or
        a key is present under both its old and its new name.
    """
    data = dict(data)
    for old, new in (renamed or {}).items():
        if old in data:
            if new in data:
                raise RecordError(f"{where}: has both '{old}' (the old name) and '{new}'")
            data[new] = data.pop(old)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where}: unknown key(s) {unknown}; expected some of "
                          f"{sorted(fields)} (written by another tool or version?)")
    values = {}
    for name, field in fields.items():
        if name not in data:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise RecordError(f"{where}: missing key '{name}'")
            continue
        check = checkers.get(name, lambda v: v)
        try:
            values[name] = check(data[name])
        except RecordError:  # a nested record names its own key
            raise
        except (TypeError, ValueError) as e:
            raise RecordError(f"{where}: key '{name}' = {data[name]!r}: {e}") from None
    return cls(**values)


def _instance_of(cls: type, what: str):
    """A checker accepting instances of ``cls`` as they are (``TypeError``: expected what)."""
    def check(value):
        if not isinstance(value, cls):
            raise TypeError(f"expected {what}")
        return value
    return check


text = _instance_of(str, "a string")
boolean = _instance_of(bool, "true or false")
mapping = _instance_of(dict, "an object")


def _number(value, what: str):
    """``value`` if a real number other than a bool, else ``TypeError``: expected what."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected {what}")
    return value


def integer(value) -> int:
    """An int (a float with an integral value is accepted; a bool is not)."""
    value = _number(value, "an integer")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError("expected an integer")
    return int(value)


def scalar(value):
    """A number or a bool, as a plain Python value (NaN allowed)."""
    if not isinstance(value, (bool, numbers.Real)):
        raise TypeError("expected a number")
    return value.item() if hasattr(value, "item") else value


def real(value) -> float:
    """A finite number (an int is accepted; a bool is not)."""
    if not math.isfinite(_number(value, "a number")):
        raise ValueError("expected a finite number")
    return float(value)


def image_size(value) -> tuple[int, int]:
    """``[height, width]`` as a tuple of ints (one number: a square size)."""
    if not isinstance(value, (list, tuple)):
        value = [value, value]  # a square size given as one number
    if len(value) != 2:
        raise ValueError("expected [height, width]")
    return tuple(integer(v) for v in value)


def names(value) -> tuple[str, ...]:
    """A list of strings, as a tuple."""
    if not isinstance(value, (list, tuple)):
        raise TypeError("expected a list of names")
    return tuple(text(v) for v in value)


def optional(check):
    """``check`` that lets ``None`` (JSON null) through."""
    return lambda value: None if value is None else check(value)


def prefixed(data: dict, prefix: str, where: str) -> tuple[dict, dict]:
    """Split ``data`` into (the ``prefix*`` keys, without the prefix, checked as
    :func:`scalar`; the other keys).

    Raises:
      RecordError: a prefixed value is not a number.
    """
    picked, rest = {}, {}
    for key, value in data.items():
        if not key.startswith(prefix):
            rest[key] = value
            continue
        try:
            picked[key[len(prefix):]] = scalar(value)
        except TypeError as e:
            raise RecordError(f"{where}: key '{key}' = {value!r}: {e}") from None
    return picked, rest
