"""Evaluation of a checkpoint series raretask did not train (``raretask lm eval --foreign DIR``).

A series is a folder of Hugging Face checkpoints, one subfolder per step, named as trainers name
them: ``step-250``, ``step_250``, ``step250`` (OLMo, Pythia revisions saved to disk) or
``checkpoint-250`` (HF Trainer), each with ``config.json`` and its weights
(``model.safetensors``, sharded or not, or ``pytorch_model.bin``). Every checkpoint gets the
same metrics as a raretask run's (``_evaluate.evaluate_checkpoint``): the injected task's loss
and accuracy, the reference tasks, held-out LM loss, tokens and compute, here with tokens =
step x batch_size x seq_len (the trainer's settings, given by the user).

The tasks are the ones raretask injects, built from the corpus's tokenizer with ``task_seed``:
the series must have been trained on that tokenizer (a ``tokenizer.json`` in the folder is
compared with the corpus's, and a different one refused). The injection map (a Parquet file,
or a folder of ``part-*.parquet`` such as a raretask run's ``data_order/``, with columns
``step`` (0-based) and ``instance`` (>= 0: an injected instance)) gives the realised frequency:
instances in the steps up to the last checkpoint, per token trained. Without a map the
frequency is unknown (nan), never guessed.

Results are cached per checkpoint in ``OUT/eval/`` keyed by every evaluation parameter and the
sha256 of the checkpoint's weight files; ``OUT`` is a ``RunFolder`` of kind "lm-eval".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..runfolder import read_cached, read_parts, sha256_file, write_cached

STEP_NAME = re.compile(r"^(?:step|checkpoint)[-_]?(\d+)$")
"""A checkpoint folder's name: step-250, step_250, step250, checkpoint-250."""
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def foreign_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in a series folder, by step; one line when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("foreign", f"{folder} is not a folder", "a folder of step-named HF checkpoints")
    found = {}
    for d in folder.iterdir():
        m = STEP_NAME.match(d.name)
        if m and d.is_dir() and (d / "config.json").is_file() and any((d / w).is_file() for w in WEIGHTS):
            step = int(m.group(1))
            if step in found:
                raise ConfigError("foreign", f"two checkpoints of step {step} ({found[step].name}, {d.name})",
                                  "one folder per step")
            found[step] = d
    if not found:
        raise ConfigError("foreign", f"{folder} holds no step-named HF checkpoint",
                          "subfolders step-N (or step_N, stepN, checkpoint-N) with config.json and model weights")
    if 0 in found:
        raise ConfigError("foreign", f"{found[0].name}: a checkpoint at step 0", "trained checkpoints (step >= 1)")
    return sorted(found.items())


def weights_sha256(ck: Path) -> str:
    """One digest over a checkpoint's weight files (each file's name and sha256, in name order)."""
    h = hashlib.sha256()
    for p in sorted(ck.iterdir()):
        if p.name in WEIGHTS or re.match(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$", p.name):
            h.update(f"{p.name} {sha256_file(p)}\n".encode())
    return h.hexdigest()


def injected_instances(injection_map: str | Path, last_step: int) -> int:
    """Instances the map injects in the steps a checkpoint of ``last_step`` updates has trained on."""
    p = Path(injection_map)
    if p.is_dir():
        df = read_parts(p)
        if df is None:
            raise ConfigError("injection_map", f"{p} holds no part-*.parquet", "a Parquet file or a folder of parts")
    elif p.is_file():
        try:
            df = pd.read_parquet(p)
        except Exception as e:  # noqa: BLE001  (pyarrow raises several kinds)
            raise ConfigError("injection_map", f"{p} is not a Parquet table ({e.__class__.__name__})",
                              "a Parquet file with columns step and instance") from None
    else:
        raise ConfigError("injection_map", f"{p} does not exist", "a Parquet file or a folder of parts")
    missing = {"step", "instance"} - set(df.columns)
    if missing:
        raise ConfigError("injection_map", f"{p} lacks column(s) {', '.join(sorted(missing))}",
                          "columns step (0-based) and instance (>= 0 where injected)")
    return int(((df["step"] < last_step) & (df["instance"] >= 0)).sum())


def _check_tokenizer(folder: Path, corpus_tok) -> str:
    """Where the series' tokenizer came from; a tokenizer.json unlike the corpus's is refused."""
    from ._tokenizer import load_tokenizer

    tj = folder / "tokenizer.json"
    if not tj.is_file():
        return "the corpus's (the series has no tokenizer.json)"
    theirs = load_tokenizer(tj)
    if theirs.sha256() != corpus_tok.sha256():
        raise ConfigError("foreign", f"{tj} is not the corpus's tokenizer (sha256 {theirs.sha256()[:12]} vs "
                                     f"{corpus_tok.sha256()[:12]})",
                          "a series trained on the corpus's tokenizer (the tasks are built from it)")
    return "the series' tokenizer.json, equal to the corpus's"


def evaluate_foreign(folder: str | Path, corpus: str | Path, seq_len: int, batch_size: int, task: str = "cmp",
                     task_seed: int = 0, injection_map: str | Path | None = None, out: str | Path | None = None,
                     heldout_windows: int | None = None, reference_prompts: int = 200, progress: bool = True) -> dict:
    """Evaluate every checkpoint of a series (see the module docstring); writes the same table,
    figures and report as ``evaluate_runs`` into ``out`` (default: ``FOLDER-eval`` beside it)."""
    from .._progress import progress_bar

    from ._config import LMTrainConfig
    from ._evaluate import _check_counts, evaluate_checkpoint, heldout_count, write_eval
    from ._runs import eval_folder
    from ._train import setup

    _check_counts(heldout_windows, reference_prompts)
    folder = Path(folder)
    cks = foreign_checkpoints(folder)
    out = Path(out) if out else folder.parent / f"{folder.name}-eval"
    if out.resolve() == folder.resolve():
        raise ConfigError("out", f"{out} is the series itself", "a separate report folder")
    cfg = LMTrainConfig(corpus=str(corpus), out=str(out), task=task, task_seed=task_seed, seq_len=seq_len,
                        batch_size=batch_size, steps=max(s for s, _ in cks))
    env = setup(cfg)
    tokenizer = _check_tokenizer(folder, env.tokenizer)
    n_held = heldout_count(cfg, heldout_windows, env.corpus)
    last = max(s for s, _ in cks)
    injected = injected_instances(injection_map, last) if injection_map is not None else None
    tokens_per_step = batch_size * seq_len
    frequency = injected / (last * tokens_per_step) if injected is not None else float("nan")
    report_folder = eval_folder(out)
    report_folder.check()
    rows = []
    with contextlib.ExitStack() as stack:
        stack.callback(report_folder.release)
        report_folder.open()
        (out / "eval").mkdir(exist_ok=True)
        with progress_bar(progress, transient=False) as bar:
            t = bar.add_task("lm eval (foreign checkpoints)", total=len(cks))
            for step, ck in cks:
                key = {"format": "foreign-1", "heldout_windows": n_held, "reference_prompts": reference_prompts,
                       "weights_sha256": weights_sha256(ck), "task": task, "task_seed": task_seed,
                       "seq_len": seq_len, "batch_size": batch_size}
                cache = out / "eval" / f"{ck.name}.json"
                row = read_cached(cache, key, dict)
                if row is None:
                    row = evaluate_checkpoint(ck, cfg, n_held, reference_prompts, env,
                                              {"step": step, "tokens": step * tokens_per_step})
                    write_cached(cache, key, row)
                rows.append({**row, "checkpoint": ck.name})
                bar.advance(t)
        kind = json.loads((cks[-1][1] / "config.json").read_text()).get("model_type", "hf")
        label = (f"map: {injected / last:.3g}/batch realised" if injected is not None else "no injection map")
        df = pd.DataFrame(rows).sort_values("step").assign(
            run=str(folder), preset=f"foreign {kind}", task=task, schedule=label, per_token_frequency=frequency,
            heldout_windows=n_held)
        what = {"foreign": str(folder), "corpus": str(corpus), "tokenizer": tokenizer, "seq_len": seq_len,
                "batch_size": batch_size, "injection_map": None if injection_map is None else str(injection_map),
                "injected_instances": injected, "per_token_frequency": None if np.isnan(frequency) else frequency}
        report = write_eval(df, out, cfg, reference_prompts, what)
    return {"checkpoints": len(cks), "report": str(report), "table": df, "out": str(out)}
