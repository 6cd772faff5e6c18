"""The batch a training step saw (``raretask lm batch RUN --step N``).

Rebuilt from the run's own records, not recomputed from a seed alone: the data-order log
(``RUN/data_order/part-*.parquet``: per 0-based step and sequence, the corpus window and the
injected instance) names the windows; the corpus the run recorded (checked by its digest)
gives their tokens; the run's task set gives each injected instance's 4 tokens, written over
the first 4 tokens of its sequence as training writes them (``_data.StepBatches.local``).

Steps are counted as the metrics and checkpoint names count them: step N is the N-th update
(1-based), the batch the data-order log records as step N - 1. The batch is also recomputed
from the run's seeds (``StepBatches``), and the two are compared: a log that disagrees with the
seeded order is said, never hidden. ``sha256`` is the digest of the (B, L) int64 token array in
C order, the same bytes a test or a user can hash from the batch training consumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, RaretaskError


@dataclass(frozen=True)
class StepBatch:
    """One step's global batch as training consumed it."""

    run: str
    step: int
    """The update it trained (1-based)."""
    tokens: np.ndarray
    """(B, L) int64: every sequence, injected instances written over their first 4 tokens."""
    windows: np.ndarray
    """(B,) int64: the corpus window of each sequence (an injected copy: OLMo-core's dataset index)."""
    instances: np.ndarray
    """(B,) int64: the injected instance of each sequence (index into the run's task set), -1 none."""
    split: tuple
    """Per sequence: "train" or "" (injected instances are drawn from the task's train split)."""
    seeded_order_agrees: bool | None
    """The logged windows and instances equal the ones recomputed from the run's seeds (for an
    injected copy: its recorded order equals OLMo-core's, recomputed; None: not checked)."""
    kind: str = "run"
    """"run" (``lm train``) or "inject" (an injected copy for OLMo-core, ``lm inject``)."""

    @property
    def sha256(self) -> str:
        return batch_digest(self.tokens)


def batch_digest(tokens) -> str:
    """sha256 of a (B, L) token array as C-ordered int64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(tokens, np.int64)).tobytes()).hexdigest()


def step_batch(run: str | Path, step: int) -> StepBatch:
    """The global batch of update ``step`` (1-based) of a training run (see the module docstring)."""
    from ..runfolder import read_parts
    from ._runs import training_run
    from ._train import setup

    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ConfigError("step", f"{step!r}", "an update number >= 1 (as in metrics and checkpoint names)")
    run = Path(run)
    _, cfg = training_run(run)  # the run's config, its corpus checked by digest
    log = read_parts(run / "data_order")
    if log is None:
        raise RaretaskError(f"{run} has no data-order log (data_order/part-*.parquet): no step of it is on disk yet")
    rows = log[log["step"] == step - 1].sort_values("seq")
    if rows.empty:
        done = int(log["step"].max()) + 1
        raise ConfigError("step", f"{step}", f"1..{done} (the steps of {run.name} whose data order is on disk)")
    env = setup(cfg)
    windows = rows["window"].to_numpy(np.int64)
    inst = rows["instance"].to_numpy(np.int64)
    if len(windows) != cfg.batch_size or not np.array_equal(rows["seq"].to_numpy(), np.arange(cfg.batch_size)):
        raise RaretaskError(f"the data-order log of {run} holds {len(windows)} sequences for step {step}, "
                            f"the run's batch is {cfg.batch_size}: the log is damaged")
    tokens = env.corpus.windows(windows, cfg.seq_len).astype(np.int64)
    hit = np.flatnonzero(inst >= 0)
    if len(hit):
        if inst.max() >= len(env.tasks.instances):
            raise RaretaskError(f"the data-order log of {run} names instance {int(inst.max())}, the task set has "
                                f"{len(env.tasks.instances)}: the log is damaged")
        tokens[hit, :4] = env.tasks.instances[inst[hit]]
    _, _, plan = env.batches.local(step - 1)
    agrees = bool(np.array_equal(plan["windows"], windows) and np.array_equal(plan["instance"], inst))
    train = set(np.asarray(env.tasks.train).tolist())
    split = tuple("train" if i in train else ("" if i < 0 else "other") for i in inst.tolist())
    return StepBatch(str(run), int(step), tokens, windows, inst, split, agrees)


def batch_record(b: StepBatch, decode=None) -> dict:
    """``b`` as plain JSON values; ``decode(ids) -> str`` adds each sequence's text."""
    rows = []
    for i in range(len(b.windows)):
        r = {"seq": i, "window": int(b.windows[i]), "instance": int(b.instances[i]) if b.instances[i] >= 0 else None,
             "split": b.split[i] or None, "tokens": b.tokens[i].tolist()}
        if decode is not None:
            r["text"] = decode(b.tokens[i].tolist())
        rows.append(r)
    return {"run": b.run, "step": b.step, "sequences": len(b.windows), "seq_len": int(b.tokens.shape[1]),
            "injected": int((b.instances >= 0).sum()), "sha256": b.sha256, "kind": b.kind,
            "seeded_order_agrees": b.seeded_order_agrees, "rows": rows}


def batch_text(rec: dict, width: int = 100) -> str:
    """The batch as ``lm batch`` prints it: a header, then one line per sequence."""
    inject = rec.get("kind") == "inject"
    verdicts = ({True: "order.npy agrees with the order OLMo-core's loader computes now from the recorded settings",
                 None: "order.npy was not recomputed (ai2-olmo-core is not installed)",
                 False: "WARNING: order.npy differs from the order OLMo-core's loader computes now (shown: order.npy)"}
                if inject else
                {True: "the data-order log agrees with the order recomputed from the run's seeds",
                 False: "WARNING: the data-order log differs from the order recomputed from the run's seeds "
                        "(shown: the log, which is what training recorded)"})
    lines = [f"step {rec['step']} of {rec['run']}: {rec['sequences']} sequences x {rec['seq_len']} tokens, "
             f"{rec['injected']} injected; sha256 {rec['sha256']}", verdicts[rec["seeded_order_agrees"]]]
    label = "index" if inject else "window"  # OLMo-core's dataset index, or the corpus window
    for r in rec["rows"]:
        mark = f"injected #{r['instance']:<6}" if r["instance"] is not None else " " * 16
        body = (repr(r["text"]) if "text" in r else " ".join(map(str, r["tokens"])))
        body = body if len(body) <= width else body[:width - 3] + "..."
        lines.append(f"  {r['seq']:>4}  {label} {r['window']:>9}  {mark}  {body}")
    return "\n".join(lines)
