"""Study configuration: one dataclass for every named study, presets in JSON files."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

from ..errors import ConfigError, parse_assignment
from ..mixture import MixtureSpec
from ..sim import RecordSchedule, TrainConfig


@dataclass
class StudyConfig:
    """A fully resolved study: what to train, how, and what to record."""

    study: str
    """Study name (phase, residual, retention, long-horizon, complexity, rank1, one-neuron)."""
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
    betas: list | None = None
    """Prior exponents to sweep (replaces mixture.beta per cell); None: just mixture.beta."""
    alpha_ranges: list | None = None
    """Complexity sweep: list of [lo, hi] (replaces mixture.alpha_range per cell)."""
    gaps: list = field(default_factory=lambda: [1, 4, 16, 64, 256, 1024])
    """Retention: steps G between rare-task injections (SPEC A5.3)."""
    rare_task: int | None = None
    """Retention: 1-based rare task; None: the rarest task."""
    multipliers: list = field(default_factory=lambda: [0.5, 1.5])
    """Up-weighting study: multiples of the planner's minimal frequency to train at."""
    features: int = 1
    """Up-weighting study: how many of the target task's features the plan is for."""
    retention_widths: list | None = None
    """Complexity study: widths of its retention part (None: ``widths``)."""
    gaps_enabled: bool = True
    """Complexity study: also run the retention part over ``gaps``."""
    checkpoint_seconds: float = 60.0
    """Wall time between checkpoints of a long run (results are flushed with them)."""
    record_points: int = 60
    """Number of log-spaced steps at which exact metrics are recorded."""
    trace_every: int = 1
    """Retention: keep the rare task's corrected signal every this many steps."""
    eta: float = 0.01
    """One-neuron: step size."""
    lambdas: list = field(default_factory=lambda: [1.0, 1.0])
    """One-neuron: (lambda_1, lambda_2) of the common and the rare task."""
    theta0: float = 0.3
    """One-neuron: initial angle after a rare update (radians, 0 < theta0 < pi/2)."""
    replay_every: int = 0
    """Retention and remedies: replay the latest injection's rare samples every this many
    steps between injections (no new rare data); 0: off (retention) / 8 (remedies)."""
    conflict_removal: bool = False
    """Retention: project the other tasks' encoder gradient off the rare task's latest
    gradient when they conflict (PCGrad-style remedy)."""
    remedy_gap: int = 64
    """Remedies: steps G between the rare task's injections in the baseline."""
    short_gap: int = 1
    """Remedies: the gap of the 'shorter gaps' remedy (same long-run frequency)."""
    upweight_margin: float = 1.5
    """Remedies: the up-weighted frequency as a multiple of the planner's minimum p*(N)."""

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
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError("seeds", f"{self.seeds!r}", "non-empty list of integers >= 0")
        if self.betas is not None:
            if not self.betas or any(not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0 for b in self.betas):
                raise ConfigError("betas", f"{self.betas!r}", "list of finite numbers >= 0, or null")
        if self.alpha_ranges is not None:
            for r in self.alpha_ranges:
                MixtureSpec(**{**self.mixture, "alpha_range": tuple(r)})
        if not self.multipliers or any(not isinstance(m, (int, float)) or m <= 0 for m in self.multipliers):
            raise ConfigError("multipliers", f"{self.multipliers!r}", "list of numbers > 0")
        if not isinstance(self.features, int) or not 1 <= self.features <= spec.d:
            raise ConfigError("features", f"{self.features!r}", f"1..{spec.d}")
        for w in self.retention_widths or []:
            spec.check_width(w, "retention_widths")
        if any(not isinstance(g, int) or g < 1 for g in self.gaps):
            raise ConfigError("gaps", f"{self.gaps!r}", "list of integers >= 1")
        if self.rare_task is not None and not (isinstance(self.rare_task, int) and 1 <= self.rare_task <= spec.K):
            raise ConfigError("rare_task", f"{self.rare_task!r}", f"1..{spec.K} or null")
        RecordSchedule("log", self.record_points)
        if not (isinstance(self.checkpoint_seconds, (int, float)) and self.checkpoint_seconds >= 0):
            raise ConfigError("checkpoint_seconds", f"{self.checkpoint_seconds!r}", "number >= 0")
        if not isinstance(self.trace_every, int) or self.trace_every < 1:
            raise ConfigError("trace_every", f"{self.trace_every!r}", "integer >= 1")
        if not (isinstance(self.eta, (int, float)) and 0 < self.eta < 1):
            raise ConfigError("eta", f"{self.eta!r}", "0 < eta < 1")
        if len(self.lambdas) != 2 or any(not (isinstance(v, (int, float)) and v > 0) for v in self.lambdas):
            raise ConfigError("lambdas", f"{self.lambdas!r}", "two positive numbers")
        for name in ("remedy_gap", "short_gap"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(name, f"{v!r}", "integer >= 1")
        if not isinstance(self.replay_every, int) or self.replay_every < 0:
            raise ConfigError("replay_every", f"{self.replay_every!r}", "integer >= 0 (0: off)")
        if not isinstance(self.conflict_removal, bool):
            raise ConfigError("conflict_removal", f"{self.conflict_removal!r}", "true or false")
        if not (isinstance(self.upweight_margin, (int, float)) and self.upweight_margin > 0):
            raise ConfigError("upweight_margin", f"{self.upweight_margin!r}", "number > 0")
        if not (isinstance(self.theta0, (int, float)) and 0 < self.theta0 < math.pi / 2):
            raise ConfigError("theta0", f"{self.theta0!r}", "0 < theta0 < pi/2")
        for name in ("widths", "retention_widths", "seeds", "gaps", "betas", "multipliers"):
            values = getattr(self, name) or []
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:  # a repeated value would train (or count) the same run twice
                raise ConfigError(name, f"{values!r} repeats {dup}", "distinct values")

    def spec(self, **override) -> MixtureSpec:
        kw = {**self.mixture, **override}
        for key in ("prior", "alpha_range"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("spectrum") is not None:
            kw["spectrum"] = tuple(tuple(r) for r in kw["spectrum"])
        try:
            return MixtureSpec(**kw)
        except TypeError as e:
            raise ConfigError("mixture", str(e), ", ".join(f.name for f in fields(MixtureSpec))) from None

    def train_config(self, seed: int) -> TrainConfig:
        kw = {**self.train, "seed": seed}
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        try:
            return TrainConfig(**kw)
        except TypeError as e:
            raise ConfigError("train", str(e), ", ".join(f.name for f in fields(TrainConfig))) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach into mixture/train; values are JSON,
    or plain strings). Unknown top-level keys raise ConfigError."""
    cfg = copy.deepcopy(cfg)
    known = {f.name for f in fields(StudyConfig)}
    for item in overrides:
        parts, value = parse_assignment(item)
        key = ".".join(parts)
        if parts[0] not in known:
            raise ConfigError("set", f"unknown option {parts[0]!r}", ", ".join(sorted(known)))
        target = cfg
        for p in parts[:-1]:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise ConfigError("set", f"{key!r}: {p!r} is not a table")
        target[parts[-1]] = value
    return cfg
