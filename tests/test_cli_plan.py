import json
import subprocess
import sys

import pytest

from raretask.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "raretask.cli", *args], capture_output=True, text=True)


def test_plan_json_has_documented_fields(capsys):
    assert main(["plan", "--json", "--width", "16", "--width", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mixture"]["n_tasks"] == 32 and out["mixture"]["D"] == 512
    t1 = out["tasks"][0]
    assert set(t1) >= {"task", "prior", "complexity_m90", "critical_width", "critical_width_all"}
    assert t1["task"] == 1 and t1["critical_width"] == 1
    w = out["widths"][1]
    assert w["width"] == 64 and len(w["retained"]) == 32 and sum(w["retained"]) == 64
    assert len(w["predicted_loss"]) == 32 and w["predicted_total_loss"] > 0
    assert out["frequent_set"][0] == 1
    assert set(out["rare"]) >= {"task", "critical_width_prop6", "delta_star"}
    assert out["rare"]["task"] == 32


def test_plan_alpha_range_and_table(capsys):
    assert main(["plan", "--alpha-range", "0.5", "2", "--width", "32"]) == 0
    text = capsys.readouterr().out
    assert "N=32" in text and "Proposition 6" in text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--width", "600"], "invalid width"),
        (["--block-dim", "0"], "invalid block_dim"),
        (["--tasks", "2", "--prior", "0.5", "0.6"], "invalid prior"),
        (["--tasks", "2", "--prior", "0.5", "nan"], "invalid prior"),
        (["--tasks", "2", "--prior", "-0.5", "1.5"], "invalid prior"),
        (["--beta", "abc"], "invalid float value"),
        (["--gamma", "1"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    r = run_cli("plan", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("raretask: error:")
    assert "Traceback" not in r.stderr


def test_plan_explains_its_two_critical_widths(capsys):
    """Theorem 3's N*_(r,1) minus Proposition 6's N*_r is the count of other non-frequent features
    that outrank the rare task, and the printed line is derived from those counts."""
    from raretask.report.console import two_widths_line

    assert main(["plan", "--json", "--width", "16"]) == 0
    rare = json.loads(capsys.readouterr().out)["rare"]
    assert (rare["critical_width_theorem3"], rare["critical_width_prop6"]) == (159, 93)
    assert rare["critical_width_theorem3"] == rare["critical_width_prop6"] + rare["outside_f_features_above"] == 159
    assert main(["plan", "--width", "16"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Why two widths for task 32" in text and "The 66 feature(s)" in text
    same = two_widths_line({**rare, "critical_width_theorem3": 93, "outside_f_features_above": 0}, [1, 2])
    assert "agree on N = 93" in same and "Why two widths" not in same


@pytest.mark.parametrize("args, both", [
    (["--rank1", "--block-dim", "4"], ("--rank1", "--block-dim")),
    (["--rank1", "--alpha", "2"], ("--rank1", "--alpha")),
    (["--rank1", "--alpha-range", "0.5", "2"], ("--rank1", "--alpha-range")),
    (["--tasks", "2", "--prior", "0.5", "0.5", "--beta", "2"], ("--prior", "--beta")),
    (["FREQ", "--tasks", "5"], ("--frequencies", "--tasks")),
    (["FREQ", "--prior", "0.5", "0.3", "0.2"], ("--frequencies", "--prior")),
    (["FREQ", "--beta", "1.2"], ("--frequencies", "--beta")),
    (["SPEC", "--block-dim", "4"], ("--frequencies", "--block-dim")),
    (["SPEC", "--alpha", "2"], ("--frequencies", "--alpha")),
])
def test_conflicting_flags_are_one_line_naming_both(tmp_path, capsys, args, both):
    """Before, one silently won (--rank1 --block-dim 4 planned d = 1; a CSV beat --tasks/--prior)."""
    freq = tmp_path / "f.csv"
    freq.write_text("task,frequency\n1,0.5\n2,0.3\n3,0.2\n")
    spec = tmp_path / "s.csv"
    spec.write_text("task,frequency,spectrum\n1,0.6,1;0.5\n2,0.4,1;0.25\n")
    args = [a for x in args for a in (["--frequencies", str(freq)] if x == "FREQ" else
                                      ["--frequencies", str(spec)] if x == "SPEC" else [x])]
    assert main(["plan", "--width", "1", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raretask: error:") and all(f in err[0] for f in both), err


def test_each_flag_alone_still_plans(tmp_path, capsys):
    spec = tmp_path / "s.csv"
    spec.write_text("task,frequency,spectrum\n1,0.6,1;0.5\n2,0.4,1;0.25\n")
    for args in (["--rank1"], ["--block-dim", "4"], ["--frequencies", str(spec)], ["--tasks", "2", "--prior", "0.5",
                                                                                     "0.5"]):
        assert main(["plan", "--width", "1", "--json", *args]) == 0, args
        capsys.readouterr()


def test_a_broken_pipe_is_quiet_and_a_closed_or_full_stdout_is_one_line(tmp_path):
    """`raretask plan | head -1`: silent, exit 141 (as a tool killed by SIGPIPE); stdout closed
    (`>&-`): one line, exit 1 (it exited 0 having written nothing); /dev/full: one line naming
    standard output (it blamed "the output folder")."""
    import os

    plan = [sys.executable, "-m", "raretask.cli", "plan", "--width", "16"]
    # `true` exits at once, long before the planner's first line (its reader is gone: EPIPE)
    r = subprocess.run(["bash", "-c", " ".join(plan) + " | true; echo \" rc=${PIPESTATUS[0]}\""],
                       capture_output=True, text=True)
    assert r.stdout.endswith(" rc=141\n") and r.stderr == "", (r.stdout, r.stderr)
    r = subprocess.run(plan, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "raretask: error: standard output is closed; give the command somewhere to write (e.g. > out.txt or > "
        "/dev/null)"]
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            r = subprocess.run(plan, stdout=full, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1 and r.stderr.splitlines() == [
            "raretask: error: cannot write to standard output: no space left on device"]
    r = subprocess.run(plan, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and "Rare task 32" in " ".join(r.stdout.split())
