"""Study configuration: ``StudyConfig`` holds what every study shares (mixture, training,
widths, seeds, recording); each study module declares its own options as a ``Settings``
record (``raretask.validate.strict``: typed, strict, a docstring per field). Presets are
JSON files with flat keys; ``--set KEY=VALUE`` reaches shared and own keys alike."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

from ..errors import ConfigError, parse_assignment
from ..mixture import MixtureSpec
from ..sim import RecordSchedule, TrainConfig
from ..validate import build, strict, typed


@strict
class NoSettings:
    """A study without settings of its own."""


def check_task(cfg: "StudyConfig", field: str, task: int | None) -> None:
    """Refuse a 1-based task number beyond the mixture's K (None passes: the study chooses)."""
    K = cfg.spec().K
    if task is not None and task > K:
        raise ConfigError(field, f"{task!r}", f"1..{K} or null")


def check_features(cfg: "StudyConfig", features: int) -> None:
    """Refuse a feature count beyond the block dimension d."""
    d = cfg.spec().d
    if features > d:
        raise ConfigError("features", f"{features!r}", f"1..{d}")


def settings_class(study: str) -> type:
    """The ``Settings`` record a study module declares (``NoSettings`` where it declares none)."""
    from ._registry import study_module

    return getattr(study_module(study), "Settings", NoSettings)


SHARED = ("study", "preset", "mixture", "train", "widths", "seeds", "checkpoint_seconds", "record_points", "settings")
"""The fields of ``StudyConfig``: what every study shares."""

LEGACY = ("betas", "alpha_ranges", "gaps", "rare_task", "multipliers", "features", "retention_widths", "gaps_enabled",
          "trace_every", "eta", "lambdas", "theta0", "replay_every", "conflict_removal", "remedy_gap", "short_gap",
          "upweight_margin")
"""Study settings a run folder written before per-study settings kept flat in its config
(every study's, whether it used them or not)."""


@dataclass
class StudyConfig:
    """A fully resolved study: what to train, how, and what to record; the study's own
    options are its ``settings`` record."""

    study: str
    """Study name (phase, residual, retention, long-horizon, complexity, rank1, one-neuron, ...)."""
    preset: str = "quick"
    """Preset the values came from (quick or paper), recorded for provenance."""
    mixture: dict | MixtureSpec = field(default_factory=dict)
    """Keyword arguments of ``MixtureSpec`` (SPEC A1), or a ``MixtureSpec`` (kept as its
    constructor's arguments, so the config stays plain JSON)."""
    train: dict | TrainConfig = field(default_factory=dict)
    """Keyword arguments of ``TrainConfig`` (SPEC A2), or a ``TrainConfig``; ``train.seed`` is
    replaced per seed."""
    widths: list = field(default_factory=lambda: [4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512])
    """Student widths N (each 1..D)."""
    seeds: list = field(default_factory=lambda: [0])
    """Seeds; each seed is an independent run (data and initialisation)."""
    checkpoint_seconds: float = 60.0
    """Wall time between checkpoints of a long run (results are flushed with them)."""
    record_points: int = 60
    """Number of log-spaced steps at which exact metrics are recorded."""
    settings: Any = None
    """The study's own settings: an instance of its module's ``Settings`` record, or a table of
    its fields (None: its defaults)."""

    def __post_init__(self) -> None:
        from ._registry import study_names

        if self.study not in study_names():
            raise ConfigError("study", f"{self.study!r}", ", ".join(study_names()))
        if isinstance(self.mixture, MixtureSpec):
            self.mixture = json.loads(json.dumps({k: v for k, v in self.mixture.to_dict().items() if k != "D"}))
        if isinstance(self.train, TrainConfig):
            self.train = {k: v for k, v in json.loads(json.dumps(asdict(self.train))).items() if k != "seed"}
        if not isinstance(self.mixture, dict) or not isinstance(self.train, dict):
            raise ConfigError("mixture", "mixture and train must be tables of options")
        spec = self.spec()  # validates the mixture
        self.train_config(0)  # validates the training options
        if not self.widths or not isinstance(self.widths, list):
            raise ConfigError("widths", f"{self.widths!r}", f"non-empty list of integers 1..{spec.D}")
        for w in self.widths:
            spec.check_width(w, "widths")
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ConfigError("seeds", f"{self.seeds!r}", "non-empty list of integers >= 0")
        RecordSchedule("log", self.record_points)
        if isinstance(self.checkpoint_seconds, bool) or not (
                isinstance(self.checkpoint_seconds, (int, float)) and self.checkpoint_seconds >= 0):
            raise ConfigError("checkpoint_seconds", f"{self.checkpoint_seconds!r}", "number >= 0")
        for name in ("widths", "seeds"):
            values = getattr(self, name)
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:  # a repeated value would train (or count) the same run twice
                raise ConfigError(name, f"{values!r} repeats {dup}", "distinct values")
        cls = settings_class(self.study)
        if not isinstance(self.settings, cls):
            self.settings = build(cls, self.settings)
        if hasattr(self.settings, "check"):  # what needs the mixture (a task number <= K, ...)
            self.settings.check(self)

    def spec(self, **override) -> MixtureSpec:
        kw = {**self.mixture, **override}
        for key in ("prior", "alpha_range"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("spectrum") is not None:
            kw["spectrum"] = tuple(tuple(r) for r in kw["spectrum"])
        return typed(MixtureSpec, kw, "mixture")

    def train_config(self, seed: int) -> TrainConfig:
        return typed(TrainConfig, {**self.train, "seed": seed}, "train")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the shared fields, and the study's own under ``settings``."""
        return {**{f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "settings"},
                "settings": json.loads(json.dumps(asdict(self.settings)))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        """The inverse of ``to_dict``; also reads the flat layout of run folders written before
        per-study settings (the study's own keys move under ``settings``, other studies' go)."""
        return cls(**split_flat(d, legacy=True))


def split_flat(raw: dict[str, Any], legacy: bool = False) -> dict[str, Any]:
    """A flat table (a preset, ``--set`` keys, an old config.json) as ``StudyConfig``'s
    keyword arguments: shared keys stay, the study's own move into ``settings`` (merged over a
    ``settings`` table if one is given). Keys neither shared nor the study's own are refused,
    naming both lists; with ``legacy`` (an old config.json), other studies' old flat settings
    (``LEGACY``) are dropped instead: the study never read them."""
    raw = copy.deepcopy(raw)
    own = {f.name for f in fields(settings_class(raw["study"]))}
    table = raw.pop("settings", None) or {}
    if not isinstance(table, dict):
        raise ConfigError("settings", f"{table!r}", "a table of the study's own options")
    out = {}
    for key, value in raw.items():
        if key in SHARED:
            out[key] = value
        elif key in own:
            table[key] = value
        elif not (legacy and key in LEGACY):
            raise ConfigError("set", f"unknown option {key!r} for study {raw['study']!r}",
                              ", ".join([k for k in SHARED if k != "settings"] + sorted(own)))
    return {**out, "settings": table}


def load_preset(study: str, preset: str) -> dict[str, Any]:
    """The preset table for ``study``: ``presets/<study>.json``, or the module's ``PRESETS``."""
    from ._registry import study_module

    mod = study_module(study)
    if hasattr(mod, "PRESETS"):
        table = mod.PRESETS
    else:
        table = json.loads(resources.files("raretask.studies").joinpath("presets", f"{study}.json").read_text())
    if preset not in table:
        raise ConfigError("preset", f"{preset!r}", ", ".join(sorted(table)))
    return copy.deepcopy(table[preset])


def apply_overrides(cfg: dict[str, Any], overrides: list[str], study: str | None = None) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach into mixture/train/settings; values are
    JSON, or plain strings). Keys neither shared nor ``study``'s own raise ConfigError."""
    cfg = copy.deepcopy(cfg)
    study = study or cfg.get("study")
    own = sorted(f.name for f in fields(settings_class(study))) if study else []
    known = [k for k in SHARED if k != "study"] + own
    for item in overrides:
        parts, value = parse_assignment(item)
        key = ".".join(parts)
        if parts[0] == "settings":  # settings.KEY is KEY; settings={...} sets each KEY
            if len(parts) == 1 and isinstance(value, dict):
                cfg.update(apply_overrides({}, [f"{k}={json.dumps(v)}" for k, v in value.items()], study))
                continue
            parts = parts[1:] or parts
        if parts[0] not in known:
            raise ConfigError("set", f"unknown option {parts[0]!r}" + (f" for study {study!r}" if study else ""),
                              ", ".join(known))
        target = cfg
        for p in parts[:-1]:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ConfigError("set", f"{key!r}: {p!r} is not a table")
        target[parts[-1]] = value
    return cfg
