"""Many runs of one shape in one process (issue 31): ``train_pack(cfgs)``.

Runs of one model preset, batch and sequence length (different rates, seeds, schedules,
learning rates, clipping, step counts) are trained together: each weight matrix of the OLMo-1
block is stacked along a leading "run" dimension and every product is one batched matrix
product (``torch.bmm``) over the pack, so the small rungs of the ladder pay the per-operation
overhead of one model per step instead of one per run, and the large ones multiply larger
matrices. Nothing couples the runs:

- the loss is the sum of the runs' own mean losses, and no parameter is shared, so each run's
  gradient is its own loss's gradient;
- gradient-norm clipping is per run (``clip_grad_norm_``'s formula over that run's slice);
- AdamW is per run: its own step count, learning rate (``lr_at`` of its own config), betas,
  epsilon and weight decay (``torch.optim.AdamW``'s update, written over the stacked slices);
- data: each run draws its own batch from its own ``StepBatches`` (seed, injection schedule);
- logs, checkpoints, resume and ``summary.json`` are each run's own, written by the same
  callbacks (``MetricsLog``, ``Checkpointer``) into an ordinary ``lm train`` run folder: a
  checkpoint is the run's slice copied into a Hugging Face ``OlmoForCausalLM`` and a
  ``torch.optim.AdamW`` of its settings, so it loads alone and ``lm train`` resumes it alone,
  and ``train_pack`` resumes what ``lm train`` wrote.

A run trained in a pack gives the losses of the same run trained alone to float32 rounding
(other kernels sum in another order); a pack resumed after a kill gives bit for bit the
losses of the uninterrupted pack (tests/test_lm_packed.py). Runs may resume from different
steps and end at different steps: a run leaves the pack when it is done.

Packed: OLMo-family presets, float32, one process, no callbacks of the caller's (the
interference monitor reads one model's gradient parts: such runs train alone, ``lm sweep``
sees to it). ``pack_memory`` estimates a pack's memory before anything is built, and a pack
that would not fit is refused.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .._memory import available_memory, keep_freed_memory
from ..errors import ConfigError, RaretaskError
from ._config import LMTrainConfig
from .callbacks import Callback

_LN_EPS = 1e-5  # OlmoLayerNorm's


PACK_BELOW_GFLOP = 2.0
"""``lm sweep`` packs a shape by default only when one run's training step costs less than this
many GFLOP (``_models.step_flops``; the ladder: w24 0.45, w48 1.13, w96 3.17,
w192 9.97). Measured on the 2-core machines (the cpu-scaling grid of 2026-12-08, two worker
processes of one thread, glibc's default allocator settings both ways): a w24 run-step took
29-33 ms in packs against 40-43 ms alone, w48 52 against 60-64, but w96 108-111 against 97-98
and w192 280 against 225-227. Above it each product is large enough to run near the matmul peak alone, and a
pack's K-fold activations cost more in memory traffic than it saves. ``--pack N`` packs every
shape."""


def pack_key(cfg: LMTrainConfig) -> tuple:
    """What runs of one pack share: the model shape, the batch shape and the corpus."""
    return (cfg.preset, cfg.batch_size, cfg.seq_len, str(Path(cfg.corpus).resolve()), cfg.device)


def packable(cfg: LMTrainConfig, callbacks: Sequence = ()) -> str | None:
    """None when ``cfg`` can train in a pack, else why not (one phrase)."""
    from ._models import preset

    if preset(cfg.preset).family != "olmo":
        return f"its preset {cfg.preset} is of the {preset(cfg.preset).family} family (packs are OLMo blocks)"
    if cfg.dtype != "float32":
        return f"dtype {cfg.dtype} (packs train in float32)"
    if cfg.compile:
        return "compile is set (a pack is not compiled)"
    if cfg.device == "cuda" or (cfg.device == "auto" and _cuda()):
        return "it trains on the GPU (packs train on the CPU)"
    if cfg.monitor_interference or list(callbacks):
        return "it has training callbacks (the interference monitor reads one model's gradient)"
    return None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pack_memory(preset_name: str, vocab: int, batch_size: int, seq_len: int, runs: int) -> int:
    """Bytes a pack of ``runs`` needs, estimated before anything is built: per run, the stacked
    weights, gradients and AdamW moments, the HF model and optimiser a checkpoint is copied
    into (28 bytes a parameter), and the activations autograd keeps for one step (float32)."""
    from ._models import model_config, non_embedding_params

    hf = model_config(preset_name, vocab, seq_len)
    h, inter, layers, heads, V = (hf.hidden_size, hf.intermediate_size, hf.num_hidden_layers,
                                  hf.num_attention_heads, hf.vocab_size)
    params = non_embedding_params(preset_name) + 2 * V * h
    tokens = batch_size * seq_len
    acts = layers * (tokens * (16 * h + 5 * inter) + batch_size * heads * seq_len * seq_len) + 3 * tokens * V
    return int(runs * (28 * params + 4 * acts))


def check_pack(cfgs: Sequence[LMTrainConfig], vocab: int | None = None) -> None:
    """Refuse, with one line, a pack that cannot train together: no runs, two runs in one
    folder, runs of different shapes, a run that cannot be packed, or a pack whose estimated
    memory exceeds 80% of what is available now."""
    cfgs = list(cfgs)
    if not cfgs:
        raise ConfigError("pack", "no runs", "one or more LMTrainConfig of one shape")
    outs = [str(Path(c.out).resolve()) for c in cfgs]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise ConfigError("pack", f"two runs write to {dup}", "one folder per run")
    keys = {pack_key(c) for c in cfgs}
    if len(keys) > 1:
        shapes = sorted({f"{k[0]} batch {k[1]} x {k[2]} tokens" + ("" if len({q[3] for q in keys}) == 1 else
                                                                   f" on {k[3]}") for k in keys})
        raise ConfigError("pack", f"runs of different shapes ({'; '.join(shapes)})",
                          "runs of one preset, batch_size, seq_len, corpus and device (lm sweep groups them)")
    for c in cfgs:
        why = packable(c)
        if why:
            raise ConfigError("pack", f"{Path(c.out).name} cannot be packed: {why}", "train it alone (lm train)")
    if vocab is not None:
        per = pack_memory(cfgs[0].preset, vocab, cfgs[0].batch_size, cfgs[0].seq_len, 1)
        need, have = len(cfgs) * per, available_memory()
        if need > 0.8 * have:
            raise ConfigError("pack", f"{len(cfgs)} {cfgs[0].preset} runs need about {need / 2**30:.1f} GiB, and "
                                      f"{have / 2**30:.1f} GiB are available",
                              f"--pack {max(1, int(0.8 * have // per))} or fewer runs per pack")


def linear_cross_entropy(x, w, target):
    """Per-token cross-entropy of the logits ``x @ w^T`` against ``target``, each run its own:
    x [K, N, h], w [K, V, h], target [K, N] -> [K, N]. ``F.cross_entropy`` on the logits gives the
    same; this keeps one logits buffer and turns it into the gradient in place (softmax minus the
    one-hot, scaled), where autograd would fill a one-hot and run log-softmax's backward over
    three buffers of that size: the largest tensors of a small model's step (V = 2048 against a
    width of 24)."""
    return _linear_ce_class().apply(x, w, target)


@functools.cache
def _linear_ce_class():
    """The autograd Function, made at first use (torch is imported lazily)."""
    import torch

    class LinearCE(torch.autograd.Function):
        """Row blocks of about 2 MiB of logits at a time, so that the passes over a block (log-sum-
        exp, the loss, the softmax kept in place of the logits; one-hot, scale and both products
        in the backward) run in cache: over the whole [K, N, V] tensor each pass streamed it
        through memory (a w24 step spent more time in exp than in its products)."""

        @staticmethod
        def forward(ctx, x, w, target):
            K, N, _ = x.shape
            V = w.shape[1]
            rows = max(1, (1 << 19) // V)
            logits = x.new_empty(K, N, V)
            loss = x.new_empty(K, N)
            for k in range(K):
                for r in range(0, N, rows):
                    blk, t = logits[k, r:r + rows], target[k, r:r + rows, None]
                    torch.mm(x[k, r:r + rows], w[k].t(), out=blk)
                    picked = blk.gather(1, t)
                    top = blk.amax(1, keepdim=True)
                    total = blk.sub_(top).exp_().sum(1, keepdim=True)
                    blk.div_(total)  # the softmax, kept for the backward pass
                    torch.sub(total.log_().add_(top), picked, out=loss[k, r:r + rows, None])
            ctx.save_for_backward(x, w, target)
            ctx.logits, ctx.rows = logits, rows
            return loss

        @staticmethod
        def backward(ctx, grad):
            x, w, target = ctx.saved_tensors
            g, rows = ctx.logits, ctx.rows  # the softmax; becomes the logits' gradient in place (backward runs once)
            ctx.logits = None
            K, N, _ = x.shape
            gx, gw = torch.empty_like(x), torch.zeros_like(w)
            for k in range(K):
                for r in range(0, N, rows):
                    blk = g[k, r:r + rows]  # softmax - one-hot, times the loss's gradient
                    blk.scatter_add_(1, target[k, r:r + rows, None], blk.new_full((blk.shape[0], 1), -1.0))
                    blk.mul_(grad[k, r:r + rows, None])
                    torch.mm(blk, w[k], out=gx[k, r:r + rows])
                    gw[k].addmm_(blk.t(), x[k, r:r + rows])
            return gx, gw, None

    return LinearCE


class PackedOlmo:
    """The weights of K OLMo-1 models of one shape, stacked (leading dimension: the run), with the
    forward pass of ``OlmoForCausalLM`` as batched products and AdamW over the stack.

    Layout (each a leaf tensor [K, ...], HF's [out, in] orientation): ``embed`` [K, V, h]; per
    block ``qkv`` [K, 3h, h] (q, k, v rows), ``o`` [K, h, h], ``gate_up`` [K, 2I, h] (gate, up
    rows), ``down`` [K, h, I]; ``head`` [K, V, h]."""

    def __init__(self, models: list, optimizers: list) -> None:
        import torch

        m0 = models[0]
        c = m0.config
        self.h, self.heads, self.inter, self.V = c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size
        self.layers, self.clip_qkv = c.num_hidden_layers, c.clip_qkv
        self.rotary = m0.model.rotary_emb  # HF's own cos / sin (rope_theta, head_dim from the config)
        self.names = self._names(c.num_hidden_layers)
        self.params = [torch.empty(len(models), *self._gather(m0, names).shape).requires_grad_()
                       for names in self.names]  # filled by load
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = np.zeros(len(models), np.int64)
        for k, (m, opt) in enumerate(zip(models, optimizers)):
            self.load(k, m, opt)

    @staticmethod
    def _names(layers: int) -> list[tuple[str, ...]]:
        """Per stacked tensor, the HF parameters it concatenates (rows), in order."""
        out = [("model.embed_tokens.weight",)]
        for i in range(layers):
            a, m = f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp"
            out += [(f"{a}.q_proj.weight", f"{a}.k_proj.weight", f"{a}.v_proj.weight"), (f"{a}.o_proj.weight",),
                    (f"{m}.gate_proj.weight", f"{m}.up_proj.weight"), (f"{m}.down_proj.weight",)]
        return out + [("lm_head.weight",)]

    @staticmethod
    def _gather(model, names: tuple[str, ...]):
        import torch

        p = dict(model.named_parameters())
        return torch.cat([p[n].detach() for n in names], 0)

    def check_model(self, model) -> None:
        """The HF model has exactly the parameters the stack holds (an OLMo-1 block and nothing else)."""
        want = {n for names in self.names for n in names}
        have = {n for n, _ in model.named_parameters()}
        if want != have:
            extra = sorted(have - want) or sorted(want - have)
            raise RaretaskError(f"a pack holds OLMo-1 blocks; this model's parameters differ ({extra[0]})")

    # ------------------------------------------------------------------ to and from one run
    def load(self, k: int, model, optimizer) -> None:
        """Run ``k``'s slice from an HF model and its ``torch.optim.AdamW`` (fresh: zero moments, step 0)."""
        import torch

        self.check_model(model)
        p = dict(model.named_parameters())
        with torch.no_grad():
            for i, names in enumerate(self.names):
                self.params[i][k].copy_(self._gather(model, names))
                st = [optimizer.state.get(p[n], {}) for n in names]
                for buf, key in ((self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
                    buf[i][k].copy_(torch.cat([s[key] if key in s else torch.zeros_like(p[n])
                                               for s, n in zip(st, names)], 0))
            steps = {float(s["step"]) for names in self.names for n in names
                     for s in [optimizer.state.get(p[n], {})] if "step" in s}
        if len(steps) > 1:
            raise RaretaskError(f"the optimiser state holds different step counts ({sorted(steps)})")
        self.steps[k] = int(steps.pop()) if steps else 0

    def export(self, k: int, model, optimizer, lr: float) -> None:
        """Run ``k``'s slice into an HF model and its AdamW (state as ``torch.optim.AdamW`` keeps it;
        the group's lr that of the last step), for a checkpoint."""
        import torch

        p = dict(model.named_parameters())
        with torch.no_grad():
            for i, names in enumerate(self.names):
                rows = [p[n].shape[0] for n in names]
                for n, w, m, v in zip(names, self.params[i][k].split(rows, 0), self.exp_avg[i][k].split(rows, 0),
                                      self.exp_avg_sq[i][k].split(rows, 0)):
                    p[n].copy_(w)
                    optimizer.state[p[n]] = {"step": torch.tensor(float(self.steps[k]), dtype=torch.float32),
                                             "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
        for g in optimizer.param_groups:
            g["lr"] = lr

    def keep(self, idx: list[int]) -> None:
        """Only the runs ``idx`` stay in the pack (the others are done)."""
        import torch

        ix = torch.as_tensor(idx, dtype=torch.long)
        self.params = [p.detach()[ix].clone().requires_grad_() for p in self.params]
        self.exp_avg = [m[ix].clone() for m in self.exp_avg]
        self.exp_avg_sq = [v[ix].clone() for v in self.exp_avg_sq]
        self.steps = self.steps[idx]

    # ------------------------------------------------------------------ one step
    def token_loss(self, tokens):
        """Next-token cross-entropy of every run on its own batch: tokens [K, B, T] -> [K, B, T-1]."""
        import torch
        import torch.nn.functional as F

        K, B, T = tokens.shape
        h, H, inter, V = self.h, self.heads, self.inter, self.V
        d = h // H
        it = iter(self.params)
        embed = next(it)
        offsets = torch.arange(K, dtype=tokens.dtype).view(K, 1, 1) * V
        x = F.embedding(tokens + offsets, embed.reshape(K * V, h)).view(K, B * T, h)
        cos, sin = self.rotary(x, torch.arange(T).unsqueeze(0))  # [1, T, d]
        cos, sin = cos.view(1, 1, T, d), sin.view(1, 1, T, d)

        def heads(t):  # [K, B*T, h] -> [K*B, H, T, d]
            return t.reshape(K * B, T, H, d).transpose(1, 2)

        def rope(t):
            return t * cos + torch.cat((-t[..., d // 2:], t[..., : d // 2]), -1) * sin

        for _ in range(self.layers):
            qkv_w, o_w, gu_w, down_w = next(it), next(it), next(it), next(it)
            qkv = torch.bmm(F.layer_norm(x, (h,), eps=_LN_EPS), qkv_w.transpose(1, 2))
            if self.clip_qkv is not None:
                qkv = qkv.clamp(-self.clip_qkv, self.clip_qkv)
            q, k, v = qkv.split(h, -1)
            att = F.scaled_dot_product_attention(rope(heads(q)), rope(heads(k)), heads(v), is_causal=True)
            x = x + torch.bmm(att.transpose(1, 2).reshape(K, B * T, h), o_w.transpose(1, 2))
            gate, up = torch.bmm(F.layer_norm(x, (h,), eps=_LN_EPS), gu_w.transpose(1, 2)).split(inter, -1)
            x = x + torch.bmm(F.silu(gate) * up, down_w.transpose(1, 2))
        head = next(it)
        # the last position predicts nothing the loss reads: its logits are not computed
        x = F.layer_norm(x, (h,), eps=_LN_EPS).view(K, B, T, h)[:, :, :-1].reshape(K, B * (T - 1), h)
        return linear_cross_entropy(x, head, tokens[:, :, 1:].reshape(K, -1)).view(K, B, T - 1)

    def clip(self, max_norms):
        """Per run: the gradient norm over that run's slice, and the gradient scaled as
        ``clip_grad_norm_`` scales it (max_norm / (norm + 1e-6), at most 1). Returns the norms [K]."""
        import torch

        sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in self.params)
        norms = sq.sqrt()
        coef = (torch.as_tensor(max_norms, dtype=norms.dtype) / (norms + 1e-6)).clamp(max=1.0)
        for p in self.params:
            p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))))
        return norms

    def adamw(self, lrs, betas, eps, weight_decay) -> None:
        """``torch.optim.AdamW``'s update, each run with its own step, lr, betas, eps and weight decay."""
        import torch

        self.steps += 1
        K = len(self.steps)
        f64 = np.float64
        lr = np.asarray(lrs, f64)
        b1, b2 = np.asarray([b[0] for b in betas], f64), np.asarray([b[1] for b in betas], f64)
        bc1, bc2_sqrt = 1 - b1 ** self.steps, np.sqrt(1 - b2 ** self.steps)

        def vec(a, dim):
            return torch.as_tensor(np.asarray(a, f64), dtype=torch.float32).view(K, *([1] * (dim - 1)))

        with torch.no_grad():
            for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
                g, n = p.grad, p.dim()
                p.mul_(vec(1 - lr * np.asarray(weight_decay, f64), n))
                m.lerp_(g, vec(1 - b1, n))
                v.mul_(vec(b2, n)).addcmul_(g, g * vec(1 - b2, n))
                denom = (v.sqrt() / vec(bc2_sqrt, n)).add_(vec(eps, n))
                p.sub_(m / denom * vec(lr / bc1, n))


class PackInfo(Callback):
    """Records in summary.json that the run trained in a pack, and with which runs."""

    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    def summary(self, trainer, summary: dict) -> None:
        summary["pack"] = {"size": len(self.runs), "runs": self.runs}


def train_pack(cfgs: Sequence[LMTrainConfig], progress: bool = True, restart: bool = False) -> list[dict]:
    """Train (or resume) ``cfgs``, runs of one shape, together in this process; returns each
    run's summary (written to its ``summary.json``), in order. Each run folder is checked as
    ``lm train`` checks it, and the pack as ``check_pack`` does, before anything is written."""
    import torch

    from ._train import _resume, check_logs, check_run_dir, open_run, setup
    from ._models import build_model, count_params
    from .callbacks import Checkpointer, MetricsLog, Trainer

    cfgs = [copy.copy(c) for c in cfgs]
    check_pack(cfgs)
    records = [check_run_dir(c, Path(c.out), restart=restart) for c in cfgs]  # reads only
    envs = [setup(c) for c in cfgs]
    tok = envs[0].tokenizer
    check_pack(cfgs, vocab=tok.vocab_size)
    for c in cfgs:
        if c.warmup >= c.steps:
            import warnings

            from ..errors import RaretaskWarning

            warnings.warn(f"{Path(c.out).name}: the warm-up ({c.warmup} steps) covers the whole run ({c.steps} "
                          "steps)", RaretaskWarning, stacklevel=2)
    names = [Path(c.out).name for c in cfgs]
    keep_freed_memory()
    with contextlib.ExitStack() as stack:
        trainers = []
        for c, rec, env in zip(cfgs, records, envs):
            cbs = [MetricsLog(), PackInfo(names), Checkpointer()]
            check_logs(cbs)
            open_run(stack, Path(c.out), rec, env, cbs, restart)
            model = build_model(c.preset, tok.vocab_size, c.seq_len, tok.eos_id, tok.pad_id, seed=c.seed)
            opt = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=c.betas, eps=c.eps,
                                    weight_decay=c.weight_decay)
            t = Trainer(cfg=c, out=Path(c.out), env=env, world=1, rank=0, device="cpu", model=model, optimizer=opt,
                        hf_config=model.config, n_params=count_params(model), parallel="none", callbacks=cbs)
            _resume(t)
            trainers.append(t)
        return _train_pack(trainers, progress)


def _train_pack(trainers: list, progress: bool) -> list[dict]:
    """The loop: one batched step for every run not yet done, then each run's own callbacks."""
    import torch

    from .._progress import progress_bar
    from ._train import _summary
    from .callbacks import diverged

    pack = PackedOlmo([t.model for t in trainers], [t.optimizer for t in trainers])
    active = [k for k, t in enumerate(trainers) if t.start < t.cfg.steps]
    pack.keep(active)
    step = {k: trainers[k].start for k in active}
    t_run = time.perf_counter()
    total = sum(t.cfg.steps - t.start for t in trainers)
    label = f"lm pack [{trainers[0].cfg.preset} x{len(trainers)}]"
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with progress_bar(progress and total > 0, TextColumn(f"[bold]{label}[/bold]"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} run-steps"), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        job = bar.add_task("pack", total=total, info="")
        try:
            for t in trainers:
                for cb in t.callbacks:
                    cb.pre_train(t)
            while active:
                t0 = time.perf_counter()
                batches, t_batch = [], []
                for k in active:
                    tb = time.perf_counter()
                    batches.append(trainers[k].env.batches.local(step[k]))
                    t_batch.append((time.perf_counter() - tb, trainers[k].env.batches.inject_seconds))
                toks = torch.as_tensor(np.stack([b[0] for b in batches]))
                cfgs = [trainers[k].cfg for k in active]
                lrs = [c.lr_at(step[k]) for c, k in zip(cfgs, active)]
                for p in pack.params:
                    p.grad = None
                tok_loss = pack.token_loss(toks)
                losses = tok_loss.mean((1, 2))
                losses.sum().backward()
                norms = pack.clip([c.clip for c in cfgs])
                gn, lv = norms.tolist(), losses.detach().tolist()
                for j, k in enumerate(active):  # before the optimiser step: the weights stay those of a finite loss
                    if not (math.isfinite(gn[j]) and math.isfinite(lv[j])):
                        raise diverged(step[k] + 1, f"{Path(cfgs[j].out).name}: the loss is {lv[j]} and the "
                                                    f"gradient norm {gn[j]}", trainers[k].last_saved, cfgs[j])
                pack.adamw(lrs, [c.betas for c in cfgs], [c.eps for c in cfgs], [c.weight_decay for c in cfgs])
                dt = time.perf_counter() - t0
                done = []
                for j, k in enumerate(active):
                    t, c, (_, inst, plan) = trainers[k], cfgs[j], batches[j]
                    rows = np.flatnonzero(inst >= 0)
                    task = float(tok_loss[j, rows, 1].detach().sum()) / len(rows) if len(rows) else float("nan")
                    step[k] += 1
                    row = {"step": step[k], "loss": lv[j], "task_loss": task, "task_instances": int(len(rows)),
                           "lr": lrs[j], "grad_norm": gn[j], "tokens": step[k] * c.batch_size * c.seq_len,
                           "tokens_per_s": c.batch_size * c.seq_len / dt, "batch_seconds": t_batch[j][0],
                           "inject_seconds": t_batch[j][1], "monitor_seconds": 0.0, "step_seconds": dt,
                           "pack_size": len(active)}
                    if step[k] % c.checkpoint_every == 0 or step[k] == c.steps:  # the Checkpointer saves now
                        pack.export(j, t.model, t.optimizer, lrs[j])
                    for cb in t.callbacks:
                        cb.post_step(t, step[k], row, plan)
                    if step[k] >= c.steps:
                        done.append(j)
                bar.update(job, advance=len(active),
                           info=f"{len(active)} runs, {len(active) * toks[0].numel() / dt:,.0f} tok/s")
                if done:
                    stay = [j for j in range(len(active)) if j not in done]
                    pack.keep(stay)
                    active = [active[j] for j in stay]
        finally:
            for t in trainers:
                for cb in t.callbacks:
                    cb.close(t)
    return [_summary(t, t_run) for t in trainers]
