"""Typed, strict settings records (pydantic v2 dataclasses) and their errors as ``ConfigError``.

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
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from .errors import ConfigError

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


def as_config_error(err: ValidationError, cls: type, prefix: str = "") -> ConfigError:
    """The first problem of a pydantic ``ValidationError`` on record ``cls`` as a ConfigError
    whose field is the dotted path the user wrote (``prefix`` first)."""
    e = err.errors()[0]
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # raised by the record's own __post_init__
        return cause
    field = _where(tuple(e["loc"]), prefix)
    if e["type"] == "unexpected_keyword_argument":
        return ConfigError("set", f"unknown option {field!r}", ", ".join(f.name for f in fields(cls)))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error":
        return ConfigError(field, msg)
    return ConfigError(field, f"{e.get('input')!r}: {msg[0].lower() + msg[1:]}")


def build(cls: type[T], values: dict[str, Any] | None = None, prefix: str = "") -> T:
    """``cls(**values)`` for a ``@strict`` record, its first problem raised as a ConfigError
    (``prefix``: the table the values came from, for the field name in the message)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(prefix or "settings", f"{values!r}", "a table of options")
    try:
        return cls(**(values or {}))
    except ValidationError as e:
        raise as_config_error(e, cls, prefix) from None
