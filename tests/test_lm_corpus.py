"""Corpus building (OLMo memmap layout) from user files and pretokenized memmaps."""

import json

import numpy as np
import pandas as pd
import pytest

from raretask import ConfigError
from raretask.lm import Corpus, build_corpus

pytest.importorskip("tokenizers")


def test_built_corpus_layout(small_corpus):
    meta = json.loads((small_corpus / "meta.json").read_text())
    assert meta["format"] == "olmo-memmap" and meta["dtype"] == "uint16"
    c = Corpus(small_corpus)
    raw = np.fromfile(small_corpus / "train.npy", dtype=np.uint16)  # headerless
    assert len(raw) == meta["tokens"]["train"] == len(c.train)
    eos = c.tokenizer.eos_id
    assert (raw == eos).sum() == meta["documents"]["train"] and raw[-1] == eos
    assert meta["documents"]["heldout"] >= 1 and meta["tokenizer"]["name"] == "bpe-1200"
    w = c.windows(np.array([0, 3]), 16)
    assert w.shape == (2, 16) and np.array_equal(w[1], raw[48:64])


def test_jsonl_and_parquet_sources(tmp_path, small_corpus):
    texts = [" ".join(["alpha beta gamma delta"] * 20) + f" doc {i}" for i in range(30)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts[:15]))
    pd.DataFrame({"text": texts[15:]}).to_parquet(tmp_path / "b.parquet")
    meta = build_corpus(tmp_path / "c", sources=[tmp_path / "a.jsonl", tmp_path / "b.parquet"],
                        tokenizer=str(small_corpus / "tokenizer.json"), heldout_fraction=0.1)
    assert meta["documents"]["train"] + meta["documents"]["heldout"] == 30
    assert Corpus(tmp_path / "c").tokenizer.sha256() == Corpus(small_corpus).tokenizer.sha256()


def test_pretokenized_memmaps_round_trip(tmp_path, small_corpus):
    meta = build_corpus(tmp_path / "re", pretokenized=[small_corpus / "train.npy"],
                        tokenizer=str(small_corpus / "tokenizer.json"), heldout_fraction=0.1)
    src = json.loads((small_corpus / "meta.json").read_text())
    assert meta["tokens"]["train"] + meta["tokens"]["heldout"] == src["tokens"]["train"]
    assert meta["documents"]["train"] + meta["documents"]["heldout"] == src["documents"]["train"]


def test_bad_corpus_input(tmp_path):
    with pytest.raises(ConfigError, match="invalid source"):
        build_corpus(tmp_path / "x", sources=[tmp_path / "missing.txt"])
    (tmp_path / "f.csv").write_text("a,b")
    with pytest.raises(ConfigError, match="invalid source"):
        build_corpus(tmp_path / "x", sources=[tmp_path / "f.csv"])
    with pytest.raises(ConfigError, match="invalid tokenizer"):
        build_corpus(tmp_path / "x", pretokenized=[tmp_path / "f.csv"])
    with pytest.raises(ConfigError, match="invalid corpus"):
        Corpus(tmp_path / "nothing")


def test_corpus_build_prints_a_short_summary_and_json_on_request(tmp_path, small_corpus, capsys):
    """Three lines (tokens, documents, sources, tokenizer, digest) instead of the 30-line meta.json;
    --json prints the whole meta.json, parseable."""
    from raretask.cli import main

    common = ["lm", "corpus", "build", "--source", str(small_corpus.parent / "text"),
              "--tokenizer", str(small_corpus / "tokenizer.json")]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert len(out) == 3 and out[0] == f"corpus: {tmp_path / 'a'}"
    assert f"{meta['tokens']['train']:,} train" in out[1] and meta["digest"][:12] in out[2]
    assert main([*common, "--out", str(tmp_path / "b"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == json.loads((tmp_path / "b" / "meta.json").read_text())["digest"]
