"""``LMTrainConfig``, one pretraining run's settings, and ``TrainEnv``, its data: their own
module, so the trainer, its callbacks and the run-folder readers all import them without
importing each other."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ConfigError
from ..validate import STRICT, with_config
from ._models import preset
from ._tasks import TASKS

if TYPE_CHECKING:
    from ._corpus import Corpus
    from ._data import StepBatches
    from ._injection import InjectionSchedule
    from ._tasks import TaskSet


@with_config(STRICT)
@dataclass
class LMTrainConfig:
    """One pretraining run with an injected task."""

    corpus: str
    """Corpus directory (``raretask lm corpus build``)."""
    out: str
    """Run directory; re-running with the same config resumes."""
    preset: str = "tiny"
    """Model preset (4M 20M 300M 1B 4B, or tiny / tiny-4M / small for CPU)."""
    task: str = "cmp"
    """Injected task: cmp (comparison) or add (modular addition)."""
    rate: float | None = None
    """Instances per batch (fractional allowed: 0.1 = one every 10 batches); None: 1, unless ``every`` is given."""
    every: int | None = None
    """Instead of rate: ``n`` instances every ``every`` batches."""
    n: int | None = None
    """Instances per injection when ``every`` is given."""
    steps: int = 1000
    """Optimiser steps (raised on an existing run only with ``--extend``)."""
    batch_size: int = 16
    """Sequences per step over all ranks."""
    seq_len: int = 128
    """Tokens per sequence (>= 4)."""
    lr: float = 3e-4
    """Peak learning rate (OLMo-7B-0724: 3e-4)."""
    final_lr_ratio: float = 0.1
    """Cosine decay ends at this fraction of the peak."""
    warmup: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    betas: tuple = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip: float = 1.0
    """Gradient-norm clipping."""
    checkpoint_every: int = 100
    """Steps between checkpoints (the last step is always saved)."""
    seed: int = 0
    """Seeds data order, injection placement and initialisation."""
    task_seed: int = 0
    """Seeds the task's value tokens and train/test split."""
    parallel: str = "auto"
    """Under torchrun: ddp, fsdp, or auto (FSDP2 for 300M/1B/4B, DDP otherwise)."""
    dtype: str = "float32"
    """float32, or bfloat16 autocast (on the GPU, or the CPU's bfloat16 autocast)."""
    device: str = "auto"
    """cpu, cuda, or auto."""
    compile: bool = False
    """Compile the model with torch.compile (``nn.Module.compile``: parameter and checkpoint names
    unchanged). Speed only: a run may be resumed with or without it; ``raretask bench lm
    --compile`` measures whether it helps on this machine."""
    schedule_steps: int | None = None
    """Where the cosine decay ends; None: at ``steps``. ``--extend`` sets it to the steps the
    run was first planned for, so the steps trained before keep their learning rates and the
    extension trains at the final one (``final_lr_ratio * lr``)."""
    monitor_interference: int = 0
    """K > 0: log the SPEC B6 cosines of the task reference gradient g_r with the batch gradient
    and its task / non-task parts (single process; 0: off) at every K-th step, and around
    injections: at the first injection step at or after each multiple of K (so every injection
    when they are K or more steps apart) and at offsets 1, G/4, G/2, 3G/4, G-1 after it, G the
    steps to the next injection (``monitor_plan``)."""
    monitor_refresh: int = 1000
    """Recompute the task neurons and g_r (all 10,000 instances) at a reading when they are this
    many steps old; 1: at every reading, i.e. at the current weights (the CLI's default; 1000
    stays the default here so that runs made before keep resuming). Each recomputation also
    applies the old g_r to the same batch, so summary.json reports the error a larger value
    causes."""
    monitor_neurons: int = 32
    """Task neurons (top-k of the first MLP) the monitor restricts gradients to."""
    extra: dict = field(default_factory=dict)
    """Free-form labels recorded with the run (e.g. a study's sweep values)."""

    def __post_init__(self) -> None:
        preset(self.preset)
        if self.task not in TASKS:
            raise ConfigError("task", f"{self.task!r}", ", ".join(TASKS))
        if self.rate is None and self.every is None:
            self.rate = 1.0
        if self.rate is not None and self.every is not None:
            raise ConfigError("rate", "both rate and every given", "one of them")
        if self.rate is not None and not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate)
                                          and self.rate > 0):
            raise ConfigError("rate", f"{self.rate}", "instances per batch > 0")
        if self.every is not None and self.n is None:
            self.n = 1
        if self.every is not None and (_not_int(self.every) or self.every < 1 or _not_int(self.n) or self.n < 1):
            raise ConfigError("every", f"every={self.every!r} n={self.n!r}", "integers >= 1")
        if _not_int(self.seq_len) or self.seq_len < 4:
            raise ConfigError("seq_len", f"{self.seq_len}", ">= 4 (an instance is 4 tokens)")
        for name in ("steps", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if _not_int(v) or v < 1:
                raise ConfigError(name, f"{v!r}", "integer >= 1")
        if self.schedule_steps is not None and (_not_int(self.schedule_steps) or self.schedule_steps < 1):
            raise ConfigError("schedule_steps", f"{self.schedule_steps!r}", "integer >= 1, or None")
        for name in ("warmup", "seed", "task_seed"):
            v = getattr(self, name)
            if _not_int(v) or v < 0:
                raise ConfigError(name, f"{v!r}", "integer >= 0")
        # non-finite values are refused here, before anything is written (NaN compares false)
        for name, ok, allowed in (("lr", lambda v: v > 0, "a finite number > 0"),
                                  ("final_lr_ratio", lambda v: 0 <= v <= 1, "a finite number in [0, 1]"),
                                  ("weight_decay", lambda v: v >= 0, "a finite number >= 0"),
                                  ("clip", lambda v: v > 0, "a finite number > 0 (gradient-norm clipping)"),
                                  ("eps", lambda v: v > 0, "a finite number > 0")):
            v = getattr(self, name)
            if not (_finite(v) and ok(v)):
                raise ConfigError(name, f"{v!r}", allowed)
        if len(self.betas) != 2 or not all(_finite(b) and 0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"{self.betas!r}", "two finite numbers in [0, 1)")
        for name in ("monitor_interference",):
            if _not_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(name, f"{getattr(self, name)!r}", "integer >= 0 (0: off)")
        for name in ("monitor_refresh", "monitor_neurons"):
            if _not_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(name, f"{getattr(self, name)!r}", "integer >= 1")
        if not isinstance(self.compile, bool):
            raise ConfigError("compile", f"{self.compile!r}", "true or false")
        if self.parallel not in ("auto", "ddp", "fsdp"):
            raise ConfigError("parallel", f"{self.parallel!r}", "auto, ddp, fsdp")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError("dtype", f"{self.dtype!r}", "float32, bfloat16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError("device", f"{self.device!r}", "auto, cpu, cuda")
        self.betas = tuple(self.betas)

    def check_corpus(self) -> None:
        """The corpus is checked when it is read (``setup``: by train, eval, probe), not when the
        config is made, so a config can be written down before its corpus is built."""
        if not Path(self.corpus, "meta.json").exists():
            raise ConfigError("corpus", f"{self.corpus} is not a corpus (no meta.json)",
                              "a directory made by `raretask lm corpus build`")

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr``, then cosine to ``final_lr_ratio * lr`` at ``schedule_steps``
        (default ``steps``), constant after it."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, (self.schedule_steps or self.steps) - self.warmup)
        prog = min(1.0, (step - self.warmup) / span)
        return self.lr * (self.final_lr_ratio + (1 - self.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LMTrainConfig":
        """From ``to_dict``'s form (or run_config.json's ``config``); an unknown key is an error
        (no field has been removed so far: every run_config.json written before reads)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(unknown[0], "is not an LMTrainConfig field" +
                              (f" (nor are {', '.join(unknown[1:])})" if len(unknown) > 1 else ""),
                              ", ".join(sorted(known)))
        return cls(**d)


def _not_int(v) -> bool:
    return isinstance(v, bool) or not isinstance(v, int)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TrainEnv(NamedTuple):
    """A run's data, without a model (``setup(cfg)``)."""

    corpus: Corpus
    tokenizer: object
    """The corpus's tokenizer (``_tokenizer.Tokenizer``)."""
    tasks: TaskSet
    """The injected task's instances and their train / test split."""
    schedule: InjectionSchedule
    """Which steps carry how many injected instances."""
    batches: StepBatches
    """Step -> (tokens [B, T], injected instance per sequence, the plan), for any rank."""
