"""``raretask bench injection``: what injecting costs per training step (SPEC B2 must be
cheap: < 1% of step time). Times, in the same run, a plain training step on a batch of
random token windows (the reference) and the same step with the schedule's choice of
sequences and instances plus the token replacement, and prints the ratio.

``raretask bench lm``: ``raretask lm train`` (the real ``train``, in a run folder) against the
plain PyTorch loop a user writes first, on the same model, batch and corpus windows, in one
process, interleaved, warm-up excluded; optionally both with ``torch.compile``."""

from __future__ import annotations

import dataclasses

import shutil
import time
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# raretask bench lm: `lm train` against the plain PyTorch loop a user writes first
#
# The machine this runs on is often shared: a step's time can double from one second to the
# next. So the two are interleaved step by step: while the real `train` runs, just before it
# takes each step's batch, the plain loop takes its own step on its own copy of the model. Each
# raretask step is timed from the moment `train` asks for its batch to the moment it asks for the
# next one (everything the loop does: batch, injection, forward, backward, clipping, optimiser,
# logging, any checkpoint), and each plain step on its own; a slow spell of the machine hits both.


_PLAIN, _RARETASK = "plain", "raretask"
_NAMES = {"plain": "plain PyTorch loop", "raretask": "raretask lm train",
          "plain+compile": "plain loop, compiled", "raretask+compile": "lm train, compiled"}


def _first_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or "(no message)"
    return f"{e.__class__.__name__}: {msg[:240]}"


class _PlainLoop:
    """The plain loop: the same model (preset, vocabulary, seed), ``torch.optim.AdamW`` with lm
    train's settings at a constant learning rate, the same corpus windows step by step (no
    injection), mean next-token cross-entropy, ``clip_grad_norm_``, step. No logs, no checkpoints."""

    def __init__(self, cfg, corpus, windows: list, compiled: bool):
        import torch

        from ._models import build_model

        tok = corpus.tokenizer
        self.torch, self.cfg, self.corpus, self.windows = torch, cfg, corpus, windows
        self.model = build_model(cfg.preset, tok.vocab_size, cfg.seq_len, tok.eos_id, tok.pad_id, seed=cfg.seed)
        if compiled:
            self.model.compile()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)
        self.model.train()
        self.seconds: list[float] = []

    def step(self, step: int) -> None:
        torch, model, opt = self.torch, self.model, self.opt
        t0 = time.perf_counter()
        x = torch.as_tensor(self.corpus.windows(self.windows[step], self.cfg.seq_len))
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.clip)
        opt.step()
        self.seconds.append(time.perf_counter() - t0)


def _interleaved_run(cfg, plains: dict, warmup: int, timed: int, compiled: bool, train_kw: dict, on_error) -> dict:
    """Runs the real ``train(cfg)`` (``cfg.steps = warmup + timed + 1``) in a fresh folder, each of
    ``plains`` taking its step ``s`` just before ``train`` takes step ``s``'s batch. Returns
    {mode: seconds of steps ``warmup .. warmup + timed - 1``} and, under "_end", the seconds from
    the start of ``train``'s last step to its return (that step, the final checkpoint,
    summary.json), under "_call" the whole call's.

    The bench observes the batch requests through ``StepBatches.local`` (restored after);
    ``compiled`` runs ``lm train --compile`` (``cfg.compile``).
    A plain loop that fails (``torch.compile`` on a machine without a working compiler) is
    dropped, and ``on_error(mode, exception)`` told."""
    from ..errors import RaretaskError
    from . import _train
    from ._data import StepBatches

    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    orig_local = StepBatches.local
    plains = dict(plains)

    def local(self, step, *a, **k):
        step = int(step)
        if step not in starts:
            ends[step] = time.perf_counter()
            if step < warmup + timed:
                for mode, p in list(plains.items()):
                    try:
                        p.step(step)
                    except Exception as e:  # noqa: BLE001
                        del plains[mode]
                        on_error(mode, e)
            starts[step] = time.perf_counter()
        return orig_local(self, step, *a, **k)

    StepBatches.local = local
    if compiled:
        cfg = dataclasses.replace(cfg, compile=True)
    try:
        t0 = time.perf_counter()
        _train.train(cfg, **train_kw)
        t1 = time.perf_counter()
    finally:
        StepBatches.local = orig_local
    last = warmup + timed
    if any(s not in starts for s in range(warmup, last + 1)):
        raise RaretaskError(f"bench lm: lm train did not run steps {warmup}..{last} in {cfg.out}")
    out = {f"{_RARETASK}+compile" if compiled else _RARETASK:
           np.array([ends[s + 1] - starts[s] for s in range(warmup, last)])}
    for mode, p in plains.items():
        out[mode] = np.array(p.seconds[warmup:last])
    out["_end"], out["_call"] = t1 - starts[last], t1 - t0
    return out


def bench_lm(corpus: str, preset: str = "tiny", steps: int = 30, batch_size: int = 16, seq_len: int = 128,
             warmup: int = 5, repeats: int = 3, compile: bool = False, checkpoint_every: int = 100,
             threads: int | None = 1, workdir: str | None = None, say=None) -> dict:
    """Times ``raretask lm train`` (the real ``train``) against a plain PyTorch loop on the same
    model, optimiser settings, batch and corpus windows, in this process, interleaved step by
    step (see above); the first ``warmup`` steps are not timed.

    ``threads``: torch's intra-op threads for the bench (restored after; None: leave torch's
    setting). One by default: on a machine shared with other jobs, a step on several threads
    waits at every parallel region for the thread the scheduler put aside, and step times jump
    two- to five-fold from one step to the next; on one thread they are steady.

    ``repeats`` lm train runs (each with its plain loop beside it; with ``compile``, two runs per
    repetition, lm train's model plain and compiled, in alternating order, each with the plain
    loop both plain and compiled beside it). Per run and mode the median step time; per mode the
    median over runs. raretask's overhead: the median over runs of (median raretask step / median
    plain step in the same run) - 1; also given on mean step times (every hiccup included). The
    end of an lm train run (last step, final checkpoint, summary.json) is timed on its own: its
    cost beyond a step, spread over ``checkpoint_every`` steps, is the checkpoint overhead. A
    ``torch.compile`` failure is recorded (``compile.error``), not raised. Returns a JSON-able dict."""
    import torch

    from ..errors import ConfigError

    for k, v in (("steps", steps), ("batch_size", batch_size), ("repeats", repeats),
                 ("checkpoint_every", checkpoint_every), ("warmup", warmup), ("threads", threads or 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(k, f"{v!r}", "integer >= 1" + (" (the first steps are never timed)" if k == "warmup" else ""))
    torch_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_lm(corpus, preset, steps, batch_size, seq_len, warmup, repeats, compile, checkpoint_every,
                         workdir, say)
    finally:
        torch.set_num_threads(torch_threads)


def _bench_lm(corpus, preset, steps, batch_size, seq_len, warmup, repeats, compile, checkpoint_every, workdir,
              say) -> dict:
    import inspect
    import tempfile

    import torch

    from ._models import build_model, count_params
    from ._train import LMTrainConfig, setup, train

    say = say or (lambda *a, **k: None)
    n_steps = warmup + steps + 1
    train_kw = {"progress": False} if "progress" in inspect.signature(train).parameters else {}
    errors: dict[str, str] = {}

    def on_error(mode, e):
        errors.setdefault("compile", _first_line(e))
        say(f"  {mode} failed: {_first_line(e)}")
        torch._dynamo.reset()

    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="raretask-bench-lm-", dir=workdir) as tmp:
        # the LR warm-up ends inside the run (a step's time does not depend on the LR; a warm-up
        # longer than the run would only draw lm train's warning)
        base = LMTrainConfig(corpus=str(corpus), out=str(Path(tmp) / "run"), preset=preset, steps=n_steps,
                             batch_size=batch_size, seq_len=seq_len, checkpoint_every=checkpoint_every,
                             warmup=max(1, min(100, n_steps // 2)))
        env = setup(base)
        corp, tok, schedule, batches = env.corpus, env.tokenizer, env.schedule, env.batches
        windows = [batches.window_ids(s) for s in range(n_steps)]  # the windows lm train's steps read
        n_params = count_params(build_model(preset, tok.vocab_size, seq_len, tok.eos_id, tok.pad_id))
        say(f"bench lm: preset {preset} ({n_params / 1e6:.2f}M parameters, vocabulary {tok.vocab_size}), batch "
            f"{batch_size} x {seq_len} tokens, {steps} timed steps after {warmup} warm-up, {repeats} repetitions"
            + (", with torch.compile" if compile else ""))
        kinds = [False, True] if compile else [False]
        for r in range(repeats):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for compiled in order:
                if compiled and "compile" in errors:
                    continue
                t = time.perf_counter()
                plains = {_PLAIN: _PlainLoop(base, corp, windows, False)}
                if compile and "compile" not in errors:
                    plains[f"{_PLAIN}+compile"] = _PlainLoop(base, corp, windows, True)
                cfg = LMTrainConfig(**{**base.to_dict(), "out": str(Path(tmp) / f"run-{r}-{int(compiled)}")})
                try:
                    res = _interleaved_run(cfg, plains, warmup, steps, compiled, train_kw, on_error)
                except Exception as e:  # noqa: BLE001  (only a compilation failure is tolerated)
                    if not compiled:
                        raise
                    on_error(f"{_RARETASK}+compile", e)
                    continue
                finally:
                    shutil.rmtree(cfg.out, ignore_errors=True)
                runs.append(res)
                say(f"  repetition {r + 1}/{repeats}: " + ", ".join(
                    f"{m} {1e3 * np.median(d):.1f}" for m, d in res.items() if not m.startswith("_"))
                    + f" ms/step (medians; {time.perf_counter() - t:.0f} s)")
    meta = {"preset": preset, "params": n_params, "vocab": tok.vocab_size, "batch_size": batch_size,
            "seq_len": seq_len, "timed_steps": steps, "warmup_steps": warmup, "repeats": repeats,
            "checkpoint_every": checkpoint_every, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "corpus": str(corpus), "injection": schedule.describe()}
    return _summarise(runs, errors, compile, meta)


def _summarise(runs: list[dict], errors: dict, compile: bool, meta: dict) -> dict:
    """``bench lm``'s result from its timed runs: medians per mode, raretask's overhead over the
    plain loop (paired per repetition), checkpoint cost and the compile speed-ups."""
    tokens = meta["batch_size"] * meta["seq_len"]
    rows = {}
    for m in _NAMES:
        ds = [run[m] for run in runs if m in run]
        if ds:
            med = float(np.median([np.median(d) for d in ds]))
            rows[m] = {"step_ms": 1e3 * med, "tokens_per_s": tokens / med,
                       "step_ms_mean": 1e3 * float(np.median([np.mean(d) for d in ds])),
                       "step_ms_each": [1e3 * float(np.median(d)) for d in ds]}

    def paired(a: str, b: str, f=np.median) -> list[float]:
        return [float(f(run[a]) / f(run[b])) for run in runs if a in run and b in run]

    each = [x - 1 for x in paired(_RARETASK, _PLAIN)]
    end_ms = 1e3 * float(np.median([run["_end"] for run in runs if _RARETASK in run]))
    step_ms = rows[_RARETASK]["step_ms"]
    result = {
        **meta, "modes": rows,
        "raretask_overhead": float(np.median(each)),
        "raretask_overhead_each": each,
        "raretask_overhead_on_means": float(np.median(paired(_RARETASK, _PLAIN, np.mean))) - 1,
        "raretask_end_of_run_ms": end_ms,
        "checkpoint_overhead": max(0.0, end_ms - step_ms) / (meta["checkpoint_every"] * rows[_PLAIN]["step_ms"]),
        "raretask_call_seconds": float(np.median([run["_call"] for run in runs if _RARETASK in run])),
        "method": "interleaved step by step in one process: before lm train takes each step's batch, the plain "
                  "loop takes the same step on its own copy of the model",
        "plain_loop": "the same model (build_model, same seed), torch.optim.AdamW with lm train's lr, betas, eps "
                      "and weight decay at a constant learning rate (lm train: warm-up then cosine; the schedule "
                      "does not change the cost of a step), the same corpus windows without injection, mean "
                      "next-token cross-entropy, clip_grad_norm_ at lm train's clip, optimiser step",
        "compile": None,
    }
    if compile:
        c = {"error": errors.get("compile"),
             "scope": "plain loop with its model compiled, and lm train --compile"}
        if f"{_PLAIN}+compile" in rows:
            c["plain_speedup"] = float(np.median(paired(_PLAIN, f"{_PLAIN}+compile")))
        if f"{_RARETASK}+compile" in rows:
            c["raretask_speedup"] = rows[_RARETASK]["step_ms"] / rows[f"{_RARETASK}+compile"]["step_ms"]
            ov = paired(f"{_RARETASK}+compile", f"{_PLAIN}+compile")
            if ov:
                c["raretask_overhead_compiled"] = float(np.median(ov)) - 1
        result["compile"] = c
    return result


def format_bench_lm(res: dict) -> str:
    """The report ``raretask bench lm`` prints."""
    inj = res["injection"]
    inj = ", ".join(f"{k} {v}" for k, v in inj.items() if k not in ("global_batch", "seed")) if isinstance(inj, dict) else inj
    lines = [f"raretask bench lm: preset {res['preset']} ({res['params'] / 1e6:.2f}M params, vocab {res['vocab']}), "
             f"batch {res['batch_size']} x {res['seq_len']} tokens, {res['threads']} torch threads, torch {res['torch']}",
             f"lm train and the plain loop interleaved step by step; {res['repeats']} repetitions of "
             f"{res['timed_steps']} timed steps after {res['warmup_steps']} warm-up; per run the median step, "
             f"then the median over runs",
             f"{'mode':22} {'step (ms)':>10} {'tokens/s':>10} {'mean (ms)':>10}   per run (ms)"]
    for m, r in res["modes"].items():
        lines.append(f"{_NAMES.get(m, m):22} {r['step_ms']:10.2f} {r['tokens_per_s']:10,.0f} {r['step_ms_mean']:10.2f}   "
                     + " ".join(f"{x:.2f}" for x in r["step_ms_each"]))
    ov = res["raretask_overhead"]
    lines.append(f"raretask overhead per step: {100 * ov:+.1f}% (goal <= 5%: {'met' if ov <= 0.05 else 'NOT met'}); "
                 f"per run " + ", ".join(f"{100 * x:+.1f}%" for x in res["raretask_overhead_each"])
                 + f"; on mean step times {100 * res['raretask_overhead_on_means']:+.1f}%")
    lines.append(f"checkpoints: the end of an lm train run (last step, checkpoint, summary.json) takes "
                 f"{res['raretask_end_of_run_ms']:.0f} ms; one every {res['checkpoint_every']} steps adds "
                 f"{100 * res['checkpoint_overhead']:.1f}%; a whole lm train call (setup included) "
                 f"{res['raretask_call_seconds']:.1f} s")
    lines.append(f"lm train: injection ({inj}), metrics and data-order logs, warm-up + cosine lr; plain loop: the "
                 f"same model, AdamW settings, clipping and corpus windows, constant lr, no injection, no logs")
    c = res.get("compile")
    if c:
        if "plain_speedup" in c:
            lines.append(f"torch.compile speed-up, plain loop: {c['plain_speedup']:.2f}x")
        if "raretask_speedup" in c:
            lines.append(f"torch.compile speed-up, lm train --compile: {c['raretask_speedup']:.2f}x")
        if "raretask_overhead_compiled" in c:
            lines.append(f"raretask overhead, both compiled: {100 * c['raretask_overhead_compiled']:+.1f}%")
        if c.get("error"):
            lines.append(f"torch.compile failed on this machine: {c['error']}")
    return "\n".join(lines)
