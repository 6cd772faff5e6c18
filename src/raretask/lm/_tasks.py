"""The injected tasks (SPEC B1): comparison (T_CMP) and modular addition (T_ADD).

Value tokens are 100 tokens of the tokenizer's ordinary vocabulary, drawn with a seed, with
a bijection v: token -> 0..99. T_CMP labels with two further tokens (True/False); T_ADD's
label is the value token whose value is (v(a) + v(b)) mod 100. Every ordered pair (a, b)
is one instance: exactly 10,000 per task, split 50/50 (seeded) into train and test.
An injected instance is ``a b LABEL EOS``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..runfolder import atomic_write

TASKS = ("cmp", "add")
N_VALUES = 100
INSTANCE_LEN = 4


CHANCE = {"cmp": 0.5, "add": 0.01}
"""Chance test accuracy per task: 2 label candidates for cmp, 100 for add."""


@dataclass(frozen=True)
class TaskSet:
    """All instances of one injected task.

    Attributes:
        task: "cmp" or "add".
        value_tokens: (100,) token ids; value_tokens[v] is the token with value v.
        label_tokens: (2,) [True, False] token ids for cmp; for add the value tokens.
        instances: (10000, 4) int64 rows ``a b LABEL EOS``.
        values: (10000, 2) v(a), v(b).
        train: (5000,) indices of the train split; test: (5000,) the rest.
    """

    task: str
    value_tokens: np.ndarray
    label_tokens: np.ndarray
    instances: np.ndarray
    values: np.ndarray
    train: np.ndarray
    test: np.ndarray
    seed: int

    @property
    def candidates(self) -> np.ndarray:
        """Token ids a label can take: (2,) for cmp, (100,) for add."""
        return self.label_tokens

    def export(self, path: str | Path) -> Path:
        """Write every instance as JSON lines (split, a, b, label ids and values) for inspection."""
        path = Path(path)
        split = np.full(len(self.instances), "test", dtype=object)
        split[self.train] = "train"
        atomic_write(path, "".join(
            json.dumps({"index": i, "split": split[i], "a": int(row[0]), "b": int(row[1]), "label": int(row[2]),
                        "v_a": int(val[0]), "v_b": int(val[1])}) + "\n"
            for i, (row, val) in enumerate(zip(self.instances, self.values))))
        return path


def ordinary_tokens(vocab: dict[str, int], special: set[int]) -> np.ndarray:
    """Token ids that are plain words: a leading-space marker (byte-level 'G' with a breve)
    followed by 2+ ASCII letters, not special. Sorted by id. (M,)"""
    out = []
    for tok, i in vocab.items():
        if i in special:
            continue
        if tok.startswith("\u0120") and len(tok) >= 3 and tok[1:].isascii() and tok[1:].isalpha():
            out.append(i)
    return np.asarray(sorted(out), np.int64)


def build_tasks(task: str, ordinary: np.ndarray, eos: int, seed: int = 0) -> TaskSet:
    """Draw value and label tokens from ``ordinary`` (token ids) and enumerate all instances.

    Args: task "cmp" | "add"; ordinary (M,) candidate token ids (M >= 102); eos id; seed.
    """
    if task not in TASKS:
        raise ConfigError("task", f"{task!r}", ", ".join(TASKS))
    ordinary = np.unique(np.asarray(ordinary, np.int64))
    if len(ordinary) < N_VALUES + 2:
        raise ConfigError("tokenizer", f"only {len(ordinary)} ordinary word tokens", f">= {N_VALUES + 2}")
    rng = np.random.default_rng([seed, 0x7A5C])
    drawn = rng.choice(ordinary, size=N_VALUES + 2, replace=False)
    values, labels2 = drawn[:N_VALUES], drawn[N_VALUES:]
    va, vb = np.meshgrid(np.arange(N_VALUES), np.arange(N_VALUES), indexing="ij")
    va, vb = va.ravel(), vb.ravel()
    if task == "cmp":
        label = np.where(va > vb, labels2[0], labels2[1])
        label_tokens = labels2
    else:
        label = values[(va + vb) % N_VALUES]
        label_tokens = values
    inst = np.stack([values[va], values[vb], label, np.full_like(label, eos)], 1).astype(np.int64)
    perm = np.random.default_rng([seed, 0x5B17]).permutation(len(inst))
    half = len(inst) // 2
    return TaskSet(task, values, label_tokens, inst, np.stack([va, vb], 1), np.sort(perm[:half]),
                   np.sort(perm[half:]), seed)
