"""The scaling sweep's report (``SWEEP/scaling/``): the paper's Sec. 4 across model sizes.

Reads what the sweep wrote, trains nothing: ``report/eval.parquet`` (every checkpoint of
every run), each run's ``run_config.json`` and, for the probed runs, ``RUN/probes/*.parquet``.

Layout of ``SWEEP/scaling``::

    runs.parquet           one row per run: size, schedule, seed, final metrics
    critical.parquet       one row per size: f* (or its censored bound) with its interval (lm.sizing)
    rollout.parquet        fit the k smallest sizes, predict the next: prediction interval, covered
    probes.parquet         one row per (probed run, checkpoint): the probe summaries
    interference.parquet   one row per size of the interference stage (lm.interference_stage)
    feature-onsets.parquet one row per (probed run, feature): the step its feature reaches its level
    grokking.parquet       T_ADD sweeps: one row per grid run, train-fit and test-rise steps, outcome
    scaling-summary.json   the above, the power-law fit and every check's verdict
    figures/*.png, report.html

Definitions (fixed before the sweep ran):

- frequency: instances per training token, rate / (batch x seq_len);
- f*(size): where a logistic fit of test accuracy in log10 frequency (chance 0.5 for cmp,
  ceiling fitted) crosses the learned level, the midpoint of chance and 1; one point per run
  (grid and boundary seeds; the mean of its last ``final_checkpoints`` checkpoints); 95%
  interval from runs redrawn with the sweep's seed noise; censored beyond the rates run
  (``lm.scaling.critical_frequency``);
- size: non-embedding parameters 16 L h^2 (the ladder varies width; the embedding and output
  layers, 2 V h, follow the vocabulary, not capacity); total parameters are listed beside;
- learned step (Fig. 6a): the first checkpoint at which test accuracy reaches the learned level;
- equal LM loss / equal compute (Figs. 22, 23): task loss interpolated along training at the
  held-out LM loss, or the compute 6 N D, that both the smallest and the largest size reach.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .._json import json_default
from ..errors import ConfigError, RaretaskError
from ..report.html import Check, Figure, write_report
from ..runfolder import atomic_parquet, atomic_write
from ._models import non_embedding_params
from ._tasks import CHANCE
from .scaling import learned_level
from .sizing import (FINAL_CHECKPOINTS, check_exponent, check_falls_with_size, critical_table, describe_row, fit,
                     rollout, theory_curve)


def _sweep_record(sweep_dir: Path) -> dict:
    rec = sweep_dir / "sweep.json"
    if not rec.exists():
        raise ConfigError("sweep", f"{sweep_dir} has no sweep.json", "a folder made by `raretask lm sweep`")
    return json.loads(rec.read_text())["sweep"]


def run_table(sweep_dir: str | Path, grid_seed: int | None = None) -> pd.DataFrame:
    """Every checkpoint of every run of a sweep, with each run's schedule and seed. A rate run
    is "grid" when its seed is the sweep's grid seed (``train.seed``, read from sweep.json
    when not given; 0 by default) and "seed" otherwise; a gap run is "gap", an interference-stage
    run (n every G with the monitor on) "interference"."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "report" / "eval.parquet"
    if not path.exists():
        raise ConfigError("sweep", f"{sweep_dir} has no report/eval.parquet", "a finished `raretask lm sweep` folder")
    if grid_seed is None:
        rec = sweep_dir / "sweep.json"
        sw = json.loads(rec.read_text())["sweep"] if rec.exists() else {}
        grid_seed = int((sw.get("train") or {}).get("seed", 0))
    df = pd.read_parquet(path)
    meta = {}
    for run in df["run"].unique():
        cfg = json.loads((Path(run) / "run_config.json").read_text())
        cfg = cfg.get("config", cfg)
        seed = int(cfg.get("seed", 0))
        kind = ("interference" if cfg.get("monitor_interference") and cfg.get("every") else "gap" if cfg.get("every")
                else "grid" if seed == grid_seed else "seed")
        meta[run] = {"name": Path(run).name, "kind": kind, "seed": seed,
                     "rate": cfg.get("rate"), "every": cfg.get("every"), "n": cfg.get("n"),
                     "non_embedding_params": non_embedding_params(cfg["preset"])}
    m = pd.DataFrame.from_dict(meta, orient="index")
    return df.join(m, on="run")


def _interp(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """y at x = at along a training curve (x monotone after sorting); nan outside its range."""
    o = np.argsort(x)
    x, y = np.asarray(x, float)[o], np.asarray(y, float)[o]
    if not len(x) or at < x[0] or at > x[-1]:
        return float("nan")
    return float(np.interp(at, x, y))


def equal_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Figs. 22, 23: for each pair of adjacent sizes and each rate, the task test loss of both
    at the held-out LM loss both reach along training, and at the compute 6 N D both reach
    (interpolated between checkpoints; NaN where one curve does not span the level). Adjacent
    pairs, because a much larger model reaches a much smaller one's final compute before its
    first checkpoint."""
    grid = df[df["kind"] == "grid"]
    sizes = grid.groupby("preset")["non_embedding_params"].first().sort_values()
    rows = []
    for small, large in zip(sizes.index[:-1], sizes.index[1:]):
        for f, g in grid.groupby("per_token_frequency"):
            a, b = g[g["preset"] == small].sort_values("step"), g[g["preset"] == large].sort_values("step")
            if a.empty or b.empty:
                continue
            lm_level = max(a["heldout_loss"].min(), b["heldout_loss"].min())  # the worse final: reached by both
            c_level = min(a["compute"].max(), b["compute"].max())
            row = {"per_token_frequency": f, "small": small, "large": large, "heldout_loss_level": lm_level,
                   "compute_level": c_level, "small_final_accuracy": float(a["test_accuracy"].iloc[-1])}
            for who, t in (("small", a), ("large", b)):
                row[f"{who}_task_loss_at_lm"] = _interp(-t["heldout_loss"].values, t["task_test_loss"].values,
                                                        -lm_level)
                row[f"{who}_task_loss_at_compute"] = _interp(np.log(t["compute"].values),
                                                             t["task_test_loss"].values, math.log(c_level))
            rows.append(row)
    return pd.DataFrame(rows, columns=["per_token_frequency", "small", "large", "heldout_loss_level", "compute_level",
                                       "small_final_accuracy", "small_task_loss_at_lm", "small_task_loss_at_compute",
                                       "large_task_loss_at_lm", "large_task_loss_at_compute"])


def learned_steps(df: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Fig. 6a: per grid run, the first checkpoint step at which test accuracy reaches the
    midpoint between chance and 1 (NaN: not within the run)."""
    mid = learned_level(chance)
    rows = []
    for run, g in df[df["kind"] == "grid"].groupby("run"):
        g = g.sort_values("step")
        hit = g[g["test_accuracy"] >= mid]
        rows.append({"run": run, "preset": g["preset"].iloc[0],
                     "non_embedding_params": int(g["non_embedding_params"].iloc[0]),
                     "per_token_frequency": float(g["per_token_frequency"].iloc[0]),
                     "learned_step": float(hit["step"].iloc[0]) if len(hit) else float("nan")})
    return pd.DataFrame(rows)


def _step_of(checkpoint: str) -> int:
    """The training step in a checkpoint's name ("step-000250" -> 250, ``_runs.STEP_DIR``); -1
    when it has none."""
    from ._runs import STEP_DIR

    m = STEP_DIR.match(checkpoint)
    return int(m.group(1)) if m else -1


def probe_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (probed run, checkpoint): its step and test accuracy there, best DAS IIA,
    best PCA R^2, largest MLP-ablation drop, median gradient cosines; 'init' rows (step 0) are
    the untrained model of that size."""
    rows = []
    for run in df["run"].unique():
        pdir = Path(run) / "probes"
        if not (pdir / "summary.json").exists():
            continue
        g = df[df["run"] == run].iloc[0]
        tabs = {p.stem: pd.read_parquet(p) for p in pdir.glob("*.parquet")}
        cks = sorted({c for t in tabs.values() if "checkpoint" in t for c in t["checkpoint"].unique()})
        steps = {c: int(st) for t in tabs.values() if {"checkpoint", "step"} <= set(t)
                 for c, st in t[["checkpoint", "step"]].drop_duplicates().itertuples(index=False) if pd.notna(st)}
        acc = df[df["run"] == run].set_index("step")["test_accuracy"]
        for ck in cks:
            step = 0 if ck == "init" else steps.get(ck, _step_of(ck))
            row = {"run": Path(run).name, "preset": g["preset"], "non_embedding_params": int(g["non_embedding_params"]),
                   "per_token_frequency": float(g["per_token_frequency"]), "checkpoint": ck,
                   "trained": ck != "init", "step": step,
                   "test_accuracy": float(acc.get(step, np.nan)) if ck != "init" else np.nan}
            t = tabs.get("das")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["das_iia"] = float(t[t["checkpoint"] == ck]["iia"].max())
            t = tabs.get("pca")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["pca_r2"] = float(t[t["checkpoint"] == ck]["r2"].max())
            t = tabs.get("fourier")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["fourier_variance"], row["fourier_modes"] = fourier_summary(t[t["checkpoint"] == ck])
            t = tabs.get("localize")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["localize_max_drop"] = float(t[t["checkpoint"] == ck]["zero_drop"].max())
            t = tabs.get("gradients")
            if t is not None and len(t[t["checkpoint"] == ck]):
                s = t[t["checkpoint"] == ck]
                row["cos_nontask_median"] = float(s["cos_nontask"].median())
                row["cos_task_median"] = float(s["cos_task"].median())
            rows.append(row)
    return pd.DataFrame(rows)


def fourier_summary(layers: pd.DataFrame) -> tuple[float, int]:
    """T_ADD's Fourier feature at one checkpoint (the ``fourier`` probe's rows, one per layer):
    (variance, modes) of the layer whose detected Fourier modes of c = (a + b) mod 100 carry the
    largest share of its activations' total variance: variance = class_share x the summed
    fractions of its modes (0 with no mode), modes = how many. The product, not the modes' share
    of the class means alone: 10 steps into training (w48, rate 16) the class means held 0.25% of
    the last layer's variance, and 0.48 of that sat in two frequencies
    (docs/measured/cpu-add-pilot-2026-12-03/pipeline-check). All nan with no finite layer."""
    if not np.isfinite(layers["class_share"].to_numpy(float)).any():
        return np.nan, 0  # not measured is not absent
    best = (0.0, 0)
    for r in layers.itertuples():
        fr = np.asarray(r.fractions, float)
        modes = np.asarray(r.modes, int)
        var = float(r.class_share) * float(fr[modes - 1].sum()) if len(modes) else 0.0
        if var > best[0]:
            best = (var, len(modes))
    return best


# ---- checks: each takes the measured quantity and can answer no -----------------------------

def check_bracketed(crit: pd.DataFrame) -> list[Check]:
    """Each size's f* is measured inside its rates (a censored size is a bound, not a number)."""
    out = []
    for r in crit.itertuples():
        name = f"{r.preset}: f* measured inside the rates run"
        if not np.isfinite(r.f_star) and not r.censored:
            out.append(Check.not_measurable(name, "a learned-level crossing", "the logistic fit failed"))
        else:
            out.append(Check(name, describe_row(r), "inside the rates run", bool(r.bracketed)))
    return out


def check_loss_falls_with_size(final: pd.DataFrame) -> Check:
    """Fig. 5 (loss): at every rate, the largest size ends with a lower task loss than the smallest."""
    g = final[final["kind"] == "grid"]
    lo, hi = g["non_embedding_params"].min(), g["non_embedding_params"].max()
    a = g[g["non_embedding_params"] == lo].set_index("per_token_frequency")["task_test_loss"]
    b = g[g["non_embedding_params"] == hi].set_index("per_token_frequency")["task_test_loss"]
    common = a.index.intersection(b.index)
    name = "largest size's final task loss below the smallest's at every rate"
    if not len(common) or lo == hi:
        return Check.not_measurable(name, "all rates", "needs two sizes at common rates")
    wins = int((b[common] < a[common]).sum())
    return Check(name, f"{wins}/{len(common)} rates", "all rates", wins == len(common))


def check_gap(final: pd.DataFrame) -> list[Check]:
    """Fig. 6b: at matched frequency, the task loss at the largest gap exceeds that at G = 1."""
    out = []
    gap = final[(final["kind"] == "gap") | (final["kind"] == "grid")]
    gaps = final[final["kind"] == "gap"]
    for preset, g in gaps.groupby("preset"):
        f = g["per_token_frequency"].iloc[0]
        rows = gap[(gap["preset"] == preset) & np.isclose(gap["per_token_frequency"], f)]
        G = rows["every"].fillna(1).astype(int)
        name = f"{preset}: task loss rises from G = 1 to the largest gap at matched frequency"
        if (G == 1).sum() == 0 or len(G.unique()) < 2:
            out.append(Check.not_measurable(name, "loss(G max) > loss(G = 1)", "no G = 1 run at this frequency"))
            continue
        l1 = float(rows[G == 1]["task_test_loss"].iloc[0])
        lg = float(rows[G == G.max()]["task_test_loss"].iloc[0])
        out.append(Check(name, f"{l1:.3f} -> {lg:.3f} (G = {int(G.max())})", "rises", lg > l1))
    return out


def check_equal_budget(eq: pd.DataFrame, col: str, what: str) -> Check:
    """Informative (the all-pairs count): at equal LM loss / compute, how often the larger of two
    adjacent sizes has the lower task loss, over every (pair, rate) where both reach the level.
    The paper expects no difference where both learn, so this is not its claim."""
    name = f"informative: larger of adjacent sizes has the lower task loss at equal {what}, all rates"
    ok = eq[np.isfinite(eq[f"small_task_loss_{col}"]) & np.isfinite(eq[f"large_task_loss_{col}"])]
    if ok.empty:
        return Check(name, f"n/a: no pair of sizes reaches a common {what}", "every (pair, rate)", None)
    wins = int((ok[f"large_task_loss_{col}"] < ok[f"small_task_loss_{col}"]).sum())
    return Check(name, f"{wins}/{len(ok)} (pair, rate)", "every (pair, rate)", None)


SAME_TRAJECTORY_SD = 2.0
"""Fig. 22's "same trajectory" tolerance, fixed before any sweep ran under it: the two sizes'
log task losses at equal LM loss differ by at most this many seed-to-seed sds of a run's final
log task loss (pooled over the sweep's seed pairs)."""


def seed_spread_log_loss(final: pd.DataFrame) -> tuple[float, int]:
    """Seed-to-seed sd of a run's final log task test loss, pooled over (size, rate) cells run
    with more than one seed; (sd, degrees of freedom)."""
    from .scaling import seed_noise

    rated = final[final["kind"].isin(["grid", "seed"])]
    return seed_noise([np.log(g["task_test_loss"].values)
                       for _, g in rated.groupby(["preset", "per_token_frequency"])])


def _rates(rows: pd.DataFrame) -> str:
    return ", ".join(f"{f:.2e}" for f in sorted(rows["per_token_frequency"].unique(), reverse=True))


def check_same_trajectory(eq: pd.DataFrame, level: float, spread: tuple[float, int]) -> Check:
    """Fig. 22 (high frequency): at the (pair, rate) where the smaller size learns the task
    (final accuracy at or above the learned level), both sizes' task losses at equal LM loss
    agree within ``SAME_TRAJECTORY_SD`` seed sds (log scale)."""
    name = "Fig. 22: where the smaller size learns, both follow one task-loss vs LM-loss trajectory"
    sd, dof = spread
    expected = f"|log task-loss gap| <= {SAME_TRAJECTORY_SD:g} seed sd at every such (pair, rate)"
    rows = eq[(eq["small_final_accuracy"] >= level) & np.isfinite(eq["small_task_loss_at_lm"])
              & np.isfinite(eq["large_task_loss_at_lm"])]
    if not dof or not np.isfinite(sd):
        return Check.not_measurable(name, expected, "no seed pairs to measure the tolerance")
    if rows.empty:
        return Check.not_measurable(name, expected, "no (pair, rate) where the smaller size learns and both reach "
                                                    "a common LM loss")
    gap = np.abs(np.log(rows["large_task_loss_at_lm"]) - np.log(rows["small_task_loss_at_lm"]))
    tol = SAME_TRAJECTORY_SD * sd
    within = int((gap <= tol).sum())
    return Check(name, f"{within}/{len(rows)} within {tol:.3f} (seed sd {sd:.3f}, {dof} dof; largest gap "
                       f"{gap.max():.3f}); rates {_rates(rows)}", expected, within == len(rows))


def check_larger_wins(eq: pd.DataFrame, level: float, col: str, what: str) -> Check:
    """Figs. 22/23 (low frequency): at the (pair, rate) where the smaller size does not learn
    the task, the larger has the lower task loss at equal ``what``."""
    fig = "22" if col == "at_lm" else "23"
    name = f"Fig. {fig}: where the smaller size does not learn, the larger has the lower task loss at equal {what}"
    rows = eq[(eq["small_final_accuracy"] < level) & np.isfinite(eq[f"small_task_loss_{col}"])
              & np.isfinite(eq[f"large_task_loss_{col}"])]
    if rows.empty:
        return Check.not_measurable(name, "every such (pair, rate)", "no (pair, rate) where the smaller size does not "
                                                                     f"learn and both reach a common {what}")
    wins = int((rows[f"large_task_loss_{col}"] < rows[f"small_task_loss_{col}"]).sum())
    return Check(name, f"{wins}/{len(rows)}; rates {_rates(rows)}", "every such (pair, rate)", wins == len(rows))


def check_learned_order(steps: pd.DataFrame) -> list[Check]:
    """Fig. 6a: within a size, a more frequent task is learned no later."""
    out = []
    for preset, g in steps.groupby("preset", sort=False):
        g = g.dropna(subset=["learned_step"]).sort_values("per_token_frequency")
        name = f"{preset}: more frequent injections learned no later"
        if len(g) < 2:
            out.append(Check.not_measurable(name, "learned step non-increasing in frequency",
                                            f"{len(g)} rate(s) learned"))
            continue
        ok = bool(np.all(np.diff(g["learned_step"].values) <= 0))
        out.append(Check(name, ", ".join(f"{f:.1e}: {int(s)}" for f, s in zip(g["per_token_frequency"],
                                                                                g["learned_step"])),
                         "non-increasing in frequency", ok))
    return out


def check_probe_trend(probes: pd.DataFrame, col: str, claim: str, higher_is_claim: bool) -> list[Check]:
    """Sec. 4.3/4.4: the trained metric at the largest size vs the smallest, per probed rate."""
    out = []
    if probes.empty or col not in probes:
        return out
    tr = probes[probes["trained"]].dropna(subset=[col])
    tr = tr.sort_values("step").groupby("run").tail(1)  # each run at its last probed checkpoint
    for f, g in tr.groupby("per_token_frequency"):
        name = f"{claim} (injected {f:.1e}/token)"
        if g["non_embedding_params"].nunique() < 2:
            out.append(Check.not_measurable(name, "largest vs smallest", "one size probed"))
            continue
        a = float(g.loc[g["non_embedding_params"].idxmin(), col])
        b = float(g.loc[g["non_embedding_params"].idxmax(), col])
        out.append(Check(name, f"smallest {a:.3f}, largest {b:.3f}", "largest " + (">" if higher_is_claim else "<")
                         + " smallest", (b > a) if higher_is_claim else (b < a)))
    return out


FEATURE_LEVELS = {"das_iia": 0.75, "pca_r2": 0.5, "fourier_variance": 0.1}
"""The level at which a feature counts as present, fixed before any sweep probed checkpoints:
DAS IIA at the learned level (the midpoint of chance 0.5 and 1 for a binary answer, as for
accuracy), PCA R^2 at half the variance explained; for T_ADD (fixed on 2026-12-03 before
cpu-scaling-add ran), a tenth of one layer's activation variance in the Fourier modes of
(a + b) mod 100 (``fourier_summary``): a model that reads the sum out of a few frequencies, as
trained modular-addition models do, carries it in a large share of its variance; a 20-step
pipeline check of that preset measured at most 0.0013, the untrained models 0
(docs/measured/cpu-add-pilot-2026-12-03/pipeline-check)."""


def feature_onsets(probes: pd.DataFrame, col: str, level: float) -> pd.DataFrame:
    """Per probed run: the first trained checkpoint's step at which ``col`` reaches ``level``
    (nan: never, within the checkpoints probed), how many trained checkpoints were probed, and
    the rank correlation of ``col`` with test accuracy across them (nan under 3)."""
    from scipy.stats import spearmanr

    rows = []
    tr = (probes[probes["trained"]].dropna(subset=[col]).sort_values("step") if col in probes
          else pd.DataFrame(columns=["run"]))  # a sweep without probes: no rows
    for run, g in tr.groupby("run", sort=False):
        hit = g[g[col] >= level]
        ok = g.dropna(subset=["test_accuracy"])
        rho = (float(spearmanr(ok[col], ok["test_accuracy"]).statistic)
               if len(ok) >= 3 and ok[col].nunique() > 1 and ok["test_accuracy"].nunique() > 1 else np.nan)
        rows.append({"run": run, "preset": g["preset"].iloc[0], "non_embedding_params": int(g["non_embedding_params"].iloc[0]),
                     "per_token_frequency": float(g["per_token_frequency"].iloc[0]), "metric": col, "level": level,
                     "onset_step": float(hit["step"].iloc[0]) if len(hit) else np.nan, "checkpoints": len(g),
                     "last_step": int(g["step"].max()), "rho_with_accuracy": rho})
    return pd.DataFrame(rows, columns=["run", "preset", "non_embedding_params", "per_token_frequency", "metric",
                                       "level", "onset_step", "checkpoints", "last_step", "rho_with_accuracy"])


def check_feature_onset(onsets: pd.DataFrame, col: str) -> list[Check]:
    """Fig. 7 (i)/(ii): the feature appears earlier in training in the largest probed size than in
    the smallest, per probed rate. Needs runs probed at 2 or more checkpoints. Never reached by
    either: n/a; reached at the same checkpoint: n/a (not resolved at this checkpoint spacing);
    reached by the largest only: yes; by the smallest only: no. An informative row per run gives
    the rank correlation of the feature with test accuracy across checkpoints."""
    out = []
    o = onsets[(onsets["metric"] == col) & (onsets["checkpoints"] >= 2)] if len(onsets) else onsets
    if o.empty:
        return out
    level = float(o["level"].iloc[0])
    for f, g in o.groupby("per_token_frequency"):
        name = f"{col} reaches {level:g} earlier in training in the largest model (injected {f:.1e}/token)"
        expected = "largest reaches the level at an earlier checkpoint"
        if g["non_embedding_params"].nunique() < 2:
            out.append(Check.not_measurable(name, expected, "one size probed"))
            continue
        a = g.loc[g["non_embedding_params"].idxmin()]
        b = g.loc[g["non_embedding_params"].idxmax()]

        def when(r):
            return f"step {r.onset_step:.0f}" if np.isfinite(r.onset_step) else f"never by step {r.last_step}"

        text = f"smallest ({a.preset}) {when(a)}, largest ({b.preset}) {when(b)}"
        if not np.isfinite(a.onset_step) and not np.isfinite(b.onset_step):
            out.append(Check.not_measurable(name, expected, f"neither reaches it: {text}"))
        elif np.isfinite(a.onset_step) and np.isfinite(b.onset_step) and a.onset_step == b.onset_step:
            out.append(Check.not_measurable(name, expected, f"same checkpoint: {text}"))
        else:
            earlier = not np.isfinite(a.onset_step) or (np.isfinite(b.onset_step) and b.onset_step < a.onset_step)
            out.append(Check(name, text, expected, bool(earlier)))
    for r in o.itertuples():
        out.append(Check(f"{col} with test accuracy across checkpoints, {r.preset} at {r.per_token_frequency:.1e}/token",
                         "n/a (under 3 checkpoints or constant)" if not np.isfinite(r.rho_with_accuracy)
                         else f"Spearman {r.rho_with_accuracy:+.2f} over {r.checkpoints} checkpoints",
                         "informative", None))
    return out


GROK_TRAIN_LEVEL = 0.9
"""Train accuracy at which a run has fitted its train split (fixed on 2026-12-03, before
cpu-scaling-add ran)."""
GROK_DELAY = 2.0
"""Grokking: test accuracy is still below the learned level at a checkpoint at or after this many
times the step at which train accuracy reached ``GROK_TRAIN_LEVEL``, and rises later (train
saturates long before test rises)."""
UNDECIDED = ("fitted too late to tell", "not resolved at this checkpoint spacing")
"""Outcomes that neither show grokking nor rule it out: the checks treat them as n/a."""


def grokking_table(df: pd.DataFrame, chance: float) -> pd.DataFrame:
    """One row per grid run: the first checkpoint step at which train accuracy reaches
    ``GROK_TRAIN_LEVEL`` (train_fit_step, a) and the first at which test accuracy reaches the
    learned level (test_rise_step, b; nan: not within the run), the final accuracies and the
    outcome, read only from the checkpoints there are:

    - "grokked": test still below the level at a checkpoint at or after ``GROK_DELAY`` x a, then risen;
    - "learned together": test risen by a checkpoint before ``GROK_DELAY`` x a;
    - "not resolved at this checkpoint spacing": test rose between a checkpoint before
      ``GROK_DELAY`` x a and one at or after it;
    - "memorised only": train fitted, test below the level at every checkpoint up to the last,
      which lies at or after ``GROK_DELAY`` x a;
    - "fitted too late to tell": train fitted, test never risen, the run ends before ``GROK_DELAY`` x a;
    - "learned, train not fitted": test risen, train below ``GROK_TRAIN_LEVEL`` throughout;
    - "not learned": neither."""
    level = learned_level(chance)
    rows = []
    grid = df[df["kind"] == "grid"] if "kind" in df else df
    for run, g in grid.sort_values("step").groupby("run", sort=False):
        steps, test = g["step"].to_numpy(float), g["test_accuracy"].to_numpy(float)
        fit_ = steps[g["train_accuracy"].to_numpy(float) >= GROK_TRAIN_LEVEL]
        rise = np.flatnonzero(test >= level)
        a = float(fit_[0]) if len(fit_) else np.nan
        b = float(steps[rise[0]]) if len(rise) else np.nan
        if np.isnan(a):
            outcome = "not learned" if np.isnan(b) else "learned, train not fitted"
        elif np.isnan(b):
            outcome = "memorised only" if steps[-1] >= GROK_DELAY * a else "fitted too late to tell"
        else:
            below_late = (steps >= GROK_DELAY * a) & (steps < b)  # test still below the level there
            outcome = ("grokked" if below_late.any() else "learned together" if b < GROK_DELAY * a
                       else "not resolved at this checkpoint spacing")
        last = g.iloc[-1]
        rows.append({"run": Path(run).name, "preset": last["preset"], "non_embedding_params": int(last["non_embedding_params"]),
                     "per_token_frequency": float(last["per_token_frequency"]), "train_fit_step": a,
                     "test_rise_step": b, "final_train_accuracy": float(last["train_accuracy"]),
                     "final_test_accuracy": float(last["test_accuracy"]), "last_step": int(last["step"]),
                     "outcome": outcome})
    return pd.DataFrame(rows, columns=["run", "preset", "non_embedding_params", "per_token_frequency", "train_fit_step",
                                       "test_rise_step", "final_train_accuracy", "final_test_accuracy", "last_step",
                                       "outcome"])


def check_grokking(table: pd.DataFrame) -> list[Check]:
    """The paper's grokking note on T_ADD: only larger models at higher frequency grok.
    (a) the largest size at the highest rate groks; (b) the smallest size at the lowest rate
    does not; (c) no run groks where the next larger size at its rate, or the next higher rate at
    its size, does not (n/a when no run groks). A run whose outcome is ``UNDECIDED`` makes the
    check that reads it n/a, and is left out of (c); all three are n/a when no run learned the
    task at all."""
    if table.empty:
        return []
    t = table.copy()
    t["grok"] = t["outcome"] == "grokked"
    names = ("grokking: the largest size at the highest rate groks",
             "grokking: the smallest size at the lowest rate does not",
             "grokking only where larger sizes and higher rates grok too")

    def say(r):
        return (f"{r.preset} at {r.per_token_frequency:.1e}/token: {r.outcome} (train {r.final_train_accuracy:.3f}, "
                f"test {r.final_test_accuracy:.3f} at step {r.last_step})")

    if (t["outcome"] == "not learned").all():  # grokking needs learning: the claim is not measurable here
        why = "no run learned T_ADD (" + "; ".join(say(r) for r in t.itertuples()) + ")"
        return [Check.not_measurable(n, "grokking in some runs", why) for n in names]
    big = t[t["non_embedding_params"] == t["non_embedding_params"].max()]
    top = big.loc[big["per_token_frequency"].idxmax()]
    small = t[t["non_embedding_params"] == t["non_embedding_params"].min()]
    low = small.loc[small["per_token_frequency"].idxmin()]
    expected = f"test still below the learned level at >= {GROK_DELAY:g}x the step train reaches {GROK_TRAIN_LEVEL:g}, then risen"
    out = [Check.not_measurable(names[0], expected, say(top)) if top.outcome in UNDECIDED else
           Check(names[0], say(top), expected, bool(top.grok)),
           Check.not_measurable(names[1], "not grokked", say(low)) if low.outcome in UNDECIDED else
           Check(names[1], say(low), "not grokked", not bool(low.grok))]
    if not t["grok"].any():
        out.append(Check.not_measurable(names[2], "no exception", "no run groks"))
        return out
    sizes = sorted(t["non_embedding_params"].unique())
    rates = sorted(t["per_token_frequency"].unique())
    at = {(r.non_embedding_params, r.per_token_frequency): bool(r.grok) for r in t.itertuples()
          if r.outcome not in UNDECIDED}
    bad = [f"{p:,} at {f:.1e}" for (p, f), g in at.items() if g and (
        (p != sizes[-1] and at.get((sizes[sizes.index(p) + 1], f)) is False)
        or (f != rates[-1] and at.get((p, rates[rates.index(f) + 1])) is False))]
    out.append(Check(names[2], "; ".join(bad) + " grok(s) where a larger size or higher rate does not" if bad else
                     f"{int(t['grok'].sum())} of {len(t)} runs grok, none out of order", "no exception", not bad))
    return out


def scaling_report(sweep_dir: str | Path, sweep: dict | None = None) -> dict:
    """Write ``SWEEP/scaling`` (see the module docstring); returns {"report", "summary"}.
    ``sweep``: the sweep's settings (``load_sweep``'s dict; default: the folder's sweep.json)."""
    sweep_dir = Path(sweep_dir)
    sw = _sweep_record(sweep_dir) if sweep is None else sweep
    chance = CHANCE[sw["task"]]
    df = run_table(sweep_dir)
    final = df.sort_values("step").groupby("run").tail(1).reset_index(drop=True)
    crit = critical_table(df, chance, int(sw.get("final_checkpoints", FINAL_CHECKPOINTS)))
    try:
        law, why = fit(crit), ""
    except RaretaskError as e:
        law, why = None, str(e)
    eq = equal_budget(df)
    steps = learned_steps(df, chance)
    grok = grokking_table(df if sw["task"] == "add" else df.iloc[:0], chance)  # T_ADD's claim only
    probes = probe_table(df)
    onsets = pd.concat([feature_onsets(probes, col, lv) for col, lv in FEATURE_LEVELS.items()], ignore_index=True)
    out = sweep_dir / "scaling"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    itab, icheck, ifig, inote = _interference(sweep_dir, sw, out / "figures")
    roll = rollout(crit)
    level = learned_level(chance)
    by_claim = {
        "Fig. 5": [*check_falls_with_size(crit), check_exponent(law, why), *check_bracketed(crit),
                   check_loss_falls_with_size(final)],
        "Fig. 6a": check_learned_order(steps),
        "Fig. 6b": check_gap(final),
        "Fig. 7": [*check_probe_trend(probes, "das_iia", "DAS IIA higher in the largest model", True),
                   *check_probe_trend(probes, "pca_r2", "PCA R^2 higher in the largest model", True),
                   *(c for col in FEATURE_LEVELS for c in check_feature_onset(onsets, col))],
        "Fig. 9": icheck,
        "Fig. 9 (final checkpoints)": check_probe_trend(probes, "cos_nontask_median", "interference (median cos(g_r, "
                                                        "non-task)) weaker in the largest model", True),
        "Fig. 22": [check_same_trajectory(eq, level, seed_spread_log_loss(final)),
                    check_larger_wins(eq, level, "at_lm", "held-out LM loss"),
                    check_equal_budget(eq, "at_lm", "held-out LM loss")],
        "Fig. 23": [check_larger_wins(eq, level, "at_compute", "compute 6ND"),
                    check_equal_budget(eq, "at_compute", "compute 6ND")],
        "Grokking": check_grokking(grok),
    }
    checks = [c for cs in by_claim.values() for c in cs]
    claims = claims_table(by_claim, sw, crit, probes, {"Fig. 9": inote} if inote else None)
    tw, tp, tslope = theory_curve()
    figures = _figures(df, final, crit, law, eq, steps, probes, (tw, tp, tslope), chance, out / "figures")
    figures += [ifig] if ifig is not None else []
    for name_, t in (("runs", final), ("critical", crit), ("probes", probes), ("equal-budget", eq),
                     ("learned-steps", steps), ("rollout", roll), ("claims", claims), ("interference", itab),
                     ("feature-onsets", onsets), ("grokking", grok)):
        atomic_parquet(t, out / f"{name_}.parquet")
    summary = {"sweep": sw, "critical": crit.to_dict(orient="records"),
               "power_law": None if law is None else
               {"exponent": law.exponent, "exponent_lo": law.exponent_lo, "exponent_hi": law.exponent_hi,
                "intercept": law.intercept, "per_doubling": law.per_doubling, "params": list(law.params),
                "f_star": list(law.f_star), "se_log10": list(law.se_log10), "residuals": list(law.residuals),
                "scatter_tau2": law.tau2, "converged": law.converged, "curvature": law.curvature,
                "curvature_se": law.curvature_se, "prediction_scatter2": law.scatter2,
                "straight_weight": law.straight_weight},
               "rollout": roll.to_dict(orient="records"), "claims": claims.to_dict(orient="records"),
               "interference": itab.to_dict(orient="records"), "grokking": grok.to_dict(orient="records"),
               "theory": {"widths": tw.tolist(), "p_star": tp.tolist(), "slope_in_width": tslope},
               "checks": [c.to_dict() for c in checks],
               "checks_count": {**{v: sum(c.verdict == v for c in checks) for v in ("yes", "no", "n/a")},
                                "informative": sum(c.verdict == "" for c in checks)}}
    atomic_write(out / "scaling-summary.json", json.dumps(summary, indent=2, default=json_default))
    report = write_report(out / "report.html", "raretask lm: larger models learn rarer tasks?",
                          _intro(sw, crit, law, roll) + _claims_html(claims), checks, figures, sw,
                          {"runs": int(df["run"].nunique()), "sizes": int(crit.shape[0])})
    return {"report": str(report), "summary": summary}


PAPER_CLAIMS = {
    "Fig. 5": ("larger models learn lower-frequency injected tasks, and have lower task loss at every rate",
               "4M-4B parameters, 1024 x 4096 tokens per batch, 50K steps, 7.8e-3 .. 2.4e-8 per token, equal tokens"),
    "Fig. 6a": ("tasks are learned in order of frequency", "injected rates and natural reference tasks, across "
                "checkpoints"),
    "Fig. 6b": ("at matched global frequency a larger gap between injections gives a higher task loss",
                "n x G instances every G steps"),
    "Fig. 7": ("task features appear across checkpoints with accuracy, faster in larger models",
               "T_CMP DAS/PCA and T_ADD Fourier modes against training step"),
    "Fig. 9": ("less gradient interference in larger models", "cosines read during training at and between "
               "injections of 100 instances every 100 steps, three sizes"),
    "Fig. 22": ("same task-loss vs LM-loss trajectory where the task is learned; the larger lower where the smaller "
                "does not learn it", "task loss against held-out LM loss, high and low frequency"),
    "Fig. 23": ("at equal compute the larger model has the lower task loss at low frequency",
                "task loss against 6ND at one instance per batch"),
    "Grokking": ("on T_ADD only larger models at higher frequency grok", "T_ADD train vs test accuracy over "
                 "checkpoints"),
}
"""Each Sec. 4 claim (SPEC B7) and the regime the paper measured it in."""


def claims_table(by_claim: dict, sw: dict, crit: pd.DataFrame, probes: pd.DataFrame,
                 notes: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per Sec. 4 claim: its verdict over its checks (no if any says no; yes if all
    say yes; n/a otherwise), the regime raretask measured it in and the paper's. ``notes``: a
    sentence per claim appended to its checks (derived from the verdicts)."""
    t = sw.get("train", {})
    P = crit["non_embedding_params"]
    base = (f"{len(crit)} sizes, {P.min():,}-{P.max():,} non-embedding parameters, {t.get('batch_size')} x "
            f"{t.get('seq_len')} tokens per batch, {t.get('steps')} steps, task {sw['task']} at "
            f"{', '.join(f'{r:g}' for r in sw['rates'])} per batch")
    across = probes.empty or probes[probes["trained"]].groupby("run").size().max() < 2
    probed = (("at the final checkpoints only" if across else
               f"at {int(probes[probes['trained']].groupby('run').size().max())} checkpoints per probed run")
              if not probes.empty else "not run (no probes in this sweep)")
    st = sw.get("interference")
    features = "T_ADD Fourier modes" if sw["task"] == "add" else "DAS/PCA"
    regime = {"Fig. 7": f"{base}; {features} {probed}" + ("" if sw["task"] == "add" else "; no T_ADD"),
              "Fig. 9": (f"{base}; interference stage: sizes {', '.join(st['presets'])}, {st['n']} instances every "
                         f"{st['every']} steps, cosines read during training at injections and in the gap (monitor "
                         f"K = {st.get('monitor', 50)}, g_r afresh at each reading)" if st else
                         f"{base}; cosines {probed}" + (", not during training" if not probes.empty else "")),
              "Fig. 6b": base + ("" if sw.get("gaps") and (sw["gaps"] or {}).get("every") else "; no gap runs"),
              "Grokking": (f"{base}; train and test accuracy at every checkpoint: train fitted at "
                           f"{GROK_TRAIN_LEVEL:g}, test risen at the learned level, grokked when the rise comes at "
                           f"{GROK_DELAY:g}x the fit's step or later" if sw["task"] == "add" else
                           f"not run: the sweep injects {sw['task']} only")}
    # claims whose paper regime this sweep does not run: their checks stay in the report, the
    # claim is not judged on them (a final-checkpoint cosine is not Fig. 9's during-training one)
    off_regime = {"Fig. 7": "features at the final checkpoint only, not across checkpoints"} if across else {}
    if not st:
        off_regime["Fig. 9"] = "cosines at final checkpoints, not during training around injections"
        by_claim = {**by_claim, "Fig. 9": by_claim.get("Fig. 9 (final checkpoints)", [])}
    rows = []
    for claim, (text, paper) in PAPER_CLAIMS.items():
        cs = [c for c in by_claim.get(claim, []) if c.ok is not None or c.na]
        verdict = ("n/a" if not cs or claim in off_regime else "no" if any(c.ok is False for c in cs) else
                   "yes" if all(c.ok is True for c in cs) else "n/a")
        how = (f"{sum(c.ok is True for c in cs)} yes, {sum(c.ok is False for c in cs)} no, "
               f"{sum(c.na for c in cs)} n/a" if cs else "not measured")
        if claim in off_regime and cs:
            how = f"not the paper's regime ({off_regime[claim]}); its checks: {how}"
        if (notes or {}).get(claim):
            how = f"{how}; {notes[claim]}"
        rows.append({"claim": claim, "paper": text, "verdict": verdict, "checks": how,
                     "raretask_regime": regime.get(claim, base), "paper_regime": paper})
    return pd.DataFrame(rows)


def _interference(sweep_dir: Path, sw: dict, fdir: Path) -> tuple[pd.DataFrame, list[Check], Figure | None, str]:
    """The interference stage's table, checks, Fig. 9 analog and the sentence saying which
    claims hold raw and normalised (empty table, no checks, no figure when the sweep has no
    stage)."""
    from .interference_stage import fig9, interference_checks, interference_table, read_monitor, stage_of, surviving

    stage = stage_of(sw)
    if stage is None:
        return interference_table(pd.DataFrame()), [], None, ""
    log = read_monitor(sweep_dir, sw)
    table = interference_table(log)
    checks = interference_checks(table, stage.larger)
    note = surviving(checks)
    if log.empty:
        return table, checks, None, note
    caption = (f"Gradient interference during training (paper Fig. 9), {stage.n} instances every {stage.every} steps, "
               "one column per size. Top: cos(g_r, g_batch) at injection steps (triangles) and in the gap, and "
               "cos(g_r, g_nontask), at each reading. Bottom: median and IQR against the steps since the injection. "
               "Dotted: +-0.674/sqrt(d), the median |cos| of a random direction in the d task-neuron coordinates. "
               + note[0].upper() + note[1:])
    return table, checks, Figure(fig9(log, table, fdir / "fig9-interference.png"), caption), note


def _claims_html(claims: pd.DataFrame) -> str:
    import html as _html

    rows = "".join("<tr>" + "".join(f"<td>{_html.escape(str(getattr(r, k)))}</td>" for k in
                                     ("claim", "paper", "verdict", "checks", "raretask_regime", "paper_regime"))
                   + "</tr>" for r in claims.itertuples())
    return ("<h2>Which of the paper's Sec. 4 claims held here</h2><table><tr><th>claim</th><th>the paper says</th>"
            "<th>verdict</th><th>checks</th><th>measured here in</th><th>the paper measured it in</th></tr>"
            f"{rows}</table>")


def fig5_seeds_caption(rated: pd.DataFrame) -> str:
    """Which seeds Fig. 5 shows, from the runs themselves."""
    grid = sorted(int(x) for x in rated.loc[rated["kind"] == "grid", "seed"].unique())
    extra = sorted(int(x) for x in rated.loc[rated["kind"] == "seed", "seed"].unique())
    text = f"lines: grid seed {', '.join(map(str, grid))}" if grid else "no grid runs"
    if extra:
        text += (f"; crosses: seed{'s' if len(extra) > 1 else ''} {', '.join(map(str, extra))} at the rates nearest "
                 "each size's learned level")
    return text


def _intro(sw: dict, crit: pd.DataFrame, law, roll: pd.DataFrame) -> str:
    rows = "".join(f"<tr><td>{r.preset}</td><td>{r.non_embedding_params:,}</td><td>{r.params:,}</td>"
                   f"<td>{describe_row(r)}</td><td>{r.f_star_ceiling:.3g} (ceiling {r.ceiling:.2f})</td>"
                   f"<td>{r.runs}</td></tr>" for r in crit.itertuples())
    verdict = ("no law could be fitted (fewer than two sizes with a measured f*)" if law is None else
               f"f* scales as P^{law.exponent:+.3f} (95% confidence interval [{law.exponent_lo:+.3f}, "
               f"{law.exponent_hi:+.3f}]), a factor {law.per_doubling:.3f} per doubling of non-embedding parameters")
    noise = crit["noise_sd"].iloc[0] if len(crit) else float("nan")
    dof = int(crit["noise_dof"].iloc[0]) if len(crit) else 0
    how = (f"runs redrawn with the sweep's seed-to-seed sd of final accuracy, {noise:.3f} ({dof} degrees of freedom "
           "from its seed pairs)" if dof else f"runs redrawn with the fit's residual sd ({noise:.3f}): the sweep has no "
           "seed pairs")
    roll_rows = "".join(f"<tr><td>{r.fitted}</td><td>{r.predicted_size}</td><td>{r.predicted:.3g}</td>"
                        f"<td>[{r.pi_lo:.3g}, {r.pi_hi:.3g}]</td><td>{r.measured:.3g}</td><td>{r.ratio:.2f}</td>"
                        f"<td>{ {True: 'yes', False: 'no', None: '-'}[r.covered] }</td><td>{r.note}</td></tr>"
                        for r in roll.itertuples())
    rolled = ("" if roll.empty else
              "<p>Rollout validation: fit the smaller sizes, predict the next with the 95% prediction interval "
              f"({int((roll['covered'] == True).sum())} of {int(roll['covered'].notna().sum())} covered).</p>"  # noqa: E712
              "<table><tr><th>fitted on</th><th>predicted size</th><th>predicted f*</th><th>prediction interval</th>"
              f"<th>measured</th><th>predicted / measured</th><th>covered</th><th></th></tr>{roll_rows}</table>")
    return (f"Injected task {sw['task']} at {len(sw['rates'])} rates per batch ({', '.join(f'{r:g}' for r in sw['rates'])}) "
            f"on {len(sw['presets'])} sizes, equal tokens per run. Critical frequency f*: where test accuracy crosses "
            f"the learned level {crit['level'].iloc[0] if len(crit) else float('nan'):.2f} (midpoint of chance and 1), "
            f"logistic fit in log frequency over one point per run; 95% interval: {how}. A size that learned at "
            f"every rate, or at none, is censored: a bound, not a number. {verdict}."
            "<table><tr><th>size</th><th>non-embedding params</th><th>params</th><th>f* per token [95%]</th>"
            f"<th>informative: midpoint of chance and fitted ceiling</th><th>runs</th></tr>{rows}</table>{rolled}")


def _figures(df, final, crit, law, eq, steps, probes, theory, chance, fdir: Path) -> list[Figure]:
    """Every figure of the report, each drawn from its table by its own function."""
    sizes = list(crit["preset"])
    col = {p: f"C{i}" for i, p in enumerate(sizes)}
    figs = [_fig5(final, sizes, col, chance, fdir), _fig_critical(crit, law, theory, fdir),
            _fig6a(steps, sizes, col, fdir), _fig6b(final, col, fdir), _fig22_23(df, sizes, col, fdir),
            _fig_probes(probes, fdir), _fig_features(probes, sizes, col, chance, fdir)]
    return [f for f in figs if f is not None]


FEATURE_NAMES = {"das_iia": "DAS IIA (best layer)", "pca_r2": "PCA R$^2$ (best layer)",
                 "fourier_variance": "Fourier variance (best layer)", "test_accuracy": "test accuracy"}


def _fig_features(probes, sizes, col, chance, fdir: Path) -> Figure | None:
    """Fig. 7 analog: each feature and test accuracy against training step, per probed rate
    (columns) and size (colour); the untrained model at step 0 (hollow)."""
    from ..report.plots import legend_below, new_figure, save
    from ..report.style import integer_axis, reference_line

    if probes.empty or probes[probes["trained"]].groupby("run").size().max() < 2:
        return None
    metrics = [m for m in (*FEATURE_LEVELS, "test_accuracy") if m in probes and probes[m].notna().any()]
    if metrics in ([], ["test_accuracy"]):  # no feature probed across checkpoints: no Fig. 7
        return None
    rates = sorted(probes["per_token_frequency"].unique(), reverse=True)
    fig, axes = new_figure(len(rates), len(metrics), height=1.9, page=True, sharex=True)
    for j, f in enumerate(rates):
        for i, m in enumerate(metrics):
            ax = axes[i][j]
            for preset in sizes:
                g = probes[(probes["per_token_frequency"] == f) & (probes["preset"] == preset)].sort_values("step")
                tr, init = g[g["trained"]].dropna(subset=[m]), g[~g["trained"]].dropna(subset=[m])
                if len(tr):
                    ax.plot(tr["step"], tr[m], "-o", ms=2.5, color=col[preset], label=preset)
                if len(init):
                    ax.plot(init["step"], init[m], "o", mfc="none", color=col[preset])
            level = FEATURE_LEVELS.get(m, learned_level(chance))
            reference_line(ax, level, "feature / learned level" if (i, j) == (0, 0) else None)
            ax.set_ylim(0.3 if m == "das_iia" or (m == "test_accuracy" and chance >= 0.3) else -0.05, 1.02)
            if i == 0:
                ax.set_title(f"{f:.1e}/token")
            integer_axis(ax)
            if i == len(metrics) - 1:
                ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel(FEATURE_NAMES[m])
    legend_below(fig, axes[0][0], ncol=len(sizes) + 1)
    return Figure(save(fig, fdir / "fig7-features-across-checkpoints.png"),
                  "Fig. 7 analog: " + " and ".join(PROBE_WORDS[m] for m in metrics if m in FEATURE_LEVELS)
                  + ", and the test accuracy at each probed checkpoint, per injected rate (columns) "
                  "and size (colour); hollow: the untrained model. Dotted: the level at which a feature counts as "
                  "present (fixed before the sweep) and the learned level of accuracy.")


def _fig5(final, sizes, col, chance, fdir: Path) -> Figure:
    from ..report.plots import new_figure, save
    from ..report.style import reference_line

    rated = final[final["kind"].isin(("grid", "seed"))]
    fig, axes = new_figure(2, 1, height=2.6)
    for p in sizes:
        g = rated[rated["preset"] == p]
        s0 = g[g["kind"] == "grid"].sort_values("per_token_frequency")
        lab = f"{p} ({int(g['non_embedding_params'].iloc[0]):,} non-emb.)"
        axes[0, 0].plot(s0["per_token_frequency"], s0["test_accuracy"], "-o", color=col[p], label=lab)
        axes[0, 1].plot(s0["per_token_frequency"], s0["task_test_loss"], "-o", color=col[p], label=lab)
        s1 = g[g["kind"] == "seed"]
        axes[0, 0].plot(s1["per_token_frequency"], s1["test_accuracy"], "x", color=col[p], ms=6)
        axes[0, 1].plot(s1["per_token_frequency"], s1["task_test_loss"], "x", color=col[p], ms=6)
    axes[0, 0].axhline(learned_level(chance), color="k", lw=0.8, ls="--", label="learned level")
    reference_line(axes[0, 0], chance, "chance")
    axes[0, 0].set_ylim(min(chance, rated["test_accuracy"].min()) - 0.03, 1.02)
    axes[0, 0].set(xscale="log", xlabel="injected instances per token", ylabel="final test accuracy",
                   title="Fig. 5 analog: accuracy")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="injected instances per token",
                   ylabel="final LABEL loss (test)", title="Fig. 5 analog: task loss")
    axes[0, 0].legend()
    return Figure(save(fig, fdir / "fig5-accuracy-loss.png"),
                  "Final test accuracy and LABEL loss against the injected per-token frequency, one curve per "
                  f"size ({fig5_seeds_caption(rated)}); dashed: the learned level; dotted grey: chance.")


def _fig_critical(crit, law, theory, fdir: Path) -> Figure:
    from ..report.plots import new_figure, save

    fig, axes = new_figure(2, 1, height=2.6)
    ax = axes[0, 0]
    c = crit[np.isfinite(crit["f_star"])]
    ax.errorbar(c["non_embedding_params"], c["f_star"],
                yerr=[c["f_star"] - c["f_star_lo"].clip(lower=1e-300), c["f_star_hi"].clip(upper=1.0) - c["f_star"]],
                fmt="o", capsize=4, color="C0", label="measured f* (95%, runs redrawn)")
    for side, at, mark in (("below", "f_min", "v"), ("above", "f_max", "^")):
        cen = crit[crit["censored"] == side]
        if len(cen):
            ax.plot(cen["non_embedding_params"], cen[at], mark, color="C3", ms=9, ls="none",
                    label=f"censored: f* {side} this bound")
    if law is not None:
        P = np.geomspace(min(crit["non_embedding_params"]) / 1.5, max(crit["non_embedding_params"]) * 1.5, 50)
        y, plo, phi = law.predict(P, "prediction")
        _, clo, chi = law.predict(P, "confidence")
        ax.plot(P, 10**y, "C1-", label=f"fit: P^{law.exponent:+.2f}, x{law.per_doubling:.2f}/doubling")
        ax.fill_between(P, 10**clo, 10**chi, color="C1", alpha=0.35, label="95% confidence (the curve)")
        ax.fill_between(P, 10**plo, 10**phi, color="C1", alpha=0.12, label="95% prediction (a new size)")
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters", ylabel="critical frequency f* (per token)",
           title="f*(size)")
    ax.legend()
    tw, tp, tslope = theory
    ax = axes[0, 1]
    ok = np.isfinite(tp) & (tp > 0)
    ax.plot(tw[ok] / tw[ok][0], tp[ok] / tp[ok][0], "s-", color="C2",
            label=f"theory p*(N), task 32: N^{tslope:+.2f}")
    if law is not None:
        # non-embedding parameters grow as width^2 at fixed depth: exponent in width = 2 b
        wr = np.sqrt(np.asarray(law.params) / law.params[0])
        ax.plot(wr, np.asarray(law.f_star) / law.f_star[0], "o-", color="C0",
                label=f"LM f*: N^{2 * law.exponent:+.2f}")
    ax.set(xscale="log", yscale="log", xlabel="width / smallest width", ylabel="critical frequency / smallest's",
           title="LM exponent vs the synthetic theory's")
    ax.legend()
    return Figure(save(fig, fdir / "critical-frequency.png"),
                  "Left: critical frequency f* per size with its 95% interval (runs redrawn with the sweep's "
                  "seed noise), censored sizes as bounds, and the law fitted to the measured sizes with its "
                  "confidence band (the curve) and prediction band (where a new size's f* lands). Right: the "
                  "same against width (parameters ~ width^2 at fixed depth) beside the planner's minimal frequency "
                  "p*(N) of the paper mixture's rarest task (Theorem 3), each relative to its smallest width.")


def _fig6a(steps, sizes, col, fdir: Path) -> Figure:
    from ..report.plots import new_figure, save

    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for p in sizes:
        g = steps[steps["preset"] == p].sort_values("per_token_frequency")
        ax.plot(g["per_token_frequency"], g["learned_step"], "-o", color=col[p], label=p)
    ax.set(xscale="log", xlabel="injected instances per token", ylabel="first checkpoint at the learned level",
           title="Fig. 6a analog: when the task is learned")
    ax.legend()
    return Figure(save(fig, fdir / "fig6a-learned-step.png"),
                  "The step at which each rate's task is learned, per size (missing: not learned in the run). "
                  "The reference templates ('it has increased from {x} to', '{x} + {y} =') were counted in the "
                  "corpus (report/eval-summary.json); where they never occur they give no frequency to place.")


def _fig6b(final, col, fdir: Path) -> Figure | None:
    from ..report.plots import new_figure, save

    gaps = final[final["kind"] == "gap"]
    if gaps.empty:
        return None
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for p, g in gaps.groupby("preset"):
        f = g["per_token_frequency"].iloc[0]
        base = final[(final["preset"] == p) & (final["kind"] == "grid") & np.isclose(final["per_token_frequency"], f)]
        pts = pd.concat([base.assign(every=1), g]).sort_values("every")
        ax.plot(pts["every"], pts["task_test_loss"], "-o", color=col.get(p, "k"), label=f"{p} ({f:.1e}/token)")
    ax.set(xscale="log", xlabel="gap G (batches between injections)", ylabel="final LABEL loss (test)",
           title="Fig. 6b analog: matched frequency, growing gap")
    ax.legend()
    return Figure(save(fig, fdir / "fig6b-gap.png"),
                  "Task loss at one total frequency delivered as n instances every G batches (G = 1 is the "
                  "grid's run at that rate), smallest and largest size.")


def _fig22_23(df, sizes, col, fdir: Path) -> Figure:
    from ..report.plots import new_figure, save

    fig, axes = new_figure(2, 1, height=2.6)
    grid = df[df["kind"] == "grid"]
    for p in sizes:
        for j, (f, g) in enumerate(grid[grid["preset"] == p].groupby("per_token_frequency")):
            g = g.sort_values("step")
            lab = p if j == 0 else None
            axes[0, 0].plot(g["heldout_loss"], g["task_test_loss"], "-", color=col[p], lw=0.6 + 0.4 * j, label=lab)
            axes[0, 1].plot(g["compute"], g["task_test_loss"], "-", color=col[p], lw=0.6 + 0.4 * j, label=lab)
    axes[0, 0].invert_xaxis()
    axes[0, 0].set(xlabel="held-out LM loss", ylabel="LABEL loss (test)", yscale="log",
                   title="Fig. 22 analog: task loss vs LM loss")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="compute 6 N D (FLOPs)", ylabel="LABEL loss (test)",
                   title="Fig. 23 analog: task loss vs compute")
    axes[0, 0].legend()
    return Figure(save(fig, fdir / "fig22-23-equal-budget.png"),
                  "Injected-task loss along training against held-out LM loss and against compute, per size "
                  "(colour) and rate (line width grows with frequency).")


def _fig_probes(probes, fdir: Path) -> Figure | None:
    from ..report.plots import new_figure, save

    if probes.empty:
        return None
    metrics = [m for m in PROBE_WORDS if m in probes]
    if not metrics:
        return None
    probes = probes.sort_values("step").groupby(["run", "trained"]).tail(1)  # each run at its last checkpoint
    fig, axes = new_figure(len(metrics), 1, height=2.4)
    for ax, m in zip(axes.ravel(), metrics):
        for j, (f, g) in enumerate(probes.groupby("per_token_frequency")):
            for trained, ls in ((True, "-o"), (False, "--s")):
                s = g[g["trained"] == trained].dropna(subset=[m]).sort_values("non_embedding_params")
                ax.plot(s["non_embedding_params"], s[m], ls, color=f"C{j}",
                        label=f"{f:.1e}/token, {'trained' if trained else 'untrained'}")
        ax.set(xscale="log", xlabel="non-embedding parameters", title=m)
    axes.ravel()[0].legend()
    words = [PROBE_WORDS[m] for m in metrics]
    return Figure(save(fig, fdir / "probes-across-sizes.png"),
                  "Inside the models (Sec. 4.3, 4.4) at each run's last probed checkpoint: "
                  + (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0])
                  + ", per size; dashed: the untrained model of the same size and seed.")


PROBE_WORDS = {"das_iia": "the best layer's DAS interchange accuracy", "pca_r2": "the best layer's PCA R^2",
               "fourier_variance": "the best layer's share of variance in the Fourier modes of (a + b) mod 100",
               "localize_max_drop": "the largest MLP zero-ablation drop",
               "cos_nontask_median": "the median cosine of g_r with the non-task gradient"}
"""Each probe summary (``probe_table``'s columns) in words, for captions; the across-sizes figure
draws them in this order."""
