"""Extension points take one new file plus one registration line."""

import json

import pytest

from raretask import ConfigError, cli
from raretask.studies import Study, build_config, register_study, run_study, study_module, study_names


def test_a_study_outside_the_package_runs_end_to_end(tmp_path):
    import toy_study

    register_study("toy", toy_study)  # the one registration line
    assert "toy" in study_names() and isinstance(study_module("toy"), Study)
    summary = run_study(build_config("toy", "quick"), tmp_path / "toy")
    assert summary["checks"][0]["verdict"] == "yes" and (tmp_path / "toy" / "report.html").exists()
    # the CLI sees it too, with its presets and the run-folder layer
    assert cli.main(["study", "toy", "--out", str(tmp_path / "cli"), "--workers", "1"]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["all_checks_ok"]


def test_a_study_outside_the_package_has_settings_of_its_own(tmp_path, capsys):
    """``toy_study.Settings.margin`` reaches the study through --set, typed and strict."""
    import toy_study

    register_study("toy", toy_study, replace=True)
    assert build_config("toy", "quick", ["margin=0.5"]).settings.margin == 0.5
    assert cli.main(["study", "toy", "--out", str(tmp_path / "strict"), "--workers", "1", "--set", "margin=1e-6"]) == 0
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    assert summary["checks"][0]["verdict"] == "no" and not summary["all_checks_ok"]  # the setting decided
    capsys.readouterr()
    for bad, msg in (("margin=true", "invalid margin: True: input should be a valid number"),
                     ("margin=-1", "invalid margin: -1: input should be greater than 0"),
                     ("threshold=1", "invalid set: unknown option 'threshold' for study 'toy'")):
        assert cli.main(["study", "toy", "--out", str(tmp_path / "bad"), "--set", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("raretask: error: " + msg) and "\n" not in err, err
    assert not (tmp_path / "bad").exists()


def test_a_module_that_breaks_the_contract_is_refused():
    import types

    register_study("broken", types.ModuleType("broken"))
    with pytest.raises(ConfigError, match="defines no analyze"):
        study_module("broken")
    with pytest.raises(ConfigError, match="already registered"):
        register_study("phase", types.ModuleType("other"))


def test_study_config_takes_typed_objects_or_plain_tables():
    from raretask.mixture import MixtureSpec
    from raretask.sim import TrainConfig
    from raretask.studies import StudyConfig

    typed = StudyConfig(study="phase", mixture=MixtureSpec(n_tasks=6, block_dim=2, beta=1.2),
                        train=TrainConfig(steps=100, batch_size=64), widths=[2])
    plain = StudyConfig(study="phase", mixture={"n_tasks": 6, "block_dim": 2, "beta": 1.2},
                        train={"steps": 100, "batch_size": 64}, widths=[2])
    assert typed.spec() == plain.spec() and typed.train_config(3) == plain.train_config(3)
    json.dumps(typed.to_dict())  # still plain JSON for config.json
    with pytest.raises(ConfigError, match="invalid set"):
        build_config("phase", "quick", ["no_such_option=1"])


def test_a_probe_outside_the_package_runs_end_to_end(tmp_path, small_corpus, capsys):
    pytest.importorskip("transformers")
    import pandas as pd
    import toy_probe

    from raretask.lm import LMTrainConfig, train
    from raretask.probes import ProbeConfig, get_probe, probe_names, probe_run, register_probe, unregister_probe

    run = tmp_path / "r"
    train(LMTrainConfig(corpus=str(small_corpus), out=str(run), steps=4, batch_size=4, seq_len=32,
                        checkpoint_every=4, warmup=1), progress=False)
    register_probe(toy_probe.PROBE)  # the one registration line
    try:
        assert probe_names()[-1] == "resnorm" and get_probe("resnorm") is toy_probe.PROBE
        res = probe_run(run, ProbeConfig(probes=("resnorm",)))
        table = res["tables"]["resnorm"]
        assert list(table.columns) == ["checkpoint", "step", "layer", "mean_norm", "max_norm"]
        assert len(table) == 2 * 3 and set(table["checkpoint"]) == {"init", "step-000004"}  # models x layers
        out = run / "probes"
        pd.testing.assert_frame_equal(pd.read_parquet(out / "resnorm.parquet"), table)
        assert (out / "figures" / "resnorm.png").exists()
        html = (out / "report.html").read_text()
        assert "resnorm step-000004: largest mean residual norm at the label position" in html

        # the CLI has its flag and its setting's flag, and passes the setting through
        with pytest.raises(SystemExit):
            cli.main(["lm", "probe", "--help"])
        helptext = " ".join(capsys.readouterr().out.split())
        assert "--resnorm" in helptext and "--norm-limit" in helptext and "label position per layer" in helptext
        assert cli.main(["lm", "probe", str(run), "--resnorm", "--no-init", "--norm-limit", "1e-3"]) == 0
        assert "resnorm: 3 rows" in capsys.readouterr().out
        assert "1e-3" in (out / "report.html").read_text() or "0.001" in (out / "report.html").read_text()

        # its check answers no on a violating result (a norm above the limit, or not finite)
        cfg = ProbeConfig(norm_limit=10.0)
        for bad in (50.0, float("inf")):
            df = pd.DataFrame({"checkpoint": "step-000004", "step": 4, "layer": [0, 1, 2],
                               "mean_norm": [1.0, 2.0, bad], "max_norm": [1.0, 2.0, bad]})
            checks, figures = toy_probe.PROBE.report(df, tmp_path / "bad", cfg)
            assert [c.verdict for c in checks] == ["no"] and figures[0].path.exists()
        good = df.assign(mean_norm=[1.0, 2.0, 3.0])
        assert [c.verdict for c in toy_probe.PROBE.report(good, tmp_path / "bad", cfg)[0]] == ["yes"]
    finally:
        unregister_probe("resnorm")
    assert "resnorm" not in probe_names()
    with pytest.raises(ConfigError, match="invalid probe setting: norm_limit"):
        ProbeConfig(norm_limit=1.0)


def test_a_probe_that_breaks_the_registry_rules_is_refused():
    pytest.importorskip("transformers")
    from raretask.probes import Probe, ProbeConfig, Setting, register_probe

    def measure(model, ctx, cfg):
        return []

    def report(df, out, cfg):
        return [], []

    with pytest.raises(ConfigError, match="already registered"):
        register_probe(Probe("das", "another das", measure, report))
    with pytest.raises(ConfigError, match="declared differently"):
        register_probe(Probe("other", "x", measure, report, settings=(Setting("tau", float, 1.0, "another tau"),)))
    with pytest.raises(ConfigError, match="invalid probe"):
        register_probe(Probe("checkpoints", "x", measure, report))
    with pytest.raises(ConfigError, match="invalid neurons"):
        register_probe(Probe("other", "x", measure, report, settings=(Setting("neurons", int, 0, "bad default"),)))
    with pytest.raises(ConfigError, match="invalid probe: nope"):
        ProbeConfig(probes=("nope",))
    with pytest.raises(ConfigError, match="invalid probe setting: das_pair"):
        ProbeConfig(das_pair=10)
    assert ProbeConfig(das_pairs=10, grad_steps=2).das_pairs == 10


def test_every_study_settings_record_is_strict_and_documented():
    """Each built-in study's own options: a strict record with a docstring per field, and the
    shared StudyConfig holds none of them."""
    from dataclasses import fields

    from raretask.config_flags import field_docs
    from raretask.studies import StudyConfig
    from raretask.studies._config import LEGACY, settings_class

    assert not {f.name for f in fields(StudyConfig)} & set(LEGACY)
    owned = set()
    for name in ("phase", "residual", "retention", "long-horizon", "complexity", "rank1", "one-neuron", "upweight",
                 "remedies"):
        cls = settings_class(name)
        docs = field_docs(cls)
        assert all(docs.get(f.name) for f in fields(cls)), (name, cls)
        assert cls.__pydantic_config__["strict"] and cls.__pydantic_config__["extra"] == "forbid"
        owned |= {f.name for f in fields(cls)}
    assert owned >= set(LEGACY)  # every old flat setting now belongs to some study
