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
    tensorboard/               with --tensorboard: the TensorBoard callback's event files
    <log>/part-*.parquet       a callback's own log (``Callback.logs``), written with the checkpoints
    summary.json
The loop is short; what runs around each step is a callback (``lm.callbacks``).
The folder is a ``RunFolder`` of kind "lm-train" (marker, a lock held while training, atomic
writes; ``--restart`` deletes only the files above). Re-running the same command resumes from
the newest usable checkpoint (its files load and match their checksums, its log parts are
intact; a damaged newer one falls back to the one before); log parts written after it are
discarded, so the logs show every step exactly once. A checkpoint is written completely before
it replaces anything, and never with non-finite weights: a diverging loss stops the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..errors import ConfigError, RaretaskWarning
from ..runfolder import PartLog, RunFolderError, atomic_json, atomic_write, drop_orphan_parts, read_json, read_parts
from ._corpus import Corpus, check_same_corpus, corpus_digest
from ._data import StepBatches
from ._injection import InjectionSchedule
from ._models import LARGE, build_model, count_params
from ._config import LMTrainConfig, TrainEnv
from ._tasks import build_tasks, ordinary_tokens
from .callbacks import Batch, Callback, Checkpointer, MetricsLog, ProgressBar, Trainer, diverged


def setup(cfg: LMTrainConfig) -> TrainEnv:
    """Tokenizer, task set, injection schedule and batches of a config (no model); checks that
    the corpus is there."""
    cfg.check_corpus()
    corpus = Corpus(cfg.corpus)
    tok = corpus.tokenizer
    tasks = build_tasks(cfg.task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id, cfg.task_seed)
    schedule = InjectionSchedule(global_batch=cfg.batch_size, n_train=len(tasks.train), seed=cfg.seed,
                                 rate=cfg.rate, n=cfg.n if cfg.every else None, every=cfg.every)
    return TrainEnv(corpus, tok, tasks, schedule, StepBatches(corpus, tasks, schedule, cfg.seq_len, cfg.seed))


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run (renamed into place, with their trainer_state.json), by step."""
    from ._runs import step_dirs

    return [d for d in step_dirs(Path(out)) if (d / "trainer_state.json").exists()]


def _config_defaults() -> dict:
    from dataclasses import MISSING

    return {f.name: (f.default if f.default is not MISSING else f.default_factory()
                     if f.default_factory is not MISSING else None) for f in fields(LMTrainConfig)}


_FREE = ("steps", "out", "schedule_steps", "compile")  # may differ between calls on one run (steps: with --extend)


def check_run_dir(cfg: LMTrainConfig, out: Path, extend: bool = False, restart: bool = False,
                  sweep: bool = False) -> dict | None:
    """Check ``out`` can hold ``cfg`` before anything is written: a new folder, or this run (the
    same settings; ``--steps`` raised only with ``extend``). Reads only; sets
    ``cfg.schedule_steps`` from the run. Returns the run_config.json record to write, or None
    when the one there stays. ``sweep``: the run is one of ``lm sweep``'s (which has no
    ``--extend``), for the wording of a refusal."""
    from ._runs import train_folder

    train_folder(out).check(restart)
    conf = out / "run_config.json"
    mine = json.loads(json.dumps(cfg.to_dict()))
    fresh = {"config": mine, "raretask_version": __version__, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if restart or not conf.exists():
        if extend and not restart:
            raise ConfigError("extend", f"{out} holds no run to extend", "an existing `lm train` run folder")
        if Path(cfg.corpus, "meta.json").is_file():
            fresh["corpus_digest"] = corpus_digest(cfg.corpus)  # the run's corpus, checked by every later reader
        return fresh
    record = read_json(conf, f"the run's run_config.json ({out})")
    old = record.get("config") if isinstance(record, dict) else None
    if not isinstance(old, dict) or "steps" not in old:
        raise RunFolderError(f"the run's run_config.json ({out}) is corrupt (no config); --restart discards the run")
    if Path(cfg.corpus, "meta.json").is_file():
        check_same_corpus(record.get("corpus_digest"), cfg.corpus, out)
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
                          (f"--set train.steps={planned} to resume the sweep, or another --out for a sweep of "
                           f"{cfg.steps} steps (`lm train --out {out} --extend` continues one run)") if sweep else
                          (f"--steps {planned} to resume it, or --extend to continue it to {cfg.steps} steps at "
                           "its final learning rate"))
    cfg.schedule_steps = horizon or planned
    record["config"] = json.loads(json.dumps(cfg.to_dict()))
    record["extended"] = list(record.get("extended", [])) + [
        {"from_steps": planned, "to_steps": cfg.steps, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
    return record


def require_callbacks(cfg: LMTrainConfig, callbacks: Sequence[Callback]) -> None:
    """A config field only a callback carries out (``Callback.implements``) is refused when none
    of ``callbacks`` does, rather than silently not done (train and lm sweep both ask)."""
    if cfg.monitor_interference and "monitor_interference" not in {cb.implements for cb in callbacks}:
        raise ConfigError("monitor_interference", f"{cfg.monitor_interference}, but no callback carries it out",
                          "callbacks=[raretask.probes.InterferenceMonitor()] (lm train and lm sweep pass it), or 0")


def train(cfg: LMTrainConfig, progress: bool = True, extend: bool = False, restart: bool = False,
          callbacks: Sequence[Callback] = ()) -> dict:
    """Train (or resume) ``cfg``; returns the summary on every rank (written to ``out/summary.json`` by rank 0).

    extend: an existing run may grow to ``cfg.steps`` (the cosine ends where it was planned to,
    later steps train at the final learning rate); restart: discard the run in ``cfg.out`` first
    (only its own files); callbacks: run around each step (``lm.callbacks``) after the metric
    log and the progress bar, before the checkpointer. Everything is checked before anything is
    written."""
    import torch
    import torch.distributed as dist

    callbacks = list(callbacks)
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
    require_callbacks(cfg, callbacks)
    out = Path(cfg.out)
    record = check_run_dir(cfg, out, extend=extend, restart=restart)  # reads only; the corpus's identity first
    env = setup(cfg)
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        device = f"cuda:{torch.cuda.current_device()}"
    cbs = [MetricsLog(), *([ProgressBar()] if progress else []), *callbacks, Checkpointer()]
    check_logs(cbs)
    if rank == 0 and cfg.warmup >= cfg.steps:
        warnings.warn(f"the warm-up ({cfg.warmup} steps) covers the whole run ({cfg.steps} steps): the learning "
                      f"rate never reaches lr {cfg.lr:g} and the cosine never starts (set --warmup below --steps)",
                      RaretaskWarning, stacklevel=2)

    with contextlib.ExitStack() as stack:
        if rank == 0:
            open_run(stack, out, record, env, cbs, restart)
        if distributed:
            dist.barrier()
        return _train(cfg, out, world, rank, device, env, cbs)


def open_run(stack: contextlib.ExitStack, out: Path, record: dict | None, env: TrainEnv, callbacks: list[Callback],
             restart: bool) -> None:
    """Open a checked run folder for training (rank 0; ``lm train`` and a pack, ``lm._packed``):
    its lock, held until ``stack`` closes; run_config.json when ``record`` is new; the log
    folders; the task set and the tokenizer."""
    from ._runs import train_folder

    folder = train_folder(out, tuple(log for cb in callbacks for log in cb.logs))
    stack.callback(folder.release)
    folder.open(restart)  # the lock, held until training ends
    if record is not None:
        atomic_json(out / "run_config.json", record)
    for sub in {*LOGS, *(log for cb in callbacks for log in cb.logs)}:
        (out / sub).mkdir(exist_ok=True)
    if not (out / "tasks.jsonl").exists():
        env.tasks.export(out / "tasks.jsonl")
    tok = env.tokenizer
    if not (out / "tokenizer.json").exists() or (out / "tokenizer.json").read_bytes() != tok.path.read_bytes():
        atomic_write(out / "tokenizer.json", tok.path.read_bytes())


LOGS = ("checkpoints", "metrics", "data_order", "interference")
"""The run folder's subfolders: checkpoints and the logs whose parts they record."""
_RESERVED = {"checkpoints", "figures", "eval", "probes", "tensorboard", "scaling", "report", "cache"}


def check_logs(callbacks: list[Callback]) -> None:
    """Each callback log is a plain folder name of its own (not one of the run's other folders)."""
    import re

    seen: dict[str, str] = {}
    for cb in callbacks:
        for log in cb.logs:
            who = type(cb).__name__
            if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", log) or log in _RESERVED:
                raise ConfigError("callbacks", f"{who} logs to {log!r}",
                                  "a lower-case folder name, not one of " + ", ".join(sorted(_RESERVED)))
            if log in seen:
                raise ConfigError("callbacks", f"{who} and {seen[log]} both log to {log!r}", "one log each")
            seen[log] = who


def _train(cfg: LMTrainConfig, out: Path, world: int, rank: int, device: str, env: TrainEnv,
           callbacks: list[Callback]) -> dict:
    """The training loop of ``train``, in a folder it has checked and locked."""
    import torch
    import torch.distributed as dist

    from .._memory import keep_freed_memory

    keep_freed_memory()
    t = _build(cfg, out, world, rank, device, env, callbacks)
    _resume(t)
    autocast = contextlib.nullcontext()
    if cfg.dtype == "bfloat16":  # on the GPU, or the CPU's own bfloat16 autocast: never float32 in silence
        autocast = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
    t_run = time.perf_counter()
    t.model.train()
    try:
        for cb in callbacks:
            cb.pre_train(t)
        for step in range(t.start, cfg.steps):
            t0 = time.perf_counter()
            toks_np, inst, plan = env.batches.local(step, rank, world)
            t_batch, t_inj = time.perf_counter() - t0, env.batches.inject_seconds
            toks = torch.as_tensor(toks_np, device=device)
            lr = cfg.lr_at(step)
            for g in t.optimizer.param_groups:
                g["lr"] = lr
            t.optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = t.model(input_ids=toks).logits
            tok_loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1),
                reduction="none").view(toks.shape[0], -1)
            loss = tok_loss.mean()
            t_mon = time.perf_counter()  # the interference monitor reads the gradient parts here
            for cb in callbacks:
                cb.pre_backward(t, step, Batch(toks, inst, tok_loss))
            t_mon = time.perf_counter() - t_mon
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.clip)
            gn, lv = float(gnorm), float(loss.detach())
            bad = torch.tensor([float(not (math.isfinite(gn) and math.isfinite(lv)))], device=device)
            if t.distributed:
                dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            if bad.item() > 0:  # before the optimiser step: the weights stay those of a finite loss
                raise diverged(step + 1, f"the loss is {lv} and the gradient norm {gn}", t.last_saved, cfg)
            t.optimizer.step()
            # the mean loss over the global batch, and the injected task's loss at its label token
            rows = torch.as_tensor(np.flatnonzero(inst >= 0), device=device)
            stats = torch.stack([loss.detach().float(), tok_loss[rows, 1].detach().float().sum(),
                                 torch.tensor(float(len(rows)), device=device)])
            if t.distributed:
                dist.all_reduce(stats)
                stats[0] /= world
            dt = time.perf_counter() - t0
            n_task = int(stats[2])
            row = {"step": step + 1, "loss": float(stats[0]),
                   "task_loss": float(stats[1]) / n_task if n_task else float("nan"),
                   "task_instances": n_task, "lr": lr, "grad_norm": gn,
                   "tokens": (step + 1) * cfg.batch_size * cfg.seq_len,
                   "tokens_per_s": cfg.batch_size * cfg.seq_len / dt, "batch_seconds": t_batch,
                   "inject_seconds": t_inj, "monitor_seconds": t_mon, "step_seconds": dt}
            for cb in callbacks:  # the metric log first, the checkpointer last
                cb.post_step(t, step + 1, row, plan)
    finally:
        for cb in callbacks:
            cb.close(t)
    summary = _summary(t, t_run) if rank == 0 else None
    if t.distributed:
        box = [summary]
        dist.broadcast_object_list(box, src=0)  # every rank returns rank 0's summary
        summary = box[0]
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _build(cfg: LMTrainConfig, out: Path, world: int, rank: int, device: str, env: TrainEnv,
           callbacks: list[Callback]) -> Trainer:
    """The model (seeded by ``cfg.seed``), wrapped in DDP or FSDP2 under torchrun, and AdamW."""
    import torch

    tok = env.tokenizer
    model = build_model(cfg.preset, tok.vocab_size, cfg.seq_len, tok.eos_id, tok.pad_id, seed=cfg.seed)
    model.to(device)
    hf_config, n_params = model.config, count_params(model)
    if cfg.compile:  # in place: the state dict keeps its names (no _orig_mod. prefix)
        model.compile()
    mode = cfg.parallel if cfg.parallel != "auto" else ("fsdp" if cfg.preset in LARGE else "ddp")
    if world > 1 and mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device != "cpu" else None)
    elif world > 1 and mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from ._families import blocks

        for layer in blocks(model):
            fully_shard(layer)
        fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    return Trainer(cfg=cfg, out=out, env=env, world=world, rank=rank, device=device, model=model, optimizer=opt,
                   hf_config=hf_config, n_params=n_params, parallel=mode, callbacks=callbacks)


def _resume(t: Trainer) -> None:
    """Restore the newest usable checkpoint into ``t`` (weights, optimiser, step, log parts), and
    clear what a kill during a write left: log parts after it, temporaries (we hold the lock)."""
    import sys

    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    from ._runs import usable_checkpoint

    def load(ck: Path):
        from safetensors.torch import load_file

        return load_file(ck / "model.safetensors"), torch.load(ck / "optimizer.pt", weights_only=False)

    out = t.out
    state, loaded, t.repairs = usable_checkpoint(out, load)
    if state is not None:
        msd, osd = loaded
        bad = [k for k, v in msd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        ck = out / "checkpoints" / f"step-{int(state['step']):06d}"
        if bad:
            raise RunFolderError(f"checkpoint {ck} holds non-finite weights (NaN or inf in {bad[0]}"
                                 f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the run diverged before "
                                 "it was saved; start it again with --restart and a lower --lr, or delete that "
                                 "checkpoint to resume from the one before")
        set_state_dict(t.model, t.optimizer, model_state_dict=msd, optim_state_dict=osd,
                       options=StateDictOptions(full_state_dict=True))
        t.start, t.parts, t.last_saved = int(state["step"]), int(state["parts"]), int(state["step"])
        t.part_log = PartLog(state.get("part_log") or {})
        del loaded, msd, osd
    if t.repairs:
        t.repairs.append(f"resumed from step-{t.start:06d}" if state is not None else
                         "no usable checkpoint: trained again from step 0")
        if t.rank == 0:
            sys.stderr.write(f"raretask: note: {'; '.join(t.repairs)}\n")
    if t.rank == 0:
        for sub in {*LOGS[1:], *(log for cb in t.callbacks for log in cb.logs)}:
            drop_orphan_parts(out / sub, t.parts)
        for tmp in {*(out / "checkpoints").glob("*.tmp"), *(out / "checkpoints").glob(".*.tmp"), *out.glob(".*.tmp")}:
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def _summary(t: Trainer, t_run: float) -> dict:
    """The run's summary.json: written when this call trained (with the callbacks' entries),
    kept as it is when the run was complete already (returned with ``already_complete``)."""
    cfg, out = t.cfg, t.out
    path = out / "summary.json"
    if t.start >= cfg.steps and not t.repairs and path.exists():
        try:
            old = read_json(path)
        except RunFolderError:
            old = None
        if isinstance(old, dict) and old.get("steps") == cfg.steps:
            return {**old, "already_complete": True}
    m = read_parts(out / "metrics")
    schedule = t.env.schedule
    summary = {
        "preset": cfg.preset, "params": t.n_params, "task": cfg.task, "schedule": schedule.describe(),
        "per_token_frequency": schedule.per_token_frequency(cfg.seq_len), "steps": cfg.steps,
        "tokens": cfg.steps * cfg.batch_size * cfg.seq_len, "world_size": t.world, "parallel": t.parallel
        if t.world > 1 else "none", "device": t.device, "final_loss": float(m["loss"].iloc[-1]),
        "injected_instances": int(m["task_instances"].sum()),
        "tokens_per_s_median": float(m["tokens_per_s"].median()),
        "batch_share_of_step_time": float(m["batch_seconds"].sum() / m["step_seconds"].sum()),
        "injection_share_of_step_time": float(m["inject_seconds"].sum() / m["step_seconds"].sum()),
        "monitor_share_of_step_time": float(m["monitor_seconds"].sum() / m["step_seconds"].sum())
        if "monitor_seconds" in m else 0.0,
        "this_call_seconds": time.perf_counter() - t_run, "resumed_from": t.start,
        "checkpoints": [d.name for d in list_checkpoints(out)], "tokenizer": t.env.tokenizer.describe(),
        "raretask_version": __version__, "repairs": t.repairs,
        "callbacks": [type(cb).__name__ for cb in t.callbacks if not isinstance(cb, ProgressBar)],
    }
    if cfg.schedule_steps is not None:
        summary["schedule_steps"] = cfg.schedule_steps
    for cb in t.callbacks:
        cb.summary(t, summary)
    atomic_write(path, json.dumps(summary, indent=2, default=str))
    return summary
