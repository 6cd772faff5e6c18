"""The one list of studies, and the contract a study module fulfils.

A study is one module (``studies/<name>.py``) with either

- ``cells(cfg) -> list[Cell]`` (the engine runs, resumable, possibly shared with other
  studies) and ``analyze(cfg, results, trace, out) -> Analysis``; or
- ``run(cfg, out) -> (results, trace | None, seconds)`` for a study that is not engine runs
  (one-neuron), and the same ``analyze``.

Its presets are ``presets/<name>.json`` or, for a study outside the package, a ``PRESETS``
dict in the module. Adding a study is that module plus one ``register_study`` line.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ..errors import ConfigError

@runtime_checkable
class Study(Protocol):
    """What ``run_study`` needs of a study module (``run`` may replace ``cells``): ``cells(cfg:
    StudyConfig) -> list[Cell]`` and ``analyze(cfg, results, trace, out) -> Analysis`` (the
    types live in ``_config`` and ``_run``, which import this registry, so they are named here
    in words, not imported)."""

    def cells(self, cfg: Any) -> list: ...

    def analyze(self, cfg: Any, results: pd.DataFrame, trace: pd.DataFrame | None, out: Path) -> Any: ...


_STUDIES: dict[str, str | ModuleType] = {
    "phase": "raretask.studies.phase",
    "residual": "raretask.studies.residual",
    "retention": "raretask.studies.retention",
    "long-horizon": "raretask.studies.long_horizon",
    "complexity": "raretask.studies.complexity",
    "rank1": "raretask.studies.rank1",
    "one-neuron": "raretask.studies.one_neuron",
    "upweight": "raretask.studies.upweight",
    "remedies": "raretask.studies.remedies",
}


def register_study(name: str, module: str | ModuleType, replace: bool = False) -> None:
    """Add a study (a module or its import path) under ``name``; another module under a taken
    name is refused unless ``replace``."""
    if name in _STUDIES and _STUDIES[name] != module and not replace:
        raise ConfigError("study", f"{name!r} is already registered", "a new name, or register_study(..., replace=True)")
    _STUDIES[name] = module


def study_names() -> tuple[str, ...]:
    return tuple(_STUDIES)


def study_module(name: str) -> ModuleType:
    """The registered module of study ``name``, checked against the contract."""
    if name not in _STUDIES:
        raise ConfigError("study", f"{name!r}", ", ".join(_STUDIES))
    mod = _STUDIES[name]
    mod = importlib.import_module(mod) if isinstance(mod, str) else mod
    if not hasattr(mod, "analyze") or not (hasattr(mod, "cells") or hasattr(mod, "run")):
        raise ConfigError("study", f"{name!r}: its module defines no analyze, or neither cells nor run",
                          "a module with cells (or run) and analyze")
    return mod
