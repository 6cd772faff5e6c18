"""Model families (issue 14): a second family (Llama) is one record plus one registration
line, and it trains, evaluates and probes like OLMo."""

import json

import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask.lm import (FAMILIES, PRESETS, LMTrainConfig, ModelPreset, evaluate_runs, register_family,  # noqa: E402
                         register_preset, train)
from raretask import ConfigError  # noqa: E402
from raretask.lm._models import build_model  # noqa: E402
from raretask.probes import ProbeConfig, probe_run  # noqa: E402


@pytest.fixture()
def llama():
    from llama_family import LLAMA

    register_family(LLAMA)
    register_preset("tiny-llama", ModelPreset(2, 64, 256, 4, None, family="llama"))
    yield
    FAMILIES.pop("llama")
    PRESETS.pop("tiny-llama")


def test_olmo_is_the_default_family():
    assert PRESETS["tiny"].family == "olmo" and "olmo" in FAMILIES
    assert type(build_model("tiny", 256, 16)).__name__ == "OlmoForCausalLM"


@pytest.mark.slow
def test_a_registered_llama_family_trains_evaluates_and_probes(tmp_path, small_corpus, llama):
    assert type(build_model("tiny-llama", 256, 16)).__name__ == "LlamaForCausalLM"
    run = tmp_path / "r"
    summary = train(LMTrainConfig(corpus=str(small_corpus), out=str(run), preset="tiny-llama", steps=4, batch_size=4,
                                  seq_len=32, checkpoint_every=2, warmup=1, rate=2.0), progress=False)
    assert summary["preset"] == "tiny-llama"
    assert json.loads((run / "checkpoints" / "step-000004" / "config.json").read_text())["model_type"] == "llama"
    res = evaluate_runs([run], heldout_windows=4, reference_prompts=5)
    df = pd.read_parquet(run / "eval.parquet")
    assert res["checkpoints"] == 2 and list(df["step"]) == [2, 4]
    assert ((df["test_accuracy"] >= 0) & (df["test_accuracy"] <= 1)).all()
    out = probe_run(run, ProbeConfig(probes=("localize", "gradients"), neurons=4, grad_steps=2))
    loc, grads = out["tables"]["localize"], out["tables"]["gradients"]
    assert sorted(set(loc["layer"])) == [0, 1]  # one row per Llama decoder layer and checkpoint
    assert len(grads) > 0


def test_registries_refuse_silent_surprises(llama):
    import dataclasses

    from llama_family import LLAMA

    other = dataclasses.replace(LLAMA, build=lambda cfg: None)  # another module's family under a taken name
    with pytest.raises(ConfigError, match="'llama' is already registered"):
        register_family(other)
    assert FAMILIES["llama"] is LLAMA
    register_family(LLAMA)  # its own module again (a reload): fine
    register_family(other, replace=True)
    assert FAMILIES["llama"] is other
    register_family(LLAMA, replace=True)
    with pytest.raises(ConfigError, match="names family 'qwen2', which is not registered"):
        register_preset("tiny-qwen", ModelPreset(2, 64, 256, 4, None, family="qwen2"))
    assert "tiny-qwen" not in PRESETS
    with pytest.raises(ConfigError, match="'tiny' is already a preset"):
        register_preset("tiny", ModelPreset(2, 64, 256, 4, None, family="llama"))
    register_preset("tiny-llama", PRESETS["tiny-llama"])  # the same preset again: fine
    with pytest.raises(ConfigError, match="not a ModelFamily"):
        register_family("llama")


@pytest.mark.slow
def test_a_non_swiglu_family_registers_without_a_wrapper(tmp_path, small_corpus):
    """GPT-NeoX (one input projection, GELU) names its MLP parts; it trains, evaluates and probes."""
    from neox_family import NEOX

    register_family(NEOX)
    register_preset("tiny-neox", ModelPreset(2, 64, 256, 4, None, family="gpt_neox"))
    try:
        run = tmp_path / "r"
        train(LMTrainConfig(corpus=str(small_corpus), out=str(run), preset="tiny-neox", steps=4, batch_size=4,
                            seq_len=32, checkpoint_every=4, warmup=1, rate=2.0), progress=False)
        assert json.loads((run / "checkpoints" / "step-000004" / "config.json").read_text())["model_type"] == "gpt_neox"
        assert evaluate_runs([run], heldout_windows=4, reference_prompts=5)["checkpoints"] == 1
        out = probe_run(run, ProbeConfig(probes=("localize", "gradients"), neurons=4, grad_steps=2))
        loc, grads = out["tables"]["localize"], out["tables"]["gradients"]
        assert sorted(set(loc["layer"])) == [0, 1]  # one row per GPT-NeoX layer and checkpoint
        assert len(grads) > 0
    finally:
        FAMILIES.pop("gpt_neox", None)
        PRESETS.pop("tiny-neox", None)
