"""Command-line flags generated from a config dataclass: one source for names, defaults and help.

``add_config_flags(parser, LMTrainConfig)`` adds ``--field-name`` for every field (its
docstring as help, the dataclass default shown, nothing re-declared), plus ``--set KEY=VALUE``
for any field by its name; ``config_kwargs(args, LMTrainConfig)`` collects the fields given on
the command line (absent flags keep the dataclass default) and refuses an unknown ``--set`` key.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import textwrap
import types
import typing
from dataclasses import MISSING, fields

from .errors import ConfigError, parse_assignment


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (its source), by field name;
    empty where the source is not installed (the flags then have no help text)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _base(tp) -> type:
    """The type of a field annotation without its ``| None`` (``float | None`` -> float)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def add_config_flags(parser: argparse.ArgumentParser, cls, overrides: dict[str, dict] | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` (``overrides``: argparse keywords for some of them)."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    overrides = overrides or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        base = _base(hints[f.name])
        default = _default(f)
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS}
        if base is tuple:
            kw.update(nargs=len(default), type=float, metavar="X")
        elif base is dict:
            kw.update(type=json.loads, metavar="JSON")
        elif base is bool:
            kw.update(action=argparse.BooleanOptionalAction)
        else:
            kw.update(type=base)
        if default is MISSING:
            kw["required"] = True
        shown = "required" if default is MISSING else f"default {json.dumps(default, default=list)}"
        kw["help"] = f"{docs.get(f.name, '')} ({shown})".replace("%", "%%")
        kw.update(overrides.get(f.name, {}))
        parser.add_argument(f"--{f.name.replace('_', '-')}", **kw)
    names = ", ".join(f.name for f in fields(cls))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_fields",
                        help=f"any field by name, value as JSON (e.g. --set betas=[0.9,0.98]); one of: {names}")


def config_kwargs(args: argparse.Namespace, cls) -> dict:
    """The fields given on the command line (flags, then ``--set``), for ``cls(**kw)``."""
    known = {f.name for f in fields(cls)}
    kw = {k: v for k, v in vars(args).items() if k in known}
    for item in getattr(args, "set_fields", None) or []:
        parts, value = parse_assignment(item)
        key = ".".join(parts)
        if key not in known:
            raise ConfigError("set", f"unknown key {key!r}", ", ".join(sorted(known)))
        kw[key] = value
    return kw
