"""The probe registry: one record per probe, collected in one place.

A probe is one module that ends with one ``register_probe(Probe(...))`` line. The record
says what the probe is called, which injected tasks it applies to, which settings it takes
(they become ``ProbeConfig`` keywords with their validation, the probe's cache key, and the
``raretask lm probe`` flags), how it measures one model (``measure(model, ctx, cfg) -> rows``)
and how it reports its table (``report(df, out, cfg) -> (checks, figures)``).

The built-in probes are listed below by module so that their order (the order of the
default probe set, the report and the CLI flags) does not depend on import order; a probe
defined elsewhere (e.g. in a test) only needs ``register_probe``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from ..report.html import Check, Figure


class ProbeContext(NamedTuple):
    """What a probe's ``measure`` gets besides the model and the config."""

    tasks: Any
    """The run's injected ``TaskSet`` (``tasks.task`` is "cmp" or "add")."""
    batches: Any
    """The run's training batches (``batches.local(step) -> (tokens, instances, ...)``)."""
    step: int
    """The checkpoint's training step (0 for the untrained model)."""
    torch: Any
    """The ``torch`` module (imported once by the runner)."""


@dataclass(frozen=True)
class Setting:
    """One setting of a probe: a ``ProbeConfig`` keyword, part of the probe's cache key, and a
    ``raretask lm probe`` flag (``--name-with-dashes``)."""

    name: str
    """Keyword and cache-key name (a Python identifier)."""
    type: type
    """int (a whole number >= ``minimum``) or float (a finite number > ``minimum``)."""
    default: int | float
    """The value when not given."""
    help: str
    """One line for ``--help``."""
    minimum: int | float | None = None
    """Lower bound: int settings must be >= it (default 1), float ones > it (default 0)."""

    def validate(self, value: Any) -> None:
        """Raise ``ConfigError`` unless ``value`` is a valid value of this setting."""
        if self.type is int:
            low = 1 if self.minimum is None else self.minimum
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(self.name, f"{value!r}", f"a whole number >= {low}")
            if value < low:
                raise ConfigError(self.name, f"{value}", f">= {low}")
        else:
            low = 0 if self.minimum is None else self.minimum
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value <= low:
                raise ConfigError(self.name, f"{value}", f"a finite number > {low:g}")


Rows = list[dict]
# the third argument is the run's ProbeConfig (in ``_run``, which imports this registry: named, not imported)
Measure = Callable[[Any, ProbeContext, Any], Rows]
Report = Callable[["pd.DataFrame", Path, Any], "tuple[list[Check], list[Figure]]"]


@dataclass(frozen=True)
class Probe:
    """A probe: what ``raretask lm probe`` runs on every selected checkpoint.

    ``measure`` returns the rows of one model (the runner adds ``checkpoint`` and ``step`` in
    front and caches them under the probe's settings and the model's checksum); ``report``
    gets the probe's table over all checkpoints and returns its checks and figures (figures go
    under ``out / "figures"``)."""

    name: str
    """Probe name: the table ``<name>.parquet``, the flag ``--<name>`` (a lowercase identifier)."""
    help: str
    """One line for ``--help``."""
    measure: Measure
    report: Report
    tasks: tuple[str, ...] | None = None
    """The injected tasks it applies to ("cmp", "add"); None: every task."""
    settings: tuple[Setting, ...] = ()
    check: Callable[[Any, Any], None] | None = None
    """``check(cfg, preset)``: refuse (``ConfigError``) settings this probe cannot honour on a
    model of that ``lm`` preset (``ModelPreset``), before anything is written; None: no check."""

    def applies_to(self, task: str) -> bool:
        """Whether the probe is defined for a run whose injected task is ``task``."""
        return self.tasks is None or task in self.tasks


_RESERVED = {"probes", "checkpoints", "init", "no_init", "run", "func", "command", "lm_command", "debug", "help",
             "to_dict"}
"""Names a probe or setting cannot take: ``ProbeConfig`` attributes and ``lm probe`` options."""

BUILTIN_PROBES = ("das", "pca", "fourier", "localize", "gradients")
"""The probes of this package, each in ``raretask.probes._<name>``, in report order."""

_PROBES: dict[str, str | Probe] = {name: f"raretask.probes._{name}" for name in BUILTIN_PROBES}
"""name -> record, or the module whose import registers it (a built-in not yet imported)."""


def register_probe(probe: Probe) -> Probe:
    """Add ``probe`` to the registry (the one line a probe module ends with); returns it.

    Raises ``ConfigError`` for a name taken by another probe, a name that is not a lowercase
    identifier or clashes with a ``raretask lm probe`` option, or a setting another probe
    declares differently (settings share one namespace: ``ProbeConfig`` keywords and flags)."""
    if not isinstance(probe, Probe):
        raise ConfigError("probe", f"{probe!r} is not a Probe record", "register_probe(Probe(...))")
    name = probe.name
    if not name.isidentifier() or name != name.lower() or name in _RESERVED:
        raise ConfigError("probe", f"name {name!r}", "a lowercase identifier that is not a probe option")
    old = _PROBES.get(name)
    module = getattr(probe.measure, "__module__", None)
    old_module = old if isinstance(old, str) else getattr(getattr(old, "measure", None), "__module__", None)
    if old is not None and old != probe and old_module != module:  # its own module may register again (reload)
        raise ConfigError("probe", f"{name!r} is already registered", "a new name")
    if any(s.name == name for p in _loaded() for s in p.settings):
        raise ConfigError("probe", f"name {name!r} is a setting of another probe", "a new name")
    for s in probe.settings:
        if not s.name.isidentifier() or s.name in _RESERVED or s.name in _PROBES or s.name == name:
            raise ConfigError("probe setting", f"{name}: {s.name!r}", "an identifier that is not a probe "
                                                                       "name or option")
        if s.type not in (int, float):
            raise ConfigError("probe setting", f"{name}.{s.name}: type {s.type!r}", "int or float")
        s.validate(s.default)
        for other in _loaded():
            for t in other.settings:
                if other.name != name and t.name == s.name and t != s:
                    raise ConfigError("probe setting", f"{name}.{s.name} is declared differently by "
                                                       f"{other.name}", "the same Setting, or a new name")
    _PROBES[name] = probe
    return probe


def unregister_probe(name: str) -> None:
    """Remove a probe registered with ``register_probe`` (built-in probes stay)."""
    if name not in _PROBES:
        raise ConfigError("probe", f"{name!r} is not registered", ", ".join(_PROBES))
    if isinstance(_PROBES[name], str) or getattr(_PROBES[name].measure, "__module__", "").startswith(
            "raretask.probes."):
        raise ConfigError("probe", f"{name!r} is built in", "a probe added with register_probe")
    del _PROBES[name]


def probe_names() -> tuple[str, ...]:
    """Every registered probe, built-ins first (das, pca, fourier, localize, gradients)."""
    return tuple(_PROBES)


def get_probe(name: str) -> Probe:
    """The record of probe ``name`` (importing its module on first use)."""
    if name not in _PROBES:
        raise ConfigError("probe", name, ", ".join(_PROBES))
    entry = _PROBES[name]
    if isinstance(entry, str):
        importlib.import_module(entry)
        entry = _PROBES[name]
        if not isinstance(entry, Probe):
            raise ConfigError("probe", f"{name!r}: its module {_PROBES[name]} registers no probe",
                              "a module ending with register_probe(Probe(...))")
    return entry


def _loaded() -> list[Probe]:
    return [p for p in _PROBES.values() if isinstance(p, Probe)]


def all_probes() -> tuple[Probe, ...]:
    """Every registered probe's record, in ``probe_names`` order."""
    return tuple(get_probe(n) for n in _PROBES)


def all_settings() -> tuple[Setting, ...]:
    """Every probe's settings, each once, in ``probe_names`` order (``ProbeConfig`` keywords)."""
    seen: dict[str, Setting] = {}
    for p in all_probes():
        for s in p.settings:
            seen.setdefault(s.name, s)
    return tuple(seen.values())
