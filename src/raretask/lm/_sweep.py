"""``raretask lm sweep NAME``: a named grid of training runs (model presets x injection
rates), then one evaluation report over all of them. Sweeps live in
``presets/sweeps.json``; any value can be overridden with ``--set key=value``
(``train.<field>`` reaches the training options, ``gaps.<key>``, ``probe.<key>`` and
``interference.<key>`` the scaling sweep's stages, and ``gaps=null`` etc. leaves a stage out). Every run resumes, and evaluation is cached per checkpoint, so
re-running the command continues where it stopped. Under ``torchrun`` every run is trained
on all ranks; rank 0 evaluates. The sweep's folder is a ``RunFolder`` of kind "lm-sweep"
(locked while the sweep runs) holding one "lm-train" run folder per cell and the "lm-eval"
report; every run is checked before the first is trained.

A scaling sweep (``"report": "scaling"``, e.g. ``cpu-scaling``) runs in stages, each fixed
by the preset before anything is trained:

1. the grid: every preset x rate, seed ``train.seed`` (0), folders ``<preset>-<task>-rate<r>``;
2. the matched-frequency gap runs: for ``gaps.presets``, ``n = rate x G`` instances every
   ``G`` batches for each G in ``gaps.every`` (``<preset>-<task>-every<G>-n<n>``; G = 1 is
   the grid's run at that rate when the grid has it: the schedules are identical); and the
   interference stage: every size of ``interference.presets`` with ``n`` every ``every`` steps
   and the live monitor (``<preset>-<task>-interference-every<G>-n<n>``, ``lm.interference_stage``);
3. the boundary seeds: for each preset, the two grid rates whose final test accuracy lies
   nearest the midpoint between chance and 1, again with each seed in ``boundary_seeds``
   (``...-rate<r>-seed<s>``); chosen from the grid's evaluation, so a re-run chooses the same;
4. evaluation of every run into ``report/``, probes of each preset's runs at ``probe.rates``
   (``RUN/probes``), and the scaling report in ``scaling/`` (``raretask.lm.scaling_report``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from importlib import resources
from dataclasses import field
from pathlib import Path
from typing import Annotated, Callable, NamedTuple

from .. import __version__
from ..errors import ConfigError, parse_assignment
from ..runfolder import atomic_json
from ..validate import Distinct, NonEmpty, NonNegInt, PosFloat, PosInt, build, strict
from ._tasks import CHANCE
from .interference_stage import InterferenceStage


_TOP = ("presets", "task", "rates", "boundary_seeds", "final_checkpoints", "corpus_vocab")
_NESTED = ("train", "gaps", "probe", "interference")
_STAGES = ("gaps", "probe", "interference")
"""The stages a ``--set STAGE=null`` leaves out of a sweep."""


@strict
class GapStage:
    """The ``gaps`` table of a scaling sweep: matched-frequency runs."""

    presets: Annotated[list[str], NonEmpty, Distinct]
    """Model presets to run the gaps for."""
    rate: PosFloat
    """Instances per batch, the same for every gap (n = rate x G every G steps)."""
    every: Annotated[list[PosInt], Distinct]
    """The gaps G (steps between injections); empty: no gap runs."""


@strict
class SweepSpec:
    """One entry of ``presets/sweeps.json`` after ``--set``: every key typed, unknown keys refused
    (``train`` is checked by ``LMTrainConfig`` and ``probe`` by the probes' ``ProbeConfig`` when
    the runs are planned)."""

    presets: Annotated[list[str], NonEmpty, Distinct]
    """Model presets (the sizes)."""
    task: str
    """The injected task."""
    rates: Annotated[list[PosFloat], NonEmpty, Distinct]
    """Instances per batch of the grid."""
    about: str = ""
    """What the sweep is for."""
    report: str | None = None
    """"scaling" for a scaling sweep (stages, critical frequency, claims), else one evaluation report."""
    corpus_vocab: PosInt | None = None
    """The vocabulary the sweep is sized for; a corpus of another is refused."""
    boundary_seeds: Annotated[list[NonNegInt], Distinct] = field(default_factory=list)
    """Extra seeds for the two grid rates nearest each size's midpoint."""
    final_checkpoints: PosInt = 3
    """Checkpoints averaged into a run's final point."""
    gaps: GapStage | None = None
    """Matched-frequency gap runs."""
    probe: dict | None = None
    """Probe settings (``rates``: the grid rates whose runs are probed; ``checkpoints``: "last",
    "all" or steps; the rest: ``ProbeConfig``)."""
    interference: InterferenceStage | None = None
    """The interference stage (``lm.interference_stage``)."""
    train: dict = field(default_factory=dict)
    """``LMTrainConfig`` fields shared by every run."""


def sweep_names() -> list[str]:
    return list(_table())


def _table() -> dict:
    return json.loads(resources.files("raretask.lm").joinpath("presets", "sweeps.json").read_text())


def load_sweep(name: str, overrides: list[str] | None = None) -> dict:
    table = _table()
    if name not in table:
        raise ConfigError("sweep", f"{name!r}", ", ".join(sorted(table)))
    sweep = copy.deepcopy(table[name])
    for item in overrides or []:
        parts, value = parse_assignment(item)
        nested = parts[0] in _NESTED
        if nested and len(parts) == 1 and parts[0] in _STAGES:
            if value is not None:
                raise ConfigError("set", f"{parts[0]}={value!r}",
                                  f"{parts[0]}=null (no {parts[0]} stage) or {parts[0]}.<key>=VALUE")
            sweep[parts[0]] = None
            continue
        if not ((parts[0] in _TOP and len(parts) == 1) or (nested and len(parts) == 2)):
            raise ConfigError("set", f"unknown option {'.'.join(parts)!r}",
                              ", ".join(_TOP) + ", train.<field>, gaps.<key>, probe.<key>, interference.<key>, "
                              + ", ".join(f"{s}=null" for s in _STAGES))
        if len(parts) == 2 and not isinstance(sweep.get(parts[0]), dict):
            sweep[parts[0]] = {}  # a stage the preset leaves out (null) is set key by key
        (sweep if len(parts) == 1 else sweep[parts[0]])[parts[-1]] = value
    build(SweepSpec, sweep)  # typed and strict, sub-tables included
    if sweep.get("report") == "scaling" and len(sweep["rates"]) < 3:
        raise ConfigError("rates", f"{len(sweep['rates'])} rate(s)", "at least 3 for a critical-frequency fit")
    stray = [r for r in (sweep.get("probe") or {}).get("rates", [])
             if not any(math.isclose(float(r), float(q)) for q in sweep["rates"])]
    if stray:
        raise ConfigError("probe", f"rates {stray} are not in the grid {sweep['rates']}", "a subset of rates")
    return sweep


def _config(sw: dict, corpus: str, out: str, name: str, **kw):
    from ..validate import typed
    from ._config import LMTrainConfig

    return typed(LMTrainConfig, {"corpus": corpus, "out": str(Path(out) / name), "preset": kw.pop("preset"),
                                 "task": sw["task"], **{**sw.get("train", {}), **kw}}, "train")


def grid_name(preset: str, task: str, rate: float, seed: int | None = None) -> str:
    return f"{preset}-{task}-rate{rate:g}" + (f"-seed{seed}" if seed is not None else "")


def grid_configs(sw: dict, corpus: str, out: str) -> list:
    """Stage 1: every preset x rate."""
    return [_config(sw, corpus, out, grid_name(p, sw["task"], float(r)), preset=p, rate=float(r))
            for p in sw["presets"] for r in sw["rates"]]


def gap_configs(sw: dict, corpus: str, out: str) -> list:
    """Stage 2: the matched-frequency runs not already in the grid (n = rate x G every G)."""
    g = sw.get("gaps")
    if not g:
        return []
    rate = float(g["rate"])
    runs = []
    for p in g["presets"]:
        for every in g["every"]:
            n = rate * every
            if not (isinstance(every, int) and every >= 1 and abs(n - round(n)) < 1e-9):
                raise ConfigError("gaps", f"every={every!r} at rate {rate:g} gives n = {n:g}",
                                  "whole G >= 1 with rate x G a whole number")
            if every == 1 and p in sw["presets"] and any(math.isclose(rate, float(r)) for r in sw["rates"]):
                continue  # the grid's run: identical schedule
            runs.append(_config(sw, corpus, out, f"{p}-{sw['task']}-every{every}-n{round(n)}", preset=p,
                                every=every, n=int(round(n))))
    return runs


def interference_configs(sw: dict, corpus: str, out: str) -> list:
    """Stage 2b: every size of ``interference.presets`` with n every G steps and the live monitor
    reading g_r afresh at each reading (``lm.interference_stage``)."""
    from .interference_stage import run_name, stage_of

    st = stage_of(sw)
    if st is None:
        return []
    return [_config(sw, corpus, out, run_name(p, sw["task"], st), preset=p, every=st.every, n=st.n,
                    monitor_interference=st.monitor, monitor_refresh=1) for p in st.presets]


def boundary_rates(final: dict, presets: list[str], rates: list[float], chance: float) -> dict[str, list[float]]:
    """Per preset, the two grid rates whose final test accuracy lies nearest the midpoint
    between ``chance`` and 1 (ties: the lower rate first). ``final``: {(preset, rate): acc}."""
    from ..errors import RaretaskError

    mid = chance + (1.0 - chance) / 2
    out = {}
    for p in presets:
        have = []
        for r in rates:  # matched to 6 significant digits: eval labels print rates with %g
            acc = [a for (q, x), a in final.items() if q == p and math.isclose(x, float(r), rel_tol=1e-5)]
            if len(acc) != 1:
                raise RaretaskError(f"boundary seeds: {len(acc)} final accuracies for {p} at rate {r:g} "
                                    "(one expected); the sweep's report table is incomplete")
            have.append((abs(acc[0] - mid), float(r)))
        out[p] = sorted(r for _, r in sorted(have)[:2])
    return out


def seed_configs(sw: dict, corpus: str, out: str, chosen: dict[str, list[float]]) -> list:
    """Stage 3: the boundary rates again with each extra seed."""
    return [_config(sw, corpus, out, grid_name(p, sw["task"], r, s), preset=p, rate=r, seed=int(s))
            for p in sw["presets"] for r in chosen.get(p, []) for s in sw.get("boundary_seeds", [])]


def sweep_configs(name: str, corpus: str, out: str, overrides: list[str] | None = None) -> list:
    """The LMTrainConfig of every run known before training (grid, then gap runs), validated."""
    return _planned_configs(load_sweep(name, overrides), corpus, out)


def _planned_configs(sw: dict, corpus: str, out: str) -> list:
    return grid_configs(sw, corpus, out) + gap_configs(sw, corpus, out) + interference_configs(sw, corpus, out)


class PlannedRun(NamedTuple):
    """One run of ``lm sweep --dry-run``: its size and cost."""

    run: str
    preset: str
    params: int
    non_embedding_params: int
    schedule: str
    steps: int
    tokens: int
    flops: float
    """6 N D with N all parameters (embedding and output layer included)."""
    gpu_hours: float
    """flops / (mfu x peak) in hours."""


def plan_sweep(name: str, out: str, overrides: list[str] | None = None, vocab: int | None = None,
               mfu: float = 0.4, peak_tflops: float = 989.0) -> list[PlannedRun]:
    """Every run a sweep would train, with tokens, steps, FLOPs (6 N D) and GPU-hours at
    ``mfu`` of ``peak_tflops`` (H100 SXM dense bf16: 989). Needs no corpus: CPU presets use
    ``vocab`` (default: the sweep's ``corpus_vocab``, else 8192). A scaling sweep's boundary
    seeds are counted at their most (two rates per preset per seed), chosen only after the grid."""
    from ._models import PRESETS, model_config, non_embedding_params, preset

    if not (0 < mfu <= 1):
        raise ConfigError("mfu", f"{mfu}", "a fraction in (0, 1]")
    if not peak_tflops > 0:
        raise ConfigError("peak_tflops", f"{peak_tflops}", "> 0")
    sw = load_sweep(name, overrides)
    _planned_configs(sw, "(dry run: no corpus)", out)  # every run's config, as a real run builds it
    train = sw.get("train", {})
    steps, batch, seq = int(train.get("steps", 1000)), int(train.get("batch_size", 16)), int(train.get("seq_len", 128))
    tokens = steps * batch * seq
    rows: list[tuple[str, str, str]] = [(grid_name(p, sw["task"], float(r)), p, f"rate {float(r):g}/batch")
                                        for p in sw["presets"] for r in sw["rates"]]
    g = sw.get("gaps")
    if g:
        for p in g["presets"]:
            for every in g["every"]:
                n = round(float(g["rate"]) * every)
                if not (every == 1 and any(math.isclose(float(g["rate"]), float(r)) for r in sw["rates"])):
                    rows.append((f"{p}-{sw['task']}-every{every}-n{n}", p, f"{n} every {every}"))
    from .interference_stage import run_name, stage_of

    st = stage_of(sw)
    if st is not None:
        rows += [(run_name(p, sw["task"], st), p, f"{st.n} every {st.every}, monitor K={st.monitor}")
                 for p in st.presets]
    for s in sw.get("boundary_seeds", []):
        for p in sw["presets"]:
            rows += [(f"{p}-{sw['task']}-<boundary rate {i}>-seed{s}", p, "chosen after the grid") for i in (1, 2)]
    plan = []
    for run, p, sched in rows:
        preset(p)
        v = PRESETS[p].vocab or vocab or sw.get("corpus_vocab") or 8192
        hf = model_config(p, int(v), seq)
        h, V = hf.hidden_size, hf.vocab_size
        n_params = non_embedding_params(p) + 2 * V * h
        flops = 6.0 * n_params * tokens
        plan.append(PlannedRun(str(Path(out) / run), p, n_params, non_embedding_params(p), sched, steps, tokens,
                               flops, flops / (mfu * peak_tflops * 1e12) / 3600.0))
    return plan


def check_corpus_vocab(sw: dict, name: str, corpus: str) -> None:
    """A sweep sized for one vocabulary refuses a corpus of another (its presets' cost and
    the embedding share of compute depend on it)."""
    want = sw.get("corpus_vocab")
    have = _corpus_vocab(corpus)
    if not want or have is None:  # not a corpus: LMTrainConfig / train say so in their own words
        return
    if int(have) != int(want):
        raise ConfigError("corpus", f"{corpus} has a {have}-token vocabulary; {name} is sized for {want}",
                          f"a corpus from `raretask lm corpus build --out C --vocab-size {want}`"
                          " (or --set corpus_vocab=null to run anyway)")


def _corpus_vocab(corpus: str) -> int | None:
    """The corpus's tokenizer vocabulary (None where it is not a corpus: training says so)."""
    try:
        return int(json.loads(Path(corpus, "meta.json").read_text())["tokenizer"]["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def _train_unit(unit: list, progress: bool, callbacks=None) -> list[dict]:
    """One unit of work (``plan_packs``): a pack (``train_pack``), or one run alone (``train``, with
    its callbacks); returns the runs' summaries."""
    from ._packed import train_pack
    from ._train import train

    if len(unit) > 1:
        return train_pack(unit, progress=progress)
    return [train(unit[0], progress=progress, callbacks=callbacks(unit[0]) if callbacks else ())]


def _train_in_worker(cfg_dicts: list[dict], threads: int, callbacks) -> dict:
    """One unit of sweep runs in a worker process (``workers`` > 1): ``threads`` torch threads
    each, so the workers share the cores instead of oversubscribing them."""
    import torch

    from .._workers import run_task, worker_signals
    from ._config import LMTrainConfig

    worker_signals()
    torch.set_num_threads(threads)
    out = run_task(_train_unit, [LMTrainConfig.from_dict(d) for d in cfg_dicts], False, callbacks)
    return {"final_loss": max(s["final_loss"] for s in out), "already_complete": all(s.get("already_complete")
                                                                                      for s in out)}


def check_workers_and_pack(workers, pack: int | None) -> int | None:
    """``--workers`` (an integer >= 1; 1 under torchrun) and ``--pack`` (``check_pack_option``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"{workers!r}", "an integer >= 1")
    if workers > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("workers", f"{workers} under torchrun", "1 under torchrun (its ranks share each run)")
    return check_pack_option(pack)


def check_pack_option(pack: int | None) -> int | None:
    """``--pack``: an integer >= 1, or None (as many as memory allows); under torchrun only 1
    (returned for None: its ranks share each run)."""
    if pack is not None and (isinstance(pack, bool) or not isinstance(pack, int) or pack < 1):
        raise ConfigError("pack", f"{pack!r}", "an integer >= 1 (1: each run alone), or none for as many as fit")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if pack not in (None, 1):
            raise ConfigError("pack", f"{pack} under torchrun", "1 under torchrun (its ranks share each run)")
        return 1
    return pack


def plan_packs(cfgs: list, pack: int | None, workers: int, callbacks=None, vocab: int | None = None) -> list[list]:
    """The sweep's runs as units of work: each a list of configs trained together (one
    ``train_pack``), or a single config trained alone (``lm train``'s path). Runs of one shape
    (``_packed.pack_key``) that can be packed are split into packs of at most ``pack`` runs
    (None: as large as memory allows), and into at least ``workers`` packs when there are that
    many runs, so every worker has one; runs that cannot be packed (the interference monitor's),
    and every run when ``pack`` is 1, train alone. An explicit ``pack`` that memory does not
    allow is refused (``_packed.check_pack``) before anything is written."""
    from ._models import step_flops
    from ._packed import PACK_BELOW_GFLOP, available_memory, check_pack, pack_key, pack_memory, packable

    alone, groups = [], {}
    for c in cfgs:
        large = pack is None and step_flops(c.preset, vocab or 50304, c.batch_size, c.seq_len) >= PACK_BELOW_GFLOP * 1e9
        if pack == 1 or large or packable(c, callbacks(c) if callbacks else ()) is not None:
            alone.append([c])
        else:
            groups.setdefault(pack_key(c), []).append(c)
    units = []
    for key, group in groups.items():
        size = pack
        if size is None:
            per = pack_memory(key[0], vocab or 50304, key[1], key[2], 1)
            size = max(1, int(0.8 * available_memory() // per))
        n = max(math.ceil(len(group) / size), min(workers, len(group)))
        chunks = [group[i::n] for i in range(n)]  # balanced: sizes differ by at most one
        for ch in chunks:
            if vocab is not None and len(ch) > 1:
                check_pack(ch, vocab)
        units += chunks
    units += alone
    # the costliest first, so that no worker is left with a large unit when the others are done
    return sorted(units, key=lambda u: -len(u) * u[0].steps * pack_memory(u[0].preset, vocab or 50304,
                                                                           u[0].batch_size, u[0].seq_len, 1))


def _unit_name(unit: list) -> str:
    return Path(unit[0].out).name if len(unit) == 1 else f"pack of {len(unit)}: " + ", ".join(
        Path(c.out).name for c in unit)


def _train_parallel(cfgs: list, workers: int, say: Callable[[str], None], t0: float, stage: str,
                    callbacks) -> None:
    """Train ``cfgs``, units of work (``plan_packs``: a pack, or one run alone), on ``workers``
    processes (spawned: no forked torch state), each run in its own locked folder as in one
    process. The first failure stops the sweep at once: the other
    workers are stopped (their runs keep their last checkpoints) and the error is raised;
    re-running the sweep resumes every unfinished run."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        todo = {pool.submit(_train_in_worker, [c.to_dict() for c in u], threads, callbacks): u for u in cfgs}
        say(f"[{stage}] {sum(map(len, cfgs))} runs in {len(cfgs)} unit(s) of work on {workers} worker processes "
            f"({threads} thread(s) each); a line as each finishes")
        done = 0
        while todo:
            finished, _ = wait(todo, return_when=FIRST_COMPLETED)
            for fut in finished:
                u = todo.pop(fut)
                r = fut.result()  # a run's error (or a dead worker's) ends the sweep here
                done += 1
                say(f"[{stage} {done}/{len(cfgs)}] {_unit_name(u)} "
                    f"{'was complete' if r['already_complete'] else 'trained'} (final loss {r['final_loss']:.3f}"
                    f"{'' if len(u) == 1 else ', the highest of the pack'}; "
                    f"{(time.perf_counter() - t0) / 60:.1f} min into the sweep)")
    except BaseException:
        procs = list((pool._processes or {}).values())
        for proc in procs:  # now, not after the other runs' whole length (they resume from checkpoints)
            proc.terminate()
        for proc in procs:
            proc.join()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def train_units(units: list[list], workers: int, progress: bool, t0: float, stage: str, callbacks=None) -> None:
    """Train ``units`` (``plan_packs``): on ``workers`` processes, or one after another here; a
    line as each starts (one process) or ends (workers) when ``progress``."""
    if workers > 1:
        return _train_parallel(units, workers, lambda text: _say(progress, text), t0, stage, callbacks)
    for i, unit in enumerate(units, 1):
        _say(progress, f"[{stage} {i}/{len(units)}] {_unit_name(unit)}"
                       f"  ({(time.perf_counter() - t0) / 60:.1f} min into the sweep)")
        _train_unit(unit, progress, callbacks)


def run_sweep(name: str, corpus: str, out: str, overrides: list[str] | None = None, progress: bool = True,
              probe: Callable[[Path, dict], object] | None = None, workers: int = 1,
              callbacks: Callable[[object], list] | None = None, pack: int | None = None) -> dict | None:
    """Train every run, then evaluate them together into ``out/report`` (and, for a scaling
    sweep, choose and train the boundary seeds, probe, and write ``out/scaling``).

    ``probe(run, settings)``: probes one run with the sweep's ``probe`` settings (the CLI
    passes ``raretask.probes``'s; ``lm`` does not import ``probes``); None skips the probe
    stage, and the scaling report says so. ``workers`` > 1: train that many runs at once, each in
    its own process with its share of the cores (one process only: not under torchrun).
    ``callbacks(cfg)``: the training callbacks of each run (the CLI passes
    ``probes.monitor_callbacks``, for sweeps that set ``train.monitor_interference``); a
    module-level function, so worker processes can take it. ``pack``: runs of one shape train
    together in one process, at most ``pack`` of them (``lm._packed``; None: shapes whose
    run-step costs under ``_packed.PACK_BELOW_GFLOP``, as many as memory allows, split over the
    workers; 1: each run alone, as ``lm train`` trains it); runs with callbacks train alone."""
    import contextlib

    from ._evaluate import evaluate_runs
    from ._runs import eval_folder, sweep_folder
    from ._train import check_run_dir, require_callbacks

    sw = load_sweep(name, overrides)
    pack = check_workers_and_pack(workers, pack)
    check_corpus_vocab(sw, name, corpus)
    configs = _planned_configs(sw, corpus, out)
    folder = sweep_folder(out)
    folder.check()
    for cfg in configs:  # every run checked (reads only) before anything is written
        cfg.check_corpus()
        check_run_dir(copy.copy(cfg), Path(cfg.out), sweep=True)
        require_callbacks(cfg, callbacks(cfg) if callbacks else [])
    eval_folder(Path(out) / "report").check()
    plan_packs(configs, pack, workers, callbacks, vocab := _corpus_vocab(corpus))  # refused before anything is written
    rank0 = int(os.environ.get("RANK", "0")) == 0
    t0 = time.perf_counter()

    def train_all(stage: str, cfgs: list) -> None:
        train_units(plan_packs(cfgs, pack, workers, callbacks, vocab), workers, progress and rank0, t0, stage,
                    callbacks)

    with contextlib.ExitStack() as stack:
        if rank0:
            stack.callback(folder.release)
            folder.open()
            atomic_json(Path(out) / "sweep.json", {"name": name, "overrides": list(overrides or []), "sweep": sw,
                                                   "corpus": str(corpus), "raretask_version": __version__})
        train_all("train", configs)
        if sw.get("report") != "scaling":
            if not rank0:
                return None
            return evaluate_runs([c.out for c in configs], out=Path(out) / "report", progress=progress and rank0)
        seeds: list = []
        if sw.get("boundary_seeds"):
            grid = grid_configs(sw, corpus, out)
            res = (evaluate_runs([c.out for c in grid], out=Path(out) / "report", progress=progress)
                   if rank0 else None)
            chosen = _broadcast(boundary_rates(_final_accuracy(res["table"]) if res else {}, sw["presets"],
                                               sw["rates"], CHANCE[sw["task"]]) if rank0 else None)
            seeds = seed_configs(sw, corpus, out, chosen)
            for cfg in seeds:
                check_run_dir(copy.copy(cfg), Path(cfg.out), sweep=True)
            train_all("boundary seed", seeds)
        if not rank0:
            return None
        res = evaluate_runs([c.out for c in configs + seeds], out=Path(out) / "report", progress=progress and rank0)
        if probe is not None:
            targets = probe_targets(sw, out)
            for i, run in enumerate(targets, 1):
                _say(progress, f"[probe {i}/{len(targets)}] {run.name}")
                probe(run, probe_settings(sw))
        from .scaling_report import scaling_report

        scaling = scaling_report(out, sw)
        res["scaling"] = scaling
        res["wall_seconds"] = time.perf_counter() - t0
        return res


def _final_accuracy(df) -> dict:
    """{(preset, rate): final test accuracy} of the seed-0 grid runs in an eval table."""
    fin = df.sort_values("step").groupby("run").tail(1)
    out = {}
    for r in fin.itertuples():
        if r.schedule.startswith("rate ") and "-seed" not in Path(r.run).name:
            out[(r.preset, float(r.schedule.split()[1].split("/")[0]))] = float(r.test_accuracy)
    return out


def _broadcast(obj):
    """rank 0's object on every rank (a no-op in one process)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            box = [obj]
            dist.broadcast_object_list(box, src=0)
            return box[0]
    except ImportError:
        pass
    return obj


def probe_targets(sw: dict, out: str) -> list[Path]:
    """The runs a scaling sweep probes: every preset's seed-0 grid run at each ``probe.rates``."""
    pr = sw.get("probe") or {}
    return [Path(out) / grid_name(p, sw["task"], float(r)) for p in sw["presets"] for r in pr.get("rates", [])]


def probe_settings(sw: dict) -> dict:
    """The sweep's ``probe`` settings as ``ProbeConfig`` keywords: the checkpoints it names
    (``probe.checkpoints``: "last" by default, "all" for features across training, Fig. 7)
    and the untrained model of each probed run."""
    pr = {k: v for k, v in (sw.get("probe") or {}).items() if k != "rates"}
    return {**pr, "probes": tuple(pr.get("probes", ())), "checkpoints": str(pr.get("checkpoints", "last")),
            "init": True}
