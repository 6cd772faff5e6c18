"""Plugins reach the command line (issue 20): a pip-installed package's entry point, RARETASK_PLUGINS
and --plugin register a study, a probe, a model family with its preset and a training callback
that `raretask` then offers, with no launcher script; a broken plugin is one line naming it."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raretask.plugins import load_plugins, take_plugin_flags

TESTS = Path(__file__).parent
PLUGIN = """
from raretask.lm import ModelPreset, register_family, register_preset
from raretask.probes import register_probe
from raretask.studies import register_study

import toyplug_llama
import toyplug_probe
import toyplug_study

register_study("toyplug", toyplug_study)
register_probe(toyplug_probe.PROBE)
register_family(toyplug_llama.LLAMA)
register_preset("plug-llama", ModelPreset(2, 64, 256, 4, None, family="llama"))
"""
CALLBACK = """
from raretask.lm import Callback


class CountSteps(Callback):
    def __init__(self):
        self.n = 0

    def post_step(self, trainer, step, row, plan):
        self.n += 1

    def summary(self, trainer, summary):
        summary["counted_steps"] = self.n
"""


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "raretask.cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


def _package(root: Path) -> Path:
    pkg = root / "toyplug"
    pkg.mkdir()
    shutil.copy(TESTS / "toy_study.py", pkg / "toyplug_study.py")
    shutil.copy(TESTS / "toy_probe.py", pkg / "toyplug_probe.py")
    shutil.copy(TESTS / "llama_family.py", pkg / "toyplug_llama.py")
    (pkg / "toyplug_plugin.py").write_text(PLUGIN)
    (pkg / "toyplug_callbacks.py").write_text(CALLBACK)
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "raretask-toyplug"
        version = "0.0.1"

        [project.entry-points."raretask.plugins"]
        toyplug = "toyplug_plugin"

        [tool.setuptools]
        py-modules = ["toyplug_plugin", "toyplug_study", "toyplug_probe", "toyplug_llama", "toyplug_callbacks"]
        """))
    return pkg


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_an_installed_plugin_is_usable_from_the_command_line(tmp_path, small_corpus):
    pytest.importorskip("transformers")
    pkg = _package(tmp_path)
    # installed into a folder of its own, seen through PYTHONPATH by these commands only: installed
    # into the shared venv, every other test's command (two xdist workers) would load its entry
    # point, and fail while it is being uninstalled
    site = tmp_path / "site"
    r = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(pkg))
    if r.returncode:
        pytest.skip(f"cannot pip install into this environment: {r.stderr.strip()[-200:]}")
    env = {**os.environ, "PYTHONPATH": str(site)}
    assert list(site.glob("raretask_toyplug-*.dist-info/entry_points.txt"))  # a real installed distribution
    r = _cli("study", "toyplug", "--out", tmp_path / "study", "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "study" / "summary.json").read_text())["all_checks_ok"]
    run = tmp_path / "run"
    r = _cli("lm", "train", "--preset", "plug-llama", "--corpus", small_corpus, "--out", run, "--steps", "2",
             "--batch-size", "4", "--seq-len", "32", "--checkpoint-every", "2", "--warmup", "1", "--no-progress",
             "--callback", "toyplug_callbacks:CountSteps", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["preset"] == "plug-llama" and summary["counted_steps"] == 2
    r = _cli("lm", "probe", run, "--resnorm", "--no-init", env=env)
    assert r.returncode == 0, r.stderr
    assert (run / "probes" / "resnorm.parquet").exists()
    r = _cli("study", "toyplug", "--out", tmp_path / "gone")  # not installed for this command: not a choice
    assert r.returncode == 2 and "invalid choice: 'toyplug'" in r.stderr


@pytest.mark.slow
def test_plugins_named_by_flag_or_environment_and_broken_ones_are_one_line(tmp_path):
    (tmp_path / "fine_plugin.py").write_text("from raretask.studies import register_study\n"
                                             "import toy_study\nregister_study('envtoy', toy_study)\n")
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "clash_plugin.py").write_text("import types\nfrom raretask.studies import register_study\n"
                                              "register_study('phase', types.ModuleType('other'))\n")
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{TESTS}"}
    for args, extra in ((["--plugin", "fine_plugin", "study", "--help"], {}),
                        (["study", "--help", "--plugin=fine_plugin"], {}),
                        (["study", "--help"], {"RARETASK_PLUGINS": "fine_plugin"})):
        r = _cli(*args, env={**env, **extra})
        assert r.returncode == 0 and "envtoy" in r.stdout, r.stderr
    r = _cli("--plugin", "broken_plugin", "plan", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "broken_plugin (from --plugin) failed to load: RuntimeError: boom" in r.stderr
    r = _cli("plan", env={**env, "RARETASK_PLUGINS": "clash_plugin"})
    assert r.returncode == 2 and "clash_plugin (from RARETASK_PLUGINS) refused its registration" in r.stderr
    r = _cli("lm", "train", "--corpus", tmp_path, "--out", tmp_path / "r", "--callback", "fine_plugin:nothing", env=env)
    assert r.returncode == 2 and "fine_plugin has no 'nothing'" in r.stderr


def test_plugin_flags_are_taken_out_of_the_command_line():
    assert take_plugin_flags(["--plugin", "a", "plan", "--plugin=b", "--width", "4"]) == (["a", "b"],
                                                                                          ["plan", "--width", "4"])
    assert take_plugin_flags(["plan", "--", "--plugin", "x"]) == ([], ["plan", "--", "--plugin", "x"])
    assert load_plugins([], environ={}) == []  # nothing named (and no package installed with an entry point)
