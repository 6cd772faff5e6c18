"""Probes on constructed cases with known answers (SPEC B5, B6)."""

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from raretask.lm import build_model, build_tasks  # noqa: E402
from raretask.probes import (ablate_mlps, das, fourier_fractions, fourier_modes, pca_r2, reference,  # noqa: E402
                             residuals, split_gradient, task_accuracy, task_mask, token_losses)
from raretask.errors import ConfigError  # noqa: E402
from raretask.probes import ProbeConfig  # noqa: E402
from raretask.probes._gradients import _params, restrict  # noqa: E402

TASKS = build_tasks("cmp", np.arange(10, 250), eos=0, seed=0)


def test_pca_finds_a_planted_value_direction():
    rng = np.random.default_rng(0)
    u = rng.standard_normal(64)
    v = np.arange(100)
    assert pca_r2(np.outer(v, u) + 0.05 * rng.standard_normal((100, 64)) + rng.standard_normal(64), v) > 0.99
    assert pca_r2(rng.standard_normal((100, 64)), v, k=8) < 0.3


def test_fourier_detects_planted_frequencies_and_nothing_in_noise():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 100, 10_000), rng.integers(0, 100, 10_000)
    c = (a + b) % 100
    U = np.linalg.qr(rng.standard_normal((64, 4)))[0].T
    planted = (np.outer(np.cos(2 * np.pi * 7 * c / 100), U[0]) + np.outer(np.sin(2 * np.pi * 7 * c / 100), U[1])
               + 0.7 * np.outer(np.cos(2 * np.pi * 23 * c / 100), U[2]))
    acts = planted + 0.3 * rng.standard_normal((10_000, 64))
    assert fourier_modes(fourier_fractions(acts, c, 100), tau=3).tolist() == [7, 23]
    noise = rng.standard_normal((10_000, 64))
    assert fourier_modes(fourier_fractions(noise, c, 100), tau=3).tolist() == []
    assert fourier_fractions(acts, c, 100).sum() == pytest.approx(1.0)


def test_gradient_split_sums_to_the_full_batch_gradient():
    model = build_model("tiny", tokenizer_vocab=256, max_seq_len=16, seed=0)
    rng = np.random.default_rng(2)
    toks = torch.as_tensor(rng.integers(0, 256, (6, 16)))
    inst = np.array([-1, 5, -1, -1, 9, -1])
    toks[1, :4] = torch.as_tensor(TASKS.instances[5])
    toks[4, :4] = torch.as_tensor(TASKS.instances[9])
    neurons, _ = reference(model, TASKS, k=8)
    tl = token_losses(model, toks)
    full, task, other = split_gradient(model, tl, task_mask(inst, 16), neurons, retain=True)
    direct = restrict(torch.autograd.grad(tl.mean(), _params(model)), neurons)
    torch.testing.assert_close(task + other, direct, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(full, direct, rtol=1e-5, atol=1e-8)
    assert float(task.norm()) > 0 and float(other.norm()) > 0
    assert task_mask(inst, 16).sum() == 6 and len(neurons) == 8


@pytest.fixture(scope="module")
def planted_model():
    """A tiny OLMo trained on T_CMP whose value embeddings carry v(token) along one planted
    direction (frozen), and whose second MLP is switched off (zero and frozen)."""
    torch.manual_seed(0)
    model = build_model("tiny", tokenizer_vocab=256, max_seq_len=16, seed=0)
    H = model.config.hidden_size
    g = torch.Generator().manual_seed(0)
    base, u = torch.linalg.qr(torch.randn(H, 2, generator=g))[0].T
    emb = model.model.embed_tokens.weight
    with torch.no_grad():
        for v, t in enumerate(TASKS.value_tokens):
            emb[int(t)] = 3.0 * base + 6.0 * (v / 99 - 0.5) * u
    emb.requires_grad_(False)
    mlp1 = model.model.layers[1].mlp
    with torch.no_grad():
        mlp1.down_proj.weight.zero_()
    for p in mlp1.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=6e-3)
    rng = np.random.default_rng(0)
    inst = torch.as_tensor(TASKS.instances)
    for _ in range(250):  # test accuracy 0.99, DAS IIA 0.996 (600 steps at lr 3e-3: 1.0, 1.0)
        j = torch.as_tensor(rng.choice(TASKS.train, 256))
        loss = torch.nn.functional.cross_entropy(model(input_ids=inst[j, :2]).logits[:, 1], inst[j, 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), u


@pytest.mark.slow
def test_planted_model_learned_the_task(planted_model):
    model, _ = planted_model
    assert task_accuracy(model, TASKS, TASKS.test) > 0.95


@pytest.mark.slow
def test_das_and_pca_recover_the_planted_direction(planted_model):
    pytest.importorskip("pyvene")
    model, u = planted_model
    r = das(model, TASKS, layer=0, position=0, n_train=2000, epochs=3)
    assert r["iia"] > 0.9 and r["chance"] < 0.6
    acts = residuals(model, TASKS.value_tokens[:, None])[0, :, 0]  # embeddings of the 100 value tokens
    assert pca_r2(acts, np.arange(100), k=8) > 0.99


def test_das_on_an_untrained_model_is_near_chance():
    pytest.importorskip("pyvene")
    model = build_model("tiny", tokenizer_vocab=256, max_seq_len=16, seed=1).eval()
    r = das(model, TASKS, layer=0, position=0, n_train=2000, epochs=2)
    assert r["iia"] < 0.7


@pytest.mark.slow
def test_localisation_finds_the_planted_mlp(planted_model):
    model, _ = planted_model
    rows = ablate_mlps(model, TASKS)
    drops = [r["zero_drop"] for r in rows]
    assert int(np.argmax(drops)) == 0 and drops[0] > 0.05
    assert rows[1]["zero_drop"] == 0.0 and rows[1]["mean_drop"] == 0.0  # a switched-off MLP is never causal


@pytest.mark.slow
def test_probe_command_writes_tables_and_report(tmp_path, small_corpus):
    pytest.importorskip("pyvene")
    import subprocess
    import sys

    import pandas as pd

    from raretask.lm import LMTrainConfig, train

    train(LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / "r"), steps=4, batch_size=4, seq_len=32,
                        checkpoint_every=4, warmup=1), progress=False)
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "probe", str(tmp_path / "r"), "--das-pairs", "128",
                        "--das-epochs", "1", "--grad-steps", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "r" / "probes"
    das_t = pd.read_parquet(out / "das.parquet")
    assert set(das_t["checkpoint"]) == {"init", "step-000004"} and len(das_t) == 2 * 3 * 2  # models x layers x pos
    assert len(pd.read_parquet(out / "gradients.parquet")) == 2 * 3
    assert (out / "report.html").exists() and len(list((out / "figures").glob("*.png"))) == 4
    bad = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "probe", str(tmp_path / "r"), "--fourier"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid probe" in bad.stderr


def test_fourier_ignores_class_means_that_carry_nothing():
    # the embedding of b grouped by (a + b) mod P: every class holds every b once, so the
    # class means are equal and only rounding noise is left
    a, b = np.meshgrid(np.arange(100), np.arange(100), indexing="ij")
    a, b = a.ravel(), b.ravel()
    emb = np.random.default_rng(3).standard_normal((100, 32))
    fr = fourier_fractions(emb[b], (a + b) % 100, 100)
    assert fourier_modes(fr).tolist() == [] and fr.sum() == 0


@pytest.mark.parametrize("tau", ["nan", "inf", "-inf", "0"])
def test_probe_refuses_a_non_finite_or_non_positive_tau(tmp_path, tau):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "probe", str(tmp_path / "r"), f"--tau={tau}"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid tau" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with pytest.raises(ConfigError):
        ProbeConfig(tau=float(tau))


def test_a_second_probe_adds_its_section_and_keeps_the_first(tmp_path, small_corpus):
    """Before: running one probe after another rewrote report.html and summary.json to hold only
    the last one. Now each probe replaces its own section and keeps the others, with the settings
    each was run with."""
    import json

    from raretask.cli import main
    from raretask.lm import LMTrainConfig, train

    train(LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / "r"), steps=4, batch_size=4, seq_len=32,
                        checkpoint_every=4, warmup=1), progress=False)
    run, out = str(tmp_path / "r"), tmp_path / "r" / "probes"
    assert main(["lm", "probe", run, "--pca", "--no-init", "--no-progress"]) == 0
    assert main(["lm", "probe", run, "--gradients", "--grad-steps", "2", "--no-init", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"pca", "gradients"} and summary["pca"] and summary["gradients"]
    html = (out / "report.html").read_text()
    assert "pca" in html.lower() and "gradient" in html.lower() and "probes: pca, gradients" in html
    settings = json.loads((out / "settings.json").read_text())
    assert settings["gradients"]["grad_steps"] == 2 and settings["pca"]["checkpoints"] == "last"
    assert main(["lm", "probe", run, "--pca", "--pca-k", "2", "--no-init", "--no-progress"]) == 0  # replaces its own
    assert set(json.loads((out / "summary.json").read_text())) == {"pca", "gradients"}
    assert json.loads((out / "settings.json").read_text())["pca"]["pca_k"] == 2
