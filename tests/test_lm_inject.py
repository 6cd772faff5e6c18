"""`raretask lm inject`: an injected copy of a pre-tokenized corpus that OLMo-core's own data
loader, unchanged, delivers at the planned rate (issue 22, point 1).

The proof iterates OLMo-core's real loader, built from its own config classes as a training
script builds it, over the injected files: every batch holds exactly the planned instances at
the planned rows, every other token is the source's, and the realised count per step equals the
schedule's."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tokenizers")

from raretask import ConfigError  # noqa: E402
from raretask.lm import InjectionSchedule, load_tokenizer  # noqa: E402
from raretask.lm._batch import batch_digest  # noqa: E402
from raretask.lm._olmo import OlmoInjectConfig, inject_batch, inject_olmo  # noqa: E402
from raretask.validate import build  # noqa: E402

L, B, SEED = 16, 8, 7


def sources(corpus, folder, dtype="uint16"):
    """The corpus's train tokens as two OLMo-core token files (a third of them, then the rest)."""
    meta = json.loads((corpus / "meta.json").read_text())
    toks = np.memmap(corpus / "train.npy", dtype=meta["dtype"], mode="r")[: meta["tokens"]["train"]]
    folder.mkdir(parents=True, exist_ok=True)
    cut = len(toks) // 48 * 16 + 6  # even, and not a multiple of L: each file's tail is skipped, as OLMo-core does
    paths = []
    for i, part in enumerate((toks[:cut], toks[cut:])):
        p = folder / f"part-{i}.npy"
        np.asarray(part, dtype=dtype).tofile(p)
        paths.append(str(p))
    return paths


def olmo_batches(paths, tok, steps, dtype=np.uint16, seed=SEED, work=None):
    """The first ``steps`` batches of OLMo-core's own loader over ``paths``: (input_ids, index) each."""
    from olmo_core.data import NumpyDataLoaderConfig, NumpyFSLDatasetConfig, TokenizerConfig

    ds = NumpyFSLDatasetConfig(paths=list(paths), sequence_length=L, work_dir=str(work), dtype=dtype.__name__,
                               tokenizer=TokenizerConfig(vocab_size=tok.vocab_size, eos_token_id=tok.eos_id,
                                                         pad_token_id=tok.eos_id)).build()
    ds.prepare()
    loader = NumpyDataLoaderConfig(global_batch_size=B * L, seed=seed, num_workers=0).build(ds)
    loader.reshuffle(epoch=1)
    out = []
    for batch in loader:
        out.append((batch["input_ids"].numpy().astype(np.int64), batch["index"].numpy()))
        if len(out) == steps:
            break
    loader.reset()
    return out


def check_injected(out, srcs, tok, schedule, steps, tmp):
    """Every batch OLMo-core gives holds exactly the planned instances; returns (found, planned)."""
    tasks = pd.read_json(out / "tasks.jsonl", lines=True)
    inst = np.stack([tasks["a"], tasks["b"], tasks["label"], np.full(len(tasks), tok.eos_id)], 1)
    by_tokens = {tuple(r): i for i, r in enumerate(inst.tolist())}
    copies = [str(p) for p in sorted((out / "data").iterdir())]
    dtype = np.dtype(json.loads((out / "inject.json").read_text())["settings"]["dtype"]).type
    got = olmo_batches(copies, tok, steps, dtype, work=tmp / "w1")
    orig = olmo_batches(srcs, tok, steps, dtype, work=tmp / "w2")
    m = pd.read_parquet(out / "injection_map.parquet")
    found = planned = 0
    for s, ((ids, index), (ids0, index0)) in enumerate(zip(got, orig)):
        assert np.array_equal(index, index0)  # the copy leaves OLMo-core's order as it was
        hits = [r for r in range(len(ids)) if tuple(ids[r, :4]) in by_tokens]
        pos, want = schedule.at(s)
        rows = m[m["step"] == s]
        assert hits == pos.tolist() == rows["position"].tolist()
        assert [by_tokens[tuple(ids[r, :4])] for r in hits] == rows["instance"].tolist()
        assert set(rows["instance"]) <= set(tasks.index[tasks["split"] == "train"])
        changed = ids != ids0  # the 4 first tokens of the injected rows, nothing else
        assert not changed[:, 4:].any() and not np.delete(changed, hits, axis=0).any()
        assert len(hits) == schedule.count(s)
        found, planned = found + len(hits), planned + schedule.count(s)
    return found, planned, got


@pytest.mark.slow
def test_olmo_core_loader_delivers_exactly_the_planned_instances(tmp_path, small_corpus):
    tok = load_tokenizer(small_corpus)
    srcs = sources(small_corpus, tmp_path / "src")
    steps = 40
    cfg = build(OlmoInjectConfig, {"data": srcs, "tokenizer": str(small_corpus), "out": str(tmp_path / "inj"),
                                   "seq_len": L, "global_batch_size": B * L, "steps": steps, "seed": SEED,
                                   "rate": 3.0, "stream": True})
    rec = inject_olmo(cfg, progress=False)
    schedule = InjectionSchedule(global_batch=B, n_train=5000, rate=3.0)
    found, planned, got = check_injected(tmp_path / "inj", srcs, tok, schedule, steps, tmp_path)
    assert found == planned == 3 * steps == rec["injected_instances"]
    assert rec["planned_equals_written"] and rec["realised_per_token_frequency"] == pytest.approx(3 / (B * L))
    # the stream in training order is the loader's batches, and lm batch gives each step's digest
    stream = np.memmap(tmp_path / "inj" / "stream.bin", dtype=np.uint16, mode="r").reshape(steps, B, L)
    for s in (0, 17, steps - 1):
        assert np.array_equal(stream[s], got[s][0])
        b = inject_batch(tmp_path / "inj", s + 1)
        assert b.sha256 == batch_digest(got[s][0]) and b.seeded_order_agrees
        assert (b.instances >= 0).sum() == 3
    # two data-parallel ranks: each takes its columns of the global batch (OLMo-core's dp slicing)
    from olmo_core.data import DataCollator, NumpyDataLoaderBase, NumpyFSLDataset

    copies = [str(p) for p in sorted((tmp_path / "inj" / "data").iterdir())]
    for rank in (0, 1):
        ds = NumpyFSLDataset(*copies, sequence_length=L, pad_token_id=tok.eos_id, eos_token_id=tok.eos_id,
                             vocab_size=tok.vocab_size, dtype=np.uint16)
        ds.work_dir = tmp_path / f"rank{rank}"
        loader = NumpyDataLoaderBase.wrap_numpy_dataset(ds, global_batch_size=B * L, seed=SEED, dp_world_size=2,
                                                        dp_rank=rank, collator=DataCollator(pad_token_id=tok.eos_id))
        loader.reshuffle(epoch=1)
        for s, batch in zip(range(5), loader):
            assert np.array_equal(batch["input_ids"].numpy(), got[s][0][rank::2])
        loader.reset()
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "batch", str(tmp_path / "inj"), "--step", "12",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sha256"] == batch_digest(got[11][0])


@pytest.mark.slow
@pytest.mark.parametrize("plan", [{"rate": 0.25}, {"every": 5, "n": 3}])
def test_fractional_rates_and_n_every_g_follow_the_schedule_in_uint32_files(tmp_path, small_corpus, plan):
    tok = load_tokenizer(small_corpus)
    srcs = sources(small_corpus, tmp_path / "src", "uint32")
    steps = 20
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "inject", "--data", *srcs, "--tokenizer",
                        str(small_corpus), "--out", str(tmp_path / "inj"), "--seq-len", str(L), "--global-batch-size",
                        str(B * L), "--steps", str(steps), "--seed", str(SEED), "--dtype", "uint32", "--no-progress",
                        *[a for k, v in plan.items() for a in (f"--{k}", str(v))]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "point OLMo-core's data paths at" in r.stdout
    schedule = InjectionSchedule(global_batch=B, n_train=5000, **{k: v for k, v in plan.items()})
    found, planned, _ = check_injected(tmp_path / "inj", srcs, tok, schedule, steps, tmp_path)
    assert found == planned == (5 if "rate" in plan else 4 * 3)  # 0.25 x 20; steps 0, 5, 10, 15 x 3


def test_a_check_that_sees_a_wrong_instance_says_no(tmp_path, small_corpus):
    """The proof's own check answers no when a batch holds an instance the plan did not put there."""
    tok = load_tokenizer(small_corpus)
    srcs = sources(small_corpus, tmp_path / "src")
    cfg = build(OlmoInjectConfig, {"data": srcs, "tokenizer": str(small_corpus), "out": str(tmp_path / "inj"),
                                   "seq_len": L, "global_batch_size": B * L, "steps": 6, "seed": SEED, "rate": 1.0})
    inject_olmo(cfg, progress=False)
    schedule = InjectionSchedule(global_batch=B, n_train=5000, rate=1.0)
    assert check_injected(tmp_path / "inj", srcs, tok, schedule, 6, tmp_path)[:2] == (6, 6)
    m = pd.read_parquet(tmp_path / "inj" / "injection_map.parquet")
    copy = sorted((tmp_path / "inj" / "data").iterdir())
    row = m.iloc[2]
    f = next(p for p in copy if p.name == row["source"])
    mm = np.memmap(f, dtype=np.uint16, mode="r+")
    mm[row["offset"]: row["offset"] + 4] = np.asarray(
        np.memmap(srcs[int(row["source"][:3])], dtype=np.uint16, mode="r")[row["offset"]: row["offset"] + 4])
    mm.flush()
    del mm
    with pytest.raises(AssertionError, match=r"assert \[\] == \[\d+\]"):  # the planned row holds no instance
        check_injected(tmp_path / "inj", srcs, tok, schedule, 6, tmp_path / "again")


ARGS = ["--seq-len", str(L), "--global-batch-size", str(B * L), "--steps", "10", "--no-progress"]


def test_what_cannot_be_honoured_is_one_line_and_nothing_is_written(tmp_path, small_corpus, capsys):
    from raretask import cli

    srcs = sources(small_corpus, tmp_path / "src")
    wide = sources(small_corpus, tmp_path / "wide", "uint32")
    odd = tmp_path / "odd.npy"
    odd.write_bytes(open(srcs[0], "rb").read()[:-1])
    cases = {
        "uint16 read as uint32": ([srcs[0]], ["--dtype", "uint32"], "holds token id"),
        "uint32 read as uint16": (wide, [], "uint32 tokens read as uint16"),
        "truncated memmap": ([str(odd)], [], "not a whole number of uint16 tokens"),
        "seq_len < 4": (srcs, ["--seq-len", "3", "--global-batch-size", "24"], "invalid seq_len"),
        "batch not whole sequences": (srcs, ["--global-batch-size", "100"], "a multiple of seq_len"),
        "steps beyond the epoch": (srcs, ["--steps", "100000"], "batches of 8 x 16 tokens in an epoch"),
        "a missing file": ([str(tmp_path / "nope.npy")], [], "does not exist"),
        "rate and every": (srcs, ["--rate", "1", "--every", "2"], "both rate and every"),
        "a string for an int": (srcs, ["--set", 'epoch="1"'], "epoch"),
        "a later epoch": (srcs, ["--epoch", "2"], "would be trained in epoch 1 too"),
        "a folder": ([str(tmp_path / "src")], [], "is a folder"),
    }
    for name, (data, extra, says) in cases.items():
        rc = cli.main(["lm", "inject", "--data", *data, "--tokenizer", str(small_corpus), "--out",
                       str(tmp_path / "out"), *ARGS, *extra])
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("raretask: error:"), (name, lines)
        assert says in lines[0], (name, lines[0])
        assert not (tmp_path / "out").exists(), name
    # the installed command, once: the same line and status from a fresh process
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "inject", "--data", str(odd), "--tokenizer",
                        str(small_corpus), "--out", str(tmp_path / "out"), *ARGS], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a whole number of uint16 tokens" in r.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="seq_len"):
        build(OlmoInjectConfig, {"data": srcs, "tokenizer": ".", "out": "o", "seq_len": 2, "global_batch_size": 8,
                                 "steps": 1})


def test_copies_sort_in_the_given_order_and_a_rerun_needs_restart(tmp_path, small_corpus, capsys):
    """1,000+ files keep their order under sorted(glob) (one zero-padded width); a second run into a
    finished copy is refused without --restart, and --restart with the tokenizer inside the folder
    rewrites it whole; an empty file stays empty; lm batch refuses a damaged copy."""
    from raretask import cli
    from raretask.lm._olmo import out_name

    assert [out_name(i, "x.npy", 1001) for i in (0, 100, 999, 1000)] == [
        "0000-x.npy", "0100-x.npy", "0999-x.npy", "1000-x.npy"]
    names = [out_name(i, f"s{i}.npy", 1001) for i in range(1001)]
    assert sorted(names) == names and out_name(7, "a.npy", 5) == "007-a.npy"
    srcs = sources(small_corpus, tmp_path / "src")
    empty = tmp_path / "src" / "empty.npy"
    empty.write_bytes(b"")
    data = [srcs[0], str(empty), srcs[1]]
    argv = ["lm", "inject", "--data", *data, "--tokenizer", str(small_corpus), "--out", str(tmp_path / "o"), *ARGS]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert (tmp_path / "o" / "data" / "001-empty.npy").stat().st_size == 0
    assert cli.main(argv[:3] + [srcs[1]] + argv[6:]) == 2
    assert "already holds an injected copy" in capsys.readouterr().err
    assert len(list((tmp_path / "o" / "data").iterdir())) == 3
    argv_tok_inside = [a if a != str(small_corpus) else str(tmp_path / "o" / "tokenizer.json") for a in argv]
    assert cli.main(argv_tok_inside + ["--restart", "--rate", "2"]) == 0
    rec = json.loads((tmp_path / "o" / "inject.json").read_text())
    assert rec["injected_instances"] == 20 and (tmp_path / "o" / "tokenizer.json").is_file()
    b = inject_batch(tmp_path / "o", 3)
    assert b.seeded_order_agrees and (b.instances >= 0).sum() == 2
    copy = tmp_path / "o" / "data" / "002-part-1.npy"
    copy.write_bytes(copy.read_bytes()[:200])
    with pytest.raises(Exception, match="missing or damaged"):
        inject_batch(tmp_path / "o", 3)
