"""Reading measured task frequencies (and optional spectra) from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import ConfigError


def read_frequencies(path: str | Path) -> tuple[list[float], tuple[tuple[float, ...], ...] | None]:
    """Parse ``task,frequency[,spectrum]`` rows (header required; tasks 1..K in any order).

    Frequencies may be raw counts or per-token rates: they are normalised to sum to 1.
    Spectrum cells hold ';'-separated eigenvalues, sorted into non-increasing order; either
    every row has one (all of the same length) or none does.
    Returns (prior in task order, spectra or None)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("frequencies", f"{p} {'is a directory' if p.is_dir() else 'does not exist'}", "a CSV file")
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError("frequencies", f"{p} is not a text CSV file ({e.__class__.__name__})", "a CSV file") from None
    if not rows or not {"task", "frequency"} <= set(rows[0]):
        raise ConfigError("frequencies", f"{p} needs a header with task,frequency[,spectrum]",
                          "columns task, frequency, optional spectrum")
    try:
        tasks = [int(r["task"]) for r in rows]
        freq = [float(r["frequency"]) for r in rows]
    except (TypeError, ValueError) as e:
        raise ConfigError("frequencies", f"unreadable value ({e})", "integer task, numeric frequency") from None
    if sorted(tasks) != list(range(1, len(tasks) + 1)):
        raise ConfigError("frequencies", "tasks must be 1..K, each once", "1..K")
    if any(not (x > 0) or x == float("inf") for x in freq):
        raise ConfigError("frequencies", "every frequency must be a positive finite number", "> 0")
    total = sum(freq)
    order = sorted(range(len(rows)), key=lambda i: tasks[i])
    prior = [freq[i] / total for i in order]
    spectra = None
    has = [bool((r.get("spectrum") or "").strip()) for r in rows]
    if any(has):
        if not all(has):
            raise ConfigError("frequencies", "either every row has a spectrum or none", "all or none")
        try:
            spectra = tuple(tuple(sorted((float(x) for x in rows[i]["spectrum"].split(";")), reverse=True))
                            for i in order)
        except ValueError as e:
            raise ConfigError("frequencies", f"unreadable spectrum ({e})", "';'-separated numbers") from None
        if len({len(s) for s in spectra}) != 1:
            raise ConfigError("frequencies", "spectra have different lengths", "the same d for every task")
    return prior, spectra
