"""n-gram counts in the training corpus (SPEC B4), with an infini-gram suffix-array index
built locally from the corpus tokens (no tokenizer download: we write infini-gram's
``tokenized``/``offset`` files ourselves and run only its suffix-array step).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def build_index(corpus, index_dir: str | Path) -> Path:
    """Index the corpus's train tokens (documents split at EOS). Returns the index folder."""
    out = Path(index_dir).resolve()
    if (out / "table.0").exists():
        return out
    if corpus.meta["dtype"] != "uint16":
        raise ConfigError("corpus", "infini-gram indexing here supports uint16 corpora", "a vocabulary <= 65535")
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(corpus.train, np.uint16)
    cuts = np.flatnonzero(ids == corpus.tokenizer.eos_id) + 1
    starts = np.r_[0, cuts[:-1]] if len(cuts) else np.asarray([0])
    ends = cuts if len(cuts) else np.asarray([len(ids)])
    offsets, pos = [], 0
    with open(out / "tokenized.0", "wb") as f:
        for a, b in zip(starts, ends):
            content = b"\xff\xff" + ids[a:b].tobytes()  # infini-gram's document separator, then the tokens
            offsets.append(pos)
            f.write(content)
            pos += len(content)
    np.asarray(offsets, np.uint64).tofile(out / "offset.0")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = hard if hard != resource.RLIM_INFINITY else 65536
    r = subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(out), "--save_dir", str(out),
                        "--token_dtype", "u16", "--cpus", "2", "--mem", "2", "--ulimit", str(min(ulimit, 65536))],
                       capture_output=True, text=True)
    if r.returncode != 0 or not (out / "table.0").exists():
        raise RuntimeError(f"infini-gram indexing failed: {r.stderr[-500:]}")
    return out


MIN_INDEX_TOKENS = 1_000_000  # infini-gram's suffix-array build assumes parts above ~100 KB


class NgramCounter:
    """Exact n-gram counts over a corpus: an infini-gram index, checked against brute force
    on a few n-grams when opened; small corpora (below 1M tokens, where infini-gram's build
    misbehaves) and any index that fails the check are counted by brute force instead.
    ``backend`` says which."""

    def __init__(self, corpus, index_dir: str | Path, seed: int = 0):
        self.tokens = np.asarray(corpus.train)
        self.backend = "numpy"
        if len(self.tokens) < MIN_INDEX_TOKENS or corpus.meta["dtype"] != "uint16":
            return
        from infini_gram.engine import InfiniGramEngine

        self.dir = build_index(corpus, index_dir)
        self.engine = InfiniGramEngine(index_dir=str(self.dir), eos_token_id=corpus.tokenizer.eos_id,
                                       vocab_size=65535, token_dtype="u16")
        rng = np.random.default_rng(seed)
        probes = [self.tokens[i:i + n].tolist() for i, n in zip(rng.integers(0, len(self.tokens) - 4, 4), (1, 2, 3, 3))]
        if all(self._index_count(p) == count_numpy(self.tokens, p) for p in probes):
            self.backend = "infini-gram"

    def _index_count(self, ids: list[int]) -> int:
        r = self.engine.count(input_ids=[int(i) for i in ids])
        if "error" in r:
            raise RuntimeError(r["error"])
        return int(r["count"])

    def count(self, ids: list[int]) -> int:
        """Occurrences of the token sequence ``ids`` in the training split."""
        if self.backend == "infini-gram":
            return self._index_count(ids)
        return count_numpy(self.tokens, ids)


def count_numpy(tokens: np.ndarray, ids: list[int]) -> int:
    """The same count by brute force (a check of the index, and a fallback)."""
    ids = np.asarray(ids, tokens.dtype)
    n = len(ids)
    if n == 0 or len(tokens) < n:
        return 0
    hit = tokens[: len(tokens) - n + 1] == ids[0]
    for j in range(1, n):
        hit &= tokens[j: len(tokens) - n + 1 + j] == ids[j]
    return int(hit.sum())
