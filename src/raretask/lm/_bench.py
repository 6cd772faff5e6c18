"""``raretask bench injection``: what injecting costs per training step (SPEC B2 must be
cheap: < 1% of step time). Times, in the same run, a plain training step on a batch of
random token windows (the reference) and the same step with the schedule's choice of
sequences and instances plus the token replacement, and prints the ratio."""

from __future__ import annotations

import time

import numpy as np


def bench_injection(presets: list[str], batch: int, seq_len: int, steps: int, rate: float, vocab: int = 8192) -> list[dict]:
    import torch

    from ._injection import InjectionSchedule
    from ._models import build_model
    from ._tasks import build_tasks

    tasks = build_tasks("cmp", np.arange(300, 3000), eos=0)
    rows = []
    for name in presets:
        model = build_model(name, vocab, seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        sched = InjectionSchedule(global_batch=batch, n_train=len(tasks.train), rate=rate)
        rng = np.random.default_rng(0)
        t_step = t_inj = 0.0
        for step in range(steps + 2):
            toks = rng.integers(0, vocab, size=(batch, seq_len))
            t0 = time.perf_counter()
            pos, ids = sched.at(step)  # the injection, as StepBatches.local does it
            toks[pos, :4] = tasks.instances[tasks.train[ids]]
            t1 = time.perf_counter()
            x = torch.as_tensor(toks)
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if step >= 2:  # warm-up steps excluded
                t_inj += t1 - t0
                t_step += t2 - t1
        rows.append({"preset": name, "batch": batch, "seq_len": seq_len, "rate": rate,
                     "step_ms": 1e3 * t_step / steps, "injection_ms": 1e3 * t_inj / steps,
                     "injection_share": t_inj / t_step})
    return rows
