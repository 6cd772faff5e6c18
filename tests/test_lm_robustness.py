"""A new user's worst cases for the LM commands (`raretask lm train | eval | probe | sweep | corpus
build`): bad values, folders that are not runs, corrupt or missing files of each kind, a second
writer, a full disk, a diverging loss, bfloat16 on the CPU, kill -9 and Ctrl-C.

Every case asserts the exit code, one line ``raretask: error: ...`` without a traceback, and that
the data present before the call is unchanged (digest before and after) or recomputed
identically. Runs are tiny (preset tiny, batch 4 x 32 tokens, 6 steps) on the session corpus.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import interruptible

pytest.importorskip("transformers")

from test_robustness import digest, error_line, refused, run  # noqa: E402

from raretask import cli  # noqa: E402
from raretask.runfolder import FILES, LOCK_INFO, MARKER  # noqa: E402

MODULE = [sys.executable, "-m", "raretask.cli"]


def train_args(corpus, out, steps: int = 6, every: int = 3, *extra) -> list[str]:
    return ["lm", "train", "--corpus", str(corpus), "--out", str(out), "--preset", "tiny", "--batch-size", "4",
            "--seq-len", "32", "--warmup", "2", "--lr", "1e-3", "--steps", str(steps), "--checkpoint-every",
            str(every), "--no-progress", *extra]


def parts(out: Path, sub: str = "metrics") -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((out / sub).glob("part-*.parquet"))], ignore_index=True)


def same_training(a: Path, b: Path) -> None:
    """Run ``b`` trained exactly what ``a`` did: every step once, the same losses and data."""
    ma, mb = parts(a), parts(b)
    assert list(mb["step"]) == list(ma["step"])
    for col in ("loss", "task_loss", "lr", "grad_norm"):
        np.testing.assert_allclose(mb[col], ma[col], rtol=1e-6)
    pd.testing.assert_frame_equal(parts(b, "data_order"), parts(a, "data_order"))


def same_optimizer(a: Path, b: Path) -> None:
    """The optimizer states of two checkpoints hold equal tensors (a resumed AdamW pickles its
    betas as a list, not a tuple: the bytes differ, the state does not)."""
    import torch

    sa, sb = (torch.load(d / "optimizer.pt", weights_only=False) for d in (a, b))
    assert sa["state"].keys() == sb["state"].keys()
    for k, st in sa["state"].items():
        assert st.keys() == sb["state"][k].keys() and all(torch.equal(v, sb["state"][k][n]) for n, v in st.items())


def ckpt(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], list(root.rglob("*.tmp"))


def flip(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))


@pytest.fixture(scope="module")
def done(tmp_path_factory, small_corpus):
    """A finished 6-step run (checkpoints at 3 and 6), through the CLI, to copy from."""
    root = tmp_path_factory.mktemp("lmdone")
    assert cli.main(train_args(small_corpus, root / "run")) == 0
    return root / "run"


@pytest.fixture
def work(done, tmp_path):
    shutil.copytree(done, tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------ bad values: nothing written
@pytest.mark.parametrize("extra, match", [
    (["--lr", "inf"], "invalid lr: inf"),
    (["--lr", "nan"], "invalid lr: nan"),
    (["--weight-decay", "nan"], "invalid weight_decay"),
    (["--clip", "inf"], "invalid clip"),
    (["--final-lr-ratio", "nan"], "invalid final_lr_ratio"),
    (["--warmup", "-1"], "invalid warmup"),
    (["--seed", "-1"], "invalid seed"),
    (["--rate", "inf"], "invalid rate"),
    (["--device", "tpu"], "invalid device: 'tpu'"),
    (["--dtype", "float16"], "invalid dtype"),
    (["--batch-size", "0"], "invalid batch_size"),
])
def test_train_bad_values_write_nothing(capsys, tmp_path, small_corpus, extra, match):
    refused(capsys, train_args(small_corpus, tmp_path / "r") + extra, 2, match)
    assert not (tmp_path / "r").exists()


def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path, small_corpus):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    refused(capsys, train_args(small_corpus, tmp_path / "r", 6, 3, "--device", "cuda"), 2, "invalid device: cuda")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, match", [
    (["--heldout-windows", "0"], "invalid heldout_windows: 0"),
    (["--reference-prompts", "-3"], "invalid reference_prompts: -3"),
    (["--heldout-windows", "1000000000"], "invalid heldout_windows: 1000000000 is more than the"),  # was capped
    (["--reference-prompts", "1000000000"], "invalid reference_prompts: 1,000,000,000 (there are 10,000 distinct"),
])
def test_eval_bad_counts_write_nothing(capsys, work, extra, match):
    refused(capsys, ["lm", "eval", work] + extra, 2, match, keep=work)


def test_eval_records_the_heldout_windows_it_used(capsys, work):
    """The default uses up to 64 windows and records the number used (it recorded what was asked)."""
    from raretask.lm._corpus import Corpus
    from raretask.lm._runs import training_run

    cfg = training_run(work)[1]
    avail = Corpus(cfg.corpus).n_windows(cfg.seq_len, "heldout")
    assert run(capsys, ["lm", "eval", work, "--reference-prompts", "2"])[0] == 0
    used = json.loads((work / "eval-summary.json").read_text())["heldout_windows"]
    assert used == {str(work): min(64, avail)}


@pytest.mark.parametrize("k, ok", [(100000, False), (65, False), (64, True)])
def test_probe_pca_k_above_the_width_is_refused_not_capped(capsys, work, k, ok):
    """Before: --pca-k 100000 on a width-64 model ran with fewer components and recorded 100000."""
    args = ["lm", "probe", work, "--pca", "--no-init", "--no-progress", "--pca-k", str(k)]
    if ok:
        assert run(capsys, args)[0] == 0
    else:
        line = refused(capsys, args, 2, f"invalid pca_k: {k} principal components of a width-64 model", keep=work)
        assert "allowed: 1..64" in line


def test_a_latin1_source_is_refused_unless_its_encoding_is_given(capsys, tmp_path, small_corpus):
    """Before: decoded with U+FFFD replacement characters and no word."""
    text = (small_corpus.parent / "text").iterdir().__next__().read_text()
    src = tmp_path / "latin.txt"
    src.write_bytes(("Caf\u00e9 cr\u00e8me. " * 50 + text * 3).encode("latin-1", errors="ignore"))
    args = ["lm", "corpus", "build", "--out", tmp_path / "c", "--source", src, "--tokenizer",
            small_corpus / "tokenizer.json"]
    line = refused(capsys, args, 2, "latin.txt is not valid utf-8 (byte 0xe9 at offset 3)")
    assert "--encoding" in line and not (tmp_path / "c").exists()
    refused(capsys, args + ["--encoding", "klingon"], 2, "invalid encoding: 'klingon'")
    rc, err = run(capsys, args + ["--encoding", "latin-1"])
    assert rc == 0, err
    from raretask.lm._corpus import Corpus
    from raretask.lm._tokenizer import load_tokenizer

    c, tok = Corpus(tmp_path / "c"), load_tokenizer(tmp_path / "c")
    decoded = tok.decode([int(i) for i in c.train]) + tok.decode([int(i) for i in c.heldout])
    assert "\ufffd" not in decoded and "Caf\u00e9 cr\u00e8me." in decoded


def test_a_vocabulary_the_text_cannot_reach_is_named_by_its_real_size(capsys, tmp_path):
    """Before: a tokenizer named bpe-512 had 271 entries. Now the name and meta.json carry the
    real size, the requested one is recorded, and a warning line says so."""
    src = tmp_path / "tiny.txt"
    src.write_text("the cat sat on the mat. " * 200 + "\n\n" + "a dog ran. " * 400)  # 2+ documents
    rc, err = run(capsys, ["lm", "corpus", "build", "--out", tmp_path / "c", "--source", src, "--vocab-size", "512"])
    assert rc == 0, err
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    size = meta["tokenizer"]["vocab_size"]
    assert size < 512 and meta["tokenizer"]["name"] == f"bpe-{size}"
    assert json.loads((tmp_path / "c" / "tokenizer_info.json").read_text())["requested_vocab_size"] == 512
    assert f"raretask: warning: the text supports a vocabulary of {size:,} entries, not the 512 asked for" in err


def test_corpus_sources_that_are_not_text_are_one_line_and_write_nothing(capsys, tmp_path, small_corpus):
    cases = {"bad.jsonl": ('{"text": "a b c"}\n{not json\n', "bad.jsonl:2 is not JSON"),
             "num.jsonl": ('{"text": 123}\n{"text": "x"}\n', 'num.jsonl:1: "text" is int, not a string'),
             "list.jsonl": ('["text"]\n', "list.jsonl:1 has no \"text\" field"),
             "fake.parquet": ("not parquet", "fake.parquet is not a readable Parquet file")}
    for name, (content, match) in cases.items():
        (tmp_path / name).write_text(content)
        refused(capsys, ["lm", "corpus", "build", "--out", tmp_path / "c", "--source", tmp_path / name,
                         "--tokenizer", small_corpus / "tokenizer.json"], 2, match, keep=tmp_path)
        assert not (tmp_path / "c").exists()
    refused(capsys, ["lm", "corpus", "build", "--out", tmp_path / "c", "--source", tmp_path / "missing.txt"], 2,
            "does not exist")
    refused(capsys, ["lm", "corpus", "build", "--out", tmp_path / "c", "--source", tmp_path / "bad.jsonl",
                     "--tokenizer", tmp_path / "nope.json"], 2, "invalid tokenizer")
    assert not (tmp_path / "c").exists()


def test_sweep_bad_values_write_nothing(capsys, tmp_path, small_corpus):
    refused(capsys, ["lm", "sweep", "cpu-rates-quick", "--corpus", small_corpus, "--out", tmp_path / "sw",
                     "--set", "train.lr=Infinity"], 2, "invalid train.lr: inf: input should be a finite number")
    assert not (tmp_path / "sw").exists()


# ------------------------------------------------------------------ folders that are not this run
def test_a_folder_that_is_not_a_run_is_never_written_or_cleared(capsys, tmp_path, small_corpus):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    for extra in ([], ["--restart"]):
        refused(capsys, train_args(small_corpus, notes, 6, 3, *extra), 1, "not a raretask run folder", keep=notes)
    refused(capsys, ["lm", "corpus", "build", "--out", notes, "--source", small_corpus.parent / "text",
                     "--tokenizer", small_corpus / "tokenizer.json"], 1, "not a raretask run folder", keep=notes)
    refused(capsys, ["lm", "eval", notes], 2, "not a training run", keep=notes)


def test_out_holding_another_kind_of_run_is_refused(capsys, small_corpus, tmp_path):
    shutil.copytree(small_corpus, tmp_path / "corpus")
    refused(capsys, train_args(tmp_path / "corpus", tmp_path / "corpus"), 1, "holds a raretask lm-corpus run",
            keep=tmp_path / "corpus")


def test_restart_deletes_only_what_raretask_wrote(capsys, work, done, small_corpus):
    (work / "my-notes.txt").write_text("mine")
    rc, err = run(capsys, train_args(small_corpus, work, 6, 3, "--restart"))
    assert rc == 0, err
    assert (work / "my-notes.txt").read_text() == "mine"
    same_training(done, work)


def test_changed_steps_are_refused_and_extend_continues_the_schedule(capsys, work, done, small_corpus):
    refused(capsys, train_args(small_corpus, work, 3), 2, "invalid steps: 3 is fewer than the 6 steps", keep=work)
    refused(capsys, train_args(small_corpus, work, 9), 2, "--extend to continue it to 9 steps", keep=work)
    refused(capsys, train_args(small_corpus, work, 6, 3, "--lr", "2e-3"), 2, "different configuration (lr)",
            keep=work)
    rc, err = run(capsys, train_args(small_corpus, work, 9, 3, "--extend"))
    assert rc == 0, err
    m = parts(work)
    assert list(m["step"]) == list(range(1, 10))
    pd.testing.assert_frame_equal(m.iloc[:6].drop(columns=["tokens_per_s", "batch_seconds", "inject_seconds",
                                                           "monitor_seconds", "step_seconds"]),
                                  parts(done).drop(columns=["tokens_per_s", "batch_seconds", "inject_seconds",
                                                            "monitor_seconds", "step_seconds"]))
    np.testing.assert_allclose(m["lr"].iloc[6:], 1e-3 * 0.1)  # the cosine still ends at step 6
    rec = json.loads((work / "run_config.json").read_text())
    assert rec["config"]["steps"] == 9 and rec["config"]["schedule_steps"] == 6
    assert [e["from_steps"] for e in rec["extended"]] == [6]
    # an extension interrupted after its first checkpoint resumes to the same numbers
    again = work.with_name("again")
    shutil.copytree(work, again)
    shutil.rmtree(ckpt(again, 9))
    for sub in ("metrics", "data_order"):
        (again / sub / "part-000002.parquet").unlink()
    (again / "summary.json").unlink()
    rc, err = run(capsys, train_args(small_corpus, again, 9, 3, "--extend"))
    assert rc == 0, err
    assert json.loads((again / "summary.json").read_text())["resumed_from"] == 6
    same_training(work, again)


def test_a_finished_run_is_left_as_it_is(capsys, work, small_corpus):
    before = digest(work)
    rc = cli.main(train_args(small_corpus, work))
    out = capsys.readouterr().out
    assert rc == 0 and "nothing to do" in out and "trained 6 steps" not in out
    assert digest(work) == before


def test_what_a_kill_during_a_write_leaves_is_cleared_by_the_next_call(capsys, work, small_corpus):
    before = digest(work)
    before_files = (work / FILES).read_text()
    strays = [work / ".summary.json.123.tmp", work / "checkpoints" / ".latest.123.tmp",
              work / "metrics" / ".part-000002.parquet.123.tmp", work / "eval" / ".step-000003.json.123.tmp"]
    (work / "eval").mkdir()
    for p in strays:
        p.write_bytes(b"half")
    (work / "checkpoints" / "step-000009.tmp").mkdir()
    (work / "checkpoints" / "step-000009.tmp" / "model.safetensors").write_bytes(b"half")
    rc, err = run(capsys, train_args(small_corpus, work))
    assert rc == 0, err
    assert not (work / "checkpoints" / "step-000009.tmp").exists()
    assert run(capsys, ["lm", "eval", work, "--heldout-windows", "2", "--reference-prompts", "2"])[0] == 0
    no_temporaries(work)
    after = digest(work)
    same = [k for k in before if k != FILES]  # the per-file record grows by what eval wrote
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    assert set(json.loads((work / FILES).read_text())) >= set(json.loads(before_files))


def test_a_run_from_before_markers_is_adopted(capsys, work, done, small_corpus):
    (work / MARKER).unlink()
    for ck in (ckpt(work, 3), ckpt(work, 6)):  # checkpoints written before checksums
        st = json.loads((ck / "trainer_state.json").read_text())
        (ck / "trainer_state.json").write_text(json.dumps({k: st[k] for k in ("step", "parts", "tokens")}))
    (work / "summary.json").unlink()
    rc, err = run(capsys, train_args(small_corpus, work))
    assert rc == 0, err
    assert json.loads((work / MARKER).read_text())["kind"] == "lm-train"
    assert json.loads((work / "summary.json").read_text())["resumed_from"] == 6
    same_training(done, work)


# ------------------------------------------------------------------ a second writer
@pytest.mark.slow
def test_a_second_writer_gets_one_line_naming_the_holder(capsys, tmp_path, small_corpus):
    out = tmp_path / "r"
    args = train_args(small_corpus, out, 20000, 5)
    first = subprocess.Popen(MODULE + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (ckpt(out, 5) / "trainer_state.json").exists():
            assert first.poll() is None and time.time() - t0 < 120, "the first writer never checkpointed"
            time.sleep(0.05)
        line = refused(capsys, args, 1, "is in use by")
        assert f"pid {first.pid}" in line
        line = refused(capsys, ["lm", "eval", out, "--heldout-windows", "2", "--reference-prompts", "2"], 1,
                       "is in use by")
        assert f"pid {first.pid}" in line and not (out / "eval").exists()
        assert first.poll() is None  # the first writer trains on, undisturbed
    finally:
        first.kill()
        first.wait()


# ------------------------------------------------------------------ corrupt or missing files
@pytest.mark.parametrize("content", [b"", b"garbage\n", b"step-999999"])
def test_a_damaged_latest_pointer_never_restarts_the_run(capsys, work, content, small_corpus):
    (work / "checkpoints" / "latest").write_bytes(content)
    (work / "summary.json").unlink()
    logs = {k: v for k, v in digest(work).items() if k.startswith(("metrics", "data_order", "checkpoints/step"))}
    rc, err = run(capsys, train_args(small_corpus, work))
    assert rc == 0, err
    assert json.loads((work / "summary.json").read_text())["resumed_from"] == 6
    after = digest(work)
    assert {k: after[k] for k in logs} == logs  # logs and checkpoints untouched


@pytest.mark.parametrize("damage", ["truncate-model", "flip-model", "garbage-optimizer", "garbage-trainer-state",
                                    "garbage-config", "missing-optimizer", "delete-metric-part"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(capsys, work, done, small_corpus, damage):
    ck = ckpt(work, 6)
    if damage == "truncate-model":
        with open(ck / "model.safetensors", "r+b") as f:
            f.truncate(100)
    elif damage == "flip-model":
        flip(ck / "model.safetensors")
    elif damage == "garbage-optimizer":
        (ck / "optimizer.pt").write_bytes(b"{garbage")
    elif damage == "garbage-trainer-state":
        (ck / "trainer_state.json").write_bytes(b"{garbage")
    elif damage == "garbage-config":
        (ck / "config.json").write_bytes(b"{garbage")
    elif damage == "missing-optimizer":
        (ck / "optimizer.pt").unlink()
    else:
        (work / "metrics" / "part-000001.parquet").unlink()
    (work / "summary.json").unlink()
    rc, err = run(capsys, train_args(small_corpus, work))
    assert rc == 0, err
    assert "raretask: note: step-000006" in err and "resumed from step-000003" in err
    s = json.loads((work / "summary.json").read_text())
    assert s["resumed_from"] == 3 and s["repairs"]
    same_training(done, work)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):  # step 6 recomputed identically
        assert (ckpt(work, 6) / name).read_bytes() == (ckpt(done, 6) / name).read_bytes(), name
    same_optimizer(ckpt(work, 6), ckpt(done, 6))
    no_temporaries(work)


def test_a_bit_flipped_model_is_refused_by_eval_and_probe(capsys, work):
    flip(ckpt(work, 6) / "model.safetensors")
    for args in (["lm", "eval", work, "--heldout-windows", "2", "--reference-prompts", "2"],
                 ["lm", "probe", work, "--pca", "--no-init"]):
        line = refused(capsys, args, 1, "model.safetensors is damaged", keep=work)
        assert str(ckpt(work, 6) / "model.safetensors") in line


@pytest.mark.parametrize("name, match", [
    ("run_config.json", "run_config.json"),
    ("checkpoints/step-000006/trainer_state.json", "step-000006's trainer_state.json"),
    ("checkpoints/step-000006/config.json", "config.json is damaged"),
])
def test_corrupt_run_files_are_one_line_for_readers(capsys, work, name, match):
    (work / name).write_bytes(b"{garbage")
    for args in (["lm", "eval", work, "--heldout-windows", "2", "--reference-prompts", "2"],
                 ["lm", "probe", work, "--pca", "--no-init"]):
        refused(capsys, args, 1, match, keep=work)


def test_a_corrupt_config_in_a_checkpoint_from_before_checksums_is_one_line(capsys, work):
    ck = ckpt(work, 6)
    st = json.loads((ck / "trainer_state.json").read_text())
    (ck / "trainer_state.json").write_text(json.dumps({k: st[k] for k in ("step", "parts", "tokens")}))
    (ck / "config.json").write_bytes(b"{garbage")
    before = digest(work)
    line = refused(capsys, ["lm", "eval", work, "--heldout-windows", "2", "--reference-prompts", "2"], 1,
                   "does not load")
    assert str(ck) in line
    after = digest(work)  # all that was there stays; the intact checkpoint's result was cached on the way
    same = [k for k in before if k != FILES]  # (and entered in the per-file record)
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    assert set(after) - set(before) == {"eval/step-000003.json"}
    assert "eval/step-000003.json" in json.loads((work / FILES).read_text())


def test_corrupt_run_config_is_one_line_for_train(capsys, work, small_corpus):
    (work / "run_config.json").write_bytes(b"\x00\xff{")
    refused(capsys, train_args(small_corpus, work), 1, "run_config.json", keep=work)


def test_resuming_from_non_finite_weights_is_refused(capsys, work, small_corpus):
    from safetensors.torch import load_file, save_file

    ck = ckpt(work, 6)
    sd = load_file(ck / "model.safetensors")
    next(iter(sd.values()))[0] = float("nan")
    save_file(sd, ck / "model.safetensors")  # as a run from before the divergence checks would have
    st = json.loads((ck / "trainer_state.json").read_text())
    (ck / "trainer_state.json").write_text(json.dumps({k: st[k] for k in ("step", "parts", "tokens")}))
    rec = json.loads((work / "run_config.json").read_text())
    rec["config"]["steps"] = 9  # an unfinished run, so that the call resumes
    (work / "run_config.json").write_text(json.dumps(rec))
    refused(capsys, train_args(small_corpus, work, 9), 1, "holds non-finite weights", keep=work)


def test_a_missing_or_damaged_corpus_is_one_line(capsys, work, small_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    rec = json.loads((work / "run_config.json").read_text())
    rec["config"]["corpus"] = str(corpus)
    (work / "run_config.json").write_text(json.dumps(rec))
    (corpus / "train.npy").unlink()
    refused(capsys, train_args(corpus, work), 1, "train.npy is missing", keep=work)
    (corpus / "meta.json").write_bytes(b"{")
    refused(capsys, train_args(corpus, work), 1, "meta.json", keep=work)
    shutil.rmtree(corpus)
    refused(capsys, train_args(corpus, work), 2, "invalid corpus", keep=work)
    refused(capsys, ["lm", "eval", work], 2, "which is not a corpus any more", keep=work)


@pytest.mark.slow
def test_eval_cache_is_keyed_by_every_parameter(capsys, work):
    ev = ["lm", "eval", work, "--heldout-windows", "2"]
    assert run(capsys, ev + ["--reference-prompts", "2"])[0] == 0
    a = pd.read_parquet(work / "eval.parquet")
    assert run(capsys, ev + ["--reference-prompts", "4"])[0] == 0
    b = pd.read_parquet(work / "eval.parquet")
    assert (a["ref_addition_loss"] != b["ref_addition_loss"]).all()  # recomputed, not the cached values
    (work / "eval" / "step-000003.json").write_bytes(b"{garb")  # a damaged cache is recomputed
    assert run(capsys, ev + ["--reference-prompts", "2"])[0] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(work / "eval.parquet"), a)
    key = json.loads((work / "eval" / "step-000006.json").read_text())["key"]
    assert key["reference_prompts"] == 2 and key["heldout_windows"] == 2 and len(key["model_sha256"]) == 64
    s = json.loads((work / "summary.json").read_text())
    assert s["steps"] == 6 and "reference_frequencies" not in s  # eval never overwrites the training summary


# ------------------------------------------------------------------ full disk
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("how", ["oserror", "torch-wrapper"])
def test_full_disk_while_checkpointing_is_one_line_and_reruns_identically(capsys, tmp_path, done, small_corpus,
                                                                          monkeypatch, how):
    import torch

    real = torch.save

    def wrapped(obj, f, *a, **k):  # what torch.save really raises on ENOSPC: "unexpected pos"
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4800 vs 4692")

    monkeypatch.setattr(torch, "save", _enospc if how == "oserror" else wrapped)
    out = tmp_path / "r"
    line = refused(capsys, train_args(small_corpus, out), 1, "no space left on device while writing")
    assert "step-000003.tmp/optimizer.pt" in line and "unexpected pos" not in line
    assert not (out / "checkpoints" / "step-000003").exists() and not list((out / "metrics").iterdir())
    no_temporaries(out)
    monkeypatch.setattr(torch, "save", real)
    rc, err = run(capsys, train_args(small_corpus, out))
    assert rc == 0, err
    same_training(done, out)


def test_full_disk_during_eval_keeps_the_run(capsys, work, monkeypatch):
    import raretask.runfolder as rf

    real = rf.os.fsync
    before = digest(work)

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{work}/eval/"):
            _enospc()
        real(fd)

    monkeypatch.setattr(rf.os, "fsync", full)
    line = refused(capsys, ["lm", "eval", work, "--heldout-windows", "2", "--reference-prompts", "2"], 1,
                   "no space left on device while writing")
    assert str(work / "eval" / "step-000003.json") in line
    assert digest(work) == before
    no_temporaries(work)


def test_full_disk_while_building_a_corpus_leaves_nothing(capsys, tmp_path, small_corpus, monkeypatch):
    import raretask.runfolder as rf

    monkeypatch.setattr(rf.os, "posix_fallocate", _enospc)
    out = tmp_path / "c"
    line = refused(capsys, ["lm", "corpus", "build", "--out", out, "--source", small_corpus.parent / "text",
                            "--tokenizer", small_corpus / "tokenizer.json"], 1, "no space left on device")
    assert str(out / "train.npy") in line and not out.exists()


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_full_disk_on_a_real_small_filesystem(tmp_path, small_corpus):
    """Small tmpfs mounts where the test may mount them (root); skipped elsewhere. Before: corpus
    build died of SIGBUS (exit 135) leaving train.npy.tmp, lm train said "unexpected pos"."""
    small, tiny = tmp_path / "small", tmp_path / "tiny"
    if not _tmpfs(tiny, "150k"):
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC cases cover this")
    try:
        r = subprocess.run(MODULE + ["lm", "corpus", "build", "--out", str(tiny / "c"), "--source",
                                     str(small_corpus.parent / "text"), "--tokenizer",
                                     str(small_corpus / "tokenizer.json")], capture_output=True, text=True)
        assert r.returncode == 1 and "no space left on device while writing" in error_line(r.stderr)
        assert list(tiny.iterdir()) == []
        assert _tmpfs(small, "3m")
        r = subprocess.run(MODULE + train_args(small_corpus, small / "r"), capture_output=True, text=True)
        assert r.returncode == 1 and "no space left on device while writing" in error_line(r.stderr)
        assert "unexpected pos" not in r.stderr
        no_temporaries(small)
    finally:
        for m in (tiny, small):
            subprocess.run(["umount", str(m)], check=False, capture_output=True)


# ------------------------------------------------------------------ a diverging loss
def test_a_diverging_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(capsys, tmp_path, small_corpus):
    from safetensors.torch import load_file

    out = tmp_path / "r"
    line = refused(capsys, train_args(small_corpus, out, 6, 1, "--lr", "1e6"), 1, "training diverged at step 2")
    assert "checkpoint step-000001 and the logs up to it are kept" in line
    assert [d.name for d in (out / "checkpoints").iterdir() if d.name.startswith("step")] == ["step-000001"]
    assert all(bool(v.isfinite().all()) for v in load_file(ckpt(out, 1) / "model.safetensors").values())
    assert list(parts(out)["step"]) == [1]
    before = digest(out)
    refused(capsys, train_args(small_corpus, out, 6, 1, "--lr", "1e6"), 1, "training diverged at step 2")
    assert digest(out) == before  # the same call again: the same line, nothing lost or added


def test_non_finite_weights_are_never_checkpointed(capsys, tmp_path, small_corpus, monkeypatch):
    import torch

    real = torch.optim.AdamW.step

    def poisoned(self, *a, **k):  # a step that leaves a NaN in the weights (the loss was still finite)
        res = real(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return res

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    out = tmp_path / "r"
    refused(capsys, train_args(small_corpus, out, 6, 1), 1, "weights are no longer finite")
    assert not [d for d in (out / "checkpoints").iterdir() if d.name.startswith("step")]
    no_temporaries(out)


# ------------------------------------------------------------------ bfloat16 on the CPU
def test_bfloat16_on_the_cpu_really_runs_in_bfloat16(capsys, tmp_path, small_corpus, monkeypatch):
    import raretask.lm._train as tr

    seen: dict[str, set] = {}
    real = tr.build_model

    def watched(*a, **k):
        m = real(*a, **k)
        m.model.layers[0].mlp.down_proj.register_forward_hook(lambda mod, i, o: seen[key].add(o.dtype))
        return m

    monkeypatch.setattr(tr, "build_model", watched)
    for key, extra in (("bf16", ["--dtype", "bfloat16", "--device", "cpu"]), ("fp32", ["--device", "cpu"])):
        seen[key] = set()
        rc, err = run(capsys, train_args(small_corpus, tmp_path / key, 3, 3, *extra))
        assert rc == 0, err
    import torch

    assert seen == {"bf16": {torch.bfloat16}, "fp32": {torch.float32}}
    assert not np.allclose(parts(tmp_path / "bf16")["loss"], parts(tmp_path / "fp32")["loss"], rtol=1e-7, atol=0)


# ------------------------------------------------------------------ kill -9 and Ctrl-C
@pytest.fixture(scope="module")
def long_ref(tmp_path_factory, small_corpus):
    """An uninterrupted 120-step run (checkpoints every 10) to compare interrupted ones with; at a
    fractional rate (1.5 per batch), so the resumed injection draws are checked too."""
    out = tmp_path_factory.mktemp("lmlong") / "ref"
    assert cli.main(train_args(small_corpus, out, 120, 10, "--rate", "1.5")) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGINT, 130)])
def test_interrupt_then_rerun_gives_identical_metrics(tmp_path, small_corpus, long_ref, sig, code):
    out = tmp_path / "r"
    args = MODULE + train_args(small_corpus, out, 120, 10, "--rate", "1.5")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    t0 = time.time()
    while not (ckpt(out, 20) / "trainer_state.json").exists():
        assert p.poll() is None and time.time() - t0 < 120, "the run never reached step 20"
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err  # 0 would be a run that never saw the signal
    if sig == signal.SIGINT:
        assert "Traceback" not in err
        assert [ln for ln in err.splitlines() if ln.startswith("raretask:")] == [
            "raretask: interrupted; re-run the same command to resume"]
    assert not (out / "summary.json").exists() and (out / LOCK_INFO).exists() == (sig == signal.SIGKILL)
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["resumed_from"] >= 20
    assert list(parts(out)["step"]) == list(range(1, 121))  # every step once (1-based: steps done)
    per_step = parts(out, "data_order").groupby("step").size()
    assert list(per_step.index) == list(range(120)) and (per_step == 4).all()  # no batch skipped or repeated
    same_training(long_ref, out)
    no_temporaries(out)


# ------------------------------------------------------------------ corpus identity
def test_a_rebuilt_corpus_is_refused_by_its_runs_before_anything_is_written(capsys, tmp_path, small_corpus):
    """Before: `lm corpus build` over a used corpus exited 0; `--extend` then rewrote run_config.json
    and tokenizer.json and died of a size mismatch, and `lm eval` scored under the wrong tokenizer."""
    corpus, out = tmp_path / "c", tmp_path / "r"
    shutil.copytree(small_corpus, corpus)  # the session's corpus is shared: work on a copy
    rc, err = run(capsys, train_args(corpus, out, 2, 1))
    assert rc == 0, err
    digest_then = json.loads((corpus / "meta.json").read_text())["digest"]
    assert json.loads((out / "run_config.json").read_text())["corpus_digest"] == digest_then
    build = ["lm", "corpus", "build", "--out", corpus, "--source", small_corpus.parent / "text", "--vocab-size", "600"]
    refused(capsys, build, 2, f"already holds a corpus (digest {digest_then[:12]})", keep=corpus)
    rc, err = run(capsys, build + ["--restart"])
    assert rc == 0, err
    assert json.loads((corpus / "meta.json").read_text())["digest"] != digest_then
    for args in (train_args(corpus, out, 4, 1, "--extend"), train_args(corpus, out, 2, 1),
                 ["lm", "eval", out, "--heldout-windows", "2", "--reference-prompts", "2"],
                 ["lm", "probe", out, "--pca", "--no-init"]):
        line = refused(capsys, args, 2, f"is not the corpus {out} trained on", keep=out)
        assert "recorded " + digest_then[:12] in line


def test_a_corpus_digest_covers_tokens_tokenizer_and_meta(tmp_path, small_corpus):
    from raretask.lm._corpus import compute_digest, corpus_digest

    c = tmp_path / "c"
    shutil.copytree(small_corpus, c)
    d0 = corpus_digest(c)
    assert d0 == compute_digest(c)  # what meta.json records is what the files give
    meta = json.loads((c / "meta.json").read_text())
    del meta["digest"]  # a corpus from before digests: computed from its files
    (c / "meta.json").write_text(json.dumps(meta))
    assert corpus_digest(c) == d0
    with open(c / "heldout.npy", "r+b") as f:  # one flipped byte of tokens
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 1]))
    assert corpus_digest(c) != d0
