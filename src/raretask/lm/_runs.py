"""The LM commands' run folders and checkpoints, on the one run-folder layer (``raretask.runfolder``).

Kinds: ``lm-train`` (a training run; ``lm eval`` and ``lm probe`` add their results to it),
``lm-eval`` (a report over several runs), ``lm-probe`` (``RUN/probes``) and ``lm-sweep`` (a sweep's
root); ``lm-corpus`` is ``lm._corpus.corpus_folder``. Each recognises the folders it wrote before
run folders had markers.

A checkpoint ``checkpoints/step-NNNNNN/`` is written as ``step-NNNNNN.tmp/`` and renamed when
complete; its ``trainer_state.json`` (written last) records the sha256 of every file in it and
the part log (name, rows, sha256) of the metric parts it covers. A checkpoint is usable when its
files load and match their checksums and its parts are intact; ``lm train`` resumes from the
newest usable one (``checkpoints/latest`` only names it for people), ``lm eval`` and ``lm probe``
refuse a damaged one with one line naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..runfolder import (PartLog, RunFolder, RunFolderError, atomic_json, atomic_path, atomic_write, read_json,
                         record_move, sha256_file)

TRAIN_FILES = ("run_config.json", "tasks.jsonl", "tokenizer.json", "checkpoints", "metrics", "data_order",
               "interference", "tensorboard", "summary.json", "figures", "interference-report.html", "eval", "eval.parquet",
               "eval-summary.json", "report.html", "probes")
"""What an ``lm train`` run folder holds (its own files, and what eval and probe add): all that
``lm train --restart`` deletes there."""

EVAL_FILES = ("eval.parquet", "eval-summary.json", "summary.json", "report.html", "figures")
PROBE_FILES = ("cache", "*.parquet", "figures", "report.html", "summary.json", "settings.json")
SWEEP_FILES = ("report", "*-rate*", "*-every*", "scaling", "sweep.json")

CKPT_FILES = ("model.safetensors", "config.json", "tokenizer.json", "optimizer.pt")
"""The files of a checkpoint, each with its sha256 in trainer_state.json."""
MODEL_FILES = ("model.safetensors", "config.json")
"""What a reader of a checkpoint (eval, probe) loads."""


def _json_file(p: Path) -> dict | None:
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _legacy_train(p: Path) -> bool:
    """A training run from before markers: run_config.json and tasks.jsonl (the first files it wrote)."""
    return (p / "run_config.json").is_file() and (p / "tasks.jsonl").is_file()


def _legacy_sweep(p: Path) -> bool:
    return (p / "report" / "eval.parquet").is_file() or any(
        d.is_dir() and ((d / ".raretask-run.json").exists() or _legacy_train(d)) for d in p.iterdir())


def train_folder(out: str | Path, logs: tuple[str, ...] = ()) -> RunFolder:
    """``logs``: the training callbacks' own log folders, which ``--restart`` deletes too."""
    return RunFolder(out, "lm-train", owned=TRAIN_FILES + tuple(logs), legacy=_legacy_train)


def eval_folder(out: str | Path) -> RunFolder:
    return RunFolder(out, "lm-eval", owned=EVAL_FILES, legacy=lambda p: (p / "eval.parquet").is_file())


def probe_folder(out: str | Path) -> RunFolder:
    return RunFolder(out, "lm-probe", owned=PROBE_FILES, legacy=lambda p: (p / "cache").is_dir())


def sweep_folder(out: str | Path) -> RunFolder:
    return RunFolder(out, "lm-sweep", owned=SWEEP_FILES, legacy=_legacy_sweep)


def training_run(run: str | Path) -> tuple[dict, object]:
    """(run_config.json record, LMTrainConfig) of an existing training run, for its readers;
    one line when the folder is not a run, its config is corrupt or its corpus is gone."""
    from ._config import LMTrainConfig

    run = Path(run)
    folder = train_folder(run)
    if not run.is_dir() or not (run / "run_config.json").is_file():
        raise ConfigError("run", f"{run} is not a training run (no run_config.json)",
                          "a directory made by `raretask lm train`")
    folder.check()
    record = read_json(run / "run_config.json", f"the run's run_config.json ({run})")
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise RunFolderError(f"the run's run_config.json ({run}) is corrupt (no config); "
                             "delete the run or re-train it with --restart")
    try:
        cfg = LMTrainConfig.from_dict(record["config"])
    except ConfigError as e:
        raise ConfigError(e.field, f"{e.problem} (in {run / 'run_config.json'}, written by raretask "
                                   f"{record.get('raretask_version')})", e.allowed) from None
    except TypeError as e:
        raise RunFolderError(f"the run's run_config.json ({run}) is corrupt ({e})") from None
    try:
        cfg.check_corpus()
    except ConfigError:
        raise ConfigError("corpus", f"{run} was trained on {cfg.corpus}, which is not a corpus any more "
                                    "(no meta.json)", "the corpus restored at that path") from None
    from ._corpus import check_same_corpus

    check_same_corpus(record.get("corpus_digest"), cfg.corpus, run)
    return record, cfg


# ------------------------------------------------------------------ checkpoints
STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dirs(out: Path) -> list[Path]:
    """Checkpoint folders of a run (complete or not), by step."""
    ck = Path(out) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted((d for d in ck.iterdir() if d.is_dir() and STEP_DIR.match(d.name)),
                  key=lambda d: int(d.name.split("-")[1]))


def os_error_in(e: BaseException, path: Path) -> OSError | None:
    """The OSError behind a library's wrapper (torch.save's "unexpected pos", safetensors'
    "I/O error ... (os error 28)"), naming ``path``; None when there is none."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return OSError(seen.errno, seen.strerror, str(path))
        seen = seen.__cause__ or seen.__context__
    m = re.search(r"os error (\d+)", str(e))
    if m:
        n = int(m.group(1))
        return OSError(n, os.strerror(n), str(path))
    return None


def _write_with(path: Path, write) -> None:
    """``write(tmp_path)`` through ``atomic_path``; a full disk inside a library is an OSError naming ``path``."""
    with atomic_path(path) as tmp:
        try:
            write(tmp)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001  (torch / safetensors wrap the OSError)
            err = os_error_in(e, path)
            if err is None:
                raise
            raise err from e


def write_checkpoint(d: Path, model_state: dict, optim_state: dict, hf_config, tokenizer: Path, state: dict) -> None:
    """Write checkpoint folder ``d`` completely, then rename it into place (see the module
    docstring); on any error nothing is left but the checkpoints that were there before."""
    import torch
    from safetensors.torch import save_file

    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_with(tmp / "model.safetensors", lambda p: save_file(model_state, str(p)))

        def save_optim(p: Path) -> None:
            with open(p, "wb") as f:
                torch.save(optim_state, f)

        _write_with(tmp / "optimizer.pt", save_optim)
        atomic_write(tmp / "config.json", hf_config.to_json_string())
        atomic_write(tmp / "tokenizer.json", Path(tokenizer).read_bytes())
        sums = {name: sha256_file(tmp / name) for name in CKPT_FILES}
        atomic_json(tmp / "trainer_state.json", {**state, "sha256": sums})
        if d.exists():  # the same step again (after a fallback): the new one is complete, replace it
            shutil.rmtree(d)
        os.replace(tmp, d)
        record_move(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(d.parent / "latest", d.name)


def checkpoint_state(ck: Path) -> dict:
    state = read_json(ck / "trainer_state.json", f"checkpoint {ck.name}'s trainer_state.json ({ck})")
    if not isinstance(state, dict) or not all(k in state for k in ("step", "tokens")):
        raise RunFolderError(f"checkpoint {ck.name}'s trainer_state.json ({ck}) is corrupt (no step)")
    return state


def _checksum_problem(ck: Path, state: dict, names) -> tuple[str, str] | None:
    """(file, what is wrong) of the first of ``names`` that is missing or fails its checksum."""
    sums = state.get("sha256") or {}
    for name in names:
        p = ck / name
        if not p.is_file():
            return name, "is missing"
        if name in sums and sha256_file(p) != sums[name]:
            return name, "is damaged (its sha256 differs from the one recorded when it was written)"
    return None


def verify_checkpoint(ck: Path, names=MODEL_FILES) -> dict:
    """For readers (eval, probe): the checkpoint's trainer_state, after checking the files they
    load against their recorded checksums (checkpoints from before checksums: that they exist).
    A damaged one is a RunFolderError naming the file."""
    state = checkpoint_state(ck)
    problem = _checksum_problem(ck, state, names)
    if problem:
        raise RunFolderError(f"{ck / problem[0]} {problem[1]}; re-create it: delete {ck} and run the same `lm train` command again "
                             "(it resumes from the checkpoint before and recomputes this one)")
    return state


def load_model(ck: Path):
    """The model of a verified checkpoint (its family's ``load``; the family is the checkpoint's
    ``model_type``), in eval mode; one line when it does not load."""
    import json

    from ._families import auto_load, family

    try:
        kind = json.loads((Path(ck) / "config.json").read_text()).get("model_type")
        return (family(kind).load if kind else auto_load)(ck).eval()
    except Exception as e:  # noqa: BLE001  (HF / safetensors errors of every kind)
        msg = " ".join(str(e).split())[:200]
        raise RunFolderError(f"checkpoint {ck} does not load ({e.__class__.__name__}: {msg})") from None


def model_sha256(state: dict) -> str | None:
    return (state.get("sha256") or {}).get("model.safetensors")


def usable_checkpoint(out: Path, load) -> tuple[dict | None, object, list[str]]:
    """The newest usable checkpoint of a training run: (trainer_state, ``load(ck)``'s result,
    problems of the newer ones). Usable: trainer_state.json parses, every file matches its
    recorded checksum, config.json parses, the metric parts it records are intact, and ``load``
    succeeds. (None, None, problems) when there is none."""
    problems = []
    for ck in reversed(step_dirs(out)):
        try:
            state = checkpoint_state(ck)
            if int(state["step"]) != int(ck.name.split("-")[1]) or "parts" not in state:
                raise RunFolderError("trainer_state.json does not match the folder")
        except (RunFolderError, ValueError, TypeError, OSError):
            problems.append(f"{ck.name}: trainer_state.json is corrupt or incomplete")
            continue
        problem = _checksum_problem(ck, state, CKPT_FILES)
        if problem:
            problems.append(f"{ck.name}: {problem[0]} {problem[1]}")
            continue
        if _json_file(ck / "config.json") is None:
            problems.append(f"{ck.name}: config.json unreadable")
            continue
        bad = PartLog(state.get("part_log") or {}).problems(out)
        if bad:
            problems.append(f"{ck.name}: log parts missing or damaged: {', '.join(sorted(bad))}")
            continue
        try:
            loaded = load(ck)
        except Exception as e:  # noqa: BLE001  (a truncated or garbage file: any loader error)
            problems.append(f"{ck.name}: does not load ({_short(e)})")
            continue
        return state, loaded, problems
    return None, None, problems


def _short(e: BaseException) -> str:
    return f"{e.__class__.__name__}: {' '.join(str(e).split())[:120]}"
