"""raretask explain: the words follow the verdicts of the run they describe."""

import json

import pytest

from raretask.cli import main


def _run(tmp_path, checks, preset="quick", steps=20000, study="retention"):
    run = tmp_path / f"{study}-{preset}"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"study": study, "preset": preset, "checks": checks}))
    (run / "config.json").write_text(json.dumps({"config": {"train": {"steps": steps}, "widths": [24, 128]}}))
    return run


YES = {"name": "rare-task frequency matched", "measured": 1.0, "expected": 1.0, "verdict": "yes"}
NO = {"name": "N=128, G=64: median retained share", "measured": 0.389, "expected": ">= 0.5", "verdict": "no"}
NA = {"name": "N=24 retention", "measured": "n/a: the signal never rose above its noise floor", "expected": "x",
      "verdict": "n/a"}


def test_a_no_from_a_short_preset_points_to_the_paper_preset(tmp_path, capsys):
    run = _run(tmp_path, [YES, NO, NA])
    assert main(["explain", str(run)]) == 0
    out = capsys.readouterr().out
    assert "retention (quick preset): widths [24, 128], 20,000 steps per width; 1 yes, 1 no, 1 n/a" in out
    assert "no: N=128, G=64: median retained share: measured 0.389, the claim >= 0.5." in out
    assert "the paper preset 100,000 (5x)" in out and "raretask study retention --preset paper" in out
    assert "n/a: N=24 retention: the signal never rose above its noise floor." in out
    assert "never counts as a pass" in out and "Every check holds" not in out


def test_the_words_change_with_the_verdicts(tmp_path, capsys):
    assert main(["explain", str(_run(tmp_path, [YES]))]) == 0
    out = capsys.readouterr().out
    assert "Every check holds." in out and "A no means" not in out and "n/a:" not in out
    paper = _run(tmp_path, [NO], preset="paper", steps=100000)
    assert main(["explain", str(paper)]) == 0
    out = capsys.readouterr().out
    assert "At this scale it is evidence against the claim." in out and "--preset paper`" not in out


def test_a_folder_without_a_finished_study_is_one_line(tmp_path, capsys):
    assert main(["explain", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("raretask: error: invalid run:")
