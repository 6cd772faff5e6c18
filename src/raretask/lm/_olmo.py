"""Injected copies of a pre-tokenized corpus for OLMo-core's own data loader (``raretask lm inject``).

The training code stays untouched, as Hubble does for GPT-NeoX: the task instances are written
into a copy of the token files, at the sequences OLMo-core's data loader will place in the
planned steps. The order is computed by OLMo-core's own code (``NumpyFSLDataset`` and
``NumpyDataLoaderBase.wrap_numpy_dataset`` of the pinned ``ai2-olmo-core``, the ``olmo`` extra),
never reimplemented: instance i of the dataset is the i-th run of ``seq_len`` tokens of the
files read back to back (a file's tail shorter than ``seq_len`` is skipped, as OLMo-core skips
it), and batch k of an epoch is ``global_indices[k B : (k + 1) B]``, B = global_batch_size /
seq_len, the global indices being the dataset's indices shuffled by ``seed + epoch``.

Which sequences of which step carry which instance is raretask's own schedule
(``InjectionSchedule``, SPEC B2): ``rate`` instances per batch or ``n`` every ``every`` batches,
placed by ``injection_seed``; an instance ``a b LABEL EOS`` is written over the first 4 tokens of
its sequence, as ``lm train`` writes it. The tasks are built from the tokenizer with
``task_seed`` (``build_tasks``), so ``raretask lm eval --foreign`` on a raretask corpus with the
same tokenizer evaluates the checkpoints the run saves.

Layout of an inject folder (a ``RunFolder`` of kind "lm-inject")::

    data/NNN-<name>          the injected copy of each source file, same dtype and length
                             (NNN: its place in --data, zero-padded to one width, so the
                             names sort in the order OLMo-core must be given)
    injection_map.parquet    one row per injected sequence: step (0-based batch of the first
                             epoch; update step + 1 trains on it), position (row in the global batch),
                             instance_index (OLMo-core's dataset index), source (file in data/),
                             offset (first token of the sequence in that file), instance (index
                             into tasks.jsonl), split ("train")
    order.npy                (steps, B) uint32: OLMo-core's dataset index of every sequence of
                             every planned step (``raretask lm batch OUT --step N`` reads it)
    stream.bin (--stream)    the injected token stream in training order, headerless, the
                             dtype of the sources: step s's batch is tokens [s B L, (s + 1) B L),
                             row-major (B, L); ``np.memmap(path, dtype, mode="r")`` reads it,
                             as nanoGPT-style loaders do
    tasks.jsonl tokenizer.json
    inject.json              settings, OLMo-core version, the copies' dataset fingerprint (as
                             OLMo-core logs it), counts (last)

Only the first epoch is planned: the copy is read in every epoch, so a run that trains past the
epoch's batches sees the injected sequences again, in another order; ``steps`` beyond it, and
another ``epoch``, are refused. Before it finishes, ``lm inject`` has OLMo-core order the copies
themselves and checks that the order is the one planned on the sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..errors import ConfigError, RaretaskError
from ..runfolder import RunFolder, atomic_json, atomic_parquet, atomic_path, atomic_write
from ..validate import NonNegInt, PosFloat, PosInt, strict
from ._tokenizer import load_tokenizer

INJECT_FILES = ("data", "injection_map.parquet", "order.npy", "stream.bin", "tasks.jsonl", "tokenizer.json",
                "inject.json")
"""What an inject folder holds: all that ``lm inject --restart`` deletes there."""

DTYPES = ("uint16", "uint32")


@strict
class OlmoInjectConfig:
    """One injected copy of an OLMo-core corpus: the loader's settings and the injection plan."""

    data: list[str]
    """The token files, headerless ``dtype`` memmaps (OLMo-core's numpy format), in the order the
    OLMo-core config lists them (the order decides the dataset's indices)."""
    tokenizer: str
    """The corpus's tokenizer: a tokenizer.json, or a raretask corpus folder holding one."""
    out: str
    """Folder for the injected copy, the map and the order (a new or empty folder)."""
    seq_len: PosInt
    """OLMo-core's ``sequence_length`` (>= 4: an instance is 4 tokens)."""
    global_batch_size: PosInt
    """OLMo-core's ``global_batch_size``, in tokens (a multiple of seq_len)."""
    steps: PosInt
    """Optimiser steps to plan (at most the epoch's batches)."""
    seed: NonNegInt = 0
    """OLMo-core's data-loader ``seed`` (the order is shuffled by seed + epoch)."""
    epoch: PosInt = 1
    """The epoch the steps are in (OLMo-core counts from 1). Only 1: the copy is read in every
    epoch, so instances placed for a later epoch would be trained in epoch 1 too, at other steps."""
    dtype: str = "uint16"
    """The files' token type: uint16 or uint32."""
    task: str = "cmp"
    """Injected task: cmp (comparison) or add (modular addition)."""
    task_seed: NonNegInt = 0
    """Seeds the task's value tokens and train/test split (as ``lm train --task-seed``)."""
    rate: PosFloat | None = None
    """Instances per batch (fractional allowed: 0.1 = one every 10 batches); None: 1, unless
    ``every`` is given."""
    every: PosInt | None = None
    """Instead of rate: ``n`` instances every ``every`` batches."""
    n: PosInt | None = None
    """Instances per injection when ``every`` is given (default 1)."""
    injection_seed: NonNegInt = 0
    """Seeds which sequences of a step carry the instances (as ``lm train --seed``)."""
    stream: bool = False
    """Also write the injected stream in training order (stream.bin: steps x batch tokens)."""

    def __post_init__(self) -> None:
        from ._tasks import TASKS

        if not self.data:
            raise ConfigError("data", "no file given", "one or more token files")
        if self.seq_len < 4:
            raise ConfigError("seq_len", f"{self.seq_len}", ">= 4 (an instance is 4 tokens)")
        if self.global_batch_size % self.seq_len:
            raise ConfigError("global_batch_size", f"{self.global_batch_size} tokens is not a whole number of "
                                                   f"{self.seq_len}-token sequences", "a multiple of seq_len")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"{self.dtype!r}", ", ".join(DTYPES))
        if self.task not in TASKS:
            raise ConfigError("task", f"{self.task!r}", ", ".join(TASKS))
        if self.rate is not None and self.every is not None:
            raise ConfigError("rate", "both rate and every given", "one of them")
        if self.n is not None and self.every is None:
            raise ConfigError("n", "n without every", "--every G --n N")
        if self.epoch != 1:
            raise ConfigError("epoch", f"{self.epoch}: the copy is read in every epoch, so instances placed for "
                                       f"epoch {self.epoch} would be trained in epoch 1 too, at other steps",
                              "1 (plan the run's first epoch)")
        if self.rate is None and self.every is None:
            self.rate = 1.0
        if self.every is not None and self.n is None:
            self.n = 1

    @property
    def batch(self) -> int:
        """Sequences per step (B)."""
        return self.global_batch_size // self.seq_len


def _need_olmo_core():
    try:
        import olmo_core  # noqa: F401
        from olmo_core.data import NumpyDataLoaderBase, NumpyFSLDataset  # noqa: F401
    except ImportError as e:
        raise ConfigError("install", f"lm inject computes the order with OLMo-core's own loader ({e.name} is missing)",
                          "pip install 'raretask[olmo]'") from None


def check_sources(cfg: OlmoInjectConfig, vocab_size: int) -> list[tuple[Path, int]]:
    """(path, tokens) of every source file, refused with one line when it cannot be what
    ``dtype`` says: missing, not a whole number of tokens (truncated, or another dtype), holding
    a token id the tokenizer does not have (uint16 tokens read as uint32, or another tokenizer),
    or uint32 tokens read as uint16 (every second value 0 in the first million)."""
    dt = np.dtype(cfg.dtype)
    if vocab_size > np.iinfo(dt).max + 1:
        raise ConfigError("dtype", f"{cfg.dtype} cannot hold the tokenizer's {vocab_size:,} ids", "uint32")
    out, seen = [], set()
    for f in cfg.data:
        p = Path(f)
        if "://" in f:
            raise ConfigError("data", f"{f}: a URL", "local files (copy remote shards first: the copy is written here)")
        if not p.is_file():
            raise ConfigError("data", f"{f} " + ("is a folder" if p.is_dir() else "does not exist"),
                              "token files (headerless memmaps; list a folder's files, in order)")
        if p.resolve() in seen:
            raise ConfigError("data", f"{f} is given twice", "each file once")
        seen.add(p.resolve())
        size = p.stat().st_size
        if size % dt.itemsize:
            raise ConfigError("data", f"{f} holds {size:,} bytes, not a whole number of {cfg.dtype} tokens "
                                      "(truncated, or another dtype)", f"a {cfg.dtype} memmap, or the right --dtype")
        n = size // dt.itemsize
        mm = np.memmap(p, dtype=dt, mode="r", shape=(n,)) if n else np.zeros(0, dt)
        top = max((int(mm[i:i + (1 << 24)].max()) for i in range(0, n, 1 << 24)), default=-1)
        if top >= vocab_size:
            raise ConfigError("data", f"{f} holds token id {top:,} as {cfg.dtype}, the tokenizer has {vocab_size:,} "
                                      "(another dtype, or another tokenizer)", "the files' true --dtype and tokenizer")
        if cfg.dtype == "uint16" and n >= 64:
            head = np.asarray(mm[: min(n, 1 << 20) // 2 * 2]).reshape(-1, 2)
            if not head[:, 1].any() and head[:, 0].any():  # every high half zero: ids < 65536 stored as uint32
                raise ConfigError("data", f"{f} looks like uint32 tokens read as uint16 (every second value is 0)",
                                  "--dtype uint32")
        out.append((p, n))
    return out


def olmo_order(cfg: OlmoInjectConfig, eos: int, vocab_size: int) -> dict:
    """The epoch's order by OLMo-core's own loader: {"indices": (total batches, B) uint32 dataset
    indices, "offsets": per file (first, end) dataset index, "fingerprint", "version"}."""
    _need_olmo_core()
    from olmo_core.data import DataCollator, NumpyDataLoaderBase, NumpyFSLDataset

    with tempfile.TemporaryDirectory(prefix="raretask-olmo-") as work:
        ds = NumpyFSLDataset(*[str(Path(f).resolve()) for f in cfg.data], sequence_length=cfg.seq_len,
                             pad_token_id=eos, eos_token_id=eos, vocab_size=vocab_size,
                             dtype=np.dtype(cfg.dtype).type)
        ds.work_dir = work
        ds.prepare()
        if len(ds) < cfg.batch:
            raise ConfigError("data", f"{len(ds):,} sequences of {cfg.seq_len} tokens",
                              f"at least one batch ({cfg.batch} sequences)")
        loader = NumpyDataLoaderBase.wrap_numpy_dataset(ds, global_batch_size=cfg.global_batch_size,
                                                        collator=DataCollator(pad_token_id=eos), seed=cfg.seed,
                                                        work_dir=work)
        loader.reshuffle(epoch=cfg.epoch, in_memory=True)
        idx = np.asarray(loader.get_global_indices()[: loader.total_size], np.uint32).reshape(-1, cfg.batch)
        return {"indices": idx, "offsets": [tuple(map(int, o)) for o in ds.offsets], "fingerprint": ds.fingerprint,
                "version": version("ai2-olmo-core")}


def inject_folder(out: str | Path) -> RunFolder:
    return RunFolder(out, "lm-inject", owned=INJECT_FILES)


def _locate(index: np.ndarray, offsets: list[tuple[int, int]], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(file number, first token in that file) of dataset indices. (n,), (n,)"""
    starts = np.asarray([a for a, _ in offsets], np.int64)
    f = np.searchsorted(starts, np.asarray(index, np.int64), side="right") - 1
    return f, (np.asarray(index, np.int64) - starts[f]) * seq_len


def plan(cfg: OlmoInjectConfig, tasks, order: dict) -> "object":
    """The injection map (a DataFrame, one row per injected sequence; module docstring)."""
    import pandas as pd

    from ._injection import InjectionSchedule

    sched = InjectionSchedule(global_batch=cfg.batch, n_train=len(tasks.train), seed=cfg.injection_seed,
                              rate=cfg.rate, n=cfg.n, every=cfg.every)
    rows = {k: [] for k in ("step", "position", "instance_index", "file", "offset", "instance")}
    for s in range(cfg.steps):
        pos, ids = sched.at(s)
        if len(pos) == 0:
            continue
        index = order["indices"][s, pos]
        f, off = _locate(index, order["offsets"], cfg.seq_len)
        for k, v in zip(rows, (np.full(len(pos), s), pos, index, f, off, tasks.train[ids])):
            rows[k].append(np.asarray(v, np.int64))
    cols = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in rows.items()}
    names = copy_names(cfg.data)
    df = pd.DataFrame(cols)
    df.insert(3, "source", [names[i] for i in df.pop("file")])
    df["split"] = "train"
    return df, sched


def out_name(i: int, path: str, n_files: int) -> str:
    """The name of source file ``i`` (of ``n_files``)'s injected copy in data/: its place,
    zero-padded to one width for all, so that the copies sort by name in the order given."""
    return f"{i:0{max(3, len(str(n_files - 1)))}d}-{Path(path).name}"


def copy_names(data: list[str]) -> list[str]:
    """``out_name`` of every source file, in order."""
    return [out_name(i, p, len(data)) for i, p in enumerate(data)]


def inject_olmo(cfg: OlmoInjectConfig, restart: bool = False, progress: bool = True) -> dict:
    """Write the injected copy, the map, the order (and the stream); see the module docstring."""
    from .._progress import progress_bar

    from ._tasks import build_tasks, ordinary_tokens

    tok = load_tokenizer(cfg.tokenizer)  # a tokenizer.json, or a folder holding one (a raretask corpus)
    vocab = tok.vocab_size
    sources = check_sources(cfg, vocab)  # before olmo_order imports OLMo-core (seconds): bad input fails fast
    tasks = build_tasks(cfg.task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id, cfg.task_seed)
    order = olmo_order(cfg, tok.eos_id, vocab)
    total = len(order["indices"])
    if cfg.steps > total:
        raise ConfigError("steps", f"{cfg.steps:,}: the data give {total:,} batches of {cfg.batch} x {cfg.seq_len} "
                                   f"tokens in an epoch", f"at most {total:,} (or more data)")
    df, sched = plan(cfg, tasks, order)
    folder = inject_folder(cfg.out)
    folder.check(restart)
    out = Path(cfg.out).resolve()
    if not restart and folder.is_run() and any((out / e).exists() for e in INJECT_FILES):
        raise ConfigError("out", f"{cfg.out} already holds an injected copy", "--restart to rewrite it, or another --out")
    tok_bytes = Path(tok.path).read_bytes()  # before --restart clears the folder (the tokenizer may lie in it)
    for p, _ in sources:
        if out in p.resolve().parents:
            raise ConfigError("out", f"{cfg.out} holds the source {p}", "a folder apart from the sources")
    dt = np.dtype(cfg.dtype)
    names = copy_names(cfg.data)
    with contextlib.ExitStack() as stack:
        stack.callback(folder.release)
        folder.open(restart)
        (out / "data").mkdir(exist_ok=True)
        with progress_bar(progress, transient=True) as bar:
            t = bar.add_task("lm inject: copying", total=len(sources))
            by_source = dict(tuple(df.groupby("source")))  # one pass over the map, not one per file
            for (p, _), name in zip(sources, names):
                here = by_source.get(name)
                with atomic_path(out / "data" / name) as tmp:
                    shutil.copyfile(p, tmp)
                    if here is not None:  # the instances over the first 4 tokens of their sequences
                        mm = np.memmap(tmp, dtype=dt, mode="r+")
                        mm[here["offset"].to_numpy()[:, None] + np.arange(4)[None, :]] = \
                            tasks.instances[here["instance"].to_numpy()].astype(dt)
                        mm.flush()
                        del mm
                bar.advance(t)
        # the copies, read by OLMo-core as the training run will read them: the same order
        copies = replace(cfg, data=[str(out / "data" / name) for name in names])
        seen = olmo_order(copies, tok.eos_id, vocab)
        if not np.array_equal(seen["indices"], order["indices"]):
            raise RaretaskError(f"OLMo-core orders the copies in {cfg.out}/data unlike the sources; nothing can be "
                                "planned on them (please report this)")
        order_steps = order["indices"][: cfg.steps]
        with atomic_path(out / "order.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, order_steps)  # a file object: np.save would add ".npy" to the temporary's name
        atomic_parquet(df, out / "injection_map.parquet")
        if cfg.stream:
            write_stream(out, cfg, order_steps, order["offsets"])
        tasks.export(out / "tasks.jsonl")
        atomic_write(out / "tokenizer.json", tok_bytes)
        counts = df.groupby("step").size().reindex(range(cfg.steps), fill_value=0).to_numpy()
        planned = np.asarray([sched.count(s) for s in range(cfg.steps)])
        record = {"format": "raretask-olmo-inject-1", "settings": asdict(cfg), "olmo_core": order["version"],
                  "dataset_fingerprint": seen["fingerprint"], "epoch_batches": total,
                  "sources": [{"source": str(p.resolve()), "copy": f"data/{names[i]}", "tokens": n,
                               "sequences": order["offsets"][i][1] - order["offsets"][i][0]}
                              for i, (p, n) in enumerate(sources)],
                  "batch_sequences": cfg.batch, "injected_instances": int(len(df)),
                  "schedule": sched.describe(),
                  "per_token_frequency": sched.per_token_frequency(cfg.seq_len),
                  "realised_per_token_frequency": len(df) / (cfg.steps * cfg.global_batch_size),
                  "planned_equals_written": bool(np.array_equal(counts, planned)),
                  "tokenizer_sha256": hashlib.sha256(tok_bytes).hexdigest(), "eos_token_id": tok.eos_id, "vocab_size": vocab}
        atomic_json(out / "inject.json", record)
    return record


def write_stream(out: Path, cfg: OlmoInjectConfig, order_steps: np.ndarray, offsets) -> None:
    """stream.bin: the injected copy read in the loader's order (module docstring)."""
    dt = np.dtype(cfg.dtype)
    copies = [_open_copy(out / "data" / name, dt) for name in copy_names(cfg.data)]
    B, L = order_steps.shape[1], cfg.seq_len
    with atomic_path(out / "stream.bin", size=order_steps.size * L * dt.itemsize) as tmp:
        mm = np.memmap(tmp, dtype=dt, mode="r+", shape=(order_steps.shape[0], B, L))
        for s in range(order_steps.shape[0]):
            mm[s] = read_sequences(copies, order_steps[s], offsets, L)
        mm.flush()
        del mm


def _open_copy(path: Path, dt) -> np.ndarray:
    """A token file read-only (an empty one as an empty array: np.memmap cannot map 0 bytes)."""
    return np.memmap(path, dtype=dt, mode="r") if path.stat().st_size else np.zeros(0, dt)


def read_sequences(copies: list, index: np.ndarray, offsets, seq_len: int) -> np.ndarray:
    """The token rows of dataset indices ``index`` from the (injected) files. (n, L)"""
    f, off = _locate(index, offsets, seq_len)
    return np.stack([np.asarray(copies[i][o:o + seq_len]) for i, o in zip(f.tolist(), off.tolist())])


def read_inject(folder: str | Path) -> dict:
    """An inject folder's record (inject.json), refused with one line when it is not one."""
    from ..runfolder import read_json

    p = Path(folder) / "inject.json"
    if not p.is_file():
        raise RaretaskError(f"{folder} is not a finished `raretask lm inject` folder (no inject.json)")
    rec = read_json(p, "the inject record")
    if rec.get("format") != "raretask-olmo-inject-1":
        raise RaretaskError(f"{p} is not an inject record this raretask reads (format {rec.get('format')!r})")
    return rec


def inject_batch(folder: str | Path, step: int):
    """The global batch of update ``step`` (1-based) of a run on an injected copy: the sequences
    OLMo-core's loader gives (order.npy), read from the injected files, the injected ones marked
    from the map; ``seeded_order_agrees``: order.npy equals the order OLMo-core computes now
    from the recorded settings (None when ai2-olmo-core is not installed)."""
    from importlib.util import find_spec

    import pandas as pd

    from ..validate import build
    from ._batch import StepBatch

    folder = Path(folder)
    rec = read_inject(folder)
    cfg = build(OlmoInjectConfig, rec["settings"], "inject.json")
    order_steps = np.load(folder / "order.npy", mmap_mode="r")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= len(order_steps):
        raise ConfigError("step", f"{step!r}", f"1..{len(order_steps)} (the planned updates)")
    offsets = []
    first = 0
    for s in rec["sources"]:
        offsets.append((first, first + s["sequences"]))
        first += s["sequences"]
    dt = np.dtype(cfg.dtype)
    for s in rec["sources"]:
        f = folder / s["copy"]
        if not f.is_file() or f.stat().st_size != s["tokens"] * dt.itemsize:
            raise RaretaskError(f"{f} is missing or damaged: inject.json records {s['tokens']:,} {cfg.dtype} tokens "
                                f"({s['tokens'] * dt.itemsize:,} bytes); rerun lm inject with --restart")
    copies = [_open_copy(folder / s["copy"], dt) for s in rec["sources"]]
    index = np.asarray(order_steps[step - 1], np.int64)
    tokens = read_sequences(copies, index, offsets, cfg.seq_len).astype(np.int64)
    m = pd.read_parquet(folder / "injection_map.parquet")
    m = m[m["step"] == step - 1]
    inst = np.full(len(index), -1, np.int64)
    inst[m["position"].to_numpy()] = m["instance"].to_numpy()
    split = tuple("train" if i >= 0 else "" for i in inst.tolist())
    agrees = None
    if find_spec("olmo_core") is not None:  # else not checked (said so); any other failure is an error
        tok = load_tokenizer(folder / "tokenizer.json")
        copies_cfg = replace(cfg, data=[str(folder / s["copy"]) for s in rec["sources"]])
        now = olmo_order(copies_cfg, tok.eos_id, tok.vocab_size)
        agrees = bool(np.array_equal(now["indices"][step - 1], index))
    return StepBatch(str(folder), int(step), tokens, index, inst, split, agrees, kind="inject")


def inject_summary(rec: dict, out) -> str:
    """What ``lm inject`` prints: three lines."""
    s = rec["settings"]
    plan = (f"{s['n']} every {s['every']} batches" if s.get("every") else f"{s['rate']:g} per batch")
    return (f"injected copy: {out} ({len(rec['sources'])} file(s), OLMo-core {rec['olmo_core']} order, seed {s['seed']}, "
            f"epoch {s['epoch']})\n"
            f"  {rec['injected_instances']:,} {s['task']} instances in {s['steps']:,} steps of {rec['batch_sequences']} x "
            f"{s['seq_len']} tokens ({plan}); per-token frequency {rec['per_token_frequency']:.3g}\n"
            f"  map: {Path(out) / 'injection_map.parquet'}; point OLMo-core's data paths at {Path(out) / 'data'}")


