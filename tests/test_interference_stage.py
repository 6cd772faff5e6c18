"""The interference stage's table and checks (issue 18, paper Fig. 9): each claim answers yes
on a log built to satisfy it and no on one built to violate it; the random-direction baseline
is what a random direction gives; the stage's settings are strict."""

import numpy as np
import pandas as pd
import pytest

from raretask import ConfigError
from raretask.lm.interference_stage import (RANDOM_MEDIAN_ABS, InterferenceStage, check_gap_spread_falls,
                                            check_injection_rises, check_mid_gap_below, interference_checks,
                                            interference_table, surviving)
from raretask.validate import build

G = 8


def _log(sizes: dict[str, dict], seed: int = 0) -> pd.DataFrame:
    """A monitor log: per size (name -> {P, dim, inj, mid, gap_sd}), 40 gaps of G steps read at
    every offset; cos_batch is ``inj`` at injections, falling linearly to ``mid`` at G/2 and
    staying there; cos_nontask is N(0, gap_sd)."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, s in sizes.items():
        for k in range(40):
            for o in range(G):
                b = s["inj"] + (s["mid"] - s["inj"]) * min(o, G // 2) / (G // 2)
                rows.append({"preset": name, "non_embedding_params": s["P"], "step": k * G + o, "offset": o,
                             "period": G, "injection": o == 0, "cos_batch": b + rng.normal(0, 0.002),
                             "cos_nontask": rng.normal(0, s["gap_sd"]), "cos_task": 0.3 if o == 0 else np.nan,
                             "dim": s["dim"]})
    return pd.DataFrame(rows)


PAPER = {"w24": {"P": 1, "dim": 2304, "inj": 0.05, "mid": 0.04, "gap_sd": 0.08},
         "w48": {"P": 4, "dim": 4608, "inj": 0.10, "mid": 0.03, "gap_sd": 0.04},
         "w96": {"P": 16, "dim": 9216, "inj": 0.20, "mid": 0.02, "gap_sd": 0.01}}
"""Sizes that behave as the paper says: injection cosine rising, gap spread falling faster than
1/sqrt(dim), the batch cosine falling back in the gap."""


def test_a_log_that_behaves_as_the_paper_says_passes_every_check():
    t = interference_table(_log(PAPER))
    assert list(t["preset"]) == ["w24", "w48", "w96"]
    assert t["baseline"].tolist() == pytest.approx([RANDOM_MEDIAN_ABS / np.sqrt(d) for d in (2304, 4608, 9216)])
    checks = interference_checks(t, larger=2)
    assert [c.verdict for c in checks] == ["yes"] * 7, [(c.name, c.measured) for c in checks]
    assert "2/2 adjacent pairs rise" in checks[0].measured
    assert surviving(checks).startswith("claim (i) holds raw: yes, after dividing by the random baseline: yes")


def test_injection_cosine_falling_with_size_answers_no():
    bad = {k: {**v, "inj": 0.3 - v["inj"]} for k, v in PAPER.items()}  # 0.25, 0.2, 0.1
    t = interference_table(_log(bad))
    assert check_injection_rises(t).verdict == "no"


def test_a_rise_that_is_only_the_dimension_fails_once_normalised():
    """Gap spread exactly 1/sqrt(dim) x a constant that grows slightly with size: raw it falls,
    divided by the baseline it rises; (ii) raw yes, normalised no, and the words say so."""
    sizes = {k: {**v, "gap_sd": 1.1 ** i * 2.0 / np.sqrt(v["dim"])} for i, (k, v) in enumerate(PAPER.items())}
    t = interference_table(_log(sizes))
    raw, norm = check_gap_spread_falls(t), check_gap_spread_falls(t, normalised=True)
    assert [c.verdict for c in raw] == ["yes", "yes"] and [c.verdict for c in norm] == ["no", "no"]
    assert "claim (ii) holds raw: yes, normalised: no" in surviving(interference_checks(t, 2))


def test_gap_spread_rising_with_size_answers_no():
    bad = {k: {**v, "gap_sd": 0.1 - v["gap_sd"]} for k, v in PAPER.items()}
    assert [c.verdict for c in check_gap_spread_falls(interference_table(_log(bad)))] == ["no", "no"]


def test_a_batch_cosine_that_does_not_fall_back_in_the_gap_answers_no():
    bad = {**PAPER, "w96": {**PAPER["w96"], "mid": 0.25}}  # mid-gap above the injection step in the largest
    c = check_mid_gap_below(interference_table(_log(bad)), larger=2)
    assert c.verdict == "no" and "w96: 0.25" in c.measured
    # only the largest is judged with larger=1; w48 alone passing does not rescue it
    assert check_mid_gap_below(interference_table(_log(bad)), larger=1).verdict == "no"


def test_too_little_to_judge_is_n_a_never_a_pass():
    one = interference_table(_log({"w24": PAPER["w24"]}))
    assert check_injection_rises(one).verdict == "n/a"
    assert [c.verdict for c in check_gap_spread_falls(one)] == ["n/a", "n/a"]
    assert check_mid_gap_below(one, larger=2).verdict == "n/a"
    empty = interference_table(pd.DataFrame())
    assert all(c.verdict == "n/a" for c in interference_checks(empty, 2))
    nodim = interference_table(_log(PAPER).drop(columns="dim"))
    assert check_injection_rises(nodim).verdict == "yes" and check_injection_rises(nodim, True).verdict == "n/a"


def test_the_baseline_is_what_a_random_direction_gives():
    rng = np.random.default_rng(1)
    d = 3000
    fixed = rng.normal(size=d)
    cos = [abs(fixed @ r) / np.linalg.norm(fixed) / np.linalg.norm(r) for r in rng.normal(size=(4000, d))]
    assert np.median(cos) == pytest.approx(RANDOM_MEDIAN_ABS / np.sqrt(d), rel=0.05)


@pytest.mark.parametrize("table, msg", [
    ({"presets": ["w24"], "n": 16, "every": 4, "nope": 1}, "unknown option 'interference.nope'"),
    ({"presets": ["w24"], "n": True, "every": 4}, "invalid interference.n: True"),
    ({"presets": [], "n": 16, "every": 4}, "invalid interference.presets"),
    ({"presets": ["w24", "w24"], "n": 16, "every": 4}, "repeats"),
    ({"presets": ["w24"], "n": 16}, "interference.every"),
])
def test_the_stage_settings_are_strict(table, msg):
    with pytest.raises(ConfigError, match=msg):
        build(InterferenceStage, table, "interference")
