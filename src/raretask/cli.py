"""Command-line interface: ``raretask plan | study | bench | lm``.

Bad input never produces a traceback: argument and configuration errors print one line
``raretask: error: ...`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Sequence

from .errors import ConfigError, RaretaskError


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we want exactly one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"raretask: error: {message}\n")
        raise SystemExit(2)


def _add_mixture_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mixture (SPEC A1)")
    g.add_argument("--tasks", type=int, default=None, help="K, number of tasks (default 32)")
    g.add_argument("--block-dim", type=int, default=None, help="d, dimension of each task block (default 16)")
    g.add_argument("--beta", type=float, default=None, help="prior exponent, pi_k ~ k^-beta (default 1.5)")
    g.add_argument("--prior", type=float, nargs="+", default=None, metavar="P",
                   help="explicit prior, K numbers summing to 1 (instead of --beta)")
    a = g.add_mutually_exclusive_group()
    a.add_argument("--alpha", type=float, default=None, help="spectral decay lambda_j = j^-alpha (default 1)")
    a.add_argument("--alpha-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="complexity sweep: alpha_k linear over [LO, HI], task 1 gets HI")
    g.add_argument("--frequencies", type=str, default=None, metavar="CSV",
                   help="measured task frequencies: CSV with columns task,frequency[,spectrum] "
                        "(spectrum: ';'-separated lambdas); frequencies are normalised to sum 1")
    g.add_argument("--rank1", action="store_true", help="rank-1 special case (d = 1, lambda = 1)")
    g.add_argument("--noise", type=float, default=0.0, help="target noise sigma (default 0)")
    g.add_argument("--frequent-mass", type=float, default=0.8, help="rho for the frequent set F (default 0.8)")
    g.add_argument("--feature-threshold", type=float, default=0.5,
                   help="alignment above which a feature counts as learned (default 0.5)")


def _refuse_conflicts(args: argparse.Namespace, spectrum_from_csv: bool) -> None:
    """Two flags that set the same thing are refused with one line naming both (one of them
    used to win silently: --rank1 --block-dim 4 planned d = 1)."""
    given = {f: getattr(args, f.lstrip("-").replace("-", "_")) for f in
             ("--tasks", "--block-dim", "--beta", "--prior", "--alpha", "--alpha-range", "--frequencies")}
    given = {f: v for f, v in given.items() if v is not None}
    if args.rank1:
        given["--rank1"] = True
    pairs = [("--rank1", "--block-dim", "rank-1 fixes d = 1"), ("--rank1", "--alpha", "rank-1 has one lambda = 1"),
             ("--rank1", "--alpha-range", "rank-1 has one lambda = 1"), ("--prior", "--beta", "both set the prior"),
             ("--frequencies", "--tasks", "the CSV's rows are the tasks"),
             ("--frequencies", "--prior", "the CSV's frequencies are the prior"),
             ("--frequencies", "--beta", "the CSV's frequencies are the prior")]
    if spectrum_from_csv:
        pairs += [("--frequencies", "--block-dim", "the CSV's spectrum sets d"),
                  ("--frequencies", "--alpha", "the CSV's spectrum sets the lambdas"),
                  ("--frequencies", "--alpha-range", "the CSV's spectrum sets the lambdas"),
                  ("--frequencies", "--rank1", "the CSV's spectrum sets the lambdas")]
    for a, b, why in pairs:
        if a in given and b in given:
            field = a.lstrip("-").replace("-", "_")
            raise ConfigError(field, f"{a} and {b} together ({why})", f"one of {a} and {b}")


def _spec_from_args(args: argparse.Namespace):
    from .mixture import MixtureSpec

    prior, spectrum = args.prior, None
    if args.frequencies:
        from .mixture.frequencies import read_frequencies

        prior, spectrum = read_frequencies(args.frequencies)
    _refuse_conflicts(args, spectrum is not None)
    n_tasks = len(prior) if args.frequencies else (args.tasks if args.tasks is not None else 32)
    block_dim = (1 if args.rank1 else len(spectrum[0]) if spectrum is not None
                 else args.block_dim if args.block_dim is not None else 16)
    return MixtureSpec(
        n_tasks=n_tasks,
        block_dim=block_dim,
        beta=args.beta if args.beta is not None else 1.5,
        prior=tuple(prior) if prior else None,
        spectrum=spectrum,
        alpha=args.alpha if args.alpha is not None else 1.0,
        alpha_range=tuple(args.alpha_range) if args.alpha_range else None,
        rank1=args.rank1,
        noise=args.noise,
        frequent_mass=args.frequent_mass,
        feature_threshold=args.feature_threshold,
    )


def _cmd_plan(args: argparse.Namespace) -> int:
    from .plan import build_plan

    spec = _spec_from_args(args)
    widths = args.width or [w for w in (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if w <= spec.D]
    plan = build_plan(spec, widths)
    if args.target_task is not None:
        from .plan import build_target

        plan["target"] = build_target(spec, args.target_task, args.width or [64], args.features,
                                      tradeoff=args.tradeoff)
        if args.plot:
            from .report.planner import plot_tradeoff

            from .runfolder import FIGURE_FORMATS

            if os.path.isdir(args.plot):
                raise ConfigError("plot", f"{args.plot} is a directory", "a .png file path")
            suffix = os.path.splitext(args.plot)[1].lower().lstrip(".")
            if suffix not in FIGURE_FORMATS:
                raise ConfigError("plot", f"{args.plot}: .{suffix or '(no suffix)'}", "a .png, .pdf or .svg path")
            plot_tradeoff(plan["target"], args.plot)
            sys.stderr.write(f"raretask: saved the frontier plot to {args.plot}\n")
    elif args.tradeoff or args.plot:
        raise ConfigError("tradeoff", "needs --target-task", "--target-task K --width N --tradeoff")
    if args.json:
        print(json.dumps(plan, indent=2 if args.indent else None))
        return 0
    from .report.console import print_plan

    print_plan(plan)
    if "target" in plan:
        from .report.console import print_target

        print_target(plan["target"])
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .studies import build_config, run_study

    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.widths:
        overrides.append("widths=" + json.dumps(args.widths))
    if args.seeds:
        overrides.append("seeds=" + json.dumps(args.seeds))
    if args.ray_address is not None and args.executor != "ray":
        raise ConfigError("ray_address", f"--ray-address {args.ray_address} with --executor {args.executor}",
                          "--executor ray with --ray-address, or no --ray-address")
    cfg = build_config(args.name, args.preset, overrides)
    out = args.out or f"runs/{args.name}-{args.preset}"
    console = Console(stderr=True)
    summary = run_study(cfg, out, restart=args.restart, console=console, executor=args.executor,
                        workers=args.workers, ray_address=args.ray_address)
    t = Table(title=f"{args.name} ({args.preset}): theory vs measurement")
    for col in ("check", "measured", "expected", "ok"):
        t.add_column(col)
    from rich.markup import escape

    fmt = lambda v: escape(f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    for c in summary["checks"]:
        ok = {"yes": "[green]yes[/green]", "no": "[red]no[/red]", "n/a": "[yellow]n/a[/yellow]",
              "": ""}[c["verdict"]]
        t.add_row(escape(c["name"]), fmt(c["measured"]), fmt(c["expected"]), ok)
    Console().print(t)
    print(f"report: {out}/report.html")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .report.explain import explain_run

    blocks = [explain_run(r) for r in args.runs]  # every run read before anything is printed
    for lines in blocks:
        print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="raretask", description=__doc__.splitlines()[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"raretask {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error (also RARETASK_DEBUG=1)")
    p.add_argument("--plugin", action="append", metavar="MODULE",
                   help="import MODULE first, so the studies, probes, families, presets and callbacks it registers "
                        "are choices here (repeatable, anywhere on the line; also RARETASK_PLUGINS=a,b and installed "
                        "packages' 'raretask.plugins' entry points)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="predict which tasks a width-N model learns (closed form)")
    _add_mixture_args(plan)
    plan.add_argument("--width", type=int, action="append", metavar="N",
                      help="student width N (repeatable; default the SPEC grid up to D)")
    plan.add_argument("--target-task", type=int, default=None, metavar="K",
                      help="inverse question for task K: the frequency a width-N model needs to learn it, "
                           "and the width it needs at its current frequency")
    plan.add_argument("--features", type=int, default=1, metavar="M",
                      help="with --target-task: learn the task's first M features (default 1)")
    plan.add_argument("--tradeoff", action="store_true",
                      help="with --target-task: the frontier of (width, frequency) routes and their cost")
    plan.add_argument("--plot", type=str, default=None, metavar="FILE",
                      help="with --tradeoff: save the frontier plot (.png, .pdf or .svg, by its suffix)")
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    plan.add_argument("--indent", action="store_true", help="indent the JSON output")
    plan.set_defaults(func=_cmd_plan)

    from .studies import study_names

    st = sub.add_parser("study", help="run a named synthetic study (SPEC A5) with figures and a report")
    st.add_argument("name", choices=study_names())
    st.add_argument("--preset", default="quick", help="preset from the study's preset file (quick, paper, ...)")
    st.add_argument("--out", default=None, help="run directory (default runs/NAME-PRESET); re-running resumes")
    st.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.steps=2000 --set mixture.beta=1.2")
    st.add_argument("--steps", type=int, default=None, help="shortcut for --set train.steps=N")
    st.add_argument("--widths", type=int, nargs="+", default=None, help="shortcut for --set widths=[...]")
    st.add_argument("--seeds", type=int, nargs="+", default=None, help="shortcut for --set seeds=[...]")
    st.add_argument("--restart", action="store_true", help="discard an existing run directory first")
    st.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="where cells run: local process pool (default) or a Ray cluster")
    st.add_argument("--workers", type=int, default=None,
                    help="cells run in parallel (default: CPU count, at most the number of cells; "
                         "1 runs them in this process)")
    st.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="with --executor ray: the cluster to join (e.g. auto or ray://host:10001); "
                         "default starts a local Ray instance")
    st.set_defaults(func=_cmd_study)

    ex = sub.add_parser("explain", help="say in plain words what finished study runs computed and what their "
                                        "verdicts mean")
    ex.add_argument("runs", nargs="+", metavar="RUN", help="study run folders (the --out of raretask study)")
    ex.set_defaults(func=_cmd_explain)

    from .bench import add_bench_parser

    add_bench_parser(sub)

    from .lm._cli import add_lm_parser

    add_lm_parser(sub, _Parser)

    return p


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(e: BaseException) -> tuple[str, int]:
    """The one line and exit status an exception becomes at the CLI (the error boundary)."""
    import errno

    if isinstance(e, ConfigError):
        return _one_line(str(e)), 2
    if isinstance(e, RaretaskError):
        return _one_line(str(e)), 1
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = e.filename or "the output folder"
        return f"no space left on device while writing {where}; free space and run the same command again", 1
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {e.filename or 'a file'}: {e.strerror.lower()}", 1
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e.__class__.__name__}: {e.filename}", 1
    if isinstance(e, MemoryError):
        return "out of memory; use a smaller configuration", 1
    msg = _one_line(str(e)) or "(no message)"
    return f"{e.__class__.__name__}: {msg} (run with --debug for the traceback)", 1


DEBUG_VALUES = {"": False, "0": False, "false": False, "no": False, "off": False,
                "1": True, "true": True, "yes": True, "on": True}
"""What RARETASK_DEBUG may be set to (case-insensitive)."""

INTERRUPT_CODES = (130, 143, 129)
"""Exit statuses of a run stopped by SIGINT, SIGTERM, SIGHUP (128 + the signal)."""


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP act as Ctrl-C while a command runs: ``errors.Interrupted`` (a
    KeyboardInterrupt) is raised where the program is, so workers are stopped and joined and
    locks released on the way out; the previous handlers come back after (only from the main
    thread, where Python delivers signals)."""
    import signal
    import threading

    from .errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _one_line_warnings():
    """raretask's own warnings (``errors.RaretaskWarning``) become one line on stderr each; other
    libraries' warnings are left to Python's defaults."""
    import warnings

    from .errors import RaretaskNote, RaretaskWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RaretaskWarning):
            kind = "note" if issubclass(category, RaretaskNote) else "warning"
            sys.stderr.write(f"raretask: {kind}: {message}\n")
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        warnings.simplefilter("always", RaretaskWarning)  # every time, not once per code location
        warnings.showwarning = show
        yield


class StdoutError(Exception):
    """Standard output could not be written (a closed pipe, a full device, a closed descriptor)."""

    def __init__(self, err: OSError):
        super().__init__(err.strerror or str(err))
        self.errno = err.errno
        self.strerror = err.strerror or str(err)


class _GuardedStdout:
    """sys.stdout while a command runs: a failed write or flush becomes ``StdoutError``, so the
    boundary can tell the output stream from the run's files."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data):
        try:
            return self._stream.write(data)
        except OSError as e:
            raise StdoutError(e) from e

    def flush(self):
        try:
            return self._stream.flush()
        except OSError as e:
            raise StdoutError(e) from e

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout() -> None:
    """After a broken pipe: nothing more reaches it, and the interpreter's last flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every exception becomes one line ``raretask: error: ...`` with exit
    status 2 (bad input) or 1 (runtime); ``--debug`` or RARETASK_DEBUG=1 shows the traceback."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    flag = os.environ.get("RARETASK_DEBUG", "").strip().lower()
    if flag not in DEBUG_VALUES:
        sys.stderr.write(f"raretask: error: invalid RARETASK_DEBUG: {flag!r} (allowed: 0, 1, true, false, yes, no, "
                         "or unset)\n")
        return 2
    debug = "--debug" in argv or DEBUG_VALUES[flag]
    argv = [a for a in argv if a != "--debug"]
    if sys.stdout is None:  # started with descriptor 1 closed: Python would drop every line silently
        sys.stderr.write("raretask: error: standard output is closed; give the command somewhere to write "
                         "(e.g. > out.txt or > /dev/null)\n")
        return 1
    real_stdout = sys.stdout
    sys.stdout = _GuardedStdout(real_stdout)
    try:
        with _signals_interrupt(), _one_line_warnings():
            from .plugins import load_plugins, take_plugin_flags

            plugins, argv = take_plugin_flags(argv)
            load_plugins(plugins)  # before the parser: what plugins register are the commands' choices
            parser = build_parser()
            args = parser.parse_args(argv)
            from .runfolder import figure_formats

            figure_formats()  # RARETASK_FIGURE_FORMATS checked before anything is computed or written
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a full device or closed pipe is this command's error, not the shutdown's
            return code
    except StdoutError as e:
        import errno

        if e.errno == errno.EPIPE:  # `| head`: the reader has what it wanted; quiet, as Unix tools are
            _silence_stdout()
            return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
        sys.stderr.write(f"raretask: error: cannot write to standard output: {e.strerror.lower()}\n")
        return 1
    except SystemExit as e:  # argparse (--help, usage errors) may have written to a broken stdout
        try:
            sys.stdout.flush()
        except StdoutError:
            _silence_stdout()
        raise e
    except KeyboardInterrupt as e:
        import signal

        signum = getattr(e, "signum", signal.SIGINT)
        name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        sys.stderr.write(f"raretask: interrupted{name}; re-run the same command to resume\n")
        return 128 + int(signum)
    except BaseException as e:  # noqa: BLE001  (the one error boundary)
        if debug:
            import traceback

            traceback.print_exc()
        line, code = error_line(e)
        sys.stderr.write(f"raretask: error: {line}\n")
        return code
    finally:
        if isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = real_stdout


def entry() -> None:
    """Console-script entry: exits without running interpreter shutdown after an interrupt,
    where JAX/XLA or torch threads still unwinding can crash the process (exit 139)."""
    import os
    import signal

    code = main()
    # the work is done (or given up): a Ctrl-C arriving now, during interpreter shutdown, must
    # not turn a finished run into a death by SIGINT
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    if code in INTERRUPT_CODES:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
