"""The plain per-sample trainer, exactly as SPEC A2 describes it (PyTorch autograd + AdamW).

This is the ground truth: the engine is tested against it on identical batches and
benchmarked against it. It is deliberately simple and slow; do not optimise it.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..mixture import MixtureSpec
from ._config import TrainConfig
from ._init import init_params
from ._sampling import TaskSampler, default_sampler


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError("reference", "the reference trainer needs PyTorch",
                          "pip install 'raretask[reference]'") from e
    return torch


class ReferenceTrainer:
    """One width-N student trained sample by sample.

    Args:
        spec: the mixture; cfg: optimiser settings; width: N;
        params: optional initial (E (N, D), Dec (K, d, N)); default ``init_params``.
        conflict_removal: optional task (1-based) to protect: the other tasks' encoder
            gradient is projected off that task's latest encoder gradient when their inner
            product is negative (PCGrad-style, one-sided). None: plain training.
    """

    def __init__(self, spec: MixtureSpec, cfg: TrainConfig, width: int, params=None,
                 conflict_removal: int | None = None):
        torch = _torch()
        self.spec, self.cfg, self.width = spec, cfg, spec.check_width(width)
        E, Dec = params if params is not None else init_params(spec, width, cfg.seed)
        self.E = torch.nn.Parameter(torch.tensor(np.asarray(E, np.float32)))
        self.Dec = torch.nn.Parameter(torch.tensor(np.asarray(Dec, np.float32)))
        self.W = torch.tensor(np.stack([spec.teacher(k) for k in range(spec.K)]).astype(np.float32))
        self.opt = torch.optim.AdamW([self.E, self.Dec], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.step_count = 0
        self.protect = None if conflict_removal is None else int(conflict_removal) - 1  # 0-based row
        self.memory = torch.zeros_like(self.E) if conflict_removal is not None else None

    def sample_losses(self, x, t, noise=None):
        """Squared error summed over outputs, per sample: (B,). x (B, D), t (B,) 0-based."""
        torch = _torch()
        x = torch.as_tensor(np.asarray(x, np.float32))
        t = torch.as_tensor(np.asarray(t, np.int64))
        h = x @ self.E.T  # (B, N)
        pred = torch.einsum("bdn,bn->bd", self.Dec[t], h)
        y = torch.einsum("bdD,bD->bd", self.W[t], x)
        if noise is not None:
            y = y + self.spec.noise * torch.as_tensor(np.asarray(noise, np.float32))
        return ((pred - y) ** 2).sum(1)

    def loss(self, x, t, noise=None):
        """Batch mean of the squared error summed over outputs. x (B, D), t (B,) 0-based."""
        return self.sample_losses(x, t, noise).mean()

    def _backward(self, x, t, noise=None) -> None:
        torch = _torch()
        self.opt.zero_grad(set_to_none=True)
        if self.protect is None:
            self.loss(x, t, noise).backward()
            return
        per = self.sample_losses(x, t, noise)
        rare = torch.as_tensor(np.asarray(t) == self.protect)
        loss_r = (per * rare).sum() / len(per)
        loss_c = (per * ~rare).sum() / len(per)
        g_r, = torch.autograd.grad(loss_r, self.E, retain_graph=True)
        g_c, = torch.autograd.grad(loss_c, self.E, retain_graph=True)
        if bool(rare.any()):
            self.memory = g_r.detach().clone()
        dot, nn = (g_c * self.memory).sum(), (self.memory * self.memory).sum()
        if dot < 0 and nn > 0:
            g_c = g_c - dot / nn * self.memory
        (loss_r + loss_c).backward()
        self.E.grad = (g_c + g_r).detach()

    def gradients(self, x, t, noise=None) -> tuple[np.ndarray, np.ndarray]:
        """Unclipped gradients (dL/dE (N, D), dL/dDec (K, d, N)) on one batch (without
        conflict removal: that needs the memory of earlier steps)."""
        self.opt.zero_grad(set_to_none=True)
        self.loss(x, t, noise).backward()
        return self.E.grad.numpy().copy(), self.Dec.grad.numpy().copy()

    def step(self, x, t, noise=None) -> None:
        """One optimiser step on the batch (x (B, D), t (B,)), with the SPEC A2 schedule."""
        torch = _torch()
        for g in self.opt.param_groups:
            g["lr"] = float(self.cfg.lr_at(self.step_count))
        self._backward(x, t, noise)
        if np.isfinite(self.cfg.clip):
            torch.nn.utils.clip_grad_norm_([self.E, self.Dec], self.cfg.clip)
        self.opt.step()
        self.step_count += 1

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.E.detach().numpy().copy(), self.Dec.detach().numpy().copy()

    def train(self, steps: int, sampler: TaskSampler | None = None, seed: int | None = None) -> None:
        """Train on freshly sampled batches (tasks from ``sampler``, x ~ N(0, I) from torch)."""
        torch = _torch()
        sampler = sampler or default_sampler(self.spec, self.cfg.batch_size, self.cfg.seed)
        gen = torch.Generator().manual_seed(int(self.cfg.seed if seed is None else seed))
        first = self.step_count
        counts = sampler.counts(np.arange(first, first + steps))
        for c in counts:
            t = np.repeat(np.arange(self.spec.K), c)
            x = torch.randn(len(t), self.spec.D, generator=gen)
            noise = torch.randn(len(t), self.spec.d, generator=gen) if self.spec.noise > 0 else None
            self.step(x.numpy(), t, None if noise is None else noise.numpy())
