"""Evaluation over checkpoints (SPEC B4) and the n-gram counts behind the reference tasks."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask.lm import Corpus, LMTrainConfig, train  # noqa: E402
from raretask.lm._evaluate import evaluate_runs, reference_prompts  # noqa: E402


def test_eval_covers_every_checkpoint_and_caches(tmp_path, small_corpus):
    run = tmp_path / "r"
    train(LMTrainConfig(corpus=str(small_corpus), out=str(run), steps=6, batch_size=4, seq_len=32, checkpoint_every=3,
                        warmup=1, rate=2.0), progress=False)
    res = evaluate_runs([run], heldout_windows=4, reference_prompts=5)
    df = pd.read_parquet(run / "eval.parquet")
    assert list(df["step"]) == [3, 6] and res["checkpoints"] == 2
    assert ((df["test_accuracy"] >= 0) & (df["test_accuracy"] <= 1)).all()
    assert (df["compute"] == 6.0 * df["params"] * df["tokens"]).all() and list(df["tokens"]) == [384, 768]
    assert df["per_token_frequency"].iloc[0] == pytest.approx(2.0 / (4 * 32))
    for col in ("task_train_loss", "heldout_loss", "ref_increase_loss", "ref_addition_loss"):
        assert np.isfinite(df[col]).all()
    assert (run / "report.html").exists() and (run / "eval" / "step-000003.json").exists()
    cached = json.loads((run / "eval" / "step-000003.json").read_text())["payload"]
    assert cached["task_train_loss"] == df["task_train_loss"].iloc[0]
    summary = json.loads((run / "eval-summary.json").read_text())  # summary.json stays the training's
    freqs = summary["reference_frequencies"]  # template counts, not fragments such as " +"
    assert set(freqs) == {"increase", "addition"}
    assert (freqs["addition"]["instantiations"], freqs["increase"]["instantiations"]) == (10_000, 100)
    for f in freqs.values():  # the synthetic corpus is letters only: no instantiation occurs
        assert f["count"] == f["text_count"] == f["instantiations_present"] == 0 and f["per_token"] == 0
        assert f["counted_with"] == "numpy" and f["corpus_tokens"] == len(Corpus(small_corpus).train)
    html = (run / "report.html").read_text()
    assert "n-gram count of &#x27; {x} + {y} =&#x27;" in html or "n-gram count of ' {x} + {y} ='" in html
    assert (run / "figures" / "lm-eval.png").exists()


def test_ngram_index_counts_equal_brute_force(tmp_path, small_corpus):
    pytest.importorskip("infini_gram")
    from raretask.lm import build_corpus
    from raretask.lm._ngram import NgramCounter, count_numpy

    # 1.2M tokens with a repeated motif, as a pretokenized memmap: large enough for the index
    rng = np.random.default_rng(0)
    toks = rng.integers(2, 1200, 1_200_000).astype(np.uint16)
    toks[::500] = 0  # EOS: documents of 500 tokens
    toks[7::1000], toks[8::1000], toks[9::1000] = 11, 12, 13
    toks.tofile(tmp_path / "shard.npy")
    build_corpus(tmp_path / "big", pretokenized=[tmp_path / "shard.npy"], tokenizer=str(small_corpus / "tokenizer.json"))
    c = Corpus(tmp_path / "big")
    counter = NgramCounter(c, tmp_path / "big" / "ngram-index")
    assert counter.backend == "infini-gram"
    train = np.asarray(c.train)
    for ids in ([11, 12, 13], [12, 13], train[4000:4003].tolist(), [5, 6, 7, 8]):
        assert counter.count(ids) == count_numpy(train, ids)
    assert counter.count([11, 12, 13]) > 1000
    small = NgramCounter(Corpus(small_corpus), tmp_path / "unused")  # below 1M tokens: brute force
    assert small.backend == "numpy" and small.count(np.asarray(Corpus(small_corpus).train)[10:13].tolist()) >= 1


def test_reference_prompts_follow_their_templates():
    p = reference_prompts(50)
    for prompt, cont in p["increase"]:
        x = int(prompt.split()[-2])
        assert prompt.startswith("it has increased from") and int(cont) > x
    for prompt, cont in p["addition"]:
        a, b = int(prompt.split()[0]), int(prompt.split()[2])
        assert a < 100 and b < 100 and int(cont) == a + b


def test_batched_continuation_loss_is_each_pair_alone(tmp_path, small_corpus):
    """The reference losses read whole right-padded batches: the same numbers as one pair at a
    time (a causal model never reads the padding after a sequence)."""
    import torch

    from raretask.lm._evaluate import _continuation_loss
    from raretask.lm._runs import load_model
    from raretask.lm._tokenizer import load_tokenizer

    run = tmp_path / "r"
    train(LMTrainConfig(corpus=str(small_corpus), out=str(run), steps=2, batch_size=2, seq_len=32, checkpoint_every=2,
                        warmup=1), progress=False)
    model, tok = load_model(run / "checkpoints" / "step-000002"), load_tokenizer(run / "tokenizer.json")
    pairs = reference_prompts(6)["addition"] + reference_prompts(6)["increase"]
    with torch.no_grad():
        alone = [_continuation_loss(model, tok, [p], torch) for p in pairs]
        together = _continuation_loss(model, tok, pairs, torch, batch=5)
    assert together == pytest.approx(float(np.mean(alone)), rel=1e-5)


@pytest.mark.slow
def test_a_foreign_checkpoint_series_evaluates_as_its_native_run(tmp_path, small_corpus):
    """A raretask run's checkpoints exported as a plain folder of HF checkpoints (no trainer
    state, no checksums, another naming) and evaluated as a series raretask did not train give
    the native evaluation's numbers; its data-order log is the injection map."""
    import shutil
    import subprocess
    import sys

    from raretask import ConfigError
    from raretask.lm._foreign import evaluate_foreign

    run = tmp_path / "r"
    train(LMTrainConfig(corpus=str(small_corpus), out=str(run), steps=6, batch_size=4, seq_len=32, checkpoint_every=3,
                        warmup=1, rate=2.0), progress=False)
    native = evaluate_runs([run], heldout_windows=4, reference_prompts=5, progress=False)["table"]
    series = tmp_path / "series"
    for ck in sorted((run / "checkpoints").glob("step-*")):
        dst = series / f"checkpoint-{int(ck.name.split('-')[1])}"  # HF Trainer's naming
        dst.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(ck / f, dst / f)
    shutil.copy(run / "tokenizer.json", series / "tokenizer.json")
    res = evaluate_foreign(series, small_corpus, seq_len=32, batch_size=4, injection_map=run / "data_order",
                           out=tmp_path / "fe", heldout_windows=4, reference_prompts=5, progress=False)
    foreign = res["table"]
    cols = ["step", "tokens", "params", "compute", "task_train_loss", "task_test_loss", "train_accuracy",
            "test_accuracy", "test_accuracy_full_vocab", "heldout_loss", "ref_increase_loss", "ref_addition_loss",
            "per_token_frequency"]
    diff = (native[cols].reset_index(drop=True).astype(float) - foreign[cols].reset_index(drop=True).astype(float))
    assert float(diff.abs().to_numpy().max()) <= 1e-6, diff
    assert (tmp_path / "fe" / "report.html").exists() and (tmp_path / "fe" / "eval.parquet").exists()
    # cached: a second evaluation reads every checkpoint from fe/eval
    assert sorted(p.name for p in (tmp_path / "fe" / "eval").glob("*.json")) == ["checkpoint-3.json", "checkpoint-6.json"]
    # without a map the frequency is unknown, never guessed
    bare = evaluate_foreign(series, small_corpus, seq_len=32, batch_size=4, out=tmp_path / "fe2", heldout_windows=4,
                            reference_prompts=5, progress=False)["table"]
    assert bare["per_token_frequency"].isna().all()
    # refused, one line each: another tokenizer, an empty folder, a map without its columns
    other = tmp_path / "other"
    shutil.copytree(series, other)
    tj = json.loads((other / "tokenizer.json").read_text())
    tj["model"]["vocab"]["<|zz|>"] = len(tj["model"]["vocab"])  # another vocabulary: another tokenizer
    (other / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ConfigError, match="not the corpus's tokenizer"):
        evaluate_foreign(other, small_corpus, seq_len=32, batch_size=4, out=tmp_path / "fe3", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no step-named HF checkpoint"):
        evaluate_foreign(tmp_path / "empty", small_corpus, seq_len=32, batch_size=4, progress=False)
    pd.DataFrame({"step": [0]}).to_parquet(tmp_path / "map.parquet")
    with pytest.raises(ConfigError, match="lacks column"):
        evaluate_foreign(series, small_corpus, seq_len=32, batch_size=4, injection_map=tmp_path / "map.parquet",
                         out=tmp_path / "fe4", progress=False)
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "eval", "--foreign", str(series), "--corpus",
                        str(small_corpus), "--seq-len", "32"], capture_output=True, text=True)
    assert r.returncode == 2 and "--batch-size" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "eval", str(run), "--seq-len", "32"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "only with --foreign" in r.stderr
