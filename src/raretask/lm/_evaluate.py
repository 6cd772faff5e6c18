"""Evaluation over checkpoints (SPEC B4).

Per checkpoint: the injected task's loss on the LABEL token (train split) and accuracy on
the test split (argmax over the task's labels, and over the whole vocabulary), the
reference tasks' next-token loss, held-out LM loss, and compute 6 * params * tokens.
Reference-task frequencies are template counts: the n-gram counts of every instantiation of
"{x} + {y} =" and "it has increased from {x} to" (x, y < 100), summed, with a local
infini-gram index (``template_frequencies``).
Results are cached per checkpoint (``<run>/eval/step-N.json``), keyed by every evaluation
parameter and the checkpoint's model checksum, so a re-run only evaluates new checkpoints (or
those asked about with other parameters). Each checkpoint's model files are checked against
their recorded checksums first: a damaged one is one error line naming it, never a result.
A run being evaluated is locked (eval writes its cache there); a report over several runs is a
``RunFolder`` of kind "lm-eval".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..report.html import Check, Figure, write_report
from ..runfolder import atomic_parquet, atomic_write, read_cached, write_cached
from ._runs import eval_folder, load_model, model_sha256, train_folder, training_run, verify_checkpoint
from ._train import LMTrainConfig, list_checkpoints, setup

EVAL_FORMAT = 3
"""Bump when the evaluation's numbers change, so cached results are not reused (3: reference prompts
in padded batches, the same numbers to float rounding)."""

REFERENCE_TASKS = {
    "increase": "it has increased from {x} to",
    "addition": "{x} + {y} =",
}


def reference_prompts(n: int, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """(prompt, continuation) pairs: 'it has increased from x to' -> ' y' with y > x, and
    'x + y =' -> ' x+y' with x, y < 100."""
    rng = np.random.default_rng([seed, 0xEF])
    inc, add = [], []
    for _ in range(n):
        x = int(rng.integers(1, 1000))
        inc.append((REFERENCE_TASKS["increase"].format(x=x), f" {x + int(rng.integers(1, x + 1))}"))
        a, b = (int(v) for v in rng.integers(0, 100, 2))
        add.append((REFERENCE_TASKS["addition"].format(x=a, y=b), f" {a + b}"))
    return {"increase": inc, "addition": add}


def _continuation_loss(model, tok, pairs, torch, batch: int = 256) -> float:
    """Mean over pairs of the mean cross-entropy of the continuation's tokens.

    The pairs go through the model in right-padded batches: a causal model's logits at a
    position depend only on the tokens before it, so the padding after a sequence changes
    nothing that is read (the same numbers as one pair at a time, to float rounding)."""
    seqs, starts = [], []
    for prompt, cont in pairs:
        p = tok.encode(prompt)
        full = tok.encode(prompt + cont)
        if full[:len(p)] != p or len(full) == len(p):  # tokenisation merged across the boundary
            full = p + tok.encode(cont)
        seqs.append(full)
        starts.append(len(p))
    losses = []
    for i in range(0, len(seqs), batch):
        chunk, st = seqs[i:i + batch], starts[i:i + batch]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long)
        read = torch.zeros((len(chunk), width - 1), dtype=torch.bool)  # positions whose next token is read
        for j, s in enumerate(chunk):
            ids[j, :len(s)] = torch.as_tensor(s)
            read[j, st[j] - 1:len(s) - 1] = True
        logits = model(input_ids=ids).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                               reduction="none").reshape(read.shape)
        # each pair's mean over its continuation tokens, in one call for the whole batch
        losses += ((ce * read).sum(1) / read.sum(1)).tolist()
    return float(np.mean(losses))


def evaluate_checkpoint(ck: Path, cfg: LMTrainConfig, heldout_windows: int | None = None, n_prompts: int = 200,
                        env=None, state: dict | None = None) -> dict:
    """Metrics of one checkpoint (see the module docstring). ``env``: ``setup(cfg)``, when
    the caller has it already; ``state``: its trainer_state from ``verify_checkpoint``, when the
    caller has verified it already."""
    import torch
    from transformers.utils import logging as hf_logging

    _check_counts(heldout_windows, n_prompts)
    hf_logging.disable_progress_bar()
    env = env or setup(cfg)
    heldout_windows = heldout_count(cfg, heldout_windows, env.corpus)
    corpus, tok, tasks = env.corpus, env.tokenizer, env.tasks
    state = state if state is not None else verify_checkpoint(ck)
    model = load_model(ck)
    params = int(sum(p.numel() for p in model.parameters()))
    out = {"step": int(state["step"]), "tokens": int(state["tokens"]), "params": params,
           "compute": 6.0 * params * int(state["tokens"])}
    with torch.no_grad():
        inst = torch.as_tensor(tasks.instances)
        logits = torch.cat([model(input_ids=inst[i:i + 2000, :2]).logits[:, 1] for i in range(0, len(inst), 2000)])
        label = inst[:, 2]
        ce = torch.nn.functional.cross_entropy(logits, label, reduction="none").numpy()
        cand = torch.as_tensor(tasks.candidates)
        pred = cand[logits[:, cand].argmax(1)].numpy()
        pred_full = logits.argmax(1).numpy()
        lab = label.numpy()
        tr, te = tasks.train, tasks.test
        out.update(task_train_loss=float(ce[tr].mean()), task_test_loss=float(ce[te].mean()),
                   train_accuracy=float((pred[tr] == lab[tr]).mean()),
                   test_accuracy=float((pred[te] == lab[te]).mean()),
                   test_accuracy_full_vocab=float((pred_full[te] == lab[te]).mean()))
        n_held = heldout_windows  # heldout_count: never more than the split holds
        if n_held:
            w = torch.as_tensor(corpus.windows(np.arange(n_held), cfg.seq_len, "heldout"))
            hl = [float(torch.nn.functional.cross_entropy(
                model(input_ids=w[i:i + 16]).logits[:, :-1].reshape(-1, model.config.vocab_size),
                w[i:i + 16, 1:].reshape(-1))) for i in range(0, n_held, 16)]
            out["heldout_loss"] = float(np.mean(hl))
        for name, pairs in reference_prompts(n_prompts).items():
            out[f"ref_{name}_loss"] = _continuation_loss(model, tok, pairs, torch)
    return out


REFERENCE_RANGES = {"increase": {"x": range(100)}, "addition": {"x": range(100), "y": range(100)}}
"""The values each reference template is counted over: x < 100 (and y < 100)."""

TEXT_CHECK_MAX_TOKENS = 50_000_000
"""Up to this many training tokens the template counts are checked against the decoded text
(and an index's counts against a brute-force pass over the tokens)."""


def template_frequencies(corpus, counter, max_check_tokens: int = TEXT_CHECK_MAX_TOKENS) -> dict:
    """Corpus frequency of each reference template (SPEC B4): the n-gram counts of its
    instantiations (x, y in 0..99), each tokenised as it appears mid-sentence, with a leading
    space (" {x} + {y} =", " it has increased from {x} to"), summed; see ``template_counts``
    for why that is a lower bound. Per template: the count, per training token, how many of
    the instantiations occur, the backend (``counted_with``), and, for corpora up to
    ``max_check_tokens``: ``brute_force_count`` (the same n-grams counted by one numpy pass
    over the tokens, None when that is the backend already) and ``text_count`` (occurrences
    of the instantiated texts in the decoded documents; the n-gram count is at most that)."""
    import time

    from ._ngram import count_numpy_many, decoded_documents, template_counts, template_instances, text_occurrences

    tok = corpus.tokenizer
    n = len(corpus.train)
    small = n <= max_check_tokens
    docs = decoded_documents(corpus.train, tok) if small else None
    res = {}
    for name, template in REFERENCE_TASKS.items():
        ranges = REFERENCE_RANGES[name]
        t0 = time.perf_counter()
        r = template_counts(counter, tok, template, ranges)
        r.update(per_token=r["count"] / n, corpus_tokens=n, seconds=round(time.perf_counter() - t0, 3),
                 brute_force_count=None, text_count=None)
        if small:
            if counter.backend != "numpy":
                seqs = tok.encode_batch(template_instances(template, ranges))
                r["brute_force_count"] = int(sum(count_numpy_many(np.asarray(corpus.train), seqs)))
            r["text_count"] = text_occurrences(docs, template, ranges)
        res[name] = r
    return res


def reference_frequencies(cfg: LMTrainConfig, index_dir: Path) -> dict:
    """``template_frequencies`` of the run's training corpus, counted with its infini-gram
    index (brute force below 1M tokens)."""
    from ._ngram import NgramCounter

    corpus = setup(cfg).corpus
    return template_frequencies(corpus, NgramCounter(corpus, index_dir))


def frequency_checks(freqs: dict) -> list[Check]:
    """Report rows for the template counts: each count (informative), and the checks that can
    fail: index count == brute-force count, n-gram count <= text count."""
    checks = []
    for k, v in freqs.items():
        checks.append(Check(
            f"corpus frequency of the reference template '{v['template']}' ({k}): n-gram count of "
            f"'{v['counted_as']}' summed over its {v['instantiations']:,} instantiations (a lower bound)",
            v["count"], f"{_per_token(v)}; {v['instantiations_present']:,} of the instantiations occur; "
                        f"counted with {v['counted_with']}", None))
        if v.get("brute_force_count") is not None:
            checks.append(Check(f"'{v['template']}': {v['counted_with']} count equals a brute-force pass over the "
                                f"tokens", v["count"], v["brute_force_count"],
                                v["count"] == v["brute_force_count"]))
        if v.get("text_count") is not None:
            checks.append(Check(f"'{v['template']}': n-gram count is at most the occurrences of the instantiated "
                                f"texts in the decoded corpus (a lower bound; equal unless a last token merges "
                                f"with what follows)", v["count"], f"<= {v['text_count']}",
                                v["count"] <= v["text_count"]))
        else:
            checks.append(Check(f"'{v['template']}': count not checked against the decoded text or a brute-force "
                                f"pass", f"{v['corpus_tokens']:,} training tokens",
                                f"checked up to {TEXT_CHECK_MAX_TOKENS:,}", None))
    return checks


DEFAULT_HELDOUT_WINDOWS = 64
"""Held-out windows for the LM loss when none are asked for (all of them when the split has fewer)."""


MAX_REFERENCE_PROMPTS = 10_000
"""There are 10,000 distinct addition prompts (x, y < 100): more prompts only repeat them, and
the list is built in memory (10^9 asked for was built in a Python loop until memory ran out)."""


def _check_counts(heldout_windows: int | None, n_prompts: int) -> None:
    for name, v in (("heldout_windows", heldout_windows), ("reference_prompts", n_prompts)):
        if v is None and name == "heldout_windows":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, f"{v!r}", "integer >= 1")
    if n_prompts > MAX_REFERENCE_PROMPTS:
        raise ConfigError("reference_prompts", f"{n_prompts:,} (there are {MAX_REFERENCE_PROMPTS:,} distinct addition "
                          "prompts; more would only repeat them)", f"1..{MAX_REFERENCE_PROMPTS:,}")


def heldout_count(cfg: LMTrainConfig, asked: int | None, corpus=None) -> int:
    """The held-out windows an evaluation of a run uses: ``asked``, which the corpus's held-out
    split must hold (more is refused, never silently capped), or by default up to
    ``DEFAULT_HELDOUT_WINDOWS``. ``corpus``: the run's corpus when the caller has it open."""
    from ._corpus import Corpus

    avail = (corpus or Corpus(cfg.corpus)).n_windows(cfg.seq_len, "heldout")
    if asked is None:
        return min(DEFAULT_HELDOUT_WINDOWS, avail)
    if asked > avail:
        raise ConfigError("heldout_windows", f"{asked} is more than the {avail} held-out windows of {cfg.seq_len} "
                          f"tokens in the corpus {cfg.corpus}", f"1..{avail}" if avail else "a corpus with a held-out split")
    return asked


def cache_key(state: dict, heldout_windows: int, n_prompts: int) -> dict:
    """What a cached result of a checkpoint depends on: every evaluation parameter and the model."""
    return {"format": EVAL_FORMAT, "heldout_windows": int(heldout_windows), "reference_prompts": int(n_prompts),
            "model_sha256": model_sha256(state)}


def verified_checkpoints(run: Path) -> dict[Path, dict]:
    """Every checkpoint of a run with its trainer_state, each checked against its checksums
    (one line naming the first damaged file); a run without checkpoints is refused."""
    cks = list_checkpoints(run)
    if not cks:
        raise ConfigError("run", f"{run} has no checkpoints yet", "a run with at least one checkpoint")
    return {ck: verify_checkpoint(ck) for ck in cks}


def evaluate_run(run: str | Path, heldout_windows: int | None = None, n_prompts: int = 200, progress=None,
                 verified: dict[Path, dict] | None = None) -> pd.DataFrame:
    """Evaluate every checkpoint of a run (cached); rows by step. The caller holds the run's lock
    (``evaluate_runs`` does); ``verified``: ``verified_checkpoints(run)``, when it has them;
    ``heldout_windows``: see ``heldout_count``."""
    _check_counts(heldout_windows, n_prompts)
    run = Path(run)
    _, cfg = training_run(run)
    verified = verified if verified is not None else verified_checkpoints(run)
    env = setup(cfg)
    heldout_windows = heldout_count(cfg, heldout_windows, env.corpus)
    schedule = env.schedule
    (run / "eval").mkdir(exist_ok=True)
    for t in (run / "eval").glob(".*.tmp"):  # what a kill during a cache write left (we hold the lock)
        t.unlink()
    rows = []
    for ck, state in verified.items():
        key = cache_key(state, heldout_windows, n_prompts)
        cache = run / "eval" / f"{ck.name}.json"
        row = read_cached(cache, key, dict)
        if row is None:
            row = evaluate_checkpoint(ck, cfg, heldout_windows, n_prompts, env, state)
            write_cached(cache, key, row)
        if progress:
            progress()
        rows.append(row)
    df = pd.DataFrame(rows).sort_values("step")
    sched = schedule.describe()
    label = f"rate {sched['rate']:g}/batch" if "rate" in sched else f"{sched['n']} every {sched['every']}"
    return df.assign(run=str(run), preset=cfg.preset, task=cfg.task, schedule=label,
                     per_token_frequency=schedule.per_token_frequency(cfg.seq_len), heldout_windows=heldout_windows)


def evaluate_runs(runs: list[str | Path], out: str | Path | None = None, heldout_windows: int | None = None,
                  reference_prompts: int = 200, progress: bool = True) -> dict:
    """Evaluate runs, write ``eval.parquet``, ``eval-summary.json``, figures and ``report.html``
    into ``out`` (default: the run itself, or ``eval-report`` beside several). Everything is
    checked before anything is written; each run is locked while its cache is written."""
    import contextlib

    from .._progress import progress_bar

    _check_counts(heldout_windows, reference_prompts)
    runs = [Path(r) for r in runs]
    if len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError("runs", "a run is named twice", "distinct run directories")
    configs = [training_run(r)[1] for r in runs]
    for c in configs:  # a count the corpus cannot honour is refused before anything is written
        heldout_count(c, heldout_windows)
    verified = {r: verified_checkpoints(r) for r in runs}
    out = Path(out) if out else (runs[0] if len(runs) == 1 else runs[0].parent / "eval-report")
    separate = out.resolve() not in {r.resolve() for r in runs}
    if separate:
        eval_folder(out).check()
    with contextlib.ExitStack() as stack:
        for folder in [train_folder(r) for r in runs] + ([eval_folder(out)] if separate else []):
            stack.callback(folder.release)
            folder.open()
        total = sum(len(v) for v in verified.values())
        frames = []
        with progress_bar(progress, transient=False) as bar:
            t = bar.add_task("lm eval (checkpoints)", total=total)
            for r in runs:
                frames.append(evaluate_run(r, heldout_windows, reference_prompts, progress=lambda: bar.advance(t),
                                           verified=verified[r]))
        df = pd.concat(frames, ignore_index=True)
        report = write_eval(df, out, configs[0], reference_prompts, {"runs": [str(r) for r in runs]})
    return {"checkpoints": total, "report": str(report), "table": df}


def write_eval(df: pd.DataFrame, out: Path, cfg: LMTrainConfig, reference_prompts: int, what: dict) -> Path:
    """``eval.parquet``, figures, ``eval-summary.json`` and ``report.html`` of an evaluation
    table (one row per checkpoint) into ``out``, whose lock the caller holds; ``cfg``: a config
    naming the corpus (for the reference templates' counts); ``what``: what was evaluated."""
    atomic_parquet(df, out / "eval.parquet")
    freqs = reference_frequencies(cfg, Path(cfg.corpus) / "ngram-index")
    figures = _figures(df, out, freqs)
    final = df.sort_values("step").groupby("run").tail(1)
    checks = [Check(f"{Path(r.run).name}: final test accuracy ({r.preset}, {r.schedule}, {r.tokens:,} tokens)",
                    round(r.test_accuracy, 4), "informative", None) for r in final.itertuples()]
    checks += frequency_checks(freqs)
    summary = {**what, "final": final.to_dict(orient="records"), "reference_frequencies": freqs,
               "heldout_windows": {r: int(n) for r, n in df.groupby("run")["heldout_windows"].first().items()},
               "reference_prompts": reference_prompts}
    atomic_write(out / "eval-summary.json", json.dumps(summary, indent=2, default=str))
    return write_report(out / "report.html", "raretask lm eval: injected-task learning",
                        "Injected-task loss and accuracy over checkpoints, per injection rate and model size "
                        "(SPEC B4). Accuracy is over the task's label tokens (2 for cmp, 100 for add).",
                        checks, figures, what, {"checkpoints": len(df)})


def _per_token(v: dict) -> str:
    """A template's frequency per training token, as text (a bound when it never occurs)."""
    n = v["corpus_tokens"]
    if v["count"]:
        return f"{v['count']:,} in {n:,} tokens = {v['per_token']:.1e}/token"
    return f"0 in {n:,} tokens (< {1 / n:.1e}/token)"


def _template_label(name: str, v: dict) -> str:
    """Legend text of a reference template's corpus frequency."""
    n = v["corpus_tokens"]
    rate = f"{v['per_token']:.1e}/token" if v["count"] else f"< {1 / n:.1e}/token"
    return f"{name}: {rate} in the corpus"


def _figures(df: pd.DataFrame, out: Path, freqs: dict | None = None) -> list[Figure]:
    from matplotlib.lines import Line2D

    from ..report.plots import legend_below, new_figure, save
    from ..report.style import reference_line
    from ._tasks import CHANCE

    runs = list(dict.fromkeys(df["run"]))
    fig, axes = new_figure(2, 2, height=2.5)
    for i, run in enumerate(runs):
        r = df[df["run"] == run].sort_values("step")
        lab = f"{r['preset'].iloc[0]}, {r['schedule'].iloc[0]} (injected {r['per_token_frequency'].iloc[0]:.1e}/token)"
        # eight colours: past them, the marker tells runs of one colour apart
        kw = dict(color=f"C{i % 8}", marker="os^Dv"[i // 8 % 5], ms=3, label=lab)
        axes[0, 0].plot(r["tokens"], r["test_accuracy"], **kw)
        axes[0, 1].plot(r["tokens"], r["task_train_loss"], **kw)
        if "heldout_loss" in r:
            axes[1, 0].plot(r["heldout_loss"], r["task_train_loss"], **kw)
        axes[1, 1].plot(r["tokens"], r["ref_increase_loss"], color=f"C{i % 8}", ls="-", label=lab)
        axes[1, 1].plot(r["tokens"], r["ref_addition_loss"], color=f"C{i % 8}", ls="--")
    for task in dict.fromkeys(df["task"]) if "task" in df else []:
        if task in CHANCE:  # accuracy on a 0-1 axis with chance marked: noise around chance looks like noise
            reference_line(axes[0, 0], CHANCE[task], f"chance ({task})")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[0, 0].set(xlabel="training tokens", ylabel="test accuracy", title="injected task: test accuracy")
    axes[0, 1].set(xlabel="training tokens", ylabel="LABEL loss (train split)", title="injected task: loss")
    axes[1, 0].set(xlabel="held-out LM loss", ylabel="LABEL loss", title="task loss vs LM loss")
    axes[1, 0].invert_xaxis()
    axes[1, 1].set(xlabel="training tokens", ylabel="next-token loss", title="reference tasks (line style)")
    legend_below(fig, axes[0, 0])  # run colours: one legend, below the three panels that share them
    handles, labels = [], []
    for name, ls in (("increase", "-"), ("addition", "--")):
        v = (freqs or {}).get(name)
        handles.append(Line2D([], [], color="0.4", ls=ls))
        labels.append(_template_label(name, v) if v else f"{name} (corpus frequency not counted)")
    axes[1, 1].legend(handles, labels)
    path = save(fig, out / "figures" / "lm-eval.png")
    return [Figure(path, "Injected task over training, one line per run (colour: run; its injected per-token "
                         "frequency in the legend). Top: test accuracy and LABEL loss vs tokens; bottom left: task "
                         "loss vs held-out LM loss (left to right as training proceeds); bottom right: reference "
                         "tasks from natural text (solid: 'it has increased from {x} to', dashed: '{x} + {y} ='), "
                         "their legend giving each template's corpus frequency (n-gram counts of its instantiations, "
                         "x, y < 100, summed: a lower bound) beside the runs' injected frequencies.")]
