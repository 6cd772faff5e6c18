"""``raretask bench``: performance measured against a reference in the same run.

``bench synthetic`` times the plain per-sample PyTorch trainer (width after width) and the
engine (all widths on shared batches) on the same work, and prints steps/s of each, their
ratio, the achieved GFLOP/s and the machine's float32 matmul GFLOP/s measured here.
``bench memory`` runs a long tiny run and samples the process's resident memory.
``bench injection`` times the LM injection against a training step; ``bench lm`` times
``lm train`` against a plain PyTorch loop on the same model, batch and data (and ``--compile``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER_GRID = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def geometric_widths(lo: int, hi: int, n: int) -> list[int]:
    return sorted({int(round(x)) for x in np.geomspace(lo, hi, n)})


def matmul_peak(sizes=(512, 1024), repeats: int = 30) -> dict[int, float]:
    """Best observed float32 GFLOP/s of a square JAX matmul per size (after warm-up)."""
    import jax
    import jax.numpy as jnp

    out = {}
    f = jax.jit(lambda a, b: a @ b)
    for n in sizes:
        a = jnp.ones((n, n), jnp.float32)
        f(a, a).block_until_ready()
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(repeats):
                c = f(a, a)
            c.block_until_ready()
            best = max(best, 2.0 * n**3 * repeats / (time.perf_counter() - t) / 1e9)
        out[n] = best
    return out


def time_reference(spec, cfg, widths, steps: int, warmup: int = 3) -> dict[int, float]:
    """Seconds per step of the reference trainer, per width."""
    from .sim import ReferenceTrainer

    out = {}
    for w in widths:
        r = ReferenceTrainer(spec, cfg, w)
        r.train(warmup)
        t = time.perf_counter()
        r.train(steps)
        out[w] = (time.perf_counter() - t) / steps
    return out


def time_engine(spec, cfg, widths, steps: int, chunk: int = 256) -> float:
    """Seconds per step of the engine training ``widths`` together (compilation excluded)."""
    from .sim import Engine

    eng = Engine(spec, cfg, widths, chunk=chunk)
    eng.advance(chunk)  # compile and warm up
    t = time.perf_counter()
    eng.advance(steps)
    return (time.perf_counter() - t) / steps


def time_metrics(spec, widths) -> float:
    """Seconds to record the exact SPEC A3 metrics of all ``widths`` once."""
    from .mixture import task_metrics
    from .sim import init_params

    params = [init_params(spec, w, 0) for w in widths]
    t = time.perf_counter()
    for E, Dec in params:
        task_metrics(spec, E, Dec)
    return time.perf_counter() - t


def bench_synthetic(widths: list[int], steps: int, ref_steps: int, batch: int, paper_steps: int,
                    record_points: int, console=None) -> dict:
    from .mixture import MixtureSpec
    from .sim import Engine, TrainConfig

    spec = MixtureSpec()
    cfg = TrainConfig(batch_size=batch)
    say = console.print if console else (lambda *a, **k: None)
    say(f"[bold]bench synthetic[/bold]: K={spec.K} d={spec.d} D={spec.D} B={batch}, widths {widths}")
    say("measuring float32 matmul peak ...")
    peak = matmul_peak()
    say(f"reference (PyTorch per-sample autograd + AdamW), {ref_steps} steps per width ...")
    ref = time_reference(spec, cfg, widths, ref_steps)
    ref_total = sum(ref.values())
    say(f"engine, {len(widths)} widths together, {steps} steps ...")
    eng_s = time_engine(spec, cfg, widths, steps)
    flops = Engine(spec, cfg, widths).flops_per_step()
    widest = max(widths)  # the widest width asked for, timed on its own (512 in the default grid)
    say(f"engine, width {widest} alone, {steps} steps ...")
    eng_widest = time_engine(spec, cfg, [widest], steps)
    flops_widest = Engine(spec, cfg, [widest]).flops_per_step()
    grid = [w for w in PAPER_GRID if w <= spec.D]
    say(f"engine, paper grid {grid}, {steps} steps ...")
    paper_s = time_engine(spec, cfg, grid, steps)
    metric_s = time_metrics(spec, grid)
    best_peak = max(peak.values())
    result = {
        "widths": widths,
        "batch": batch,
        "reference_steps_per_s": {str(w): 1.0 / s for w, s in ref.items()},
        "reference_sequential_s_per_step": ref_total,
        "engine_steps_per_s": 1.0 / eng_s,
        "speedup": ref_total / eng_s,
        "engine_gflops": flops / eng_s / 1e9,
        "matmul_peak_gflops": {str(k): v for k, v in peak.items()},
        "widest": widest,
        "widest_steps_per_s": 1.0 / eng_widest,
        "widest_gflops": flops_widest / eng_widest / 1e9,
        "widest_fraction_of_peak": flops_widest / eng_widest / 1e9 / best_peak,
        "paper_grid": grid,
        "paper_grid_steps_per_s": 1.0 / paper_s,
        "paper_projection_minutes": (paper_s * paper_steps + metric_s * record_points) / 60.0,
        "paper_steps": paper_steps,
    }
    if console:
        from rich.table import Table

        t = Table(title="raretask bench synthetic")
        t.add_column("measurement")
        t.add_column("value", justify="right")
        for w, s in ref.items():
            t.add_row(f"reference width {w}", f"{1 / s:.1f} steps/s")
        t.add_row("reference, widths one after another", f"{1 / ref_total:.2f} steps/s")
        t.add_row(f"engine, {len(widths)} widths on shared batches", f"{1 / eng_s:.1f} steps/s")
        t.add_row("[bold]speed-up (engine / reference)[/bold]", f"[bold]{ref_total / eng_s:.1f}x[/bold]")
        t.add_row("engine achieved", f"{result['engine_gflops']:.0f} GFLOP/s")
        for n, v in peak.items():
            t.add_row(f"float32 matmul peak ({n}^3, JAX)", f"{v:.0f} GFLOP/s")
        t.add_row(f"engine width {widest} alone", f"{1 / eng_widest:.1f} steps/s, {result['widest_gflops']:.0f} GFLOP/s")
        t.add_row(f"[bold]width {widest}: fraction of peak[/bold]", f"[bold]{result['widest_fraction_of_peak']:.0%}[/bold]")
        t.add_row(f"paper grid ({len(grid)} widths)", f"{1 / paper_s:.1f} steps/s")
        t.add_row(f"[bold]projected paper phase diagram ({paper_steps:,} steps)[/bold]",
                  f"[bold]{result['paper_projection_minutes']:.1f} min[/bold]")
        console.print(t)
    return result


def bench_memory(steps: int, samples: int, console=None) -> dict:
    """RSS over a long tiny run (metrics and traces streamed to disk)."""
    from .mixture import MixtureSpec
    from .sim import RecordSchedule, TrainConfig, run_engine

    spec = MixtureSpec(n_tasks=4, block_dim=2)
    cfg = TrainConfig(steps=steps, batch_size=16, warmup=10)
    rss = []

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    every = max(1, steps // samples)
    nxt = [every]

    def progress(done, total):
        if done >= nxt[0]:
            rss.append((done, rss_mb()))
            nxt[0] += every

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        run_engine(spec, cfg, [2, 4], d, record=RecordSchedule("linear", 200), trace_tasks=[4],
                   trace_every=10, progress=progress, chunk=4096, checkpoint_seconds=5.0)
        secs = time.perf_counter() - t
    steps_arr = np.array([r[0] for r in rss], float)
    mb = np.array([r[1] for r in rss])
    late = steps_arr >= steps / 2  # after warm-up: caches, allocator pools, first flushes
    slope = float(np.polyfit(steps_arr[late], mb[late], 1)[0] * 100_000) if late.sum() >= 2 else float("nan")
    result = {"steps": steps, "seconds": secs, "rss_mb": rss, "rss_second_half_min_mb": float(mb[late].min()),
              "rss_second_half_max_mb": float(mb[late].max()), "rss_slope_mb_per_100k_steps": slope}
    if console:
        console.print(f"{steps:,} steps in {secs:.0f} s; RSS (MB) at "
                      + ", ".join(f"{s:,}: {m:.0f}" for s, m in rss[:: max(1, len(rss) // 8)])
                      + f"; second half: {mb[late].min():.0f}-{mb[late].max():.0f} MB, "
                      f"trend {slope:+.2f} MB per 100k steps")
    return result


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="performance benchmarks against the reference implementation")
    bsub = p.add_subparsers(dest="bench", required=True, parser_class=type(p))
    s = bsub.add_parser("synthetic", help="engine vs plain per-sample trainer (SPEC A2)")
    s.add_argument("--widths", type=int, nargs="+", default=geometric_widths(8, 512, 10))
    s.add_argument("--steps", type=int, default=512, help="engine steps timed per configuration")
    s.add_argument("--ref-steps", type=int, default=20, help="reference steps timed per width")
    s.add_argument("--batch", type=int, default=1024)
    s.add_argument("--paper-steps", type=int, default=100_000)
    s.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    s.set_defaults(func=_cmd_synthetic)
    m = bsub.add_parser("memory", help="resident memory over a long streamed run")
    m.add_argument("--steps", type=int, default=1_000_000)
    m.add_argument("--samples", type=int, default=40)
    m.add_argument("--json", type=Path, default=None)
    m.set_defaults(func=_cmd_memory)
    i = bsub.add_parser("injection", help="injected-task insertion vs a training step (LM part, needs raretask[lm])")
    i.add_argument("--presets", nargs="+", default=["tiny", "small"])
    i.add_argument("--batch", type=int, default=16)
    i.add_argument("--seq-len", type=int, default=128)
    i.add_argument("--steps", type=int, default=20)
    i.add_argument("--rate", type=float, default=4.0, help="instances per batch (a high rate: the worst case)")
    i.set_defaults(func=_cmd_injection)
    lm = bsub.add_parser("lm", help="lm train vs a plain PyTorch loop on the same model and data (needs raretask[lm])")
    lm.add_argument("--preset", default="tiny", help="model preset (default tiny, lm train's default)")
    lm.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    lm.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of every run (default 5)")
    lm.add_argument("--repeats", type=int, default=3,
                    help="interleaved repetitions of every mode; medians are reported (default 3)")
    lm.add_argument("--batch-size", type=int, default=16)
    lm.add_argument("--seq-len", type=int, default=128)
    lm.add_argument("--checkpoint-every", type=int, default=100, help="lm train's (default 100, as lm train)")
    lm.add_argument("--corpus", default=None,
                    help="a built corpus (raretask lm corpus build); default: build one from the default "
                         "sources (BPE-8192, as lm corpus build) in a temporary folder")
    lm.add_argument("--compile", action="store_true", help="also time both with the model under torch.compile")
    lm.add_argument("--threads", type=int, default=1,
                    help="torch threads for the bench (default 1: steady on a machine shared with other jobs, "
                         "where steps on several threads stall; 0: torch's default)")
    lm.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    lm.set_defaults(func=_cmd_lm)

    ld = bsub.add_parser("ladder", help="a slice of the CPU size ladder, one run per process against packs, side by "
                                        "side (needs raretask[lm])")
    ld.add_argument("--corpus", required=True, help="a BPE-2048 corpus (raretask lm corpus build --vocab-size 2048)")
    ld.add_argument("--sizes", nargs="+", default=["w24", "w48", "w96", "w192"], help="presets (default the ladder)")
    ld.add_argument("--rates", type=float, nargs="+", default=[16.0, 2.0, 0.25], help="instances per batch")
    ld.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ld.add_argument("--steps", type=int, default=200, help="steps per run (default 200)")
    ld.add_argument("--workers", type=int, default=2, help="worker processes, both ways (default 2)")
    ld.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    ld.set_defaults(func=_cmd_ladder)

    sz = bsub.add_parser("sizing", help="coverage of lm sizing's prediction interval on simulated sweeps with a known "
                                        "truth, the current method beside the one before")
    sz.add_argument("--from", dest="sweep", default=None, metavar="SWEEP",
                    help="estimate the truth from this finished scaling sweep (default: the values measured on "
                         "cpu-scaling, embedded)")
    sz.add_argument("--sweeps", type=int, default=200, help="simulated sweeps per law (default 200)")
    sz.add_argument("--n-boot", type=int, default=200, help="bootstrap draws per size (default 200)")
    sz.add_argument("--curvature", type=float, default=None,
                    help="the bent law's curvature (default: the one measured on the sweep)")
    sz.add_argument("--seed-sd", type=float, default=None,
                    help="seed-to-seed sd of a run's accuracy to simulate (default: the sweep's, from its seed pairs)")
    sz.add_argument("--seed", type=int, default=0)
    sz.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    sz.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    sz.set_defaults(func=_cmd_sizing)


def _cmd_lm(args: argparse.Namespace) -> int:
    import sys

    from .lm._bench import bench_lm, format_bench_lm

    _check_positive(steps=args.steps, warmup=args.warmup, repeats=args.repeats, batch_size=args.batch_size,
                    seq_len=args.seq_len, checkpoint_every=args.checkpoint_every)
    if args.threads < 0:
        from .errors import ConfigError

        raise ConfigError("threads", f"{args.threads}", "integer >= 1, or 0 for torch's default")

    def say(msg: str) -> None:
        sys.stderr.write(msg + "\n")

    with tempfile.TemporaryDirectory(prefix="raretask-bench-corpus-") as tmp:
        corpus = args.corpus
        if corpus is None:
            from .lm import build_corpus

            corpus = str(Path(tmp) / "corpus")
            say("building a corpus from the default sources (BPE-8192) ...")
            build_corpus(corpus)
        res = bench_lm(corpus, preset=args.preset, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                       warmup=args.warmup, repeats=args.repeats, compile=args.compile,
                       checkpoint_every=args.checkpoint_every, threads=args.threads or None, say=say)
    if args.corpus is None:
        res["corpus"] = "default sources, BPE-8192, built for this run"
    print(format_bench_lm(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def _cmd_ladder(args: argparse.Namespace) -> int:
    import sys

    from .lm._bench_ladder import bench_ladder, format_bench_ladder

    _check_positive(steps=args.steps, workers=args.workers)
    res = bench_ladder(args.corpus, args.sizes, args.rates, args.seeds, args.steps, args.workers,
                       say=lambda msg: sys.stderr.write(msg + "\n"))
    print(format_bench_ladder(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def _cmd_sizing(args: argparse.Namespace) -> int:
    import sys

    from .errors import ConfigError
    from .lm import sizing_sim as sim

    _check_positive(sweeps=args.sweeps, workers=args.workers)
    if args.sweep is not None:
        truth, shape, prov = sim.measured_truth(args.sweep)
    elif sim.MEASURED is not None:
        truth, shape, prov = sim.Truth(**sim.MEASURED["truth"]), sim.SweepShape(), sim.MEASURED
    else:
        raise ConfigError("from", "no measured truth is embedded", "--from SWEEP, a finished scaling sweep")
    if args.seed_sd is not None:
        if not (math.isfinite(args.seed_sd) and 0 < args.seed_sd < 0.5):
            raise ConfigError("seed_sd", f"{args.seed_sd}", "a finite sd in (0, 0.5)")
        truth = sim.Truth(**{**truth.__dict__, "seed_sd": args.seed_sd})
        prov = {**prov, "seed_sd_given": args.seed_sd}
    if not (math.isfinite(truth.seed_sd) and truth.seed_sd > 0):
        raise ConfigError("from", f"{prov.get('sweep')} has no seed pairs to measure its seed noise",
                          "a sweep with boundary seeds, or --seed-sd")
    curvature = prov["measured_curvature"] if args.curvature is None else args.curvature
    if not math.isfinite(curvature) or curvature == 0:
        raise ConfigError("curvature", f"{curvature} (the bent law must differ from the straight one)",
                          "a finite, non-zero curvature")
    done = [0]

    def progress(n):
        done[0] += n
        sys.stderr.write(f"\r{done[0]} / {2 * args.sweeps} simulated sweeps")
        sys.stderr.flush()

    res = sim.bench_sizing(truth, shape, curvature, args.sweeps, args.seed, args.n_boot, args.workers, progress)
    sys.stderr.write("\n")
    res["provenance"] = prov
    print(sim.format_bench_sizing(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


def _cmd_injection(args: argparse.Namespace) -> int:
    from .lm._bench import bench_injection

    _check_positive(batch=args.batch, seq_len=args.seq_len, steps=args.steps)
    rows = bench_injection(args.presets, args.batch, args.seq_len, args.steps, args.rate)
    print(f"{'preset':8} {'step (ms)':>10} {'injection (ms)':>15} {'ratio':>8}")
    for r in rows:
        print(f"{r['preset']:8} {r['step_ms']:10.2f} {r['injection_ms']:15.4f} {r['injection_share']:8.2e}")
    worst = max(r["injection_share"] for r in rows)
    print(f"injection / step time, worst preset: {100 * worst:.3f}% (requirement: < 1%)")
    return 0


def _check_positive(**kw) -> None:
    from .errors import ConfigError

    for k, v in kw.items():
        if v < 1:
            raise ConfigError(k, f"{v}", "integer >= 1")


def _cmd_synthetic(args: argparse.Namespace) -> int:
    from rich.console import Console

    _check_positive(steps=args.steps, ref_steps=args.ref_steps, batch=args.batch)
    res = bench_synthetic(args.widths, args.steps, args.ref_steps, args.batch, args.paper_steps,
                          record_points=60, console=Console())
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def _cmd_memory(args: argparse.Namespace) -> int:
    from rich.console import Console

    _check_positive(steps=args.steps, samples=args.samples)
    res = bench_memory(args.steps, args.samples, console=Console())
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0
