"""Plugins: modules outside the package that register studies, probes, model families, presets
or training callbacks, loaded before the command line is built, so what they register is a
choice of the ``raretask`` command itself (no launcher script, no edit of the package).

Three ways to name one, loaded in this order, each module once:

1. an installed package's entry point in the group ``raretask.plugins``; in its
   pyproject.toml::

       [project.entry-points."raretask.plugins"]
       mything = "mything.raretask_plugin"      # a module (registers on import)
       # or "mything.raretask_plugin:register"  # a function, called with no arguments

2. ``RARETASK_PLUGINS``: module names separated by commas;
3. ``--plugin MODULE`` (repeatable, anywhere on the command line).

A plugin that fails to import or to register is one line naming it (exit 2).
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata
from typing import Callable, Sequence

from .errors import ConfigError

GROUP = "raretask.plugins"
"""The entry-point group installed packages declare their plugins in."""
ENV = "RARETASK_PLUGINS"

_LOADED: set[str] = set()


def take_plugin_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(modules named by ``--plugin MODULE`` / ``--plugin=MODULE``, argv without them)."""
    mods, rest, it = [], [], iter(list(argv))
    for a in it:
        if a == "--":
            rest += [a, *it]
            break
        if a == "--plugin":
            mod = next(it, None)
            if mod is None or mod.startswith("-"):
                raise ConfigError("plugin", "--plugin needs a module name", "--plugin MODULE")
            mods.append(mod)
        elif a.startswith("--plugin="):
            mods.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    return mods, rest


def _sources(flags: Sequence[str], environ) -> list[tuple[str, str, Callable[[], object]]]:
    """(where it was named, its name, how to load it), in loading order."""
    out = []
    for ep in metadata.entry_points(group=GROUP):
        out.append((f"entry point {ep.name!r} of {getattr(ep.dist, 'name', 'an installed package')}", ep.value,
                    ep.load))
    for name in [m.strip() for m in environ.get(ENV, "").split(",") if m.strip()]:
        out.append((ENV, name, lambda name=name: importlib.import_module(name)))
    for name in flags:
        out.append(("--plugin", name, lambda name=name: importlib.import_module(name)))
    return out


def load_plugins(flags: Sequence[str] = (), environ=None) -> list[str]:
    """Import every plugin (see the module docstring); returns the names loaded now. An entry
    point naming a function is called after import."""
    environ = os.environ if environ is None else environ
    loaded = []
    for where, name, load in _sources(flags, environ):
        if not name or name in _LOADED:
            continue
        try:
            obj = load()
            if callable(obj):  # an entry point naming a function: its registration call
                obj()
        except ConfigError as e:
            raise ConfigError("plugin", f"{name} (from {where}) refused its registration: {e.problem}",
                              e.allowed) from None
        except Exception as e:  # noqa: BLE001 - any failure of outside code is one line naming it
            raise ConfigError("plugin", f"{name} (from {where}) failed to load: {e.__class__.__name__}: {e}",
                              "an importable module that registers studies, probes, model families, presets or "
                              "callbacks") from None
        _LOADED.add(name)
        loaded.append(name)
    return loaded


def load_object(spec: str, what: str):
    """``MODULE:NAME`` -> the object (for ``--callback``); one line when it cannot be had."""
    mod, sep, attr = spec.partition(":")
    if not (mod and sep and attr):
        raise ConfigError(what, f"{spec!r}", "MODULE:NAME")
    try:
        module = importlib.import_module(mod)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(what, f"{spec}: cannot import {mod} ({e.__class__.__name__}: {e})",
                          "MODULE:NAME of an importable module") from None
    if not hasattr(module, attr):
        raise ConfigError(what, f"{spec}: {mod} has no {attr!r}", "MODULE:NAME naming an attribute of the module")
    return getattr(module, attr)
