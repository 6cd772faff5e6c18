"""``raretask lm sweep NAME``: a named grid of training runs (model presets x injection
rates), then one evaluation report over all of them. Sweeps live in
``presets/sweeps.json``; any value can be overridden with ``--set key=value``
(``train.<field>`` reaches the training options). Every run resumes, and evaluation is
cached per checkpoint, so re-running the command continues where it stopped. Under
``torchrun`` every run is trained on all ranks; rank 0 evaluates. The sweep's folder is a
``RunFolder`` of kind "lm-sweep" (locked while the sweep runs) holding one "lm-train" run
folder per cell and the "lm-eval" report; every run is checked before the first is trained.
"""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path

from ..errors import ConfigError, parse_assignment


def load_sweep(name: str, overrides: list[str] | None = None) -> dict:
    table = json.loads(resources.files("raretask.lm").joinpath("presets", "sweeps.json").read_text())
    if name not in table:
        raise ConfigError("sweep", f"{name!r}", ", ".join(sorted(table)))
    sweep = copy.deepcopy(table[name])
    for item in overrides or []:
        parts, value = parse_assignment(item)
        if parts[0] not in ("presets", "task", "rates", "train") or (parts[0] == "train") != (len(parts) == 2):
            raise ConfigError("set", f"unknown option {'.'.join(parts)!r}", "presets, task, rates, train.<field>")
        target = sweep if len(parts) == 1 else sweep.setdefault("train", {})
        target[parts[-1]] = value
    if not sweep.get("presets") or not sweep.get("rates"):
        raise ConfigError("sweep", "needs non-empty presets and rates", "lists")
    return sweep


def sweep_configs(name: str, corpus: str, out: str, overrides: list[str] | None = None) -> list:
    """The LMTrainConfig of every run of the sweep (validated), in order."""
    from ._train import LMTrainConfig

    sw = load_sweep(name, overrides)
    runs = []
    for preset in sw["presets"]:
        for rate in sw["rates"]:
            d = Path(out) / f"{preset}-{sw['task']}-rate{rate:g}"
            try:
                runs.append(LMTrainConfig(corpus=corpus, out=str(d), preset=preset, task=sw["task"], rate=float(rate),
                                          **sw.get("train", {})))
            except TypeError as e:
                raise ConfigError("train", str(e), "LMTrainConfig fields") from None
    return runs


def run_sweep(name: str, corpus: str, out: str, overrides: list[str] | None = None, progress: bool = True) -> dict | None:
    """Train every run, then evaluate them together into ``out/report``."""
    import contextlib

    from ._evaluate import evaluate_runs
    from ._runs import eval_folder, sweep_folder
    from ._train import check_run_dir, train

    configs = sweep_configs(name, corpus, out, overrides)
    folder = sweep_folder(out)
    folder.check()
    for cfg in configs:  # every run checked (reads only) before anything is written
        check_run_dir(copy.copy(cfg), Path(cfg.out))
    eval_folder(Path(out) / "report").check()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with contextlib.ExitStack() as stack:
        if rank0:
            stack.callback(folder.release)
            folder.open()
        for i, cfg in enumerate(configs, 1):
            if progress and rank0:
                print(f"[{i}/{len(configs)}] {Path(cfg.out).name}", flush=True)
            train(cfg, progress=progress)
        if not rank0:
            return None
        return evaluate_runs([c.out for c in configs], out=Path(out) / "report")
