"""Typed, strict settings records (pydantic v2 dataclasses) and their errors as ``ConfigError``:
the one validation layer every entry goes through (``--set``, presets, sweep keys,
``--dry-run``, the Python API).

A record declared with ``@strict`` is an ordinary dataclass (``fields``, ``asdict``,
``replace`` and the field docstrings all work) whose constructor checks every value against
its annotation in strict mode:

- booleans are not numbers and strings are not booleans (``--set x=true`` on an int field is
  refused, ``"no"`` on a bool field is refused);
- floats are finite; an int is accepted where a float is asked;
- lists are typed element by element, and a list is not a tuple;
- an unknown key is refused, naming the keys the record has.

A failure becomes one ``ConfigError`` naming the field the user wrote (``gaps[1]`` for the
second element of ``gaps``), so the CLI prints it on one line with exit status 2.

The package's older plain dataclasses (``MixtureSpec``, ``TrainConfig``, ``LMTrainConfig``) carry
``@with_config(STRICT)`` and are built from tables of plain values with ``typed(cls, table)``:
the same strict check of every field against its annotation, then their own ``__post_init__``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from .errors import ConfigError
from ._json import json_default

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

T = TypeVar("T")


def strict(cls: type[T]) -> type[T]:
    """Declare a strict settings record (use as a class decorator)."""
    return _pydantic_dataclass(cls, config=STRICT)


def _distinct(values: list) -> list:
    dup = sorted({v for v in values if values.count(v) > 1}, key=repr)
    if dup:  # a repeated value would train (or count) the same run twice
        raise ValueError(f"{values!r} repeats {dup} (allowed: distinct values)")
    return values


def _nonempty(values: list) -> list:
    if not values:
        raise ValueError("an empty list (allowed: at least one value)")
    return values


PosInt = Annotated[int, Field(ge=1)]
"""An integer >= 1."""
NonNegInt = Annotated[int, Field(ge=0)]
"""An integer >= 0."""
PosFloat = Annotated[float, Field(gt=0)]
"""A finite number > 0."""
NonNegFloat = Annotated[float, Field(ge=0)]
"""A finite number >= 0."""
PosPair = Annotated[list[PosFloat], Field(min_length=2, max_length=2)]
"""Two finite numbers > 0 (a range [lo, hi], or a pair of weights)."""
Distinct = AfterValidator(_distinct)
"""Marks a list whose values must differ: ``Annotated[list[PosInt], Distinct]``."""
NonEmpty = AfterValidator(_nonempty)
"""Marks a list that must hold at least one value."""


def _where(loc: tuple, prefix: str) -> str:
    out = prefix
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else str(part))
    return out or prefix or "settings"


def _keys_at(cls: type, loc: tuple) -> list[str]:
    """The field names of the (nested) record at ``loc`` inside ``cls``."""
    import typing

    for part in loc:
        if isinstance(part, int):
            continue
        hints = typing.get_type_hints(cls)
        tp = hints.get(part)
        options = [tp, *typing.get_args(tp)]
        nested = [t for t in options if isinstance(t, type) and hasattr(t, "__dataclass_fields__")]
        if not nested:
            return []
        cls = nested[0]
    return [f.name for f in fields(cls)]


def as_config_error(err: ValidationError, cls: type, prefix: str = "") -> ConfigError:
    """The first problem of a pydantic ``ValidationError`` on record ``cls`` as a ConfigError
    whose field is the dotted path the user wrote (``prefix`` first)."""
    e = err.errors()[0]
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # raised by the record's own __post_init__: named as the user wrote it
        if prefix and cause.field in {f.name for f in fields(cls)}:
            return ConfigError(f"{prefix}.{cause.field}", cause.problem, cause.allowed)
        return cause
    field = _where(tuple(e["loc"]), prefix)
    if e["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return ConfigError("set", f"unknown option {field!r}", ", ".join(_keys_at(cls, tuple(e["loc"])[:-1])))
    if e["type"] in ("missing", "missing_argument"):
        loc = tuple(e["loc"])
        if loc and isinstance(loc[-1], int):  # a fixed-length list (a pair) given too short
            return ConfigError(_where(loc[:-1], prefix), f"too few values (item {loc[-1] + 1} missing)")
        return ConfigError(field, "missing", "a value: the table has no default for it")
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error":
        return ConfigError(field, msg)
    return ConfigError(field, f"{e.get('input')!r}: {msg[0].lower() + msg[1:]}")


def build(cls: type[T], values: dict[str, Any] | None = None, prefix: str = "") -> T:
    """A ``@strict`` record from a table of plain values (None: its defaults; nested records
    from nested tables), its first problem raised as a ConfigError (``prefix``: the table the
    values came from, for the field name in the message)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(prefix or "settings", f"{values!r}", "a table of options")
    return typed(cls, values or {}, prefix)


@lru_cache(maxsize=None)
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def typed(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """An instance of dataclass ``cls`` (declared ``@with_config(STRICT)``) from a table of plain
    JSON values, every field checked strictly against its annotation first (a JSON array is
    accepted where a tuple is asked); its first problem raised as a ConfigError whose field
    starts with ``prefix`` (``train.lr``)."""
    if not isinstance(values, dict):
        raise ConfigError(prefix or cls.__name__, f"{values!r}", "a table of options")
    try:
        text = json.dumps(values, default=json_default)  # numpy values and paths as plain ones
    except (TypeError, ValueError) as e:
        raise ConfigError(prefix or cls.__name__, f"a value that is not plain data ({e})",
                          "numbers, strings, booleans, lists and tables") from None
    try:
        return _adapter(cls).validate_json(text, strict=True)
    except ValidationError as e:
        raise as_config_error(e, cls, prefix) from None


__all__ = ["STRICT", "Distinct", "Field", "NonEmpty", "NonNegFloat", "NonNegInt", "PosFloat", "PosInt", "PosPair",
           "as_config_error", "build", "strict", "typed", "with_config"]
