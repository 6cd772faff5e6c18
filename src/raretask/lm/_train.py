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
                               trainer_state.json;  checkpoints/latest names the newest
    metrics/part-*.parquet     per step: loss, injected-task loss, lr, grad norm, tokens/s
    data_order/part-*.parquet  per step and sequence: corpus window and injected instance
    interference/part-*.parquet  with --monitor-interference: one row per reading (SPEC B6
                               cosines, injection / offset / period, the g_r used), with
                               figures/interference-monitor.png and interference-report.html
    summary.json
Re-running the same command resumes from the latest checkpoint; log parts written after it
are discarded, so the logs show every step exactly once.
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
from ..errors import ConfigError
from ..sim._runner import atomic_parquet, drop_orphan_parts, read_parts
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
    """Optimiser steps (may be raised when resuming)."""
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
    """float32, or bfloat16 autocast (GPU)."""
    device: str = "auto"
    """cpu, cuda, or auto."""
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
        if self.seq_len < 4:
            raise ConfigError("seq_len", f"{self.seq_len}", ">= 4 (an instance is 4 tokens)")
        for name in ("steps", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(name, f"{v!r}", "integer >= 1")
        if not (self.lr > 0 and 0 <= self.final_lr_ratio <= 1 and self.warmup >= 0 and self.clip > 0):
            raise ConfigError("lr", f"lr={self.lr} final={self.final_lr_ratio} warmup={self.warmup} clip={self.clip}",
                              "lr > 0, 0 <= final_lr_ratio <= 1, warmup >= 0, clip > 0")
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
        self.betas = tuple(self.betas)
        if not Path(self.corpus, "meta.json").exists():
            raise ConfigError("corpus", f"{self.corpus} is not a corpus (no meta.json)",
                              "a directory made by `raretask lm corpus build`")

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr``, then cosine to ``final_lr_ratio * lr`` at ``steps``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
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


def setup(cfg: LMTrainConfig):
    """Tokenizer, task set, injection schedule and batches of a config (no model)."""
    corpus = Corpus(cfg.corpus)
    tok = corpus.tokenizer
    tasks = build_tasks(cfg.task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id, cfg.task_seed)
    schedule = InjectionSchedule(global_batch=cfg.batch_size, n_train=len(tasks.train), seed=cfg.seed,
                                 rate=cfg.rate, n=cfg.n if cfg.every else None, every=cfg.every)
    return corpus, tok, tasks, schedule, StepBatches(corpus, tasks, schedule, cfg.seq_len, cfg.seed)


def latest_checkpoint(out: Path) -> Path | None:
    p = out / "checkpoints" / "latest"
    if not p.exists():
        return None
    d = out / "checkpoints" / p.read_text().strip()
    return d if (d / "trainer_state.json").exists() else None


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run, by step."""
    ck = Path(out) / "checkpoints"
    return sorted((d for d in ck.glob("step-*") if d.is_dir() and not d.name.endswith(".tmp")
                   and (d / "trainer_state.json").exists()), key=lambda d: int(d.name.split("-")[1]))


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


def _check_run_dir(cfg: LMTrainConfig, out: Path, world: int) -> None:
    conf = out / "run_config.json"
    mine = cfg.to_dict()
    if conf.exists():
        old = json.loads(conf.read_text())["config"]
        a = {k: v for k, v in old.items() if k not in ("steps", "out")}
        b = {k: v for k, v in mine.items() if k not in ("steps", "out")}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError("out", f"{out} holds a run with a different configuration ({', '.join(diff)})",
                              "the same settings (steps may grow), or another --out")
        if mine["steps"] != old["steps"]:
            record = json.loads(conf.read_text())
            record["config"]["steps"] = mine["steps"]
            conf.write_text(json.dumps(record, indent=2))
        return
    conf.write_text(json.dumps({"config": mine, "raretask_version": __version__, "world_size": world,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))


def train(cfg: LMTrainConfig, progress: bool = True) -> dict:
    """Train (or resume) ``cfg``; returns the summary (also ``out/summary.json`` on rank 0)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, set_state_dict)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if cfg.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = cfg.device
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = f"cuda:{torch.cuda.current_device()}"
    if cfg.batch_size % world:
        raise ConfigError("batch_size", f"{cfg.batch_size} is not divisible by {world} ranks",
                          "a multiple of the world size")
    if cfg.monitor_interference and distributed:
        raise ConfigError("monitor_interference", "the interference monitor runs in a single process",
                          "0 under torchrun, or one process")
    out = Path(cfg.out)
    corpus, tok, tasks, schedule, batches = setup(cfg)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _check_run_dir(cfg, out, world)
        for sub in ("checkpoints", "metrics", "data_order", "interference"):
            (out / sub).mkdir(exist_ok=True)
        if not (out / "tasks.jsonl").exists():
            tasks.export(out / "tasks.jsonl")
        shutil.copyfile(tok.path, out / "tokenizer.json")
    if distributed:
        dist.barrier()

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

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)

    start, parts = 0, 0
    ck = latest_checkpoint(out)
    if ck is not None:
        from safetensors.torch import load_file

        state = json.loads((ck / "trainer_state.json").read_text())
        set_state_dict(model, opt, model_state_dict=load_file(ck / "model.safetensors"),
                       optim_state_dict=torch.load(ck / "optimizer.pt", weights_only=False),
                       options=StateDictOptions(full_state_dict=True))
        start, parts = int(state["step"]), int(state["parts"])
    if rank == 0:
        for sub in ("metrics", "data_order", "interference"):
            drop_orphan_parts(out / sub, parts)

    buf_m: list[dict] = []
    buf_d: list[pd.DataFrame] = []
    buf_i: list[dict] = []
    monitor = {"neurons": None, "g_r": None, "at": None}
    mon_plan = monitor_plan(schedule, cfg.steps, cfg.monitor_interference) if cfg.monitor_interference else {}

    def save(step: int) -> None:
        nonlocal parts, buf_m, buf_d, buf_i
        from safetensors.torch import save_file

        msd = get_model_state_dict(model, options=full)
        osd = get_optimizer_state_dict(model, opt, options=full)
        if rank == 0:
            if buf_m:
                atomic_parquet(pd.DataFrame(buf_m), out / "metrics" / f"part-{parts:06d}.parquet")
                atomic_parquet(pd.concat(buf_d, ignore_index=True), out / "data_order" / f"part-{parts:06d}.parquet")
                if buf_i:
                    atomic_parquet(_monitor_frame(buf_i), out / "interference" / f"part-{parts:06d}.parquet")
                parts += 1
            d = out / "checkpoints" / f"step-{step:06d}"
            tmp = d.with_name(d.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            save_file({k: v.contiguous() for k, v in msd.items()}, tmp / "model.safetensors")
            hf_config.save_pretrained(tmp)
            shutil.copyfile(tok.path, tmp / "tokenizer.json")
            torch.save(osd, tmp / "optimizer.pt")
            (tmp / "trainer_state.json").write_text(json.dumps({
                "step": step, "parts": parts, "tokens": step * cfg.batch_size * cfg.seq_len}))
            shutil.rmtree(d, ignore_errors=True)
            os.replace(tmp, d)
            lt = out / "checkpoints" / "latest.tmp"
            lt.write_text(d.name)
            os.replace(lt, out / "checkpoints" / "latest")
        buf_m, buf_d, buf_i = [], [], []
        if distributed:
            dist.barrier()

    bar = None
    if progress and rank == 0:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]lm train[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        bar.start()
        task_id = bar.add_task("train", total=cfg.steps, completed=start, info="")
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else None
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
                              "task_instances": n_task, "lr": lr, "grad_norm": float(gnorm),
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
        m = read_parts(out / "metrics")
        summary = {
            "preset": cfg.preset, "params": n_params, "task": cfg.task, "schedule": schedule.describe(),
            "per_token_frequency": schedule.per_token_frequency(cfg.seq_len), "steps": cfg.steps,
            "tokens": cfg.steps * cfg.batch_size * cfg.seq_len, "world_size": world, "parallel": mode if distributed
            else "none", "device": device, "final_loss": float(m["loss"].iloc[-1]),
            "injected_instances": int(m["task_instances"].sum()),
            "tokens_per_s_median": float(m["tokens_per_s"].median()),
            "batch_share_of_step_time": float(m["batch_seconds"].sum() / m["step_seconds"].sum()),
            "injection_share_of_step_time": float(m["inject_seconds"].sum() / m["step_seconds"].sum()),
            "monitor_share_of_step_time": float(m["monitor_seconds"].sum() / m["step_seconds"].sum())
            if "monitor_seconds" in m else 0.0,
            "this_call_seconds": time.perf_counter() - t_run, "resumed_from": start,
            "checkpoints": [d.name for d in list_checkpoints(out)], "tokenizer": tok.describe(),
            "raretask_version": __version__,
        }
        if cfg.monitor_interference:
            summary["monitor"] = _monitor_report(out, cfg, mon_plan, float(m["monitor_seconds"].sum()))
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary
