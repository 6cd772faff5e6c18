"""What runs around ``lm train``'s step: callbacks (after OLMo-core's ``train/callbacks``).

The loop in ``_train.py`` takes steps; everything else is a ``Callback``: the progress bar,
the metric and data-order logs, checkpointing, TensorBoard, and, from ``raretask.probes``, the
interference monitor (``InterferenceMonitor``, passed in by the CLI so that ``lm`` does not
import ``probes``). Every hook is optional; they are called in list order, on every rank
(``trainer.rank`` says which) except ``pending`` and ``summary`` (rank 0, which writes), and
see the ``Trainer`` (config, model, optimiser, run data, resume state) by name. A callback is
made for one ``train`` call; ``pre_train`` starts it afresh.

Time spent in the ``pre_backward`` hooks is the metrics column ``monitor_seconds`` (the
interference monitor's cost, plus that of any other ``pre_backward`` hook).

Hooks, in the order of a run::

    pre_train(trainer)                      model built, optimiser made, checkpoint restored
    pre_backward(trainer, step, batch)      after the forward pass of 0-based ``step``
    post_step(trainer, step, row, plan)     after the optimiser step; ``step`` counts the steps
                                            done (1-based), ``row`` the metrics row, ``plan`` the
                                            batch's corpus windows and injected instances
    pending() -> {log: DataFrame}           rows logged since the last checkpoint: the
                                            ``Checkpointer`` writes them as one part per log,
                                            recorded in the checkpoint (logs and weights move
                                            together)
    post_checkpoint(trainer, step)          those rows are on disk: drop them
    summary(trainer, summary)               add entries to a newly written summary.json
    close(trainer)                          always, after the last step or an error

A callback that implements a config field names it in ``implements`` (the monitor:
``monitor_interference``); ``train`` refuses a config that sets such a field when no callback
implements it, instead of silently doing without.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import ConfigError, RaretaskError
from ..runfolder import PartLog, atomic_parquet, record

if TYPE_CHECKING:
    from ._config import LMTrainConfig, TrainEnv


class Batch(NamedTuple):
    """One step's batch as the loss sees it (this rank's share)."""

    tokens: Any
    """torch int64 [B_local, T]: the token ids."""
    instances: np.ndarray
    """int [B_local]: the injected instance of each sequence, -1 for none."""
    token_loss: Any
    """torch float [B_local, T-1]: next-token cross-entropy, before the backward pass."""


@dataclass
class Trainer:
    """What the callbacks see: the run's settings, its model and optimiser, and where it stands."""

    cfg: "LMTrainConfig"
    out: Path
    """The run folder (locked by rank 0 while training)."""
    env: "TrainEnv"
    """Corpus, tokenizer, task set, injection schedule and batches (``setup(cfg)``)."""
    world: int
    rank: int
    device: str
    model: Any
    """The model as trained (DDP- or FSDP-wrapped under torchrun)."""
    optimizer: Any
    hf_config: Any
    """The Hugging Face config written into every checkpoint."""
    n_params: int
    parallel: str
    """ddp or fsdp (what ``--parallel auto`` chose; used only under torchrun)."""
    callbacks: list = field(default_factory=list)
    start: int = 0
    """The step this call resumed from (0 for a new run)."""
    parts: int = 0
    """Log parts written (each checkpoint adds one per log)."""
    part_log: PartLog = field(default_factory=PartLog)
    """The parts' checksums, saved inside each checkpoint."""
    last_saved: int | None = None
    """Step of the newest checkpoint on disk (None: none yet)."""
    repairs: list = field(default_factory=list)
    """What resuming cleaned up (for summary.json)."""

    @property
    def distributed(self) -> bool:
        return self.world > 1


class Callback:
    """A hook set around ``lm train``'s step; override what you need (see the module docstring)."""

    implements: str | None = None
    """The LMTrainConfig field this callback carries out, if any."""
    logs: tuple[str, ...] = ()
    """The run subfolders its ``pending`` frames go to (created by ``train``; on resume, parts
    written after the checkpoint are dropped there, as for the built-in logs)."""

    def pre_train(self, trainer: Trainer) -> None:
        pass

    def pre_backward(self, trainer: Trainer, step: int, batch: Batch) -> None:
        pass

    def post_step(self, trainer: Trainer, step: int, row: dict, plan: dict) -> None:
        pass

    def pending(self) -> dict[str, pd.DataFrame]:
        return {}

    def post_checkpoint(self, trainer: Trainer, step: int) -> None:
        pass

    def summary(self, trainer: Trainer, summary: dict) -> None:
        pass

    def close(self, trainer: Trainer) -> None:
        pass


class MetricsLog(Callback):
    """metrics/ (one row per step) and data_order/ (one row per step and sequence), rank 0."""

    logs = ("metrics", "data_order")

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.order: list[pd.DataFrame] = []

    def post_step(self, trainer: Trainer, step: int, row: dict, plan: dict) -> None:
        if trainer.rank == 0:
            self.rows.append(row)
            self.order.append(pd.DataFrame({"step": step - 1, "seq": np.arange(trainer.cfg.batch_size),
                                            "window": plan["windows"], "instance": plan["instance"]}))

    def pending(self) -> dict[str, pd.DataFrame]:
        if not self.rows:
            return {}
        return {"metrics": pd.DataFrame(self.rows), "data_order": pd.concat(self.order, ignore_index=True)}

    def post_checkpoint(self, trainer: Trainer, step: int) -> None:
        self.rows, self.order = [], []


class ProgressBar(Callback):
    """A rich progress bar on rank 0: steps, loss, tokens/s, time left."""

    def __init__(self) -> None:
        self.bar, self.task = None, None

    def pre_train(self, trainer: Trainer) -> None:
        if trainer.rank != 0 or trainer.start >= trainer.cfg.steps:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]lm train[/bold]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            transient=False)
        self.bar.start()
        self.task = self.bar.add_task("train", total=trainer.cfg.steps, completed=trainer.start, info="")

    def post_step(self, trainer: Trainer, step: int, row: dict, plan: dict) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step,
                            info=f"loss {row['loss']:.3f}  {row['tokens_per_s']:,.0f} tok/s")

    def close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Checkpointer(Callback):
    """Every ``checkpoint_every`` steps and at the last: the callbacks' pending log rows as one
    part per log, then the checkpoint that records them (``_runs.write_checkpoint``: written
    completely, then renamed into place). Refuses to save non-finite weights. Runs last."""

    def post_step(self, trainer: Trainer, step: int, row: dict, plan: dict) -> None:
        if step % trainer.cfg.checkpoint_every == 0 or step == trainer.cfg.steps:
            self.save(trainer, step)

    def save(self, trainer: Trainer, step: int) -> None:
        import torch.distributed as dist
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        from ._runs import write_checkpoint

        t = trainer
        if not finite_weights(t.model, t.distributed):
            raise diverged(step, "the weights are no longer finite", t.last_saved, t.cfg)
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(t.model, options=full)
        osd = get_optimizer_state_dict(t.model, t.optimizer, options=full)
        if t.rank == 0:
            frames = {name: df for cb in t.callbacks for name, df in cb.pending().items()}  # logs are distinct
            written, before = [], (t.parts, PartLog(t.part_log.entries))
            try:
                if frames:
                    unknown = sorted(set(frames) - {log for cb in t.callbacks for log in cb.logs})
                    if unknown:
                        raise RaretaskError(f"a callback logged to {unknown[0]}/, which no callback declares in its "
                                            "`logs`")
                    for sub, frame in frames.items():
                        path = t.out / sub / f"part-{t.parts:06d}.parquet"
                        atomic_parquet(frame, path)
                        written.append(path)
                        t.part_log.add(t.out, path, len(frame))
                    t.parts += 1
                write_checkpoint(t.out / "checkpoints" / f"step-{step:06d}", {k: v.contiguous() for k, v in msd.items()},
                                 osd, t.hf_config, t.env.tokenizer.path,
                                 {"step": step, "parts": t.parts, "tokens": step * t.cfg.batch_size * t.cfg.seq_len,
                                  "part_log": t.part_log.entries})
            except BaseException:  # leave the folder as the last checkpoint left it
                if not _committed(t.out / "checkpoints" / f"step-{step:06d}", t.parts):
                    for path in written:
                        path.unlink(missing_ok=True)
                    t.parts, t.part_log = before
                raise
        t.last_saved = step
        for cb in t.callbacks:
            cb.post_checkpoint(t, step)
        if t.distributed:
            dist.barrier()


def _committed(ck: Path, parts: int) -> bool:
    """Whether checkpoint ``ck`` is in place with this save's part count: an interrupt that
    arrives after its rename (while the per-file record or ``latest`` is written) must not
    delete the log parts the new checkpoint names."""
    try:
        return json.loads((ck / "trainer_state.json").read_text()).get("parts") == parts
    except (OSError, ValueError, AttributeError):
        return False


class TensorBoard(Callback):
    """Training curves for TensorBoard (``pip install 'raretask[tensorboard]'``): loss,
    injected-task loss, learning rate, gradient norm and tokens/s per step, on rank 0, in
    ``log_dir`` (default: the run's ``tensorboard/``). A resumed run purges the events after the
    checkpoint it resumed from (a run trained again from step 0: all of them), so every step
    shows once."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard writes through it)
        except ImportError:
            raise ConfigError("tensorboard", "needs the tensorboard package",
                              "pip install 'raretask[tensorboard]'") from None
        self.log_dir, self.writer = log_dir, None

    def pre_train(self, trainer: Trainer) -> None:
        if trainer.rank != 0 or trainer.start >= trainer.cfg.steps:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir or trainer.out / "tensorboard"), purge_step=trainer.start + 1)

    def post_step(self, trainer: Trainer, step: int, row: dict, plan: dict) -> None:
        if self.writer is None:
            return
        for key in ("loss", "task_loss", "lr", "grad_norm", "tokens_per_s"):
            if math.isfinite(row[key]):
                self.writer.add_scalar(f"train/{key}", row[key], step)

    def post_checkpoint(self, trainer: Trainer, step: int) -> None:
        if self.writer is not None:
            self.writer.flush()
            record(self.writer.log_dir)  # its event files are raretask's (--restart removes them)

    def close(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            record(self.writer.log_dir)
            self.writer = None


def diverged(step: int, what: str, last_saved: int | None, cfg: "LMTrainConfig") -> RaretaskError:
    kept = (f"checkpoint step-{last_saved:06d} and the logs up to it are kept" if last_saved else
            "no checkpoint had been written")
    return RaretaskError(f"training diverged at step {step}: {what}; {kept}, nothing after it was saved. Lower "
                         f"--lr (now {cfg.lr:g}) or raise --warmup, and start the run again with --restart")


def finite_weights(model, distributed: bool) -> bool:
    """Every parameter finite, on every rank (one answer for all of them)."""
    import torch
    import torch.distributed as dist

    ok = torch.tensor([float(all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()))])
    if distributed:
        ok = ok.to(next(model.parameters()).device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)
