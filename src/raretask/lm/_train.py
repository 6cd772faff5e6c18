"""Pretraining with an injected task (SPEC B2, B3): one entry point for one process or many.

Run it plainly, or under ``torchrun --nproc-per-node N`` (any number of nodes): each rank
trains on its slice of the same global batch, with DDP, or FSDP2 (``fully_shard``) for the
large presets. Loss is the mean next-token cross-entropy over the global batch, so it does
not depend on the number of ranks.

Run directory::

    run_config.json      the LMTrainConfig, package version, world size (written once)
    tasks.jsonl          every instance of the injected task (split, tokens, values)
    tokenizer.json       the tokenizer used
    checkpoints/step-NNNNNN/   model.safetensors + config.json (HF format), optimizer.pt,
                               tokenizer.json, trainer_state.json (step, the sha256 of every
                               file, the part log); checkpoints/latest names the newest
    metrics/part-*.parquet     per step: loss, injected-task loss, lr, grad norm, tokens/s
    data_order/part-*.parquet  per step and sequence: corpus window and injected instance
    interference/part-*.parquet  with --monitor-interference: one row per reading (SPEC B6
                               cosines, injection / offset / period, the g_r used), with
                               figures/interference-monitor.png and interference-report.html
    summary.json
The folder is a ``RunFolder`` of kind "lm-train" (marker, a lock held while training, atomic
writes; ``--restart`` deletes only the files above). Re-running the same command resumes from
the newest usable checkpoint (its files load and match their checksums, its log parts are
intact; a damaged newer one falls back to the one before); log parts written after it are
discarded, so the logs show every step exactly once. A checkpoint is written completely before
it replaces anything, and never with non-finite weights: a diverging loss stops the run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import ConfigError, RaretaskError
from ..runfolder import PartLog, RunFolderError, atomic_json, atomic_parquet, atomic_write, read_json
from ..sim._runner import drop_orphan_parts, read_parts
from ._corpus import Corpus
from ._data import StepBatches
from ._injection import InjectionSchedule
from ._models import LARGE, build_model, count_params, preset
from ._tasks import TASKS, build_tasks, ordinary_tokens


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
    """Instances per batch (fractional allowed: 0.1 = one every 10 batches). Default 1."""
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
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(name, f"{getattr(self, name)!r}", "integer >= 0 (0: off)")
        for name in ("monitor_refresh", "monitor_neurons"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(name, f"{getattr(self, name)!r}", "integer >= 1")
        if self.parallel not in ("auto", "ddp", "fsdp"):
            raise ConfigError("parallel", f"{self.parallel!r}", "auto, ddp, fsdp")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError("dtype", f"{self.dtype!r}", "float32, bfloat16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError("device", f"{self.device!r}", "auto, cpu, cuda")
        self.betas = tuple(self.betas)
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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _not_int(v) -> bool:
    return isinstance(v, bool) or not isinstance(v, int)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def setup(cfg: LMTrainConfig):
    """Tokenizer, task set, injection schedule and batches of a config (no model)."""
    corpus = Corpus(cfg.corpus)
    tok = corpus.tokenizer
    tasks = build_tasks(cfg.task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id, cfg.task_seed)
    schedule = InjectionSchedule(global_batch=cfg.batch_size, n_train=len(tasks.train), seed=cfg.seed,
                                 rate=cfg.rate, n=cfg.n if cfg.every else None, every=cfg.every)
    return corpus, tok, tasks, schedule, StepBatches(corpus, tasks, schedule, cfg.seq_len, cfg.seed)


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run (renamed into place, with their trainer_state.json), by step."""
    from ._runs import step_dirs

    return [d for d in step_dirs(Path(out)) if (d / "trainer_state.json").exists()]


def gap_offsets(period: int) -> list[int]:
    """Offsets (steps after an injection) the monitor reads in a gap of ``period`` steps."""
    return sorted({o for o in (0, 1, period // 4, period // 2, 3 * period // 4, period - 1) if 0 <= o < period})


def next_injection(schedule: InjectionSchedule, step: int) -> int:
    """The first step >= ``step`` that carries an injection (searched on the schedule's own
    cumulative count, so rates, fractional rates and n-every-G schedules alike)."""
    def cum(s: int) -> int:
        return int(schedule.cumulative(np.asarray([s]))[0])

    c0, hi = cum(step), 1
    while cum(step + hi) <= c0:  # terminates: every schedule injects at a positive rate
        hi *= 2
    lo = 0  # cum(step + lo) <= c0 < cum(step + hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cum(step + mid) <= c0 else (lo, mid)
    return step + hi - 1


def monitor_plan(schedule: InjectionSchedule, steps: int, every: int) -> dict[int, dict]:
    """The steps the interference monitor reads, each with ``injection`` (the step carries an
    injection), ``offset`` (steps since the latest injection; None before the first), ``period``
    (steps from that injection to the next; None before the first) and ``planned_by`` (gap,
    every, or gap+every).

    Readings: every multiple of ``every``; and, for the first injection at or after each multiple
    of ``every``, its step and the ``gap_offsets`` after it. A pure function of the schedule, so a
    resumed run reads the same steps."""
    inj = np.flatnonzero(np.diff(schedule.cumulative(np.arange(steps + 1, dtype=np.int64))) > 0)
    inj = np.append(inj, next_injection(schedule, steps))  # ends the last gap
    grid = np.arange(0, steps, every)
    by: dict[int, str] = {}
    for j in np.unique(np.searchsorted(inj, grid)):
        if j + 1 >= len(inj):
            continue
        start, period = int(inj[j]), int(inj[j + 1] - inj[j])
        for o in gap_offsets(period):
            if start + o < steps:
                by[start + o] = "gap"
    for s in grid:
        by[int(s)] = "gap+every" if int(s) in by else "every"
    plan = {}
    for s in sorted(by):
        k = int(np.searchsorted(inj, s, side="right")) - 1
        offset = s - int(inj[k]) if k >= 0 else None
        plan[s] = {"injection": offset == 0, "offset": offset,
                   "period": int(inj[k + 1] - inj[k]) if k >= 0 else None, "planned_by": by[s]}
    return plan


_STALE = ("stale_reference_step", "stale_cos_batch", "stale_cos_task", "stale_cos_nontask", "neuron_overlap")


def _monitor(model, tasks, state: dict, step: int, cfg: LMTrainConfig, tok_loss, inst) -> dict:
    """One interference reading (SPEC B6) on this step's batch, before its backward pass.

    The batch gradient's task / non-task parts are taken once; when the reference (task neurons,
    g_r) is ``monitor_refresh`` or more steps old it is recomputed at the current weights, and the
    old one is applied to the same parts too (``stale_*``): the error an older g_r would cause."""
    from ..probes._gradients import cosines, part_gradients, reference, task_mask

    gt, go = part_gradients(model, tok_loss, task_mask(inst, tok_loss.shape[1] + 1), retain=True)
    row: dict = {"instances": int((inst >= 0).sum()), **dict.fromkeys(_STALE, float("nan")),
                 "reference_seconds": 0.0}
    if state["at"] is None or step - state["at"] >= cfg.monitor_refresh:
        old = None if state["at"] is None else (state["neurons"], state["g_r"], state["at"])
        t0 = time.perf_counter()
        state["neurons"], state["g_r"] = reference(model, tasks, cfg.monitor_neurons)
        state["at"] = step
        row["reference_seconds"] = time.perf_counter() - t0
        if old is not None:
            c = cosines(gt, go, old[0], old[1])
            row.update(stale_reference_step=old[2], stale_cos_batch=c["cos_batch"], stale_cos_task=c["cos_task"],
                       stale_cos_nontask=c["cos_nontask"],
                       neuron_overlap=len(np.intersect1d(old[0], state["neurons"])) / len(state["neurons"]))
    row.update(cosines(gt, go, state["neurons"], state["g_r"]))
    return {**row, "reference_step": state["at"], "reference_age": step - state["at"]}


def _monitor_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype({"offset": "Int64", "period": "Int64"})


def _monitor_report(out: Path, cfg: LMTrainConfig, plan: dict[int, dict], monitor_seconds: float) -> dict:
    """Checks, staleness, figure and report of the run's whole monitor log (for summary.json)."""
    from ..probes._gradients import monitor_checks, monitor_figure, monitor_staleness
    from ..report.html import Figure, write_report

    log = read_parts(out / "interference")
    if log is None:
        log = pd.DataFrame(columns=["step", "instances", "cos_batch", "cos_task", "cos_nontask"])
    injections = [s for s, p in plan.items() if p["injection"]]
    checks = monitor_checks(log, planned_steps=list(plan), planned_injections=injections)
    fig = monitor_figure(log, out / "figures" / "interference-monitor.png")
    write_report(out / "interference-report.html", f"raretask lm train: interference monitor ({out.name})",
                 "Cosines of the task reference gradient g_r (task neurons of MLP 0, all 10,000 instances) with "
                 "the batch gradient and its task-token / other-token parts (SPEC B6), read at injection "
                 "steps, at offsets after them, and every K steps.",
                 checks, [Figure(fig, "Left: against the steps since the latest injection, median and IQR over "
                                      "the injections read (cos(g_r, g_task) exists only at injection steps). "
                                      "Right: over training.")],
                 {"monitor_interference": cfg.monitor_interference, "monitor_refresh": cfg.monitor_refresh,
                  "monitor_neurons": cfg.monitor_neurons}, {"readings": len(log)})
    inj = log[log["injection"].fillna(False).astype(bool)] if "injection" in log else log.iloc[:0]
    return {"readings": int(len(log)), "planned_readings": len(plan), "injection_readings": int(len(inj)),
            "planned_injection_readings": len(injections),
            "finite_task_cos_at_injections": int(np.isfinite(inj["cos_task"].to_numpy(float)).sum()),
            "refresh": cfg.monitor_refresh,
            "max_reference_age": int(log["reference_age"].max()) if "reference_age" in log and len(log) else None,
            "reference_share_of_monitor_time": float(log["reference_seconds"].sum() / monitor_seconds)
            if "reference_seconds" in log and monitor_seconds > 0 else None,
            "staleness": monitor_staleness(log),
            "checks": [{**asdict(c), "verdict": c.verdict if hasattr(c, "verdict") else
                        {True: "yes", False: "no", None: ""}[c.ok]} for c in checks],
            "figure": str(fig), "report": str(out / "interference-report.html")}


def _config_defaults() -> dict:
    from dataclasses import MISSING

    return {f.name: (f.default if f.default is not MISSING else f.default_factory()
                     if f.default_factory is not MISSING else None) for f in fields(LMTrainConfig)}


_FREE = ("steps", "out", "schedule_steps")  # may differ between calls on one run (steps: with --extend)


def check_run_dir(cfg: LMTrainConfig, out: Path, extend: bool = False, restart: bool = False) -> dict | None:
    """Check ``out`` can hold ``cfg`` before anything is written: a new folder, or this run (the
    same settings; ``--steps`` raised only with ``extend``). Reads only; sets
    ``cfg.schedule_steps`` from the run. Returns the run_config.json record to write, or None
    when the one there stays."""
    from ._runs import train_folder

    train_folder(out).check(restart)
    conf = out / "run_config.json"
    mine = json.loads(json.dumps(cfg.to_dict()))
    fresh = {"config": mine, "raretask_version": __version__, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if restart or not conf.exists():
        if extend and not restart:
            raise ConfigError("extend", f"{out} holds no run to extend", "an existing `lm train` run folder")
        return fresh
    record = read_json(conf, f"the run's run_config.json ({out})")
    old = record.get("config") if isinstance(record, dict) else None
    if not isinstance(old, dict) or "steps" not in old:
        raise RunFolderError(f"the run's run_config.json ({out}) is corrupt (no config); --restart discards the run")
    defaults = json.loads(json.dumps(_config_defaults(), default=list))
    keys = (set(old) | set(mine)) - set(_FREE)
    diff = sorted(k for k in keys if old.get(k, defaults.get(k)) != mine.get(k, defaults.get(k)))
    if diff:
        raise ConfigError("out", f"{out} holds a run with a different configuration ({', '.join(diff)})",
                          "the same settings, another --out, or --restart to discard it")
    planned = int(old["steps"])
    horizon = old.get("schedule_steps")
    if cfg.steps == planned:
        cfg.schedule_steps = horizon
        return None
    if cfg.steps < planned:
        raise ConfigError("steps", f"{cfg.steps} is fewer than the {planned} steps {out} holds a run of "
                                   "(its learning rate decays over them)",
                          f"--steps {planned} to resume or keep it; `lm eval` / `lm probe --checkpoints` read its "
                          "earlier checkpoints; another --out for a shorter run")
    if not extend:
        raise ConfigError("steps", f"{out} holds a run of {planned} steps, whose cosine learning-rate schedule "
                                   f"ends there; --steps {cfg.steps} would change the rates of the steps already "
                                   "trained",
                          f"--steps {planned} to resume it, or --extend to continue it to {cfg.steps} steps at "
                          "its final learning rate")
    cfg.schedule_steps = horizon or planned
    record["config"] = json.loads(json.dumps(cfg.to_dict()))
    record["extended"] = list(record.get("extended", [])) + [
        {"from_steps": planned, "to_steps": cfg.steps, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
    return record


def _diverged(step: int, what: str, last_saved: int | None, cfg: LMTrainConfig) -> RaretaskError:
    kept = (f"checkpoint step-{last_saved:06d} and the logs up to it are kept" if last_saved else
            "no checkpoint had been written")
    return RaretaskError(f"training diverged at step {step}: {what}; {kept}, nothing after it was saved. Lower "
                         f"--lr (now {cfg.lr:g}) or raise --warmup, and start the run again with --restart")


def _finite_weights(model, distributed: bool, dist, torch) -> bool:
    """Every parameter finite, on every rank (one answer for all of them)."""
    ok = torch.tensor([float(all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()))])
    if distributed:
        ok = ok.to(next(model.parameters()).device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)


def train(cfg: LMTrainConfig, progress: bool = True, extend: bool = False, restart: bool = False) -> dict:
    """Train (or resume) ``cfg``; returns the summary on every rank (written to ``out/summary.json`` by rank 0).

    extend: an existing run may grow to ``cfg.steps`` (the cosine ends where it was planned to,
    later steps train at the final learning rate); restart: discard the run in ``cfg.out`` first
    (only its own files). Everything is checked before anything is written."""
    import contextlib

    import torch
    import torch.distributed as dist

    from ._runs import train_folder

    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda, but no CUDA device is available here", "cpu, or auto (cuda when there is one)")
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    if cfg.batch_size % world:
        raise ConfigError("batch_size", f"{cfg.batch_size} is not divisible by {world} ranks",
                          "a multiple of the world size")
    if cfg.monitor_interference and distributed:
        raise ConfigError("monitor_interference", "the interference monitor runs in a single process",
                          "0 under torchrun, or one process")
    out = Path(cfg.out)
    _, tok, tasks, schedule, batches = setup(cfg)
    record = check_run_dir(cfg, out, extend=extend, restart=restart)  # reads only
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = f"cuda:{torch.cuda.current_device()}"

    with contextlib.ExitStack() as stack:
        if rank == 0:
            folder = train_folder(out)
            stack.callback(folder.release)
            folder.open(restart)  # the lock, held until training ends
            if record is not None:
                atomic_json(out / "run_config.json", record)
            for sub in ("checkpoints", "metrics", "data_order", "interference"):
                (out / sub).mkdir(exist_ok=True)
            if not (out / "tasks.jsonl").exists():
                tasks.export(out / "tasks.jsonl")
            if not (out / "tokenizer.json").exists() or (out / "tokenizer.json").read_bytes() != tok.path.read_bytes():
                atomic_write(out / "tokenizer.json", tok.path.read_bytes())
        if distributed:
            dist.barrier()
        return _train(cfg, out, world, rank, device, (tok, tasks, schedule, batches), progress)


def _train(cfg: LMTrainConfig, out: Path, world: int, rank: int, device: str, env, progress: bool) -> dict:
    """The training loop of ``train``, in a folder it has checked and locked."""
    import sys

    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, set_state_dict)

    from ._runs import usable_checkpoint, write_checkpoint

    tok, tasks, schedule, batches = env
    distributed = world > 1
    model = build_model(cfg.preset, tok.vocab_size, cfg.seq_len, tok.eos_id, tok.pad_id, seed=cfg.seed)
    model.to(device)
    hf_config = model.config
    n_params = count_params(model)
    mode = cfg.parallel if cfg.parallel != "auto" else ("fsdp" if cfg.preset in LARGE else "ddp")
    if distributed and mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device != "cpu" else None)
    elif distributed and mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from ._families import blocks

        for layer in blocks(model):
            fully_shard(layer)
        fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)

    def load(ck: Path):
        from safetensors.torch import load_file

        return load_file(ck / "model.safetensors"), torch.load(ck / "optimizer.pt", weights_only=False)

    start, parts, log, last_saved = 0, 0, PartLog(), None
    state, loaded, repairs = usable_checkpoint(out, load)
    if state is not None:
        msd, osd = loaded
        bad = [k for k, v in msd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        ck = out / "checkpoints" / f"step-{int(state['step']):06d}"
        if bad:
            raise RunFolderError(f"checkpoint {ck} holds non-finite weights (NaN or inf in {bad[0]}"
                                 f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the run diverged before "
                                 "it was saved; start it again with --restart and a lower --lr, or delete that "
                                 "checkpoint to resume from the one before")
        set_state_dict(model, opt, model_state_dict=msd, optim_state_dict=osd,
                       options=StateDictOptions(full_state_dict=True))
        start, parts, last_saved = int(state["step"]), int(state["parts"]), int(state["step"])
        log = PartLog(state.get("part_log") or {})
        del loaded, msd, osd
    if repairs:
        repairs.append(f"resumed from step-{start:06d}" if state is not None else
                       "no usable checkpoint: trained again from step 0")
        if rank == 0:
            sys.stderr.write(f"raretask: note: {'; '.join(repairs)}\n")
    if rank == 0:
        for sub in ("metrics", "data_order", "interference"):
            drop_orphan_parts(out / sub, parts)
        for t in {*(out / "checkpoints").glob("*.tmp"), *(out / "checkpoints").glob(".*.tmp"), *out.glob(".*.tmp")}:
            shutil.rmtree(t) if t.is_dir() else t.unlink()  # what a kill during a write left (we hold the lock)

    buf_m: list[dict] = []
    buf_d: list[pd.DataFrame] = []
    buf_i: list[dict] = []
    monitor = {"neurons": None, "g_r": None, "at": None}
    mon_plan = monitor_plan(schedule, cfg.steps, cfg.monitor_interference) if cfg.monitor_interference else {}

    def save(step: int) -> None:
        nonlocal parts, buf_m, buf_d, buf_i, log, last_saved
        if not _finite_weights(model, distributed, dist, torch):
            raise _diverged(step, "the weights are no longer finite", last_saved, cfg)
        msd = get_model_state_dict(model, options=full)
        osd = get_optimizer_state_dict(model, opt, options=full)
        if rank == 0:
            written, before = [], (parts, PartLog(log.entries))
            try:
                if buf_m:
                    frames = {"metrics": pd.DataFrame(buf_m), "data_order": pd.concat(buf_d, ignore_index=True)}
                    if buf_i:
                        frames["interference"] = _monitor_frame(buf_i)
                    for sub, frame in frames.items():
                        path = out / sub / f"part-{parts:06d}.parquet"
                        atomic_parquet(frame, path)
                        written.append(path)
                        log.add(out, path, len(frame))
                    parts += 1
                write_checkpoint(out / "checkpoints" / f"step-{step:06d}", {k: v.contiguous() for k, v in msd.items()},
                                 osd, hf_config, tok.path,
                                 {"step": step, "parts": parts, "tokens": step * cfg.batch_size * cfg.seq_len,
                                  "part_log": log.entries})
            except BaseException:  # leave the folder as the last checkpoint left it
                for path in written:
                    path.unlink(missing_ok=True)
                parts, log = before
                raise
        last_saved = step
        buf_m, buf_d, buf_i = [], [], []
        if distributed:
            dist.barrier()

    bar = None
    if progress and rank == 0 and start < cfg.steps:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]lm train[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        bar.start()
        task_id = bar.add_task("train", total=cfg.steps, completed=start, info="")
    autocast = None
    if cfg.dtype == "bfloat16":  # on the GPU, or the CPU's own bfloat16 autocast: never float32 in silence
        autocast = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
    t_run = time.perf_counter()
    model.train()
    try:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            toks_np, inst, plan = batches.local(step, rank, world)
            t_batch, t_inj = time.perf_counter() - t0, batches.inject_seconds
            toks = torch.as_tensor(toks_np, device=device)
            lr = cfg.lr_at(step)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            if autocast is not None:
                with autocast:
                    logits = model(input_ids=toks).logits
            else:
                logits = model(input_ids=toks).logits
            tok_loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1),
                reduction="none").view(toks.shape[0], -1)
            loss = tok_loss.mean()
            t_mon = 0.0
            if step in mon_plan:
                t_m = time.perf_counter()
                buf_i.append({"step": step, **mon_plan[step],
                              **_monitor(model, tasks, monitor, step, cfg, tok_loss, inst)})
                t_mon = time.perf_counter() - t_m
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            gn, lv = float(gnorm), float(loss.detach())
            bad = torch.tensor([float(not (math.isfinite(gn) and math.isfinite(lv)))], device=device)
            if distributed:
                dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            if bad.item() > 0:  # before the optimiser step: the weights stay those of a finite loss
                raise _diverged(step + 1, f"the loss is {lv} and the gradient norm {gn}", last_saved, cfg)
            opt.step()
            rows = torch.as_tensor(np.flatnonzero(inst >= 0), device=device)
            stats = torch.stack([loss.detach().float(), tok_loss[rows, 1].detach().float().sum(),
                                 torch.tensor(float(len(rows)), device=device)])
            if distributed:
                dist.all_reduce(stats)
                stats[0] /= world
            dt = time.perf_counter() - t0
            if rank == 0:
                n_task = int(stats[2])
                buf_m.append({"step": step + 1, "loss": float(stats[0]),
                              "task_loss": float(stats[1]) / n_task if n_task else float("nan"),
                              "task_instances": n_task, "lr": lr, "grad_norm": gn,
                              "tokens": (step + 1) * cfg.batch_size * cfg.seq_len,
                              "tokens_per_s": cfg.batch_size * cfg.seq_len / dt, "batch_seconds": t_batch,
                              "inject_seconds": t_inj, "monitor_seconds": t_mon, "step_seconds": dt})
                buf_d.append(pd.DataFrame({"step": step, "seq": np.arange(cfg.batch_size),
                                           "window": plan["windows"], "instance": plan["instance"]}))
                if bar is not None:
                    bar.update(task_id, completed=step + 1,
                               info=f"loss {float(stats[0]):.3f}  {cfg.batch_size * cfg.seq_len / dt:,.0f} tok/s")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save(step + 1)
    finally:
        if bar is not None:
            bar.stop()
    summary = None
    if rank == 0:
        summary = _summary(cfg, out, start, world, mode, device, n_params, schedule, tok, mon_plan, repairs, t_run)
    if distributed:
        box = [summary]
        dist.broadcast_object_list(box, src=0)  # every rank returns rank 0's summary
        summary = box[0]
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _summary(cfg, out, start, world, mode, device, n_params, schedule, tok, mon_plan, repairs, t_run) -> dict:
    """The run's summary.json: written when this call trained, kept as it is when the run was
    complete already (returned with ``already_complete``)."""
    path = out / "summary.json"
    if start >= cfg.steps and not repairs and path.exists():
        try:
            old = read_json(path)
        except RunFolderError:
            old = None
        if isinstance(old, dict) and old.get("steps") == cfg.steps:
            return {**old, "already_complete": True}
    m = read_parts(out / "metrics")
    summary = {
        "preset": cfg.preset, "params": n_params, "task": cfg.task, "schedule": schedule.describe(),
        "per_token_frequency": schedule.per_token_frequency(cfg.seq_len), "steps": cfg.steps,
        "tokens": cfg.steps * cfg.batch_size * cfg.seq_len, "world_size": world, "parallel": mode if world > 1
        else "none", "device": device, "final_loss": float(m["loss"].iloc[-1]),
        "injected_instances": int(m["task_instances"].sum()),
        "tokens_per_s_median": float(m["tokens_per_s"].median()),
        "batch_share_of_step_time": float(m["batch_seconds"].sum() / m["step_seconds"].sum()),
        "injection_share_of_step_time": float(m["inject_seconds"].sum() / m["step_seconds"].sum()),
        "monitor_share_of_step_time": float(m["monitor_seconds"].sum() / m["step_seconds"].sum())
        if "monitor_seconds" in m else 0.0,
        "this_call_seconds": time.perf_counter() - t_run, "resumed_from": start,
        "checkpoints": [d.name for d in list_checkpoints(out)], "tokenizer": tok.describe(),
        "raretask_version": __version__, "repairs": repairs,
    }
    if cfg.schedule_steps is not None:
        summary["schedule_steps"] = cfg.schedule_steps
    if cfg.monitor_interference:
        summary["monitor"] = _monitor_report(out, cfg, mon_plan, float(m["monitor_seconds"].sum()))
    atomic_write(path, json.dumps(summary, indent=2, default=str))
    return summary
