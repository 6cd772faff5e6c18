"""The second robustness round (issue 19), case by case: every case the round named on the side
paths (``--set``, ``--dry-run``, sweep keys, conflicting flags, values that cannot be honoured,
a corpus rebuilt under a run, figure formats), as one table. Each row says what the round
found before (its class in the issue's table) and what raretask does now; the test asserts
the exit code, exactly one ``raretask: error:`` line naming the problem, no traceback, and that
every file of the workspace (a corpus, a trained run, a frequencies file, a Latin-1 text) is
byte-for-byte what it was.

``python tests/test_robustness_round2.py`` prints the before/after table (markdown).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SWEEP = ["lm", "sweep", "cpu-rates-quick", "--corpus", "{corpus}", "--out", "{w}/sw", "--dry-run"]
SCALING = ["lm", "sweep", "cpu-scaling-quick", "--corpus", "{corpus}", "--out", "{w}/sc", "--dry-run"]
STUDY = ["study", "phase", "--preset", "quick", "--out", "{w}/st"]
TRAIN = ["lm", "train", "--corpus", "{corpus}", "--out", "{run}", "--preset", "tiny", "--batch-size", "4",
         "--seq-len", "32", "--warmup", "2", "--lr", "1e-3", "--steps", "6", "--checkpoint-every", "3",
         "--no-progress"]

# (id, what the round saw, args, exit code, text the one line must hold, environment)
CASES = [
    ("dry-run negative steps", "silently wrong: a plan, exit 0", SWEEP + ["--set", "train.steps=-5"], 2,
     "train.steps", None),
    ("dry-run negative and zero rates", "silently wrong: a plan, exit 0", SWEEP + ["--set", "rates=[-1,0]"], 2,
     "rates", None),
    ("dry-run gaps 0 and -4", "silently wrong: a plan, exit 0", SCALING + ["--set", "gaps.every=[3,0,-4]"], 2,
     "gaps.every", None),
    ("dry-run unknown task", "silently wrong: a plan, exit 0", SWEEP + ["--set", "task=xyz"], 2, "task", None),
    ("dry-run unknown probe", "silently wrong: a plan, exit 0", SCALING + ["--set", 'probe.probes=["nope"]'], 2,
     "nope", None),
    ("unknown gaps key", "silently wrong: training started", SCALING + ["--set", "gaps.nope=1"], 2,
     "unknown option 'gaps.nope'", None),
    ("unknown probe key", "silently wrong: training started", SCALING + ["--set", "probe.nope=1"], 2,
     "nope", None),
    ("a boolean learning rate", "silently wrong: trained at lr 1", SWEEP + ["--set", "train.lr=true"], 2,
     "train.lr", None),
    ("a whole stage set to a number", "(new: --set STAGE=null)", SCALING + ["--set", "interference=3"], 2,
     "interference=null", None),
    ("non-finite steps", "(new)", SWEEP + ["--set", "train.steps=1e400"], 2, "train.steps", None),
    ("fractional batch size", "(new)", SWEEP + ["--set", "train.batch_size=2.5"], 2, "train.batch_size", None),
    ("empty preset list", "(new)", SWEEP + ["--set", "presets=[]"], 2, "presets", None),
    ("a rate twice", "(new)", SWEEP + ["--set", "rates=[1,1,2]"], 2, "rates", None),
    ("rank1=no in a study", "silently wrong: rank-1 turned on", STUDY + ["--set", "mixture.rank1=no"], 2,
     "rank1", None),
    ("a study step count as text", "(new)", STUDY + ["--set", "train.steps=many"], 2, "train.steps", None),
    ("plan --rank1 with --block-dim", "silently wrong: d = 1", ["plan", "--rank1", "--block-dim", "4"], 2,
     "--rank1", None),
    ("plan --frequencies with --tasks", "silently wrong: the CSV won",
     ["plan", "--frequencies", "{w}/freqs.csv", "--tasks", "8"], 2, "--frequencies", None),
    ("a Ray address on the local executor", "silently wrong: accepted",
     STUDY + ["--executor", "local", "--ray-address", "auto"], 2, "--ray-address", None),
    ("zero workers on Ray", "silently wrong: ran", STUDY + ["--workers", "0", "--executor", "ray"], 2, "workers",
     None),
    ("held-out windows beyond the split", "silently wrong: 10^9 recorded, fewer used",
     ["lm", "eval", "{run}", "--heldout-windows", "1000000000"], 2, "heldout", None),
    ("PCA k above the width", "silently wrong: k = 100000 recorded",
     ["lm", "probe", "{run}", "--pca", "--pca-k", "100000", "--no-progress"], 2, "pca", None),
    ("reference prompts beyond the distinct ones", "(new: was built in memory)",
     ["lm", "eval", "{run}", "--reference-prompts", "1000000000"], 2, "reference", None),
    ("plot as JPEG", "silently wrong: PNG bytes in a .pdf (now: the format its suffix names, or refused)",
     ["plan", "--width", "16", "--target-task", "32", "--tradeoff", "--plot", "{w}/frontier.jpg"], 2, "jpg", None),
    ("a corpus rebuilt over an existing one", "data altered: train.npy and tokenizer rewritten",
     ["lm", "corpus", "build", "--out", "{corpus}", "--source", "{w}/text", "--vocab-size", "512"], 2,
     "--restart", None),
    ("a Latin-1 corpus source", "silently wrong: replacement characters",
     ["lm", "corpus", "build", "--out", "{w}/latin", "--source", "{w}/latin1", "--vocab-size", "512"], 2,
     "--encoding", None),
    ("--extend on a run whose corpus changed", "data altered, then a raw RuntimeError",
     TRAIN + ["--corpus", "{w}/other", "--steps", "9", "--extend"], 2, "corpus", None),
    ("lm eval of a run whose corpus changed", "silently wrong: losses under another tokenizer",
     ["lm", "eval", "{run_moved}"], 2, "is not the corpus", None),
    ("a changed learning rate on a finished run", "(new)", TRAIN[:-5] + ["--lr", "1e-2", "--steps", "6",
                                                                        "--checkpoint-every", "3", "--no-progress"],
     2, "lr", None),
    ("zero steps", "(new)", TRAIN[:5] + ["{w}/zero"] + [a if a != "6" else "0" for a in TRAIN[6:]], 2, "steps",
     None),
    ("an unknown figure format", "(new)", ["plan", "--width", "16"], 2, "RARETASK_FIGURE_FORMATS",
     {"RARETASK_FIGURE_FORMATS": "png,jpg"}),
    ("an unknown debug value", "misleading (the round)", ["plan", "--width", "16"], 2, "RARETASK_DEBUG",
     {"RARETASK_DEBUG": "maybe"}),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_corpus):
    """A corpus, a finished tiny run on it, a second corpus built from other text, a run folder
    whose corpus was swapped for that one, a frequencies CSV, a Latin-1 text: what the cases
    act on and must leave unchanged."""
    from raretask import cli
    from raretask.lm import build_corpus

    w = tmp_path_factory.mktemp("round2")
    shutil.copytree(small_corpus, w / "corpus")
    text = w / "text"
    text.mkdir()
    for i in range(6):  # documents: one is held out
        (text / f"{i}.txt").write_text(" ".join(f"the quick brown fox {i * 7 + j} jumps over the lazy dog {j}."
                                                for j in range(300)))
    build_corpus(w / "other", sources=[text], vocab_size=512, heldout_fraction=0.05, doc_chars=1500)
    args = [a.format(corpus=w / "corpus", run=w / "run", w=w) for a in TRAIN]
    assert cli.main(args) == 0
    # a run whose corpus folder now holds another corpus (the rebuild-under-a-run case)
    shutil.copytree(w / "run", w / "moved-run")
    cfg_path = w / "moved-run" / "run_config.json"
    cfg = json.loads(cfg_path.read_text())
    shutil.copytree(w / "other", w / "swapped")
    cfg["config"]["corpus"] = str(w / "swapped")
    cfg_path.write_text(json.dumps(cfg))
    (w / "freqs.csv").write_text("task,frequency\n1,0.5\n2,0.3\n3,0.2\n")
    (w / "latin1").mkdir()
    for i in range(3):
        (w / "latin1" / f"{i}.txt").write_bytes(f"café crème brûlée {i}, déjà vu. ".encode("latin-1") * 300)
    return w


def _fill(args: list[str], w: Path) -> list[str]:
    return [a.format(corpus=w / "corpus", run=w / "run", run_moved=w / "moved-run", w=w) for a in args]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_round2_case_is_one_line_and_changes_nothing(capsys, monkeypatch, workspace, case):
    from test_robustness import digest, refused

    name, before, args, code, match, env = case
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    keep = digest(workspace)
    line = refused(capsys, _fill(args, workspace), code, match)
    print(f"{name}: {line}")
    after = digest(workspace)
    assert after == keep, sorted(set(after.items()) ^ set(keep.items()))[:5]


def table() -> str:
    lines = ["| case | before (the round) | now |", "|---|---|---|"]
    for name, before, _, code, match, _ in CASES:
        lines.append(f"| {name} | {before} | one line naming `{match}`, exit {code}, nothing changed |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
