"""The README's commands are consistent with each other: what a command reads was made by an
earlier command in the README."""

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[list[str]]:
    """Every raretask command line in the README's bash blocks (continuations joined, comments
    dropped), as argv after ``raretask``."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            m = re.match(r"(?:\.venv/bin/raretask|raretask|torchrun .*-m raretask\.cli)\s+(.*)", line)
            if m and "..." not in m.group(1):
                out.append(shlex.split(m.group(1)))
    return out


def _out(argv: list[str]) -> str | None:
    return argv[argv.index("--out") + 1] if "--out" in argv else None


def test_every_run_the_readme_evaluates_is_made_earlier_in_the_readme():
    made: set[str] = set()
    checked = 0
    for argv in _commands():
        if argv[:2] in (["lm", "eval"], ["lm", "probe"], ["lm", "sizing"]):
            runs = [a for a in argv[2:] if not a.startswith("-") and a.startswith("runs/")]
            runs = [a for a in runs if argv[argv.index(a) - 1] not in ("--out",)]
            missing = [r for r in runs if r not in made]
            assert not missing, f"`raretask {' '.join(argv)}` reads {missing}, which no earlier README command makes"
            checked += len(runs)
        if argv[:2] in (["lm", "train"], ["lm", "sweep"]) and _out(argv) and "--dry-run" not in argv:
            made.add(_out(argv))
    assert checked >= 3  # the check has something to check


def test_the_readme_check_catches_a_run_never_made(monkeypatch, tmp_path):
    fake = tmp_path / "README.md"
    fake.write_text("```bash\n.venv/bin/raretask lm train --corpus c --out runs/lm/a --rate 8\n"
                    ".venv/bin/raretask lm eval runs/lm/a runs/lm/b --out runs/lm/report\n"
                    ".venv/bin/raretask lm eval runs/lm/a --out r\n.venv/bin/raretask lm eval runs/lm/a --out r2\n```\n")
    monkeypatch.setattr(__import__(__name__), "README", fake)
    try:
        test_every_run_the_readme_evaluates_is_made_earlier_in_the_readme()
    except AssertionError as e:
        assert "runs/lm/b" in str(e)
    else:
        raise AssertionError("a README evaluating a run it never makes passed")
