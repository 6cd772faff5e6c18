"""``raretask bench ladder``: a slice of the CPU size ladder trained the old way (one run per
process, ``lm sweep --pack 1``) and the new way (packs, ``lm sweep``'s default), side by side in
one invocation.

Both ways train the same runs (every size x rates x seeds, ``cpu-scaling``'s training settings,
``steps`` steps) through the code ``lm sweep`` uses (``plan_packs`` and ``train_units``), on
the same number of worker processes, in fresh folders; everything a sweep pays is timed (the
worker processes' start, setup, training, the final checkpoint). The machine is often shared,
so the two ways alternate size by size, and which goes first alternates too. The matmul peak
is measured in the same run (a float32 1024^3 ``torch.mm`` on every core, the best of several
repeats, before and after), and each way's achieved model GFLOP/s is given against it. Model
FLOPs per token: 6 N (N: the parameters that multiply, the blocks and the output layer; the
embedding is a lookup) plus attention, 12 L T h (forward 4 L T h, backward twice that).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


def torch_matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n^3 ``torch.mm`` on torch's threads (three tries of ``repeats``)."""
    import torch

    a = torch.randn(n, n)
    b, c = torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
        best = max(best, 2.0 * n**3 * repeats / (time.perf_counter() - t) / 1e9)
    return best


def bench_ladder(corpus: str, sizes: list[str], rates: list[float], seeds: list[int], steps: int = 200,
                 workers: int = 2, workdir: str | None = None, say: Callable[[str], None] = lambda s: None) -> dict:
    """Old and new way per size, interleaved; returns every timing and ratio."""
    import os

    from ..errors import ConfigError
    from ._models import preset, step_flops
    from ._sweep import _config, _corpus_vocab, grid_name, load_sweep, plan_packs, train_units
    from ..runfolder import read_parts

    for s in sizes:
        preset(s)
    if not sizes or not rates or not seeds:
        raise ConfigError("sizes", "an empty list of sizes, rates or seeds", "at least one of each")
    if len(set(sizes)) != len(sizes) or len(set(rates)) != len(rates) or len(set(seeds)) != len(seeds):
        raise ConfigError("sizes", "a size, rate or seed given twice", "distinct values")
    vocab = _corpus_vocab(corpus)
    if vocab is None:
        raise ConfigError("corpus", f"{corpus} is not a corpus (no meta.json)",
                          "a directory made by `raretask lm corpus build --vocab-size 2048`")
    sw = load_sweep("cpu-scaling", [f"train.steps={steps}"])
    threads = max(1, (os.cpu_count() or 1))
    peaks = [torch_matmul_peak()]
    say(f"float32 matmul peak (1024^3, {threads} threads): {peaks[0]:.0f} GFLOP/s")
    rows = []
    root = Path(tempfile.mkdtemp(prefix="raretask-bench-ladder-", dir=workdir))
    try:
        for i, size in enumerate(sizes):
            flops = step_flops(size, vocab, sw["train"]["batch_size"], sw["train"]["seq_len"])
            finals = {}
            for mode in (("old", "new") if i % 2 == 0 else ("new", "old")):
                out = root / mode / size
                cfgs = [_config(sw, corpus, str(out), grid_name(size, sw["task"], float(r), s), preset=size,
                                rate=float(r), seed=int(s)) for r in rates for s in seeds]
                units = plan_packs(cfgs, 1 if mode == "old" else None, workers, None, vocab)
                say(f"{size}: {len(cfgs)} runs x {steps} steps, the {mode} way "
                    f"({'one run per process' if mode == 'old' else f'{len(units)} pack(s)'}) ...")
                t0 = time.perf_counter()
                train_units(units, workers, False, t0, f"bench {mode}")
                wall = time.perf_counter() - t0
                finals[mode] = [float(read_parts(Path(c.out) / "metrics")["loss"].iloc[-1]) for c in cfgs]
                run_steps = len(cfgs) * steps
                rows.append({"size": size, "mode": mode, "runs": len(cfgs), "units": len(units),
                             "pack_sizes": [len(u) for u in units], "steps": steps, "wall_seconds": wall,
                             "run_steps_per_s": run_steps / wall, "gflops": run_steps * flops / wall / 1e9,
                             "flops_per_run_step": flops})
                shutil.rmtree(out, ignore_errors=True)
            diff = np.max(np.abs(np.subtract(finals["new"], finals["old"])) / np.abs(finals["old"]))
            for r in rows[-2:]:
                r["final_loss_max_rel_diff"] = float(diff)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    peaks.append(torch_matmul_peak())
    peak = max(peaks)
    for r in rows:
        r["share_of_peak"] = r["gflops"] / peak
    per_size = {}
    for size in sizes:
        old, new = (next(r for r in rows if r["size"] == size and r["mode"] == m) for m in ("old", "new"))
        per_size[size] = old["wall_seconds"] / new["wall_seconds"]
    total_old = sum(r["wall_seconds"] for r in rows if r["mode"] == "old")
    total_new = sum(r["wall_seconds"] for r in rows if r["mode"] == "new")
    return {"corpus": str(corpus), "vocab": vocab, "sizes": sizes, "rates": rates, "seeds": seeds, "steps": steps,
            "workers": workers, "threads_per_worker": max(1, threads // workers), "peak_gflops": peak,
            "peaks_measured": peaks, "rows": rows, "speedup_per_size": per_size,
            "old_seconds": total_old, "new_seconds": total_new, "speedup": total_old / total_new}


def format_bench_ladder(res: dict) -> str:
    lines = [f"ladder slice: {', '.join(res['sizes'])} x rates {', '.join(f'{r:g}' for r in res['rates'])} x seeds "
             f"{', '.join(map(str, res['seeds']))}, {res['steps']} steps each (cpu-scaling's training settings, "
             f"vocabulary {res['vocab']}), {res['workers']} worker process(es) both ways",
             f"float32 matmul peak measured in this run (torch.mm 1024^3, all cores): {res['peak_gflops']:.0f} GFLOP/s",
             f"{'size':6} {'way':4} {'packs':>12} {'wall s':>8} {'run-steps/s':>12} {'GFLOP/s':>8} {'of peak':>8} "
             f"{'speed-up':>9} {'loss diff':>10}"]
    for r in res["rows"]:
        packs = "-" if r["mode"] == "old" else "+".join(map(str, r["pack_sizes"]))
        sp = f"{res['speedup_per_size'][r['size']]:.2f}x" if r["mode"] == "new" else ""
        lines.append(f"{r['size']:6} {r['mode']:4} {packs:>12} {r['wall_seconds']:8.1f} {r['run_steps_per_s']:12.2f} "
                     f"{r['gflops']:8.1f} {r['share_of_peak']:8.1%} {sp:>9} {r['final_loss_max_rel_diff']:10.1e}")
    lines.append("old: one run per process (lm sweep --pack 1); new: packs (lm sweep's default); GFLOP/s: model "
                 "FLOPs (6 N + 12 L T h per token) over the wall time, process start and checkpoint included; "
                 "loss diff: the largest relative difference of a run's final loss between the two ways")
    lines.append(f"ladder speed-up: {res['speedup']:.1f}x")
    return "\n".join(lines)
