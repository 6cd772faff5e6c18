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
